// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixtures} from "./utils/Fixtures.sol";
import {console} from "./utils/Test.sol";
import {FrostVerifier} from "../src/FrostVerifier.sol";
import {SigilInbox} from "../src/SigilInbox.sol";
import {EcdsaMultisigVerifier} from "../src/bench/EcdsaMultisigVerifier.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// Gas table for BENCHMARKS.md. Run: `cd contracts && forge test --match-contract GasReport -vv`.
/// Transaction gas is reported as 21000 + calldata gas (EIP-2028: 16 per non-zero byte, 4 per
/// zero byte) + execution gas measured around the external call.
contract GasReport is Fixtures {
    uint256 internal constant SIGNERS = 19;
    uint256 internal constant THRESHOLD = 13;

    function setUp() public {
        loadFixtures();
        deployInbox();
        (uint256 x, uint256 y) = key(".benchKey");
        inbox.initialize(1, x, y);
    }

    function calldataGas(bytes memory data) internal pure returns (uint256 g) {
        for (uint256 i = 0; i < data.length; ++i) {
            g += data[i] == 0 ? 4 : 16;
        }
    }

    function row(string memory name, uint256 v) internal view {
        console.log(string.concat("| ", name, " | ", vm.toString(v), " |"));
    }

    function benchPath(uint256 i) internal pure returns (string memory) {
        return string.concat(".bench[", i == 0 ? "0" : i == 1 ? "1" : i == 2 ? "2" : "3", "]");
    }

    /// Execution gas of one FrostVerifier.verifyDigest (library call, in-contract).
    function test_gas_verify() public view {
        FrostVerifier.PublicKey memory k =
            FrostVerifier.PublicKey(vm.parseJsonUint(fx, ".benchKey.x"), uint8(vm.parseJsonUint(fx, ".benchKey.parity")));
        FrostVerifier.Signature memory s = sig(".bench[0].sig");
        bytes32 d = vm.parseJsonBytes32(fx, ".bench[0].digest");
        uint256 g = gasleft();
        bool ok = FrostVerifier.verifyDigest(k, s, d);
        g -= gasleft();
        assertTrue(ok, "verifies");
        console.log("| metric | gas |");
        console.log("|---|---|");
        row("FrostVerifier.verifyDigest execution", g);
        assertTrue(g <= 6000, "verify must stay <= 6,000 gas");
    }

    struct Row {
        uint256 size;
        uint256 submitTx;
        uint256 singlePerMsg;
        uint256 multiPerMsg;
        uint256 proofPerMsg;
        uint256 authPerMsg;
    }

    function measure(uint256 bi, bool useMulti) internal returns (Row memory r) {
        string memory b = benchPath(bi);
        r.size = size(b);
        uint64 epoch = uint64(vm.parseJsonUint(fx, string.concat(b, ".epoch")));
        uint64 height = uint64(vm.parseJsonUint(fx, string.concat(b, ".height")));
        bytes32 root = vm.parseJsonBytes32(fx, string.concat(b, ".root"));
        FrostVerifier.Signature memory s = sig(string.concat(b, ".sig"));
        bytes memory cd = abi.encodeCall(SigilInbox.submitBatch, (epoch, height, root, s));
        uint256 g = gasleft();
        inbox.submitBatch(epoch, height, root, s);
        g -= gasleft();
        r.submitTx = 21000 + calldataGas(cd) + g;

        uint64 f = first(b);
        if (!useMulti) {
            uint256 total;
            uint256 proofs;
            for (uint256 i = 0; i < r.size; ++i) {
                SigilInbox.Message memory m = message(f + uint64(i));
                bytes32[] memory p = proof(b, i);
                bytes memory call = abi.encodeCall(SigilInbox.deliver, (m, p));
                bytes32 leaf = inbox.leafOf(m);
                uint256 gp = gasleft();
                bytes32 got = MerkleProof.processProof(p, leaf);
                proofs += gp - gasleft();
                assertEq(got, root, "proof leads to the root");
                uint256 gd = gasleft();
                inbox.deliver(m, p);
                total += 21000 + calldataGas(call) + (gd - gasleft());
            }
            r.singlePerMsg = total / r.size;
            r.proofPerMsg = proofs / r.size;
        } else {
            (SigilInbox.Message[] memory ms, bytes32[] memory p, bool[] memory fl) = multi(b);
            bytes memory call = abi.encodeCall(SigilInbox.deliverBatch, (ms, p, fl));
            uint256 gd = gasleft();
            inbox.deliverBatch(ms, p, fl);
            r.multiPerMsg = (21000 + calldataGas(call) + (gd - gasleft())) / r.size;
        }
        assertEq(receiver().count(), r.size, "every message delivered");
    }

    function baselinePerMessage() internal returns (uint256 exec, uint256 sigCalldata) {
        address[] memory signers = new address[](SIGNERS);
        for (uint256 i = 0; i < SIGNERS; ++i) {
            signers[i] = vm.addr(i + 1);
        }
        EcdsaMultisigVerifier v = new EcdsaMultisigVerifier(signers, THRESHOLD);
        bytes32 digest = keccak256("a message digest");
        EcdsaMultisigVerifier.IndexedSignature[] memory sigs = new EcdsaMultisigVerifier.IndexedSignature[](THRESHOLD);
        for (uint256 i = 0; i < THRESHOLD; ++i) {
            (uint8 sv, bytes32 sr, bytes32 ss) = vm.sign(i + 1, digest);
            sigs[i] = EcdsaMultisigVerifier.IndexedSignature(uint8(i), sv, sr, ss);
        }
        uint256 g = gasleft();
        bool ok = v.verify(digest, sigs);
        exec = g - gasleft();
        assertTrue(ok, "baseline verifies");
        sigCalldata = calldataGas(abi.encode(sigs));
    }

    /// The whole table in one run: per batch size, the single-proof and multiproof paths, and
    /// the 13-of-19 ECDSA baseline.
    function test_gas_table() public {
        (uint256 bExec, uint256 bCalldata) = baselinePerMessage();
        console.log("| batch | submitBatch tx | deliver tx/msg (single proof) | deliverBatch tx/msg (multiproof) | auth overhead/msg | baseline 13-of-19 ECDSA/msg | ratio |");
        console.log("|---|---|---|---|---|---|---|");
        uint256 baseline = bExec + bCalldata;
        uint256 ratioAt64;
        for (uint256 bi = 0; bi < 4; ++bi) {
            uint256 snap = vm.snapshotState();
            Row memory single = measure(bi, false);
            vm.revertToState(snap);
            Row memory mp = measure(bi, true);
            vm.revertToState(snap);
            // Authentication overhead per message: the batch's signature verification and root
            // storage amortised, plus its Merkle proof and the cold read of the stored root.
            uint256 auth = single.submitTx / single.size + single.proofPerMsg + 2100;
            uint256 ratio10 = baseline * 10 / auth;
            if (single.size == 64) ratioAt64 = ratio10;
            console.log(
                string.concat(
                    "| ", vm.toString(single.size), " | ", vm.toString(single.submitTx), " | ",
                    vm.toString(single.singlePerMsg), " | ", vm.toString(mp.multiPerMsg), " | ",
                    vm.toString(auth), " | ", vm.toString(baseline), " | ",
                    vm.toString(ratio10 / 10), ".", vm.toString(ratio10 % 10), "x |"
                )
            );
        }
        console.log("");
        console.log("| baseline part | gas |");
        console.log("|---|---|");
        row("13-of-19 ECDSA verify execution", bExec);
        row("13 signatures calldata", bCalldata);
        assertTrue(ratioAt64 >= 100, "auth overhead at batch 64 must be >= 10x below the baseline");
    }
}
