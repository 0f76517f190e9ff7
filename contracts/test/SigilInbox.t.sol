// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixtures} from "./utils/Fixtures.sol";
import {FrostVerifier} from "../src/FrostVerifier.sol";
import {SigilInbox} from "../src/SigilInbox.sol";
import {SigilGateway} from "../src/SigilGateway.sol";
import {FrostVerifierHarness} from "./FrostVerifier.t.sol";

/// Cross-language tests: everything signed or encoded here was produced by the Rust crate.
contract RustFixturesTest is Fixtures {
    FrostVerifierHarness internal h;

    function setUp() public {
        loadFixtures();
        deployInbox();
        h = new FrostVerifierHarness();
    }

    function test_encodings_match_rust() public view {
        SigilInbox.Message memory m = message(42);
        m.payload = vm.parseJsonBytes(fx, ".encoding.message.payload");
        assertEq(inbox.messageIdOf(m), vm.parseJsonBytes32(fx, ".encoding.id"), "messageId");
        assertEq(inbox.leafOf(m), vm.parseJsonBytes32(fx, ".encoding.leaf"), "leaf");
        assertEq(inbox.batchDigest(7, 1234, keccak256("root")), vm.parseJsonBytes32(fx, ".encoding.batchDigest"), "batch digest");
        assertEq(
            inbox.rotationDigest(2, uint256(keccak256("key x")), 1),
            vm.parseJsonBytes32(fx, ".encoding.rotationDigest"),
            "rotation digest"
        );
    }

    function sigAt(uint256 i)
        internal
        view
        returns (FrostVerifier.PublicKey memory k, FrostVerifier.Signature memory s, bytes32 d)
    {
        string memory p = string.concat(".signatures[", vm.toString(i), "]");
        k.x = vm.parseJsonUint(fx, string.concat(p, ".key.x"));
        k.parity = uint8(vm.parseJsonUint(fx, string.concat(p, ".key.parity")));
        s = sig(string.concat(p, ".sig"));
        d = vm.parseJsonBytes32(fx, string.concat(p, ".digest"));
    }

    function test_rust_signatures_verify() public view {
        for (uint256 i = 0; i < 3; ++i) {
            (FrostVerifier.PublicKey memory k, FrostVerifier.Signature memory s, bytes32 d) = sigAt(i);
            assertTrue(h.verifyDigest(k, s, d), "rust signature (digest form)");
            assertTrue(h.verify(k, s, abi.encodePacked(d)), "rust signature (bytes form)");
        }
    }

    function test_rust_signature_rejects_every_bit_flip() public view {
        (FrostVerifier.PublicKey memory k, FrostVerifier.Signature memory s, bytes32 d) = sigAt(2);
        for (uint256 bit = 0; bit < 256; ++bit) {
            uint256 m = uint256(1) << bit;
            FrostVerifier.Signature memory t = FrostVerifier.Signature(s.rx ^ m, s.ry, s.z);
            assertFalse(h.verifyDigest(k, t, d), "flipped R.x");
            t = FrostVerifier.Signature(s.rx, s.ry ^ m, s.z);
            assertFalse(h.verifyDigest(k, t, d), "flipped R.y");
            t = FrostVerifier.Signature(s.rx, s.ry, s.z ^ m);
            assertFalse(h.verifyDigest(k, t, d), "flipped z");
            assertFalse(h.verifyDigest(k, s, bytes32(uint256(d) ^ m)), "flipped digest");
            assertFalse(h.verifyDigest(FrostVerifier.PublicKey(k.x ^ m, k.parity), s, d), "flipped key");
        }
        assertFalse(h.verifyDigest(FrostVerifier.PublicKey(k.x, 1 - k.parity), s, d), "flipped key parity");
    }
}

contract SigilInboxTest is Fixtures {
    function setUp() public {
        loadFixtures();
        deployInbox();
        (uint256 x, uint256 y) = key(".inbox.key1");
        inbox.initialize(1, x, y);
    }

    function deliverAll(string memory b) internal {
        uint64 f = first(b);
        for (uint256 i = 0; i < size(b); ++i) {
            inbox.deliver(message(f + uint64(i)), proof(b, i));
        }
    }

    function test_initialize_only_admin_only_once() public {
        (uint256 x, uint256 y) = key(".inbox.key1");
        vm.expectRevert(SigilInbox.AlreadyInitialized.selector);
        inbox.initialize(1, x, y);
        SigilInbox other = new SigilInbox(address(0xBEEF), GRACE);
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.NotAdmin.selector, address(this)));
        other.initialize(1, x, y);
        SigilInbox third = new SigilInbox(address(this), GRACE);
        vm.expectRevert(SigilInbox.InvalidKey.selector);
        third.initialize(1, x, y + 1);
    }

    function test_submit_and_deliver_every_message() public {
        submit(".inbox.batchA");
        bytes32 root = vm.parseJsonBytes32(fx, ".inbox.batchA.root");
        SigilInbox.BatchRecord memory rec = inbox.batchOf(root);
        assertEq(rec.epoch, 1, "epoch");
        assertEq(rec.height, 1, "height");
        deliverAll(".inbox.batchA");
        assertEq(receiver().count(), 8, "all 8 delivered");
        for (uint64 n = 0; n < 8; ++n) {
            assertEq(receiver().timesReceived(keccak256(abi.encode(uint256(n)))), 1, "exactly once");
            assertTrue(inbox.statusOf(inbox.messageIdOf(message(n))) == SigilInbox.Status.Delivered, "status");
        }
    }

    function test_replays_rejected() public {
        submit(".inbox.batchA");
        bytes32 root = vm.parseJsonBytes32(fx, ".inbox.batchA.root");
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.BatchAlreadySubmitted.selector, root));
        submit(".inbox.batchA");
        inbox.deliver(message(3), proof(".inbox.batchA", 3));
        bytes32 id = inbox.messageIdOf(message(3));
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.AlreadyProcessed.selector, id, SigilInbox.Status.Delivered));
        inbox.deliver(message(3), proof(".inbox.batchA", 3));
        assertEq(receiver().count(), 1, "delivered once");
    }

    function test_wrong_proof_or_content_rejected() public {
        submit(".inbox.batchA");
        vm.expectRevert(); // proof of message 0 does not prove message 1
        inbox.deliver(message(1), proof(".inbox.batchA", 0));
        SigilInbox.Message memory m = message(2);
        m.payload = abi.encode(uint256(3));
        vm.expectRevert();
        inbox.deliver(m, proof(".inbox.batchA", 2));
        // A batch that was never submitted.
        vm.expectRevert();
        inbox.deliver(message(100), proof(".inbox.batchB", 0));
        assertEq(receiver().count(), 0, "nothing delivered");
    }

    function test_wrong_epoch_or_height_rejected() public {
        FrostVerifier.Signature memory s = sig(".inbox.batchA.sig");
        bytes32 root = vm.parseJsonBytes32(fx, ".inbox.batchA.root");
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.UnknownEpoch.selector, uint64(2)));
        inbox.submitBatch(2, 1, root, s);
        vm.expectRevert(SigilInbox.InvalidSignature.selector);
        inbox.submitBatch(1, 2, root, s);
        vm.expectRevert(SigilInbox.InvalidSignature.selector);
        inbox.submitBatch(1, 1, bytes32(uint256(root) ^ 1), s);
        // Epoch-2 batch signed by key 2 is refused while epoch 1 is current and key 2 unknown.
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.UnknownEpoch.selector, uint64(2)));
        submit(".inbox.batchB");
    }

    function rotate() internal {
        (uint256 x, uint256 y) = key(".inbox.key2");
        inbox.rotateKey(2, x, y, sig(".inbox.rotationSig"));
    }

    function test_rotation_and_grace_period() public {
        vm.warp(1_000_000);
        rotate();
        assertEq(inbox.currentEpoch(), 2, "epoch 2 current");
        SigilInbox.EpochKey memory old = inbox.keyOf(1);
        assertEq(old.validUntil, 1_000_000 + GRACE, "old key expiry");
        submit(".inbox.batchB");
        deliverAll(".inbox.batchB");
        // An epoch-1 batch is still accepted during the grace period...
        submit(".inbox.batchOld");
        // ...but not after it.
        vm.warp(1_000_000 + GRACE + 1);
        bytes32 rootA = vm.parseJsonBytes32(fx, ".inbox.batchA.root");
        FrostVerifier.Signature memory sA = sig(".inbox.batchA.sig");
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.EpochExpired.selector, uint64(1), uint64(1_000_000 + GRACE)));
        inbox.submitBatch(1, 1, rootA, sA);
        assertEq(receiver().count(), 4, "batch B delivered");
    }

    function test_rotation_never_accepts_an_epoch_twice() public {
        rotate();
        (uint256 x, uint256 y) = key(".inbox.key2");
        FrostVerifier.Signature memory s = sig(".inbox.rotationSig");
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.EpochNotIncreasing.selector, uint64(2), uint64(2)));
        inbox.rotateKey(2, x, y, s);
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.EpochNotIncreasing.selector, uint64(1), uint64(2)));
        inbox.rotateKey(1, x, y, s);
    }

    function test_rotation_needs_current_key_signature() public {
        (uint256 x, uint256 y) = key(".inbox.key2");
        FrostVerifier.Signature memory s = sig(".inbox.rotationSig");
        vm.expectRevert(SigilInbox.InvalidSignature.selector);
        inbox.rotateKey(3, x, y, s); // signed for epoch 2
        // A batch signature is not a rotation signature.
        vm.expectRevert(SigilInbox.InvalidSignature.selector);
        inbox.rotateKey(2, x, y, sig(".inbox.batchA.sig"));
        assertEq(inbox.currentEpoch(), 1, "unchanged");
    }

    function test_reverting_recipient_keeps_message_retryable() public {
        submit(".inbox.batchA");
        receiver().setRejecting(true);
        inbox.deliver(message(5), proof(".inbox.batchA", 5));
        bytes32 id = inbox.messageIdOf(message(5));
        assertTrue(inbox.statusOf(id) == SigilInbox.Status.Failed, "failed");
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.AlreadyProcessed.selector, id, SigilInbox.Status.Failed));
        inbox.deliver(message(5), proof(".inbox.batchA", 5));
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.RecipientFailed.selector, id));
        inbox.retry(message(5));
        SigilInbox.Message memory forged = message(5);
        forged.payload = hex"01";
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.NotRetryable.selector, id));
        inbox.retry(forged);
        receiver().setRejecting(false);
        inbox.retry(message(5));
        assertTrue(inbox.statusOf(id) == SigilInbox.Status.Delivered, "delivered after retry");
        assertEq(receiver().count(), 1, "once");
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.NotRetryable.selector, id));
        inbox.retry(message(5));
    }

    function test_deliver_batch_with_multiproof_is_idempotent() public {
        submit(".inbox.batchA");
        inbox.deliver(message(0), proof(".inbox.batchA", 0));
        (SigilInbox.Message[] memory ms, bytes32[] memory p, bool[] memory f) = multi(".inbox.batchA");
        inbox.deliverBatch(ms, p, f);
        assertEq(receiver().count(), 8, "all delivered, message 0 skipped");
        inbox.deliverBatch(ms, p, f);
        assertEq(receiver().count(), 8, "second call delivers nothing");
        ms[0].payload = hex"02";
        vm.expectRevert();
        inbox.deliverBatch(ms, p, f);
    }

    function test_wrong_destination_rejected() public {
        submit(".inbox.batchA");
        vm.chainId(5);
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.WrongDestination.selector, uint64(31337)));
        inbox.deliver(message(0), proof(".inbox.batchA", 0));
    }

    function test_empty_multiproof_rejected() public {
        submit(".inbox.batchA");
        SigilInbox.Message[] memory none = new SigilInbox.Message[](0);
        bytes32[] memory p = new bytes32[](1);
        p[0] = vm.parseJsonBytes32(fx, ".inbox.batchA.root");
        vm.expectRevert(SigilInbox.EmptyBatch.selector);
        inbox.deliverBatch(none, p, new bool[](0));
    }
}

contract SigilGatewayTest is Fixtures {
    SigilGateway internal gw;


    function setUp() public {
        gw = new SigilGateway();
    }

    function test_send_assigns_sequential_nonces_and_ids() public {
        bytes32 expected = keccak256(abi.encode(uint64(block.chainid), address(gw), uint64(0)));
        vm.expectEmit();
        emit SigilGateway.MessageSent(expected, 7, address(0xAB), 0, address(this), uint64(block.chainid), hex"c0ffee");
        bytes32 id0 = gw.sendMessage(7, address(0xAB), hex"c0ffee");
        assertEq(id0, expected, "id 0");
        bytes32 id1 = gw.sendMessage(7, address(0xAB), hex"");
        assertEq(id1, keccak256(abi.encode(uint64(block.chainid), address(gw), uint64(1))), "id 1");
        assertEq(gw.nextNonce(), 2, "next nonce");
    }

    function test_rejects_bad_destination_and_oversized_payload() public {
        vm.expectRevert(abi.encodeWithSelector(SigilGateway.InvalidDestination.selector, uint64(block.chainid)));
        gw.sendMessage(uint64(block.chainid), address(1), hex"");
        vm.expectRevert(abi.encodeWithSelector(SigilGateway.InvalidDestination.selector, uint64(0)));
        gw.sendMessage(0, address(1), hex"");
        bytes memory big = new bytes(64 * 1024 + 1);
        vm.expectRevert(abi.encodeWithSelector(SigilGateway.PayloadTooLarge.selector, big.length, 64 * 1024));
        gw.sendMessage(7, address(1), big);
    }
}
