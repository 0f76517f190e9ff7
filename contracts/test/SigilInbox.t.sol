// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixtures} from "./utils/Fixtures.sol";
import {FrostVerifier} from "../src/FrostVerifier.sol";
import {SigilInbox} from "../src/SigilInbox.sol";
import {FrostVerifierHarness} from "./FrostVerifier.t.sol";

/// Cross-language tests: everything signed or encoded here was produced by the Rust crate
/// (test/fixtures/frost.json). The inbox behaviour itself is tested with Solidity-made
/// signatures in SigilInboxV2.t.sol.
contract RustFixturesTest is Fixtures {
    FrostVerifierHarness internal h;

    function setUp() public {
        loadFixtures();
        h = new FrostVerifierHarness();
    }

    /// messageId, leaf, batch digest and rotation digest of format v2, every input read from
    /// the fixture's `encoding` object.
    function test_encodings_match_rust() public {
        string memory e = ".encoding.message";
        SigilInbox.Message memory m;
        m.sourceChainId = uint64(vm.parseJsonUint(fx, string.concat(e, ".sourceChainId")));
        m.sourceGateway = vm.parseJsonAddress(fx, string.concat(e, ".sourceGateway"));
        m.nonce = uint64(vm.parseJsonUint(fx, string.concat(e, ".nonce")));
        m.sender = vm.parseJsonAddress(fx, string.concat(e, ".sender"));
        m.destChainId = uint64(vm.parseJsonUint(fx, string.concat(e, ".destChainId")));
        m.destInbox = vm.parseJsonAddress(fx, string.concat(e, ".destInbox"));
        m.recipient = vm.parseJsonAddress(fx, string.concat(e, ".recipient"));
        m.gasLimit = uint32(vm.parseJsonUint(fx, string.concat(e, ".gasLimit")));
        m.payload = vm.parseJsonBytes(fx, string.concat(e, ".payload"));
        SigilInbox ib = new SigilInbox(address(this), 0);
        assertEq(ib.messageIdOf(m), vm.parseJsonBytes32(fx, ".encoding.id"), "messageId");
        assertEq(ib.leafOf(m), vm.parseJsonBytes32(fx, ".encoding.leaf"), "leaf");
        assertEq(ib.batchDigest(7, 1234, keccak256("root")), vm.parseJsonBytes32(fx, ".encoding.batchDigest"), "batch digest");

        // The rotation domain binds chainId and the inbox address: place an inbox there.
        string memory r = ".encoding.rotation";
        vm.chainId(vm.parseJsonUint(fx, string.concat(r, ".chainId")));
        address at = vm.parseJsonAddress(fx, string.concat(r, ".verifyingContract"));
        vm.etch(at, address(ib).code);
        bytes32 d = SigilInbox(at).rotationDigest(
            uint64(vm.parseJsonUint(fx, string.concat(r, ".oldEpoch"))),
            vm.parseJsonUint(fx, string.concat(r, ".oldKeyX")),
            uint8(vm.parseJsonUint(fx, string.concat(r, ".oldKeyParity"))),
            uint64(vm.parseJsonUint(fx, string.concat(r, ".newEpoch"))),
            vm.parseJsonUint(fx, string.concat(r, ".newKeyX")),
            uint8(vm.parseJsonUint(fx, string.concat(r, ".newKeyParity")))
        );
        assertEq(d, vm.parseJsonBytes32(fx, ".encoding.rotationDigest"), "rotation digest");
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

/// The inbox scenario the Rust crate signs (format v2): batches A (epoch 1), B (epoch 2),
/// Old (epoch 1, after the rotation), and the rotation from key 1 to key 2 for the inbox at
/// the fixture's `destInbox` on chain `destChainId`.
contract RustInboxScenarioTest is Fixtures {
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

    function statusOf(uint64 n) internal view returns (SigilInbox.Status) {
        SigilInbox.Message memory m = message(n);
        return inbox.statusOf(m.sourceChainId, m.sourceGateway, m.nonce);
    }

    function test_submit_and_deliver_every_message() public {
        submit(".inbox.batchA");
        bytes32 root = vm.parseJsonBytes32(fx, ".inbox.batchA.root");
        assertEq(vm.parseJsonBytes32(fx, ".inbox.batchA.digest"), inbox.batchDigest(1, 1, root), "digest");
        SigilInbox.BatchRecord memory rec = inbox.batchOf(root);
        assertEq(rec.epoch, 1, "epoch");
        assertEq(rec.height, 1, "height");
        deliverAll(".inbox.batchA");
        assertEq(receiver().count(), 8, "all 8 delivered");
        for (uint64 n = 0; n < 8; ++n) {
            assertEq(receiver().timesReceived(keccak256(abi.encode(uint256(n)))), 1, "exactly once");
            assertTrue(statusOf(n) == SigilInbox.Status.Delivered, "status");
        }
    }

    function test_deliver_batch_with_rust_multiproof() public {
        submit(".inbox.batchA");
        inbox.deliver(message(0), proof(".inbox.batchA", 0));
        (SigilInbox.Message[] memory ms, bytes32[] memory p, bool[] memory f) = multi(".inbox.batchA");
        inbox.deliverBatch(ms, p, f);
        assertEq(receiver().count(), 8, "all delivered, message 0 skipped");
    }

    function test_wrong_epoch_or_height_rejected() public {
        FrostVerifier.Signature memory s = sig(".inbox.batchA.sig");
        bytes32 root = vm.parseJsonBytes32(fx, ".inbox.batchA.root");
        vm.expectRevert(SigilInbox.InvalidSignature.selector);
        inbox.submitBatch(1, 2, root, s);
        vm.expectRevert(abi.encodeWithSelector(SigilInbox.UnknownEpoch.selector, uint64(2)));
        submit(".inbox.batchB");
    }

    function rotate() internal {
        (uint256 x, uint256 y) = key(".inbox.key2");
        (uint256 x1,) = key(".inbox.key1");
        assertEq(
            inbox.rotationDigest(1, x1, uint8(vm.parseJsonUint(fx, ".inbox.key1.parity")), 2, x, uint8(y & 1)),
            vm.parseJsonBytes32(fx, ".inbox.rotationDigest"),
            "rotation digest"
        );
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

    function test_rust_rotation_refused_by_another_inbox() public {
        (uint256 x1, uint256 y1) = key(".inbox.key1");
        SigilInbox other = new SigilInbox(address(this), GRACE);
        other.initialize(1, x1, y1);
        (uint256 x, uint256 y) = key(".inbox.key2");
        FrostVerifier.Signature memory s = sig(".inbox.rotationSig");
        vm.expectRevert(SigilInbox.InvalidSignature.selector);
        other.rotateKey(2, x, y, s);
        inbox.rotateKey(2, x, y, s);
    }
}
