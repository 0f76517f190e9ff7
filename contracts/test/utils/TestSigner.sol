// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test, Vm} from "./Test.sol";
import {FrostVerifier} from "../../src/FrostVerifier.sol";

/// @notice Test-only FROST signatures over arbitrary digests: single-signer Schnorr with a known
///         secret key, which is exactly what a t-of-n FROST aggregate looks like on-chain
///         (R = k*G, z = k + c*x mod n with the RFC 9591 challenge c). Points come from the
///         `createWallet` cheatcode (it returns the public key of any scalar). The challenge is
///         FrostVerifier.challengeDigest, itself cross-checked against the RFC 9591 vector and
///         the Rust fixtures by FrostVerifier.t.sol.
abstract contract TestSigner is Test {
    uint256 internal constant ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    struct TestKey {
        uint256 sk;
        uint256 x;
        uint256 y;
        uint8 parity;
    }

    /// A deterministic key for `seed` with x < n (what FrostVerifier requires).
    function testKey(uint256 seed) internal returns (TestKey memory k) {
        for (uint256 i = 0;; ++i) {
            uint256 sk = uint256(keccak256(abi.encode("sigil test key", seed, i))) % ORDER;
            if (sk == 0) continue;
            Vm.Wallet memory w = vm.createWallet(sk);
            if (w.publicKeyX >= ORDER) continue;
            return TestKey(sk, w.publicKeyX, w.publicKeyY, uint8(w.publicKeyY & 1));
        }
    }

    function pub(TestKey memory k) internal pure returns (FrostVerifier.PublicKey memory) {
        return FrostVerifier.PublicKey(k.x, k.parity);
    }

    /// Schnorr/FROST signature of `digest` by `k`, with a deterministic nonce.
    function frostSign(TestKey memory k, bytes32 digest) internal returns (FrostVerifier.Signature memory s) {
        uint256 nonce = uint256(keccak256(abi.encode("sigil test nonce", k.sk, digest))) % ORDER;
        if (nonce == 0) nonce = 1;
        Vm.Wallet memory r = vm.createWallet(nonce);
        s.rx = r.publicKeyX;
        s.ry = r.publicKeyY;
        uint256 c = FrostVerifier.challengeDigest(pub(k), s, digest);
        s.z = addmod(nonce, mulmod(c, k.sk, ORDER), ORDER);
    }
}

/// @notice Merkle trees as SigilInbox verifies them (sorted-pair keccak256 inner nodes, the
///         OpenZeppelin convention) over a power-of-two number of leaves, in leaf order. For such
///         a tree, OpenZeppelin's multiproof of all leaves (in leaf order) is an empty proof
///         with n - 1 true flags.
library TestMerkle {
    function hashPair(bytes32 a, bytes32 b) internal pure returns (bytes32) {
        return a < b ? keccak256(abi.encode(a, b)) : keccak256(abi.encode(b, a));
    }

    function _next(bytes32[] memory level) private pure returns (bytes32[] memory up) {
        up = new bytes32[](level.length / 2);
        for (uint256 i = 0; i < up.length; ++i) {
            up[i] = hashPair(level[2 * i], level[2 * i + 1]);
        }
    }

    function _checkSize(uint256 n) private pure {
        require(n > 0 && n & (n - 1) == 0, "TestMerkle: power of two leaves only");
    }

    function root(bytes32[] memory leaves) internal pure returns (bytes32) {
        _checkSize(leaves.length);
        bytes32[] memory level = leaves;
        while (level.length > 1) {
            level = _next(level);
        }
        return level[0];
    }

    function proof(bytes32[] memory leaves, uint256 index) internal pure returns (bytes32[] memory p) {
        _checkSize(leaves.length);
        uint256 depth;
        for (uint256 n = leaves.length; n > 1; n /= 2) {
            ++depth;
        }
        p = new bytes32[](depth);
        bytes32[] memory level = leaves;
        for (uint256 d = 0; d < depth; ++d) {
            p[d] = level[index ^ 1];
            level = _next(level);
            index /= 2;
        }
    }

    /// OpenZeppelin-style multiproof of the leaves at `indices` (strictly increasing), to be
    /// given with those leaves in that order: level by level, ascending, a known node whose
    /// sibling is known takes a true flag, otherwise the sibling goes into the proof.
    function multiproof(bytes32[] memory leaves, uint256[] memory indices)
        internal
        pure
        returns (bytes32[] memory mp, bool[] memory mflags)
    {
        _checkSize(leaves.length);
        mp = new bytes32[](leaves.length);
        mflags = new bool[](leaves.length);
        uint256 np;
        uint256 nf;
        bytes32[] memory level = leaves;
        uint256[] memory known = indices;
        while (level.length > 1) {
            uint256[] memory up = new uint256[](known.length);
            uint256 nu;
            for (uint256 k = 0; k < known.length; ++k) {
                uint256 i = known[k];
                if (k + 1 < known.length && known[k + 1] == (i ^ 1)) {
                    mflags[nf++] = true;
                    ++k;
                } else {
                    mflags[nf++] = false;
                    mp[np++] = level[i ^ 1];
                }
                up[nu++] = i >> 1;
            }
            assembly {
                mstore(up, nu)
            }
            known = up;
            level = _next(level);
        }
        assembly {
            mstore(mp, np)
            mstore(mflags, nf)
        }
    }

    /// The multiproof of every leaf, leaves in their order.
    function fullMultiproof(uint256 n) internal pure returns (bytes32[] memory p, bool[] memory flags) {
        _checkSize(n);
        p = new bytes32[](0);
        flags = new bool[](n - 1);
        for (uint256 i = 0; i < n - 1; ++i) {
            flags[i] = true;
        }
    }
}
