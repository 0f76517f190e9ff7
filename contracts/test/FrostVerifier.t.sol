// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TestSigner} from "./utils/TestSigner.sol";
import {FrostVerifier} from "../src/FrostVerifier.sol";

/// @dev Exposes the library through external calls so tests can measure and fuzz it.
contract FrostVerifierHarness {
    function verify(FrostVerifier.PublicKey memory key, FrostVerifier.Signature memory sig, bytes memory message)
        external
        pure
        returns (bool)
    {
        return FrostVerifier.verify(key, sig, message);
    }

    function verifyDigest(FrostVerifier.PublicKey memory key, FrostVerifier.Signature memory sig, bytes32 digest)
        external
        view
        returns (bool)
    {
        return FrostVerifier.verifyDigest(key.x, key.parity, sig, digest);
    }

    /// The key as two arbitrary words (dirty parity values included).
    function verifyDigestWords(uint256 keyX, uint256 keyParity, FrostVerifier.Signature memory sig, bytes32 digest)
        external
        view
        returns (bool)
    {
        return FrostVerifier.verifyDigest(keyX, keyParity, sig, digest);
    }

    /// verifyDigest plus the memory words it borrows or must not touch: the free memory
    /// pointer and zero slot afterwards, and a sentinel word just below the free memory pointer.
    function verifyDigestMemory(uint256 keyX, uint256 keyParity, FrostVerifier.Signature memory sig, bytes32 digest)
        external
        view
        returns (bool ok, bool fmpKept, bool zeroSlotKept, bool sentinelKept)
    {
        uint256[] memory sentinel = new uint256[](1);
        sentinel[0] = type(uint256).max;
        uint256 fmp;
        assembly ("memory-safe") {
            fmp := mload(0x40)
        }
        ok = FrostVerifier.verifyDigest(keyX, keyParity, sig, digest);
        uint256 fmpAfter;
        uint256 zero;
        assembly ("memory-safe") {
            fmpAfter := mload(0x40)
            zero := mload(0x60)
        }
        fmpKept = fmpAfter == fmp;
        zeroSlotKept = zero == 0;
        sentinelKept = sentinel[0] == type(uint256).max;
    }

    function challenge(FrostVerifier.PublicKey memory key, FrostVerifier.Signature memory sig, bytes memory message)
        external
        pure
        returns (uint256)
    {
        return FrostVerifier.challenge(key, sig, message);
    }

    function challengeDigest(FrostVerifier.PublicKey memory key, FrostVerifier.Signature memory sig, bytes32 digest)
        external
        view
        returns (uint256)
    {
        return FrostVerifier.challengeDigest(key, sig, digest);
    }
}

contract FrostVerifierTest is TestSigner {
    FrostVerifierHarness internal h;

    uint256 internal constant N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    // RFC 9591 Appendix E.5, FROST(secp256k1, SHA-256): group key, message "test", and the
    // final signature (R compressed 024c1a…1bc6, z a468…fb02). R.y was recovered from R.x.
    uint256 internal constant RFC_PX = 0xf37c34b66ced1fb51c34a90bdae006901f10625cc06c4f64663b0eae87d87b4f;
    uint256 internal constant RFC_RX = 0x4c1ad4e031872661fa6ebd05dfc7fb30db08b38d79f0edbc82051ae931381bc6;
    uint256 internal constant RFC_RY = 0x004f4e57b19db58941523f0f8af6bf04bbe925e4550517c3a87e1bf89d6fd032;
    uint256 internal constant RFC_Z = 0xa46881e25c7989d3816eae32074f1ab0d49ee908a59713ed5284c6bade7cfb02;

    function setUp() public {
        h = new FrostVerifierHarness();
    }

    function rfcKey() internal pure returns (FrostVerifier.PublicKey memory) {
        return FrostVerifier.PublicKey(RFC_PX, 0);
    }

    function rfcSig() internal pure returns (FrostVerifier.Signature memory) {
        return FrostVerifier.Signature(RFC_RX, RFC_RY, RFC_Z);
    }

    function test_rfc9591_e5_vector_accepted() public view {
        assertTrue(h.verify(rfcKey(), rfcSig(), bytes("test")), "RFC 9591 E.5 signature must verify");
    }

    function test_rfc9591_vector_other_message_rejected() public view {
        assertFalse(h.verify(rfcKey(), rfcSig(), bytes("tesT")), "other message");
        assertFalse(h.verify(rfcKey(), rfcSig(), bytes("")), "empty message");
    }

    function test_challenge_digest_matches_generic_form() public view {
        bytes32 d = keccak256("some digest");
        assertEq(
            h.challengeDigest(rfcKey(), rfcSig(), d), h.challenge(rfcKey(), rfcSig(), abi.encodePacked(d)), "challenge"
        );
    }

    function testFuzz_challenge_digest_matches_generic_form(bytes32 d, uint256 rx, uint256 px, uint8 parity)
        public
        view
    {
        FrostVerifier.PublicKey memory key = FrostVerifier.PublicKey(px, parity % 2);
        FrostVerifier.Signature memory sig = FrostVerifier.Signature(rx, rx ^ uint256(d), 1);
        assertEq(h.challengeDigest(key, sig, d), h.challenge(key, sig, abi.encodePacked(d)), "challenge");
    }

    function test_rejects_out_of_range_inputs() public view {
        FrostVerifier.Signature memory s = rfcSig();
        s.z = 0;
        assertFalse(h.verify(rfcKey(), s, bytes("test")), "z = 0");
        s.z = N;
        assertFalse(h.verify(rfcKey(), s, bytes("test")), "z = n");
        s.z = type(uint256).max;
        assertFalse(h.verify(rfcKey(), s, bytes("test")), "z >= n");
        s = rfcSig();
        s.ry = RFC_RY + 1;
        assertFalse(h.verify(rfcKey(), s, bytes("test")), "R off curve");
        FrostVerifier.PublicKey memory k = rfcKey();
        k.x = 0;
        assertFalse(h.verify(k, rfcSig(), bytes("test")), "key x = 0");
        k.x = N + 1;
        assertFalse(h.verify(k, rfcSig(), bytes("test")), "key x >= n");
        k = rfcKey();
        k.parity = 2;
        assertFalse(h.verify(k, rfcSig(), bytes("test")), "key parity 2");
        k.parity = 1;
        assertFalse(h.verify(k, rfcSig(), bytes("test")), "wrong key parity");
    }

    function test_rejects_every_single_bit_flip_of_rfc_vector() public view {
        for (uint256 bit = 0; bit < 256; ++bit) {
            uint256 m = uint256(1) << bit;
            FrostVerifier.Signature memory s = rfcSig();
            s.rx ^= m;
            assertFalse(h.verify(rfcKey(), s, bytes("test")), "flipped R.x");
            s = rfcSig();
            s.ry ^= m;
            assertFalse(h.verify(rfcKey(), s, bytes("test")), "flipped R.y");
            s = rfcSig();
            s.z ^= m;
            assertFalse(h.verify(rfcKey(), s, bytes("test")), "flipped z");
            FrostVerifier.PublicKey memory k = rfcKey();
            k.x ^= m;
            assertFalse(h.verify(k, rfcSig(), bytes("test")), "flipped key");
        }
    }

    /// Signatures made by the test signer (used by the inbox tests) verify in both forms, and
    /// not for another digest.
    function testFuzz_test_signer_signatures_verify(bytes32 d, uint8 seed) public {
        TestKey memory k = testKey(seed);
        FrostVerifier.Signature memory s = frostSign(k, d);
        assertTrue(h.verifyDigest(pub(k), s, d), "digest form");
        assertTrue(h.verify(pub(k), s, abi.encodePacked(d)), "bytes form");
        bytes32 other = bytes32(uint256(d) ^ 1);
        assertFalse(h.verifyDigest(pub(k), s, other), "other digest");
    }

    /// The assembly verifyDigest and the Solidity verify agree on mutated valid signatures.
    function testFuzz_verify_digest_agrees_with_generic_form(bytes32 d, uint256 flip, uint8 field) public {
        TestKey memory k = testKey(7);
        FrostVerifier.Signature memory s = frostSign(k, d);
        FrostVerifier.PublicKey memory key = pub(k);
        field %= 6;
        if (field == 0) s.rx ^= flip;
        else if (field == 1) s.ry ^= flip;
        else if (field == 2) s.z ^= flip;
        else if (field == 3) key.x ^= flip;
        else if (field == 4) key.parity = uint8(flip);
        else d ^= bytes32(flip);
        bool expected = flip == 0 || (field == 4 && uint8(flip) == k.parity);
        assertTrue(h.verifyDigest(key, s, d) == expected, "digest form");
        assertTrue(h.verify(key, s, abi.encodePacked(d)) == expected, "bytes form");
    }

    /// Edge values of every range check, in both forms.
    function test_range_checks_digest_form() public {
        TestKey memory k = testKey(9);
        bytes32 d = keccak256("edge");
        FrostVerifier.Signature memory s = frostSign(k, d);
        assertTrue(h.verifyDigest(pub(k), s, d), "valid");
        uint256[5] memory zs = [uint256(0), N, N + 1, type(uint256).max, N - s.z];
        for (uint256 i = 0; i < zs.length; ++i) {
            FrostVerifier.Signature memory t = FrostVerifier.Signature(s.rx, s.ry, zs[i]);
            assertFalse(h.verifyDigest(pub(k), t, d), "bad z");
            assertFalse(h.verify(pub(k), t, abi.encodePacked(d)), "bad z (bytes)");
        }
        uint256 p = FrostVerifier.P;
        // Coordinates >= p, R at the zero encoding, -R (on the curve, wrong point).
        FrostVerifier.Signature[4] memory rs = [
            FrostVerifier.Signature(p, s.ry, s.z),
            FrostVerifier.Signature(s.rx, p, s.z),
            FrostVerifier.Signature(0, 0, s.z),
            FrostVerifier.Signature(s.rx, p - s.ry, s.z)
        ];
        for (uint256 i = 0; i < rs.length; ++i) {
            assertFalse(h.verifyDigest(pub(k), rs[i], d), "bad R");
            assertFalse(h.verify(pub(k), rs[i], abi.encodePacked(d)), "bad R (bytes)");
        }
        uint256[3] memory xs = [uint256(0), N, type(uint256).max];
        for (uint256 i = 0; i < xs.length; ++i) {
            FrostVerifier.PublicKey memory key = FrostVerifier.PublicKey(xs[i], k.parity);
            assertFalse(h.verifyDigest(key, s, d), "bad key x");
            assertFalse(h.verify(key, s, abi.encodePacked(d)), "bad key x (bytes)");
        }
        assertFalse(h.verifyDigest(FrostVerifier.PublicKey(k.x, 2), s, d), "parity 2");
        assertFalse(h.verifyDigest(FrostVerifier.PublicKey(k.x, 255), s, d), "parity 255");
    }

    /// verifyDigest takes the key parity as a whole word: only 0 and 1 are accepted (ecrecover
    /// rejects v = 28 - parity unless it is 27 or 28), whatever the high bytes.
    function test_dirty_key_parity_words_rejected() public {
        TestKey memory k = testKey(9);
        bytes32 d = keccak256("edge");
        FrostVerifier.Signature memory s = frostSign(k, d);
        assertTrue(h.verifyDigestWords(k.x, k.parity, s, d), "valid");
        uint256[7] memory ps = [
            uint256(k.parity) + 2,
            uint256(k.parity) + 256,
            uint256(k.parity) | (1 << 255),
            type(uint256).max,
            type(uint256).max - 25,
            uint256(28),
            uint256(29)
        ];
        for (uint256 i = 0; i < ps.length; ++i) {
            assertFalse(h.verifyDigestWords(k.x, ps[i], s, d), "dirty parity");
        }
        assertFalse(h.verifyDigestWords(k.x, 1 - k.parity, s, d), "other parity");
    }

    /// z^-1 mod n through the modexp precompile.
    function invModN(uint256 a) internal view returns (uint256 r) {
        (bool ok, bytes memory out) = address(5).staticcall(abi.encode(32, 32, 32, a, N - 2, N));
        require(ok, "modexp");
        r = abi.decode(out, (uint256));
    }

    /// When ecrecover fails it returns no data and leaves its output buffer as it was. This
    /// makes the ecrecover hash word (-z * key.x mod n, which a signer chooses through z) equal
    /// address(R) with every other check passing, and makes ecrecover fail: through the key
    /// parity (v not 27 or 28) and through a key.x that is no point's x-coordinate (5: 5^3 + 7
    /// is not a square mod p). Reading a stale or attacker-influenced buffer would accept.
    function test_failed_ecrecover_never_accepts() public {
        TestKey memory k = testKey(9);
        bytes32 d = keccak256("ecrecover failure");
        FrostVerifier.Signature memory s = frostSign(k, d);
        uint256 a = uint256(uint160(uint256(keccak256(abi.encodePacked(s.rx, s.ry)))));
        uint256[2] memory xs = [k.x, uint256(5)];
        uint256[2] memory parities = [uint256(2), 0];
        for (uint256 i = 0; i < 2; ++i) {
            // hash = n - z * x mod n == a  <=>  z = (n - a) * x^-1 mod n.
            uint256 z = mulmod(N - a, invModN(xs[i]), N);
            FrostVerifier.Signature memory t = FrostVerifier.Signature(s.rx, s.ry, z);
            assertEq(N - mulmod(z, xs[i], N), a, "hash word is address(R)");
            assertFalse(h.verifyDigestWords(xs[i], parities[i], t, d), "failed ecrecover");
            assertFalse(
                h.verify(FrostVerifier.PublicKey(xs[i], uint8(parities[i])), t, abi.encodePacked(d)), "bytes form"
            );
        }
    }

    /// verifyDigest borrows 0x00..0x7f and writes free memory only: the free memory pointer and
    /// the zero slot are restored and memory below the free memory pointer is untouched, for
    /// valid and invalid signatures alike.
    function testFuzz_verify_digest_memory_safe(bytes32 d, uint256 flip, bool corrupt) public {
        TestKey memory k = testKey(3);
        FrostVerifier.Signature memory s = frostSign(k, d);
        if (corrupt) s.z ^= flip | 1;
        (bool ok, bool fmpKept, bool zeroSlotKept, bool sentinelKept) = h.verifyDigestMemory(k.x, k.parity, s, d);
        assertTrue(ok == !corrupt, "result");
        assertTrue(fmpKept, "free memory pointer restored");
        assertTrue(zeroSlotKept, "zero slot restored");
        assertTrue(sentinelKept, "allocated memory untouched");
    }
}
