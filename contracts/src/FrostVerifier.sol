// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title FrostVerifier
/// @notice Verifies FROST(secp256k1, SHA-256) Schnorr signatures (RFC 9591 §6.5) for about
///         the cost of one `ecrecover`.
/// @dev A signature is (R, z) with R = k*G. It is valid for group key Y and message m when
///      z*G == R + c*Y, where c = H2(compress(R) || compress(Y) || m) (RFC 9591 §5.2, §6.5).
///      H2 is hash_to_field with expand_message_xmd(SHA-256) (RFC 9380 §5.3.1), DST
///      "FROST-secp256k1-SHA256-v1chal", 48 uniform bytes reduced mod n.
///
///      The check uses `ecrecover` as a multiplier: with r = Y.x, v = 27 + parity(Y),
///      s = -c*Y.x mod n and hash = -z*Y.x mod n, ecrecover returns the address of
///      r^-1 * (s*Y - hash*G) = z*G - c*Y, which must equal address(R) (`verifyDigest` uses
///      the same identity with the point -Y: v = 28 - parity(Y), s = c*Y.x mod n).
///      This needs Y.x < n (ecrecover rejects r >= n); Sigil's DKG rejects keys that fail it.
///
///      R is passed with both coordinates so the contract can check it lies on the curve
///      without a square root; its compressed form (parity of y) feeds the challenge.
library FrostVerifier {
    /// @notice The secp256k1 group order n.
    uint256 internal constant N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
    /// @notice The secp256k1 field prime p.
    uint256 internal constant P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F;

    /// @dev "FROST-secp256k1-SHA256-v1chal" (29 bytes) followed by its length byte 0x1d:
    ///      DST_prime of RFC 9380 §5.3.1, left-aligned in one word.
    bytes32 private constant DST_PRIME = 0x46524f53542d736563703235366b312d5348413235362d76316368616c1d0000;
    /// @dev DST_prime as a byte string (30 bytes).
    bytes private constant DST_PRIME_BYTES = "FROST-secp256k1-SHA256-v1chal\x1d";
    /// @dev The SHA-256 precompile.
    uint256 private constant SHA256_PRECOMPILE = 0x02;
    /// @dev n - 1, for the one-comparison range check 0 < x < n  <=>  x - 1 < n - 1 (mod 2^256).
    uint256 private constant N_MINUS_1 = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364140;
    /// @dev msg_prime bytes 163..194: the low byte of l_i_b_str (0x30), I2OSP(0, 1) and DST_prime
    ///      (30 bytes). Byte 162, the high byte of l_i_b_str (0x00), comes from a zero fill.
    bytes32 private constant LIB_LO_DST = 0x300046524f53542d736563703235366b312d5348413235362d76316368616c1d;
    /// @dev 0x01 | DST_prime, left-aligned: the tail of b1's input.
    bytes32 private constant ONE_DST = 0x0146524f53542d736563703235366b312d5348413235362d76316368616c1d00;
    /// @dev 0x02 | DST_prime, left-aligned: the tail of b2's input.
    bytes32 private constant TWO_DST = 0x0246524f53542d736563703235366b312d5348413235362d76316368616c1d00;
    /// @dev Low 160 bits.
    uint256 private constant ADDRESS_MASK = (1 << 160) - 1;
    /// @dev 2^128: b1 * 2^128 + (b2 >> 128) is the 48-byte uniform string as an integer.
    uint256 private constant TWO_POW_128 = 1 << 128;
    /// @dev ~P = 2^256 - 1 - p: x < p  <=>  ~x > ~P. One range check uses this form so that the
    ///      contract holds at most five PUSH32 p: from six on, solc's constant optimizer (at
    ///      10,000 runs) replaces every p by PUSH5 + NOT, 3 gas more each.
    uint256 private constant NOT_P = 0x1000003d0;

    /// @notice A group public key: the x-coordinate (must be < n) and the parity of y (0 even, 1 odd).
    struct PublicKey {
        uint256 x;
        uint8 parity;
    }

    /// @notice A FROST signature: the commitment point R = (rx, ry) in affine coordinates and
    ///         the response scalar z (0 < z < n).
    struct Signature {
        uint256 rx;
        uint256 ry;
        uint256 z;
    }

    /// @notice Verifies `sig` over arbitrary message bytes (e.g. the RFC 9591 Appendix E.5 vector).
    /// @return true when the signature is valid; false for any malformed or invalid input. Never reverts.
    function verify(PublicKey memory key, Signature memory sig, bytes memory message) internal pure returns (bool) {
        if (!_wellFormed(key, sig)) return false;
        return _check(key, sig, challenge(key, sig, message));
    }

    /// @notice Verifies `sig` by the group key (keyX, keyParity) over a 32-byte digest (Sigil's
    ///         EIP-712 batch and rotation digests). The key is taken as two words (as the inbox
    ///         reads it from storage): keyX = Y.x, keyParity = parity of Y.y (0 even, 1 odd).
    /// @dev Same result as `verify(PublicKey(keyX, keyParity), sig, abi.encodePacked(digest))`
    ///      (and false for any keyParity word above 1), in one branch-free assembly block: about
    ///      4.37k gas of execution (4,368 in GasReport.test_gas_verify), of which 3,000 + 100 is
    ///      `ecrecover`, 3 x 100 + 144 + 84 + 84 the SHA-256 precompile and 42 the keccak256 of
    ///      R. It accepts only when 0 < keyX < n, keyParity <= 1, 0 < z < n, R.x < p, R.y < p,
    ///      R is on the curve, the RFC 9591 challenge c (via `expand_message_xmd`, see
    ///      `challengeDigest`) is non-zero mod n, `ecrecover` returned one word, a non-zero
    ///      address, and that address equals address(R).
    ///      Four of these are enforced by `ecrecover` itself, which returns no data unless
    ///      v is 27 or 28 (the whole word), 0 < r < n and 0 < s < n (Yellow Paper, appendix E):
    ///      - v = 28 - keyParity (mod 2^256) is 27 or 28 exactly when keyParity is 0 or 1;
    ///      - r = keyX, so 0 < keyX < n;
    ///      - s = c * keyX mod n (c unreduced, < 2^256), which with 0 < keyX < n and n prime is 0
    ///        exactly when c = 0 mod n;
    ///      - one word back: the output buffer is a word of memory zeroed just before (the
    ///        msg_prime zero fill) and written by nothing else, and a call that returns no data
    ///        copies nothing, so any failure reads as address 0, which the non-zero check rejects.
    ///      The SHA-256 calls' success flags are not read: the precompile only fails when out of
    ///      gas, and then less than 3 gas remains, so the next opcode runs the frame out of gas:
    ///      a failed hash can never yield `true`.
    ///      Memory: msg_prime is built in free memory (nothing is allocated); the scratch words
    ///      0x00-0x7f are used for b1, b2 and ecrecover's input, and the free memory pointer
    ///      (0x40) and zero slot (0x60) are restored before the block ends.
    /// @return ok true when the signature is valid; false for any malformed or invalid input.
    ///         Never reverts (except out of gas).
    function verifyDigest(uint256 keyX, uint256 keyParity, Signature memory sig, bytes32 digest)
        internal
        view
        returns (bool ok)
    {
        assembly ("memory-safe") {
            let rx := mload(sig)
            let ry := mload(add(sig, 0x20))
            let z := mload(add(sig, 0x40))
            let m := mload(0x40)
            // msg_prime (195 bytes) at m: Z_pad(64) | 02/03 | R.x | 02/03 | Y.x | digest | 0x0030
            // | 0x00 | DST_prime(30). Zero-fill bytes 0..162 by copying from past the end of
            // calldata (Z_pad, whose first word later receives ecrecover's output, and byte
            // 162), then write the rest over it.
            calldatacopy(m, calldatasize(), 0xa3)
            mstore8(add(m, 0x40), add(2, and(ry, 1)))
            mstore(add(m, 0x41), rx)
            mstore8(add(m, 0x61), add(2, keyParity))
            mstore(add(m, 0x62), keyX)
            mstore(add(m, 0x82), digest)
            mstore(add(m, 0xa3), LIB_LO_DST)
            // b0 = H(msg_prime) at 0x00. The later calls all return one word: returndatasize()
            // is then 0x20, one gas cheaper than PUSH1 0x20.
            pop(staticcall(gas(), 0x02, m, 195, 0x00, 0x20))
            // b1 = H(b0 | 0x01 | DST_prime) (63 bytes: the word's last byte is not hashed) at 0x20.
            mstore(returndatasize(), ONE_DST)
            pop(staticcall(gas(), 0x02, 0x00, 63, returndatasize(), returndatasize()))
            let b1 := mload(returndatasize())
            // b2 = H((b0 ^ b1) | 0x02 | DST_prime), written to 0x50..0x6f: the word at 0x40 is
            // then the free memory pointer's high 16 bytes (zero: it is < 2^128) and b2[0..16],
            // i.e. b2 >> 128. This clobbers 0x50..0x6f; 0x40 and 0x60 are rewritten below.
            mstore(0x00, xor(mload(0x00), b1))
            mstore(returndatasize(), TWO_DST)
            pop(staticcall(gas(), 0x02, 0x00, 63, 0x50, returndatasize()))
            // ecrecover(hash = -z*Y.x, v = 28 - parity, r = Y.x, s = c*Y.x) at 0x00..0x7f is the
            // address of r^-1 * (s*P - hash*G) with P = (Y.x, the other parity) = -Y, that is
            // z*G - c*Y. c = b1 * 2^128 + (b2 >> 128) is left unreduced: mulmod(b1, 2^128, n) +
            // (b2 >> 128) < n + 2^128 does not overflow, and s only needs c mod n.
            mstore(0x60, mulmod(add(mulmod(b1, TWO_POW_128, N), mload(0x40)), keyX, N))
            mstore(0x40, keyX)
            mstore(returndatasize(), sub(28, keyParity))
            mstore(0x00, sub(N, mulmod(z, keyX, N)))
            ok := and(
                and(
                    // R.y < p (as ~R.y > ~p) and R.y^2 == R.x^3 + 7 (mod p).
                    and(gt(not(ry), NOT_P), eq(mulmod(ry, ry, P), addmod(mulmod(mulmod(rx, rx, P), rx, P), 7, P))),
                    // q != 0 and q == address(R) = low 160 bits of keccak256(R.x || R.y), hashed
                    // where sig keeps them (its first two words). lt(a, b) on booleans is !a && b.
                    lt(iszero(mload(m)), eq(mload(m), and(keccak256(sig, 0x40), ADDRESS_MASK)))
                ),
                // R.x < p and 0 < z < n (z - 1 wraps for z = 0). Yul evaluates arguments right
                // to left, so this operand, and the ecrecover call in it, comes before the loads
                // of q above. The call writes to the zeroed word at m (hence no returndatasize
                // check, see the dev comment) and its success flag, 1, is the 1 of z - 1 (when
                // it is 0, out of gas, nothing was written and q = 0 rejects).
                and(lt(rx, P), lt(sub(z, staticcall(gas(), 0x01, 0x00, 0x80, m, returndatasize())), N_MINUS_1))
            )
            mstore(0x40, m)
            mstore(0x60, 0)
        }
    }

    /// @notice True when (x, y) is an affine point on secp256k1 (y^2 = x^3 + 7 mod p).
    function isOnCurve(uint256 x, uint256 y) internal pure returns (bool) {
        if (x >= P || y >= P) return false;
        return mulmod(y, y, P) == addmod(mulmod(mulmod(x, x, P), x, P), 7, P);
    }

    /// @notice The RFC 9591 challenge c = H2(compress(R) || compress(Y) || message) mod n.
    function challenge(PublicKey memory key, Signature memory sig, bytes memory message)
        internal
        pure
        returns (uint256)
    {
        bytes memory dstPrime = DST_PRIME_BYTES;
        bytes32 b0 = sha256(
            abi.encodePacked(
                bytes32(0),
                bytes32(0),
                uint8(2 + (sig.ry & 1)),
                sig.rx,
                uint8(2 + key.parity),
                key.x,
                message,
                uint16(48),
                uint8(0),
                dstPrime
            )
        );
        bytes32 b1 = sha256(abi.encodePacked(b0, uint8(1), dstPrime));
        bytes32 b2 = sha256(abi.encodePacked(b0 ^ b1, uint8(2), dstPrime));
        return addmod(mulmod(uint256(b1), 1 << 128, N), uint256(b2) >> 128, N);
    }

    /// @notice The RFC 9591 challenge for a 32-byte message, computed in scratch memory.
    /// @dev Memory layout of msg_prime (195 bytes): Z_pad(64) | 02/03 | R.x(32) | 02/03 | Y.x(32)
    ///      | digest(32) | 0x0030 | 0x00 | DST_prime(30). Then b1 = H(b0 | 01 | DST_prime) and
    ///      b2 = H((b0 ^ b1) | 02 | DST_prime), each 63 bytes.
    function challengeDigest(PublicKey memory key, Signature memory sig, bytes32 digest)
        internal
        view
        returns (uint256 c)
    {
        uint256 rPrefix = 2 + (sig.ry & 1);
        uint256 yPrefix = 2 + uint256(key.parity);
        uint256 rx = sig.rx;
        uint256 px = key.x;
        bool ok;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, 0)
            mstore(add(ptr, 32), 0)
            mstore8(add(ptr, 64), rPrefix)
            mstore(add(ptr, 65), rx)
            mstore8(add(ptr, 97), yPrefix)
            mstore(add(ptr, 98), px)
            mstore(add(ptr, 130), digest)
            // l_i_b_str = 0x0030, then I2OSP(0, 1), then DST_prime (30 bytes).
            mstore(add(ptr, 162), shl(232, 0x003000))
            mstore(add(ptr, 165), DST_PRIME)
            ok := staticcall(gas(), SHA256_PRECOMPILE, ptr, 195, ptr, 32)
            let b0 := mload(ptr)
            // b1 = H(b0 || 0x01 || DST_prime)
            mstore8(add(ptr, 32), 1)
            mstore(add(ptr, 33), DST_PRIME)
            ok := and(ok, staticcall(gas(), SHA256_PRECOMPILE, ptr, 63, add(ptr, 96), 32))
            let b1 := mload(add(ptr, 96))
            // b2 = H((b0 ^ b1) || 0x02 || DST_prime)
            mstore(ptr, xor(b0, b1))
            mstore8(add(ptr, 32), 2)
            ok := and(ok, staticcall(gas(), SHA256_PRECOMPILE, ptr, 63, add(ptr, 128), 32))
            let b2 := mload(add(ptr, 128))
            c := addmod(mulmod(b1, shl(128, 1), N), shr(128, b2), N)
        }
        // The precompile only fails when out of gas; treat it as an invalid signature.
        if (!ok) return 0;
    }

    /// @dev Range and curve checks that make the ecrecover identity sound.
    function _wellFormed(PublicKey memory key, Signature memory sig) private pure returns (bool) {
        if (key.x == 0 || key.x >= N || key.parity > 1) return false;
        if (sig.z == 0 || sig.z >= N) return false;
        return isOnCurve(sig.rx, sig.ry);
    }

    /// @dev Checks z*G - c*Y == R through one ecrecover, comparing addresses.
    function _check(PublicKey memory key, Signature memory sig, uint256 c) private pure returns (bool) {
        if (c == 0) return false;
        // hash = -z*Y.x mod n and s = -c*Y.x mod n; both are non-zero as n is prime and
        // z, c, Y.x are in (0, n).
        uint256 h = N - mulmod(sig.z, key.x, N);
        uint256 s = N - mulmod(c, key.x, N);
        address q = ecrecover(bytes32(h), 27 + key.parity, bytes32(key.x), bytes32(s));
        if (q == address(0)) return false;
        return q == address(uint160(uint256(keccak256(abi.encodePacked(sig.rx, sig.ry)))));
    }
}
