// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TestSigner, TestMerkle} from "./TestSigner.sol";
import {FrostVerifier} from "../../src/FrostVerifier.sol";
import {SigilInbox} from "../../src/SigilInbox.sol";

/// @notice Inbox tests with Solidity-made FROST signatures (TestSigner) and Merkle trees
///         (TestMerkle): independent of the Rust fixtures.
abstract contract InboxBase is TestSigner {
    uint64 internal constant SRC = 1;
    address internal constant GATEWAY = 0x5FbDB2315678afecb367f032d93F642f64180aa3;
    address internal constant SENDER = 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266;
    uint64 internal constant GRACE = 1 days;

    SigilInbox internal inbox;
    TestKey internal k1;
    uint64 internal height;

    function setUpInbox() internal {
        k1 = testKey(1);
        inbox = new SigilInbox(address(this), GRACE);
        inbox.initialize(1, k1.x, k1.y);
    }

    /// A message for inbox `ib` (this chain) with nonce `nonce`, a 32-byte payload.
    function msgFor(SigilInbox ib, address to, uint64 nonce, uint32 gasLimit)
        internal
        view
        returns (SigilInbox.Message memory)
    {
        return SigilInbox.Message(
            SRC, GATEWAY, nonce, SENDER, uint64(block.chainid), address(ib), to, gasLimit, abi.encode(keccak256(abi.encode(nonce)))
        );
    }

    function leavesOf(SigilInbox ib, SigilInbox.Message[] memory ms) internal pure returns (bytes32[] memory ls) {
        ls = new bytes32[](ms.length);
        for (uint256 i = 0; i < ms.length; ++i) {
            ls[i] = ib.leafOf(ms[i]);
        }
    }

    /// Signs the batch of `ms` (a power-of-two count) with `k` for `epoch` and submits it to `ib`.
    function submitBatchOf(SigilInbox ib, TestKey memory k, uint64 epoch, SigilInbox.Message[] memory ms)
        internal
        returns (bytes32[] memory leaves, bytes32 root)
    {
        leaves = leavesOf(ib, ms);
        root = TestMerkle.root(leaves);
        height += 1;
        FrostVerifier.Signature memory s = frostSign(k, ib.batchDigest(epoch, height, root));
        ib.submitBatch(epoch, height, root, s);
    }

    function deliverAll(SigilInbox ib, SigilInbox.Message[] memory ms) internal {
        (bytes32[] memory p, bool[] memory f) = TestMerkle.fullMultiproof(ms.length);
        ib.deliverBatch(ms, p, f);
    }

    function statusOf(SigilInbox ib, SigilInbox.Message memory m) internal view returns (SigilInbox.Status) {
        return ib.statusOf(m.sourceChainId, m.sourceGateway, m.nonce);
    }

    function copy(SigilInbox.Message memory m) internal pure returns (SigilInbox.Message memory) {
        return SigilInbox.Message(
            m.sourceChainId, m.sourceGateway, m.nonce, m.sender, m.destChainId, m.destInbox, m.recipient, m.gasLimit, m.payload
        );
    }

    function one(SigilInbox.Message memory m) internal pure returns (SigilInbox.Message[] memory ms) {
        ms = new SigilInbox.Message[](1);
        ms[0] = m;
    }

    function rotationSig(SigilInbox ib, TestKey memory oldK, uint64 oldEpoch, TestKey memory newK, uint64 newEpoch)
        internal
        returns (FrostVerifier.Signature memory)
    {
        return frostSign(oldK, ib.rotationDigest(oldEpoch, oldK.x, oldK.parity, newEpoch, newK.x, newK.parity));
    }

    /// Smallest gas (in (lo, hi]) with which `target.call(cd)` succeeds; the call must fail at
    /// `lo` and succeed at `hi`. State is restored after every probe.
    function minimalGas(address target, bytes memory cd, uint256 lo, uint256 hi) internal returns (uint256) {
        while (hi - lo > 1) {
            uint256 mid = (lo + hi) / 2;
            uint256 snap = vm.snapshotState();
            (bool ok,) = target.call{gas: mid}(cd);
            vm.revertToState(snap);
            if (ok) hi = mid;
            else lo = mid;
        }
        return hi;
    }
}
