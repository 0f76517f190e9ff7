// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title EcdsaMultisigVerifier
/// @notice Baseline for the gas table: k-of-n ECDSA verification as Wormhole's core bridge and
///         Hyperlane's multisig ISMs do it, one `ecrecover` per signature over strictly
///         increasing signer indices. Not used by Sigil itself.
contract EcdsaMultisigVerifier {
    /// @notice Signer set, indexed by position.
    address[] public signers;
    /// @notice Signatures required.
    uint256 public immutable threshold;

    /// @notice One ECDSA signature and the signer index it claims.
    struct IndexedSignature {
        uint8 index;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    /// @param signers_ The signer addresses.
    /// @param threshold_ Signatures required.
    constructor(address[] memory signers_, uint256 threshold_) {
        signers = signers_;
        threshold = threshold_;
    }

    /// @notice True when `sigs` holds `threshold` valid signatures over `digest` by distinct
    ///         signers in strictly increasing index order.
    function verify(bytes32 digest, IndexedSignature[] calldata sigs) external view returns (bool) {
        if (sigs.length < threshold) return false;
        int256 last = -1;
        for (uint256 i = 0; i < threshold; i++) {
            IndexedSignature calldata sig = sigs[i];
            if (int256(uint256(sig.index)) <= last) return false;
            last = int256(uint256(sig.index));
            if (sig.index >= signers.length) return false;
            address who = ecrecover(digest, sig.v, sig.r, sig.s);
            if (who == address(0) || who != signers[sig.index]) return false;
        }
        return true;
    }
}
