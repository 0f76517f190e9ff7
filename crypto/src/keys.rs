//! Committee keys: the group key in its on-chain form, member identifiers, and the
//! trusted-dealer split used by tests (production keys come from [`crate::dkg`]).

use alloy_primitives::{B256, U256};
use frost_secp256k1 as frost;
use k256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::{CryptoRng, RngCore};
use std::collections::BTreeMap;

pub use frost::keys::{KeyPackage, PublicKeyPackage};
pub use frost::{Identifier, VerifyingKey};

/// The secp256k1 group order n, big-endian (32 bytes).
pub const CURVE_ORDER: [u8; 32] =
    alloy_primitives::hex!("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141");

/// Errors about key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The group key's x-coordinate is >= n, which `ecrecover`-based verification cannot
    /// use (DESIGN.md "Cryptography"). DKG output with such a key must be discarded and the
    /// DKG run again.
    #[error("group key x-coordinate {x} is not below the curve order; rerun the DKG")]
    GroupKeyOutOfRange {
        /// The offending x-coordinate.
        x: B256,
    },
    /// The bytes are not a valid compressed secp256k1 point.
    #[error("malformed group key encoding")]
    MalformedKey,
    /// Member index 0 or above the committee size.
    #[error("member index {index} is outside 1..={n}")]
    InvalidMember {
        /// The index given.
        index: u16,
        /// Committee size.
        n: u16,
    },
    /// FROST rejected the parameters (e.g. t > n or t < 2).
    #[error("frost: {0}")]
    Frost(#[from] frost::Error),
}

/// A committee member's index, 1-based (the FROST identifier is this integer as a scalar,
/// RFC 9591 §5.1).
pub type MemberIndex = u16;

/// The FROST identifier of member `index` (1-based).
///
/// Errors: [`KeyError::InvalidMember`] for index 0.
pub fn identifier(index: MemberIndex) -> Result<Identifier, KeyError> {
    Identifier::try_from(index).map_err(|_| KeyError::InvalidMember { index, n: 0 })
}

/// The member index behind an identifier made by [`identifier`], for `n` members.
pub fn member_index(id: &Identifier, n: u16) -> Option<MemberIndex> {
    (1..=n).find(|i| identifier(*i).ok().as_ref() == Some(id))
}

/// The committee's group public key Y in the form the inbox stores: x-coordinate (< n) and
/// the parity of y.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupKey {
    vk: VerifyingKey,
    x: B256,
    y: B256,
}

impl GroupKey {
    /// Wraps a FROST verifying key, checking x < n.
    ///
    /// Errors: [`KeyError::GroupKeyOutOfRange`], [`KeyError::MalformedKey`].
    pub fn new(vk: VerifyingKey) -> Result<Self, KeyError> {
        let bytes = vk.serialize().map_err(|_| KeyError::MalformedKey)?;
        let (x, y) = affine(&bytes).ok_or(KeyError::MalformedKey)?;
        if x.0 >= CURVE_ORDER {
            return Err(KeyError::GroupKeyOutOfRange { x });
        }
        Ok(Self { vk, x, y })
    }

    /// Parses a 33-byte compressed key. Errors as [`GroupKey::new`].
    pub fn from_compressed(bytes: &[u8]) -> Result<Self, KeyError> {
        Self::new(VerifyingKey::deserialize(bytes).map_err(|_| KeyError::MalformedKey)?)
    }

    /// The FROST verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.vk
    }

    /// x-coordinate, big-endian (32 bytes).
    pub fn x(&self) -> B256 {
        self.x
    }

    /// y-coordinate, big-endian (32 bytes).
    pub fn y(&self) -> B256 {
        self.y
    }

    /// Parity of y: 0 even, 1 odd.
    pub fn parity(&self) -> u8 {
        self.y.0[31] & 1
    }

    /// x as a uint256 (for ABI calls).
    pub fn x_u256(&self) -> U256 {
        U256::from_be_bytes(self.x.0)
    }

    /// y as a uint256 (for ABI calls).
    pub fn y_u256(&self) -> U256 {
        U256::from_be_bytes(self.y.0)
    }

    /// SEC1 compressed encoding (33 bytes).
    pub fn compressed(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out[0] = 2 + self.parity();
        out[1..].copy_from_slice(self.x.as_slice());
        out
    }
}

/// Affine (x, y) of a SEC1-encoded point, or None when malformed or the identity.
pub(crate) fn affine(sec1: &[u8]) -> Option<(B256, B256)> {
    let pk = k256::PublicKey::from_sec1_bytes(sec1).ok()?;
    let ep = pk.to_encoded_point(false);
    Some((B256::from_slice(ep.x()?), B256::from_slice(ep.y()?)))
}

/// Key material of a whole committee made by a trusted dealer. **Tests and benchmarks
/// only**: the dealer knows the group secret. Production keys come from [`crate::dkg`].
pub struct DealtKeys {
    /// Each member's key package, by member index (1-based).
    pub key_packages: BTreeMap<MemberIndex, KeyPackage>,
    /// The public key package every member shares.
    pub public_key_package: PublicKeyPackage,
    /// The group key (x < n guaranteed).
    pub group_key: GroupKey,
}

/// Splits a fresh random group secret into `n` shares with threshold `t` (RFC 9591
/// Appendix C, `trusted_dealer_keygen`), retrying until the group key's x is below n.
///
/// Errors: [`KeyError::Frost`] when `t < 2` or `t > n`.
pub fn trusted_dealer<R: RngCore + CryptoRng>(
    t: u16,
    n: u16,
    rng: &mut R,
) -> Result<DealtKeys, KeyError> {
    loop {
        let (shares, public_key_package) = frost::keys::generate_with_dealer(
            n,
            t,
            frost::keys::IdentifierList::Default,
            &mut *rng,
        )?;
        let group_key = match GroupKey::new(*public_key_package.verifying_key()) {
            Ok(k) => k,
            Err(KeyError::GroupKeyOutOfRange { .. }) => continue,
            Err(e) => return Err(e),
        };
        let mut key_packages = BTreeMap::new();
        for (id, share) in shares {
            let index = member_index(&id, n).ok_or(KeyError::InvalidMember { index: 0, n })?;
            key_packages.insert(index, KeyPackage::try_from(share)?);
        }
        return Ok(DealtKeys {
            key_packages,
            public_key_package,
            group_key,
        });
    }
}

/// Committee thresholds for `n` members: f = floor((n - 1) / 3), quorum and FROST threshold
/// t = 2f + 1 (DESIGN.md "Cryptography"). Returns `(f, t)`.
pub fn thresholds(n: u16) -> (u16, u16) {
    let f = n.saturating_sub(1) / 3;
    (f, 2 * f + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn thresholds_follow_design() {
        assert_eq!(thresholds(4), (1, 3));
        assert_eq!(thresholds(7), (2, 5));
        assert_eq!(thresholds(19), (6, 13));
        assert_eq!(thresholds(100), (33, 67));
    }

    #[test]
    fn curve_order_constant() {
        assert_eq!(
            hex::encode_upper(CURVE_ORDER),
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141"
        );
    }

    #[test]
    fn rfc_vector_group_key_decompresses() {
        let k = GroupKey::from_compressed(
            &hex::decode("02f37c34b66ced1fb51c34a90bdae006901f10625cc06c4f64663b0eae87d87b4f")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(k.parity(), 0);
        assert_eq!(
            hex::encode(k.y()),
            "27be69ffdc4ad5af4bbad67a570e9f8cede4e1a87ce3df1588dfe0b85c6272b8"
        );
    }

    #[test]
    fn dealer_keys_are_consistent() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let keys = trusted_dealer(3, 4, &mut rng).unwrap();
        assert_eq!(keys.key_packages.len(), 4);
        for (i, kp) in &keys.key_packages {
            assert_eq!(kp.identifier(), &identifier(*i).unwrap());
            assert_eq!(kp.verifying_key(), keys.group_key.verifying_key());
        }
        assert!(trusted_dealer(5, 4, &mut rng).is_err());
    }

    #[test]
    fn out_of_range_x_is_rejected() {
        // x = n + 1 is a valid secp256k1 x-coordinate? Search a few above n for one on the curve.
        let n = U256::from_be_bytes(CURVE_ORDER);
        let found = (1u64..1000).find_map(|d| {
            let x = B256::from((n + U256::from(d)).to_be_bytes::<32>());
            let mut c = [0u8; 33];
            c[0] = 2;
            c[1..].copy_from_slice(x.as_slice());
            GroupKey::from_compressed(&c)
                .err()
                .filter(|e| matches!(e, KeyError::GroupKeyOutOfRange { .. }))
        });
        assert!(
            found.is_some(),
            "some x in (n, n+1000) lies on the curve and must be refused"
        );
    }
}
