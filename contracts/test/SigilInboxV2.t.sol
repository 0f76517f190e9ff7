// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {InboxBase} from "./utils/InboxBase.sol";
import {TestMerkle} from "./utils/TestSigner.sol";
import {FrostVerifier} from "../src/FrostVerifier.sol";
import {SigilInbox} from "../src/SigilInbox.sol";
import {ISigilReceiver} from "../src/ISigilReceiver.sol";
import {SigilReceiverBase} from "../src/SigilReceiverBase.sol";
import {RecordingReceiver} from "../src/examples/RecordingReceiver.sol";
import {NoopReceiver} from "../src/examples/NoopReceiver.sol";
import {GasBurnerReceiver} from "../src/examples/GasBurnerReceiver.sol";
import {FixableReceiver} from "../src/examples/FixableReceiver.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// Records the gas it was called with (gasleft() a few opcodes after entry).
contract GasProbeReceiver is ISigilReceiver {
    uint256 public lastGas;

    function receiveMessage(uint64, address, bytes calldata) external {
        lastGas = gasleft();
    }
}

/// Re-enters the inbox with a stored call while handling a message.
contract ReentrantReceiver is SigilReceiverBase {
    bytes internal reentry;
    bool public reentryOk;
    bytes public reentryRet;
    uint256 public count;

    constructor(address inbox_) SigilReceiverBase(inbox_) {}

    function setReentry(bytes calldata data) external {
        reentry = data;
    }

    function _onSigilMessage(uint64, address, bytes calldata) internal override {
        count += 1;
        (reentryOk, reentryRet) = inbox.call(reentry);
    }
}

/// Exposes the inbox's literal constants.
contract InboxConstants is SigilInbox {
    constructor() SigilInbox(address(0), 0) {}

    function constants() external pure returns (bytes32, bytes32, bytes32, bytes32) {
        return (RECEIVE_MESSAGE_SELECTOR, INSUFFICIENT_GAS_SELECTOR, MESSAGE_DELIVERED_TOPIC, MESSAGE_FAILED_TOPIC);
    }
}

/// Runs the inbox's multiproof processing and OpenZeppelin's on the same input.
contract MultiproofHarness is SigilInbox {
    constructor() SigilInbox(address(0), 0) {}

    function inboxRoot(bytes32[] calldata proof, bool[] calldata flags, bytes32[] calldata leaves)
        external
        pure
        returns (bytes32)
    {
        if (leaves.length == 0 || leaves.length + proof.length != flags.length + 1) revert InvalidMultiproof();
        bytes32[] memory queue = new bytes32[](leaves.length + flags.length);
        for (uint256 i = 0; i < leaves.length; ++i) {
            queue[i] = leaves[i];
        }
        return _multiProofRoot(queue, leaves.length, proof, flags);
    }

    function ozRoot(bytes32[] calldata proof, bool[] calldata flags, bytes32[] calldata leaves)
        external
        pure
        returns (bytes32)
    {
        return MerkleProof.processMultiProofCalldata(proof, flags, leaves);
    }
}

contract SigilInboxV2Test is InboxBase {
    RecordingReceiver internal rec;
    NoopReceiver internal noop;
    GasBurnerReceiver internal burner;
    FixableReceiver internal fixable;
    GasProbeReceiver internal probe;

    function setUp() public {
        setUpInbox();
        rec = new RecordingReceiver(address(inbox));
        noop = new NoopReceiver(address(inbox));
        burner = new GasBurnerReceiver(address(inbox));
        fixable = new FixableReceiver(address(inbox));
        probe = new GasProbeReceiver();
    }

    function recBatch(uint64 first, uint256 n) internal view returns (SigilInbox.Message[] memory ms) {
        ms = new SigilInbox.Message[](n);
        for (uint256 i = 0; i < n; ++i) {
            ms[i] = msgFor(inbox, address(rec), first + uint64(i), 200_000);
        }
    }

    // ------------------------------------------------------------ encodings

    /// leafOf / messageIdOf (assembly) against the format's Solidity expressions.
    function testFuzz_leaf_and_id_match_reference(
        uint64 sourceChainId,
        address sourceGateway,
        uint64 nonce,
        address sender,
        uint64 destChainId,
        address destInbox,
        address recipient_,
        uint32 gasLimit,
        bytes calldata payload
    ) public view {
        SigilInbox.Message memory m = SigilInbox.Message(
            sourceChainId, sourceGateway, nonce, sender, destChainId, destInbox, recipient_, gasLimit, payload
        );
        bytes32 leaf = keccak256(
            bytes.concat(
                keccak256(
                    abi.encode(
                        sourceChainId, sourceGateway, nonce, sender, destChainId, destInbox, recipient_, gasLimit, keccak256(payload)
                    )
                )
            )
        );
        assertEq(inbox.leafOf(m), leaf, "leaf");
        assertEq(inbox.messageIdOf(m), keccak256(abi.encode(sourceChainId, sourceGateway, nonce)), "id");
    }

    /// batchDigest / rotationDigest against EIP-712 spelled out by hand.
    function testFuzz_digests_match_reference(uint64 epoch, uint64 h, bytes32 root, uint256 kx, uint8 kp)
        public
        view
    {
        bytes32 batchDomain = keccak256(
            abi.encode(keccak256("EIP712Domain(string name,string version)"), keccak256("Sigil"), keccak256("2"))
        );
        assertEq(inbox.BATCH_DOMAIN_SEPARATOR(), batchDomain, "batch domain");
        bytes32 batchStruct = keccak256(abi.encode(keccak256("Batch(uint64 epoch,uint64 height,bytes32 root)"), epoch, h, root));
        assertEq(inbox.batchDigest(epoch, h, root), keccak256(abi.encodePacked(hex"1901", batchDomain, batchStruct)), "batch");

        bytes32 rotDomain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("Sigil"),
                keccak256("2"),
                block.chainid,
                address(inbox)
            )
        );
        bytes32 rotStruct = keccak256(
            abi.encode(
                keccak256(
                    "KeyRotation(uint64 oldEpoch,uint256 oldKeyX,uint8 oldKeyParity,uint64 newEpoch,uint256 newKeyX,uint8 newKeyParity)"
                ),
                epoch,
                kx,
                kp,
                h,
                uint256(root),
                kp ^ 1
            )
        );
        assertEq(
            inbox.rotationDigest(epoch, kx, kp, h, uint256(root), kp ^ 1),
            keccak256(abi.encodePacked(hex"1901", rotDomain, rotStruct)),
            "rotation"
        );
    }

    function test_assembly_constants_match_the_compiler() public {
        (bytes32 recv, bytes32 insufficient, bytes32 delivered, bytes32 failed) = new InboxConstants().constants();
        assertEq(recv, bytes32(ISigilReceiver.receiveMessage.selector), "receiveMessage selector");
        assertEq(insufficient, bytes32(SigilInbox.InsufficientGas.selector), "InsufficientGas selector");
        assertEq(delivered, SigilInbox.MessageDelivered.selector, "MessageDelivered topic");
        assertEq(failed, SigilInbox.MessageFailed.selector, "MessageFailed topic");
    }

    // ------------------------------------------------------------ delivery

    function test_submit_and_deliver_every_message_with_single_proofs() public {
        SigilInbox.Message[] memory ms = recBatch(0, 8);
        (bytes32[] memory leaves, bytes32 root) = submitBatchOf(inbox, k1, 1, ms);
        SigilInbox.BatchRecord memory r = inbox.batchOf(root);
        assertEq(r.epoch, 1, "epoch");
        assertEq(r.height, height, "height");
        for (uint256 i = 0; i < 8; ++i) {
            assertTrue(statusOf(inbox, ms[i]) == SigilInbox.Status.None, "none before");
            inbox.deliver(ms[i], TestMerkle.proof(leaves, i));
            assertTrue(statusOf(inbox, ms[i]) == SigilInbox.Status.Delivered, "delivered");
            assertEq(rec.timesReceived(keccak256(ms[i].payload)), 1, "exactly once");
        }
        assertEq(rec.count(), 8, "all 8");
    }

    function test_replays_rejected_and_batch_delivery_idempotent() public {
        SigilInbox.Message[] memory ms = recBatch(0, 4);
        (bytes32[] memory leaves, bytes32 root) = submitBatchOf(inbox, k1, 1, ms);
        FrostVerifier.Signature memory s = frostSign(k1, inbox.batchDigest(1, height, root));
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.BatchAlreadySubmitted.selector, root));
        inbox.submitBatch(1, height, root, s);
        inbox.deliver(ms[2], TestMerkle.proof(leaves, 2));
        vm.expectRevert(
            abi.encodeWithSelector(SigilInbox.AlreadyProcessed.selector, inbox.messageIdOf(ms[2]), SigilInbox.Status.Delivered)
        );
        inbox.deliver(ms[2], TestMerkle.proof(leaves, 2));
        deliverAll(inbox, ms);
        assertEq(rec.count(), 4, "message 2 skipped");
        deliverAll(inbox, ms);
        assertEq(rec.count(), 4, "second batch call delivers nothing");
    }

    function test_wrong_proof_or_content_rejected() public {
        SigilInbox.Message[] memory ms = recBatch(0, 4);
        (bytes32[] memory leaves,) = submitBatchOf(inbox, k1, 1, ms);
        vm.expectRevert(); // proof of message 0 does not prove message 1
        inbox.deliver(ms[1], TestMerkle.proof(leaves, 0));
        SigilInbox.Message memory m = copy(ms[2]);
        m.gasLimit += 1; // the gas limit is attested too
        vm.expectRevert();
        inbox.deliver(m, TestMerkle.proof(leaves, 2));
        m = copy(ms[2]);
        m.destInbox = address(0xD0); // so is the inbox (checked first: WrongInbox)
        vm.expectRevert();
        inbox.deliver(m, TestMerkle.proof(leaves, 2));
        m = copy(ms[2]);
        m.payload = hex"01";
        vm.expectRevert();
        inbox.deliver(m, TestMerkle.proof(leaves, 2));
        ms[3].recipient = address(noop);
        (bytes32[] memory p, bool[] memory f) = TestMerkle.fullMultiproof(4);
        vm.expectRevert();
        inbox.deliverBatch(ms, p, f);
        assertEq(rec.count(), 0, "nothing delivered");
    }

    /// Any subset of a 16-message batch is delivered with its own multiproof (proof nodes and
    /// mixed flags), and only that subset.
    function testFuzz_partial_multiproof_delivers_the_subset(uint16 mask) public {
        if (mask == 0) mask = 1;
        SigilInbox.Message[] memory all = recBatch(0, 16);
        (bytes32[] memory leaves,) = submitBatchOf(inbox, k1, 1, all);
        uint256 n;
        for (uint256 i = 0; i < 16; ++i) {
            if (mask & (1 << i) != 0) ++n;
        }
        uint256[] memory idx = new uint256[](n);
        SigilInbox.Message[] memory sub = new SigilInbox.Message[](n);
        n = 0;
        for (uint256 i = 0; i < 16; ++i) {
            if (mask & (1 << i) != 0) {
                idx[n] = i;
                sub[n++] = all[i];
            }
        }
        (bytes32[] memory p, bool[] memory f) = TestMerkle.multiproof(leaves, idx);
        inbox.deliverBatch(sub, p, f);
        for (uint256 i = 0; i < 16; ++i) {
            SigilInbox.Status want = mask & (1 << i) != 0 ? SigilInbox.Status.Delivered : SigilInbox.Status.None;
            assertTrue(statusOf(inbox, all[i]) == want, "exactly the subset");
        }
        assertEq(rec.count(), n, "count");
    }

    /// On arbitrary multiproofs of consistent lengths the inbox's queue processing agrees with
    /// OpenZeppelin's whenever it accepts, and rejects whatever OpenZeppelin rejects (it is
    /// stricter only where OpenZeppelin would read a node not computed yet, as zero).
    function testFuzz_multiproof_agrees_with_openzeppelin(bytes32 seed, uint8 leavesLen, uint8 proofLen, uint256 flagBits)
        public
    {
        MultiproofHarness mh = new MultiproofHarness();
        uint256 nl = uint256(leavesLen) % 9 + 1;
        uint256 np = uint256(proofLen) % 9;
        bytes32[] memory leaves = new bytes32[](nl);
        bytes32[] memory proof = new bytes32[](np);
        bool[] memory flags = new bool[](nl + np - 1);
        for (uint256 i = 0; i < nl; ++i) {
            leaves[i] = keccak256(abi.encode(seed, "leaf", i));
        }
        for (uint256 i = 0; i < np; ++i) {
            proof[i] = keccak256(abi.encode(seed, "proof", i));
        }
        for (uint256 i = 0; i < flags.length; ++i) {
            flags[i] = (flagBits >> i) & 1 == 1;
        }
        (bool okMine, bytes memory mine) =
            address(mh).call(abi.encodeCall(MultiproofHarness.inboxRoot, (proof, flags, leaves)));
        (bool okOz, bytes memory oz) = address(mh).call(abi.encodeCall(MultiproofHarness.ozRoot, (proof, flags, leaves)));
        if (okMine) {
            assertTrue(okOz, "OpenZeppelin accepts what the inbox accepts");
            assertEq(keccak256(mine), keccak256(oz), "same root");
        }
        if (!okOz) assertFalse(okMine, "the inbox rejects what OpenZeppelin rejects");
    }

    function test_empty_batch_rejected() public {
        vm.expectRevert(SigilInbox.EmptyBatch.selector);
        inbox.deliverBatch(new SigilInbox.Message[](0), new bytes32[](1), new bool[](0));
    }

    /// Done-when: a gas-burning recipient is marked Failed and the rest of its batch is delivered.
    function test_gas_burning_recipient_fails_and_rest_of_batch_is_delivered() public {
        SigilInbox.Message[] memory ms = recBatch(0, 4);
        ms[1].recipient = address(burner);
        ms[1].gasLimit = 1_000_000;
        submitBatchOf(inbox, k1, 1, ms);
        bytes32 burnerId = inbox.messageIdOf(ms[1]);
        vm.expectEmit();
        emit SigilInbox.MessageFailed(burnerId, SRC, address(burner));
        uint256 g = gasleft();
        deliverAll(inbox, ms);
        g -= gasleft();
        assertTrue(g > 1_000_000, "the burner consumed its whole gas limit");
        assertTrue(statusOf(inbox, ms[1]) == SigilInbox.Status.Failed, "burner message failed");
        assertEq(inbox.failedLeafOf(inbox.messageIdOf(ms[1])), inbox.leafOf(ms[1]), "leaf kept for retry");
        for (uint256 i = 0; i < 4; ++i) {
            if (i == 1) continue;
            assertTrue(statusOf(inbox, ms[i]) == SigilInbox.Status.Delivered, "others delivered");
        }
        assertEq(rec.count(), 3, "three recorded");
    }

    /// Done-when: a starved call (transaction gas just too small) reverts instead of marking
    /// the message Delivered or Failed. Found by bisection: at the smallest gas that works the
    /// recipient got its full limit; one gas less and the whole call reverts InsufficientGas.
    function test_starved_call_reverts_instead_of_marking() public {
        SigilInbox.Message[] memory ms = new SigilInbox.Message[](2);
        ms[0] = msgFor(inbox, address(burner), 0, 300_000);
        ms[1] = msgFor(inbox, address(probe), 1, 300_000);
        (bytes32[] memory leaves,) = submitBatchOf(inbox, k1, 1, ms);
        for (uint256 i = 0; i < 2; ++i) {
            bytes memory cd = abi.encodeCall(SigilInbox.deliver, (ms[i], TestMerkle.proof(leaves, i)));
            uint256 g = minimalGas(address(inbox), cd, 1, 2_000_000);
            uint256 snap = vm.snapshotState();
            (bool ok, bytes memory ret) = address(inbox).call{gas: g - 1}(cd);
            assertFalse(ok, "one gas less reverts");
            assertEq(bytes32(ret), bytes32(SigilInbox.InsufficientGas.selector), "with InsufficientGas");
            assertTrue(statusOf(inbox, ms[i]) == SigilInbox.Status.None, "and marks nothing");
            vm.revertToState(snap);
            // With ample gas, for reference.
            (ok,) = address(inbox).call{gas: 10_000_000}(cd);
            assertTrue(ok, "ample gas works");
            uint256 ample = probe.lastGas();
            vm.revertToState(snap);
            (ok,) = address(inbox).call{gas: g}(cd);
            assertTrue(ok, "minimal gas works");
            if (i == 0) {
                assertTrue(statusOf(inbox, ms[0]) == SigilInbox.Status.Failed, "burner: Failed with full gas");
            } else {
                assertTrue(statusOf(inbox, ms[1]) == SigilInbox.Status.Delivered, "probe: Delivered");
                assertEq(probe.lastGas(), ample, "the full limit, even at the minimal gas");
            }
        }
    }

    /// The same through deliverBatch: starving any message of the batch reverts the whole
    /// transaction; at the smallest gas that works every recipient got its full limit.
    function test_starved_batch_reverts_instead_of_marking() public {
        SigilInbox.Message[] memory ms = new SigilInbox.Message[](4);
        ms[0] = msgFor(inbox, address(noop), 0, 100_000);
        ms[1] = msgFor(inbox, address(burner), 1, 300_000);
        ms[2] = msgFor(inbox, address(noop), 2, 100_000);
        ms[3] = msgFor(inbox, address(probe), 3, 300_000);
        submitBatchOf(inbox, k1, 1, ms);
        (bytes32[] memory p, bool[] memory f) = TestMerkle.fullMultiproof(4);
        bytes memory cd = abi.encodeCall(SigilInbox.deliverBatch, (ms, p, f));
        uint256 snap = vm.snapshotState();
        (bool ok,) = address(inbox).call{gas: 10_000_000}(cd);
        assertTrue(ok, "ample gas works");
        uint256 ample = probe.lastGas();
        vm.revertToState(snap);
        uint256 g = minimalGas(address(inbox), cd, 1, 2_000_000);
        bytes memory ret;
        (ok, ret) = address(inbox).call{gas: g - 1}(cd);
        assertFalse(ok, "one gas less reverts");
        assertEq(bytes32(ret), bytes32(SigilInbox.InsufficientGas.selector), "with InsufficientGas");
        for (uint256 i = 0; i < 4; ++i) {
            assertTrue(statusOf(inbox, ms[i]) == SigilInbox.Status.None, "and marks nothing");
        }
        (ok,) = address(inbox).call{gas: g}(cd);
        assertTrue(ok, "minimal gas works");
        assertTrue(statusOf(inbox, ms[1]) == SigilInbox.Status.Failed, "burner Failed");
        assertTrue(statusOf(inbox, ms[3]) == SigilInbox.Status.Delivered, "probe Delivered");
        assertEq(probe.lastGas(), ample, "the probe got its full limit at the minimal gas");
    }

    /// The recipient's gas is exactly gasLimit, however much the relayer sends: the probe reads
    /// the same gasleft() with 2x and 20x the limit. (It reads a few hundred gas below the
    /// limit: the dispatcher and ABI decoding run first.)
    function test_recipient_gets_exactly_its_gas_limit() public {
        SigilInbox.Message[] memory ms = new SigilInbox.Message[](2);
        ms[0] = msgFor(inbox, address(probe), 0, 50_000);
        ms[1] = msgFor(inbox, address(probe), 1, 5_000_000);
        (bytes32[] memory leaves,) = submitBatchOf(inbox, k1, 1, ms);
        for (uint256 i = 0; i < 2; ++i) {
            uint256 limit = ms[i].gasLimit;
            uint256 snap = vm.snapshotState();
            inbox.deliver{gas: 2 * limit + 100_000}(ms[i], TestMerkle.proof(leaves, i));
            uint256 got = probe.lastGas();
            vm.revertToState(snap);
            inbox.deliver{gas: 20 * limit}(ms[i], TestMerkle.proof(leaves, i));
            assertEq(probe.lastGas(), got, "same gas whatever the transaction gas");
            assertLe(got, limit, "capped at the limit");
            assertLe(limit - 1_000, got, "the limit");
        }
    }

    /// Done-when: a batch signed once is rejected by a second inbox on the same chain.
    function test_batch_signed_once_rejected_by_second_inbox() public {
        SigilInbox second = new SigilInbox(address(this), GRACE);
        second.initialize(1, k1.x, k1.y);
        SigilInbox.Message[] memory ms = recBatch(0, 2);
        (bytes32[] memory leaves, bytes32 root) = submitBatchOf(inbox, k1, 1, ms);
        // The batch digest has no chain id or inbox: the same attestation is accepted...
        assertEq(second.batchDigest(1, height, root), inbox.batchDigest(1, height, root), "same digest");
        second.submitBatch(1, height, root, frostSign(k1, inbox.batchDigest(1, height, root)));
        // ...but its messages name the first inbox, so the second one delivers none of them.
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.WrongInbox.selector, uint64(block.chainid), address(inbox)));
        second.deliver(ms[0], TestMerkle.proof(leaves, 0));
        (bytes32[] memory p, bool[] memory f) = TestMerkle.fullMultiproof(2);
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.WrongInbox.selector, uint64(block.chainid), address(inbox)));
        second.deliverBatch(ms, p, f);
        assertTrue(statusOf(second, ms[0]) == SigilInbox.Status.None, "nothing processed there");
        deliverAll(inbox, ms);
        assertEq(rec.count(), 2, "the named inbox delivers");
    }

    function test_wrong_chain_rejected() public {
        SigilInbox.Message[] memory ms = recBatch(0, 1);
        submitBatchOf(inbox, k1, 1, ms);
        vm.chainId(5);
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.WrongInbox.selector, uint64(31337), address(inbox)));
        inbox.deliver(ms[0], new bytes32[](0));
    }

    /// Done-when: a Failed message is retried after the recipient is fixed.
    function test_failed_message_retried_after_recipient_is_fixed() public {
        SigilInbox.Message[] memory ms = recBatch(0, 2);
        ms[1].recipient = address(fixable);
        (bytes32[] memory leaves,) = submitBatchOf(inbox, k1, 1, ms);
        bytes32 id = inbox.messageIdOf(ms[1]);
        inbox.deliver(ms[1], TestMerkle.proof(leaves, 1));
        assertTrue(statusOf(inbox, ms[1]) == SigilInbox.Status.Failed, "failed");
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.AlreadyProcessed.selector, id, SigilInbox.Status.Failed));
        inbox.deliver(ms[1], TestMerkle.proof(leaves, 1));
        deliverAll(inbox, ms); // skips the Failed one, delivers the other
        assertTrue(statusOf(inbox, ms[1]) == SigilInbox.Status.Failed, "still failed");
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.RecipientFailed.selector, id));
        inbox.retry(ms[1]);
        SigilInbox.Message memory forged = copy(ms[1]);
        forged.gasLimit = 1_000_000;
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.NotRetryable.selector, id));
        inbox.retry(forged);
        fixable.fix();
        vm.prank(address(0xABCD)); // anyone may retry
        inbox.retry(ms[1]);
        assertTrue(statusOf(inbox, ms[1]) == SigilInbox.Status.Delivered, "delivered after retry");
        assertEq(inbox.failedLeafOf(id), bytes32(0), "leaf cleared");
        assertEq(fixable.count(), 1, "once");
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.NotRetryable.selector, id));
        inbox.retry(ms[1]);
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.NotRetryable.selector, inbox.messageIdOf(ms[0])));
        inbox.retry(ms[0]); // Delivered, never Failed
    }

    function test_retry_is_starvation_checked_too() public {
        SigilInbox.Message memory m = msgFor(inbox, address(fixable), 0, 1_000_000);
        submitBatchOf(inbox, k1, 1, one(m));
        inbox.deliver(m, new bytes32[](0));
        fixable.fix();
        bytes memory cd = abi.encodeCall(SigilInbox.retry, (m));
        (bool ok, bytes memory ret) = address(inbox).call{gas: 900_000}(cd);
        assertFalse(ok, "starved retry reverts");
        assertEq(bytes32(ret), bytes32(SigilInbox.InsufficientGas.selector), "InsufficientGas");
        assertTrue(statusOf(inbox, m) == SigilInbox.Status.Failed, "still Failed");
        (ok,) = address(inbox).call{gas: 1_100_000}(cd);
        assertTrue(ok, "enough gas");
        assertTrue(statusOf(inbox, m) == SigilInbox.Status.Delivered, "Delivered");
    }

    function test_recipient_without_code_fails_and_is_retryable() public {
        address later = address(0xC0DE);
        SigilInbox.Message memory m = msgFor(inbox, later, 0, 100_000);
        submitBatchOf(inbox, k1, 1, one(m));
        inbox.deliver(m, new bytes32[](0));
        assertTrue(statusOf(inbox, m) == SigilInbox.Status.Failed, "no code: Failed");
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.RecipientFailed.selector, inbox.messageIdOf(m)));
        inbox.retry(m);
        vm.etch(later, address(noop).code);
        inbox.retry(m);
        assertTrue(statusOf(inbox, m) == SigilInbox.Status.Delivered, "delivered once deployed");
    }

    function test_reentrant_delivery_delivers_once() public {
        ReentrantReceiver re = new ReentrantReceiver(address(inbox));
        SigilInbox.Message memory m = msgFor(inbox, address(re), 0, 500_000);
        submitBatchOf(inbox, k1, 1, one(m));
        re.setReentry(abi.encodeCall(SigilInbox.deliver, (m, new bytes32[](0))));
        inbox.deliver(m, new bytes32[](0));
        assertFalse(re.reentryOk(), "re-entered delivery refused");
        assertEq(
            keccak256(re.reentryRet()),
            keccak256(
                abi.encodeWithSelector(SigilInbox.AlreadyProcessed.selector, inbox.messageIdOf(m), SigilInbox.Status.Delivered)
            ),
            "AlreadyProcessed"
        );
        assertEq(re.count(), 1, "once");
        assertTrue(statusOf(inbox, m) == SigilInbox.Status.Delivered, "delivered");
    }

    function test_replay_bitmap_words() public {
        uint64[8] memory nonces = [uint64(0), 1, 255, 256, 257, 511, 512, type(uint64).max];
        SigilInbox.Message[] memory ms = new SigilInbox.Message[](8);
        for (uint256 i = 0; i < 8; ++i) {
            ms[i] = msgFor(inbox, address(rec), nonces[i], 200_000);
        }
        submitBatchOf(inbox, k1, 1, ms);
        deliverAll(inbox, ms);
        for (uint256 i = 0; i < 8; ++i) {
            assertTrue(statusOf(inbox, ms[i]) == SigilInbox.Status.Delivered, "delivered");
        }
        assertTrue(inbox.statusOf(SRC, GATEWAY, 2) == SigilInbox.Status.None, "neighbour untouched");
        assertTrue(inbox.statusOf(SRC, address(0xBEEF), 0) == SigilInbox.Status.None, "other gateway");
        assertTrue(inbox.statusOf(SRC + 1, GATEWAY, 0) == SigilInbox.Status.None, "other source chain");
        uint256 bits01 = (1 << 0) | (1 << 1) | (1 << 255);
        assertEq(inbox.processedWord(SRC, GATEWAY, 0), bits01, "word 0: nonces 0, 1, 255");
        assertEq(inbox.processedWord(SRC, GATEWAY, 1), bits01, "word 1: nonces 256, 257, 511");
        assertEq(inbox.processedWord(SRC, GATEWAY, 2), 1, "word 2: nonce 512");
        assertEq(inbox.processedWord(SRC, GATEWAY, type(uint64).max >> 8), 1 << 255, "last word");
    }

    // ------------------------------------------------------------ keys

    function test_initialize_only_admin_only_once() public {
        vm.expectRevert(SigilInbox.AlreadyInitialized.selector);
        inbox.initialize(1, k1.x, k1.y);
        SigilInbox other = new SigilInbox(address(0xBEEF), GRACE);
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.NotAdmin.selector, address(this)));
        other.initialize(1, k1.x, k1.y);
        SigilInbox third = new SigilInbox(address(this), GRACE);
        vm.expectRevert(SigilInbox.InvalidKey.selector);
        third.initialize(1, k1.x, k1.y + 1);
    }

    function test_wrong_epoch_or_height_rejected() public {
        bytes32 root = keccak256("root");
        FrostVerifier.Signature memory s = frostSign(k1, inbox.batchDigest(1, 1, root));
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.UnknownEpoch.selector, uint64(2)));
        inbox.submitBatch(2, 1, root, s);
        vm.expectRevert(SigilInbox.InvalidSignature.selector);
        inbox.submitBatch(1, 2, root, s);
        vm.expectRevert(SigilInbox.InvalidSignature.selector);
        inbox.submitBatch(1, 1, bytes32(uint256(root) ^ 1), s);
        inbox.submitBatch(1, 1, root, s);
    }

    /// Done-when: an oversized grace period is refused at construction.
    function test_oversized_grace_period_refused() public {
        uint64 max = inbox.MAX_GRACE_PERIOD();
        assertEq(max, 365 days, "one year");
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.GracePeriodTooLong.selector, max + 1, max));
        new SigilInbox(address(this), max + 1);
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.GracePeriodTooLong.selector, type(uint64).max, max));
        new SigilInbox(address(this), type(uint64).max);
    }

    /// Done-when: rotation with the largest allowed grace period works.
    function test_rotation_with_largest_grace_period() public {
        uint64 max = inbox.MAX_GRACE_PERIOD();
        SigilInbox ib = new SigilInbox(address(this), max);
        ib.initialize(1, k1.x, k1.y);
        TestKey memory k2 = testKey(2);
        TestKey memory k3 = testKey(3);
        uint256 t = 1_750_000_000;
        vm.warp(t);
        ib.rotateKey(2, k2.x, k2.y, rotationSig(ib, k1, 1, k2, 2));
        assertEq(ib.keyOf(1).validUntil, t + max, "old key valid for a year");
        assertEq(ib.keyOf(2).validUntil, type(uint64).max, "new key current");
        vm.warp(t + max);
        bytes32 root = keccak256("old epoch batch");
        ib.submitBatch(1, 1, root, frostSign(k1, ib.batchDigest(1, 1, root)));
        vm.warp(t + max + 1);
        root = keccak256("too late");
        FrostVerifier.Signature memory s = frostSign(k1, ib.batchDigest(1, 2, root));
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.EpochExpired.selector, uint64(1), uint64(t + max)));
        ib.submitBatch(1, 2, root, s);
        ib.submitBatch(2, 2, root, frostSign(k2, ib.batchDigest(2, 2, root)));
        // And again from the new key, a year later.
        ib.rotateKey(3, k3.x, k3.y, rotationSig(ib, k2, 2, k3, 3));
        assertEq(ib.keyOf(2).validUntil, t + max + 1 + max, "second rotation");
        assertEq(ib.currentEpoch(), 3, "epoch 3");
    }

    /// Done-when: a rotation signed for inbox A is refused by inbox B (same chain, same key),
    /// and on another chain.
    function test_rotation_signed_for_inbox_a_refused_by_inbox_b() public {
        SigilInbox b = new SigilInbox(address(this), GRACE);
        b.initialize(1, k1.x, k1.y);
        TestKey memory k2 = testKey(2);
        FrostVerifier.Signature memory forA = rotationSig(inbox, k1, 1, k2, 2);
        vm.expectRevert(SigilInbox.InvalidSignature.selector);
        b.rotateKey(2, k2.x, k2.y, forA);
        uint256 snap = vm.snapshotState();
        vm.chainId(5);
        vm.expectRevert(SigilInbox.InvalidSignature.selector);
        inbox.rotateKey(2, k2.x, k2.y, forA);
        vm.revertToState(snap);
        inbox.rotateKey(2, k2.x, k2.y, forA);
        assertEq(inbox.currentEpoch(), 2, "A rotated");
        assertEq(b.currentEpoch(), 1, "B did not");
        b.rotateKey(2, k2.x, k2.y, rotationSig(b, k1, 1, k2, 2));
        assertEq(b.currentEpoch(), 2, "B with its own signature");
    }

    /// `signer` signs a rotation that claims (`oldEpoch`, `claimedOld`) as the current key.
    function rotationSigClaiming(
        SigilInbox ib,
        TestKey memory signer,
        uint64 oldEpoch,
        TestKey memory claimedOld,
        TestKey memory newK,
        uint64 newEpoch
    ) internal returns (FrostVerifier.Signature memory) {
        bytes32 d = ib.rotationDigest(oldEpoch, claimedOld.x, claimedOld.parity, newEpoch, newK.x, newK.parity);
        return frostSign(signer, d);
    }

    /// Done-when: the rotation signature is bound to the old epoch and the old key.
    function test_rotation_bound_to_old_epoch_and_key() public {
        TestKey memory k2 = testKey(2);
        TestKey memory k3 = testKey(3);
        // An inbox whose current epoch is 5 (same key as epoch 1 elsewhere).
        SigilInbox d = new SigilInbox(address(this), GRACE);
        d.initialize(5, k1.x, k1.y);
        FrostVerifier.Signature memory wrongEpoch = rotationSigClaiming(d, k1, 1, k1, k2, 6);
        FrostVerifier.Signature memory wrongOldKey = rotationSigClaiming(d, k1, 5, k3, k2, 6);
        FrostVerifier.Signature memory byNewKey = rotationSig(d, k2, 5, k2, 6);
        FrostVerifier.Signature memory ok = rotationSig(d, k1, 5, k2, 6);
        // Signed by the right key, but claiming old epoch 1.
        vm.expectRevert(SigilInbox.InvalidSignature.selector);
        d.rotateKey(6, k2.x, k2.y, wrongEpoch);
        // Signed by the right key, but naming another old key.
        vm.expectRevert(SigilInbox.InvalidSignature.selector);
        d.rotateKey(6, k2.x, k2.y, wrongOldKey);
        // Signed by the new key instead of the current one.
        vm.expectRevert(SigilInbox.InvalidSignature.selector);
        d.rotateKey(6, k2.x, k2.y, byNewKey);
        // A signature for another new key or epoch.
        vm.expectRevert(SigilInbox.InvalidSignature.selector);
        d.rotateKey(6, k3.x, k3.y, ok);
        vm.expectRevert(SigilInbox.InvalidSignature.selector);
        d.rotateKey(7, k2.x, k2.y, ok);
        d.rotateKey(6, k2.x, k2.y, ok);
        assertEq(d.currentEpoch(), 6, "rotated");
    }

    /// The old key cannot rotate again once it has handed over, whatever it claims.
    function test_rotation_refused_from_a_handed_over_key() public {
        TestKey memory k2 = testKey(2);
        TestKey memory k3 = testKey(3);
        SigilInbox d = new SigilInbox(address(this), GRACE);
        d.initialize(5, k1.x, k1.y);
        d.rotateKey(6, k2.x, k2.y, rotationSig(d, k1, 5, k2, 6));
        FrostVerifier.Signature memory stale5 = rotationSig(d, k1, 5, k3, 7);
        FrostVerifier.Signature memory stale6 = rotationSigClaiming(d, k1, 6, k2, k3, 7);
        vm.expectRevert(SigilInbox.InvalidSignature.selector);
        d.rotateKey(7, k3.x, k3.y, stale5);
        vm.expectRevert(SigilInbox.InvalidSignature.selector);
        d.rotateKey(7, k3.x, k3.y, stale6);
        d.rotateKey(7, k3.x, k3.y, rotationSig(d, k2, 6, k3, 7));
        assertEq(d.currentEpoch(), 7, "rotated again by the current key");
    }

    function test_rotation_never_accepts_an_epoch_twice() public {
        TestKey memory k2 = testKey(2);
        inbox.rotateKey(2, k2.x, k2.y, rotationSig(inbox, k1, 1, k2, 2));
        FrostVerifier.Signature memory s = rotationSig(inbox, k2, 2, k2, 2);
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.EpochNotIncreasing.selector, uint64(2), uint64(2)));
        inbox.rotateKey(2, k2.x, k2.y, s);
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.EpochNotIncreasing.selector, uint64(1), uint64(2)));
        inbox.rotateKey(1, k1.x, k1.y, s);
    }

    function test_receiver_base_accepts_only_its_inbox() public {
        vm.expectRevert(abi.encodeWithSelector(SigilReceiverBase.NotInbox.selector, address(this)));
        rec.receiveMessage(SRC, SENDER, hex"00");
        vm.prank(address(inbox));
        rec.receiveMessage(SRC, SENDER, hex"00");
        assertEq(rec.count(), 1, "inbox accepted");
    }
}
