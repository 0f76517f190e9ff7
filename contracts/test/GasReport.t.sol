// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {InboxBase} from "./utils/InboxBase.sol";
import {TestMerkle} from "./utils/TestSigner.sol";
import {console} from "./utils/Test.sol";
import {FrostVerifier} from "../src/FrostVerifier.sol";
import {SigilInbox} from "../src/SigilInbox.sol";
import {NoopReceiver} from "../src/examples/NoopReceiver.sol";
import {RecordingReceiver} from "../src/examples/RecordingReceiver.sol";
import {EcdsaMultisigVerifier} from "../src/bench/EcdsaMultisigVerifier.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// Gas table for BENCHMARKS.md / contracts/V2.md.
/// Run: `cd contracts && forge test --match-contract GasReport -vv`.
///
/// Every relayer transaction is measured as its own transaction would be charged (Prague):
///   total = max(21,000 + 4 * tokens + execution, 21,000 + 10 * tokens)          (EIP-7623)
///   tokens = zero calldata bytes + 4 * non-zero calldata bytes                  (EIP-2028)
/// Execution is measured around a low-level call with pre-encoded calldata, after `vm.cool`
/// on the inbox (its storage is cold and unmodified, as at the start of a transaction), plus
/// COLD_RECIPIENT for the first access to the recipient account, which `vm.cool` leaves warm.
/// The measurement includes the caller's CALL opcode (~100 gas), so it errs high.
/// Batches are signed in Solidity (TestSigner): a FROST signature costs the same whoever made it.
contract GasReport is InboxBase {
    uint256 internal constant SIGNERS = 19;
    uint256 internal constant THRESHOLD = 13;
    uint32 internal constant GAS_LIMIT = 200_000;
    /// Cold (2,600) minus warm (100) account access: the recipient's first touch in a transaction.
    uint256 internal constant COLD_RECIPIENT = 2_500;

    struct TxGas {
        uint256 exec;
        uint256 tokens;
        uint256 total;
        bool floor;
    }

    struct Row {
        uint256 size;
        TxGas submit;
        uint256 singleTotal; // sum of the `deliver` transactions
        uint256 singleFloors; // how many of them pay the EIP-7623 floor
        uint256 proofExec; // sum of in-contract Merkle proof processing (single path)
        TxGas batch; // the one `deliverBatch` transaction
    }

    /// When set, payloads are 32 bytes of keccak output (almost no zero bytes).
    bool internal highEntropyPayload;

    function setUp() public {
        setUpInbox();
    }

    function txGas(bytes memory cd, uint256 exec) internal pure returns (TxGas memory t) {
        for (uint256 i = 0; i < cd.length; ++i) {
            t.tokens += cd[i] == 0 ? 1 : 4;
        }
        t.exec = exec;
        uint256 standard = 21_000 + 4 * t.tokens + exec;
        uint256 fl = 21_000 + 10 * t.tokens;
        t.floor = fl > standard;
        t.total = t.floor ? fl : standard;
    }

    /// Executes `cd` on the inbox as one transaction (see the contract docs).
    function run(bytes memory cd, address recipient) internal returns (TxGas memory) {
        vm.cool(address(inbox));
        uint256 coldAccounts = 0;
        if (recipient != address(0)) {
            vm.cool(recipient);
            coldAccounts = 1;
        }
        address target = address(inbox);
        bool ok;
        uint256 g;
        // A plain CALL over the prepared bytes: Solidity's `.call(cd)` would copy them to fresh
        // memory first, charging this (large) test frame's memory expansion to the measurement.
        assembly ("memory-safe") {
            g := gas()
            ok := call(gas(), target, 0, add(cd, 0x20), mload(cd), 0, 0)
            g := sub(g, gas())
        }
        assertTrue(ok, "transaction succeeded");
        return txGas(cd, g + coldAccounts * COLD_RECIPIENT);
    }

    function f(uint256 v) internal pure returns (string memory s) {
        // Thousands separators.
        string memory digits = vm.toString(v);
        bytes memory b = bytes(digits);
        for (uint256 i = 0; i < b.length; ++i) {
            if (i > 0 && (b.length - i) % 3 == 0) s = string.concat(s, ",");
            s = string.concat(s, string(abi.encodePacked(b[i])));
        }
    }

    /// Messages with a 32-byte payload abi.encode(uint256(nonce)), as the v1 table and the
    /// Rust bench fixtures use (see `highEntropyPayload` for 32 random bytes).
    function messages(address to, uint64 first, uint256 n) internal view returns (SigilInbox.Message[] memory ms) {
        ms = new SigilInbox.Message[](n);
        for (uint256 i = 0; i < n; ++i) {
            ms[i] = msgFor(inbox, to, first + uint64(i), GAS_LIMIT);
            if (!highEntropyPayload) ms[i].payload = abi.encode(uint256(first + i));
        }
    }

    struct Prepared {
        SigilInbox.Message[] ms;
        bytes submitCd;
        bytes[] deliverCds;
        bytes batchCd;
        uint256 proofExec;
    }

    /// Signs a batch of `n` messages and pre-encodes every relayer transaction for it.
    function prepare(address to, uint64 first, uint256 n) internal returns (Prepared memory p) {
        p.ms = messages(to, first, n);
        bytes32[] memory leaves = leavesOf(inbox, p.ms);
        bytes32 root = TestMerkle.root(leaves);
        height += 1;
        FrostVerifier.Signature memory s = frostSign(k1, inbox.batchDigest(1, height, root));
        p.submitCd = abi.encodeCall(SigilInbox.submitBatch, (1, height, root, s));
        p.deliverCds = new bytes[](n);
        for (uint256 i = 0; i < n; ++i) {
            bytes32[] memory proof = TestMerkle.proof(leaves, i);
            p.deliverCds[i] = abi.encodeCall(SigilInbox.deliver, (p.ms[i], proof));
            uint256 gp = gasleft();
            bytes32 got = MerkleProof.processProof(proof, leaves[i]);
            p.proofExec += gp - gasleft();
            assertEq(got, root, "proof leads to the root");
        }
        (bytes32[] memory mp, bool[] memory flags) = TestMerkle.fullMultiproof(n);
        p.batchCd = abi.encodeCall(SigilInbox.deliverBatch, (p.ms, mp, flags));
    }

    function checkDelivered(SigilInbox.Message[] memory ms) internal view {
        for (uint256 i = 0; i < ms.length; ++i) {
            assertTrue(statusOf(inbox, ms[i]) == SigilInbox.Status.Delivered, "delivered");
        }
    }

    function measure(address to, uint64 first, uint256 n) internal returns (Row memory r) {
        r.size = n;
        Prepared memory p = prepare(to, first, n);
        r.proofExec = p.proofExec;
        uint256 snap = vm.snapshotState();
        r.submit = run(p.submitCd, address(0));
        for (uint256 i = 0; i < n; ++i) {
            TxGas memory t = run(p.deliverCds[i], to);
            r.singleTotal += t.total;
            if (t.floor) r.singleFloors += 1;
        }
        checkDelivered(p.ms);
        vm.revertToState(snap);
        run(p.submitCd, address(0));
        r.batch = run(p.batchCd, to);
        checkDelivered(p.ms);
        vm.revertToState(snap);
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
        bytes memory enc = abi.encode(sigs);
        for (uint256 i = 0; i < enc.length; ++i) {
            sigCalldata += enc[i] == 0 ? 4 : 16;
        }
    }

    function printRow(Row memory r, uint256 baseline) internal view returns (uint256 multi, uint256 ratio10) {
        uint256 n = r.size;
        uint256 share = r.submit.total / n;
        uint256 single = (r.submit.total + r.singleTotal) / n;
        multi = (r.submit.total + r.batch.total) / n;
        // Authentication overhead per message (v1 definition): the batch's submitBatch share,
        // the message's Merkle proof processing and the cold read of the stored root.
        uint256 auth = share + r.proofExec / n + 2_100;
        ratio10 = baseline * 10 / auth;
        string memory left = string.concat(
            "| ", vm.toString(n), " | ", f(r.submit.total), " | ", f(share), " | ", f(r.singleTotal / n),
            r.singleFloors > 0 ? " (floor)" : "", " | **", f(single), "** | "
        );
        string memory right = string.concat(
            f(r.batch.total), r.batch.floor ? " (floor)" : "", " | ", f(r.batch.total / n), " | **", f(multi), "** | "
        );
        string memory tail = string.concat(
            f(auth), " | ", f(baseline), " | ", vm.toString(ratio10 / 10), ".", vm.toString(ratio10 % 10), "x |"
        );
        console.log(string.concat(left, right, tail));
    }

    /// One table per receiver; returns the multiproof per-message total at batch 256.
    function table(address to, string memory name, uint64 nonceBase) internal returns (uint256 multiAt256) {
        (uint256 bExec, uint256 bCalldata) = baselinePerMessage();
        uint256 baseline = bExec + bCalldata;
        console.log("");
        console.log(string.concat("Receiver: ", name, "; 32-byte payload; gasLimit 200,000. Gas per message."));
        console.log("");
        console.log(
            "| batch | submitBatch tx | submit share | deliver tx (avg) | **single-proof total** | deliverBatch tx | delivery share | **multiproof total** | auth overhead | baseline 13-of-19 ECDSA | ratio |"
        );
        console.log("|---|---|---|---|---|---|---|---|---|---|---|");
        uint256[4] memory sizes = [uint256(1), 16, 64, 256];
        uint256 ratioAt64;
        for (uint256 bi = 0; bi < 4; ++bi) {
            Row memory r = measure(to, nonceBase + uint64(bi) * 1000, sizes[bi]);
            (uint256 multi, uint256 ratio10) = printRow(r, baseline);
            if (sizes[bi] == 256) multiAt256 = multi;
            if (sizes[bi] == 64) ratioAt64 = ratio10;
        }
        console.log("");
        console.log("| baseline part | gas |");
        console.log("|---|---|");
        console.log(string.concat("| 13-of-19 ECDSA verify execution | ", f(bExec), " |"));
        console.log(string.concat("| 13 signatures calldata | ", f(bCalldata), " |"));
        assertTrue(ratioAt64 >= 100, "auth overhead at batch 64 must be >= 10x below the baseline");
    }

    /// The gas table with a receiver that does nothing (the inbox's own cost).
    function test_gas_table_noop() public {
        NoopReceiver noop = new NoopReceiver(address(inbox));
        uint256 multiAt256 = table(address(noop), "NoopReceiver", 0);
        assertLe(multiAt256, 8_000, "multiproof per-message total at batch 256 must be <= 8,000");
    }

    /// The no-op table again with 32 high-entropy payload bytes (keccak output) instead of
    /// abi.encode(uint256(nonce)): 30 more non-zero calldata bytes per message.
    function test_gas_table_noop_high_entropy_payload() public {
        highEntropyPayload = true;
        NoopReceiver noop = new NoopReceiver(address(inbox));
        table(address(noop), "NoopReceiver, high-entropy payload", 200_000);
    }

    /// The same with the example RecordingReceiver (two storage writes and an event per message).
    function test_gas_table_recording() public {
        RecordingReceiver rec = new RecordingReceiver(address(inbox));
        table(address(rec), "RecordingReceiver", 100_000);
    }

    /// Execution gas of one FrostVerifier.verifyDigest (library call, in-contract), for the
    /// Rust-made 13-of-19 benchmark signature of test/fixtures/frost.json (a digest: its
    /// validity does not depend on the on-chain format) and for a Solidity-made one. The key
    /// words are on the stack before the measurement, as in the inbox (read from storage).
    function test_gas_verify() public {
        string memory fx = vm.readFile("test/fixtures/frost.json");
        uint256 kx = vm.parseJsonUint(fx, ".benchKey.x");
        uint256 kp = vm.parseJsonUint(fx, ".benchKey.parity");
        FrostVerifier.Signature memory s = FrostVerifier.Signature(
            vm.parseJsonUint(fx, ".bench[0].sig.rx"), vm.parseJsonUint(fx, ".bench[0].sig.ry"), vm.parseJsonUint(fx, ".bench[0].sig.z")
        );
        bytes32 d = vm.parseJsonBytes32(fx, ".bench[0].digest");
        uint256 g = gasleft();
        bool ok = FrostVerifier.verifyDigest(kx, kp, s, d);
        g -= gasleft();
        assertTrue(ok, "verifies");

        bytes32 d2 = keccak256("gas report digest");
        FrostVerifier.Signature memory s2 = frostSign(k1, d2);
        uint256 k2x = k1.x;
        uint256 k2p = k1.parity;
        uint256 g2 = gasleft();
        bool ok2 = FrostVerifier.verifyDigest(k2x, k2p, s2, d2);
        g2 -= gasleft();
        assertTrue(ok2, "verifies (test signer)");

        console.log("| metric | gas |");
        console.log("|---|---|");
        console.log(string.concat("| FrostVerifier.verifyDigest execution (Rust 13-of-19 signature) | ", f(g), " |"));
        console.log(string.concat("| FrostVerifier.verifyDigest execution (Solidity test signature) | ", f(g2), " |"));
        // Target was 4,300; 3,754 of it is fixed (ecrecover 3,100 with its CALL, three SHA-256
        // CALLs 612, keccak256 42). This bound guards against regressions of the 4,368 reached.
        assertLe(g, 4_400, "verify must stay <= 4,400 gas");
        assertLe(g2, 4_400, "verify must stay <= 4,400 gas");
    }
}
