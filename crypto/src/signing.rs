//! FROST signing over a batch digest (RFC 9591 §5.2 round two, §5.3 aggregation) and the
//! conversion of the group signature to the form `SigilInbox` verifies.

use crate::keys::{GroupKey, MemberIndex, affine, identifier, member_index};
use crate::nonce::{NonceError, NonceId, NonceLedger, NoncePool};
use alloy_primitives::{B256, U256};
use frost::keys::{KeyPackage, PublicKeyPackage};
use frost::round1::SigningCommitments;
use frost::round2::SignatureShare;
use frost::{Signature, SigningPackage};
use frost_secp256k1 as frost;
use std::collections::BTreeMap;

/// Errors while signing, verifying or aggregating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// The request names a nonce this signer must not (or cannot) use.
    #[error(transparent)]
    Nonce(#[from] NonceError),
    /// The signing package does not carry this signer's commitment for the named nonce;
    /// nothing was consumed.
    #[error("signing package commitment for member {member} does not match {nonce}")]
    IncorrectCommitment {
        /// This signer.
        member: MemberIndex,
        /// The nonce named by the request.
        nonce: NonceId,
    },
    /// Shares that failed verification (RFC 9591 §5.4 cheater detection), by member index.
    #[error("invalid signature shares from members {culprits:?}")]
    InvalidShares {
        /// The members at fault.
        culprits: Vec<MemberIndex>,
    },
    /// The set of shares does not match the signing package (missing, extra, or too few).
    #[error("shares do not match the signing set: {0}")]
    ShareSet(frost::Error),
    /// The aggregate signature does not verify under the group key.
    #[error("group signature does not verify")]
    InvalidSignature,
    /// A malformed signature encoding.
    #[error("malformed signature encoding")]
    Malformed,
    /// Any other FROST error.
    #[error("frost: {0}")]
    Frost(frost::Error),
}

/// Builds the signing package for `digest` (32 bytes) from the selected members' nonce
/// commitments (RFC 9591 §5.2: the coordinator's `commitment_list`).
///
/// Errors: [`SigningError::Frost`] if a member index is 0.
pub fn signing_package(
    commitments: &BTreeMap<MemberIndex, SigningCommitments>,
    digest: B256,
) -> Result<SigningPackage, SigningError> {
    let mut by_id = BTreeMap::new();
    for (i, c) in commitments {
        by_id.insert(
            identifier(*i).map_err(|_| SigningError::Frost(frost::Error::UnknownIdentifier))?,
            *c,
        );
    }
    Ok(SigningPackage::new(by_id, digest.as_slice()))
}

/// Makes this member's signature share (RFC 9591 §5.2 `sign`) with pre-generated nonce
/// `nonce`. The nonce is removed from `pool` and durably consumed in `ledger` **before** the
/// share is computed, so it can never produce a second share.
///
/// Errors: [`SigningError::IncorrectCommitment`] (nothing consumed) when the package does not
/// carry this nonce's commitment for us; [`SigningError::Nonce`] for unknown/consumed ids or
/// ledger failure; [`SigningError::Frost`] for a package with too few commitments.
pub fn sign<L: NonceLedger + ?Sized>(
    key: &KeyPackage,
    package: &SigningPackage,
    nonce: NonceId,
    pool: &mut NoncePool,
    ledger: &mut L,
) -> Result<SignatureShare, SigningError> {
    let me = *key.identifier();
    let ours = pool.commitments(nonce);
    if ours.is_none() {
        return Err(match ledger.status(nonce) {
            crate::nonce::NonceStatus::Consumed => NonceError::AlreadyConsumed { id: nonce },
            _ => NonceError::Unknown { id: nonce },
        }
        .into());
    }
    if package.signing_commitment(&me) != ours {
        let member = member_index(&me, u16::MAX).unwrap_or(0);
        return Err(SigningError::IncorrectCommitment { member, nonce });
    }
    let nonces = pool.take(nonce, ledger)?;
    frost::round2::sign(package, &nonces, key).map_err(SigningError::Frost)
}

/// Verifies one member's share against its verifying share (RFC 9591 §5.4).
///
/// Errors: [`SigningError::InvalidShares`] naming `member`.
pub fn verify_share(
    package: &SigningPackage,
    member: MemberIndex,
    share: &SignatureShare,
    public_keys: &PublicKeyPackage,
) -> Result<(), SigningError> {
    let id = identifier(member).map_err(|_| SigningError::InvalidShares {
        culprits: vec![member],
    })?;
    let vs = public_keys
        .verifying_shares()
        .get(&id)
        .ok_or(SigningError::InvalidShares {
            culprits: vec![member],
        })?;
    frost_core::verify_signature_share(id, vs, share, package, public_keys.verifying_key()).map_err(
        |_| SigningError::InvalidShares {
            culprits: vec![member],
        },
    )
}

/// Aggregates shares into the group signature (RFC 9591 §5.3), verifying every share on
/// failure to name all cheaters.
///
/// Errors: [`SigningError::InvalidShares`] with every culprit; [`SigningError::ShareSet`]
/// when the shares' members differ from the package's signing set or are fewer than t.
pub fn aggregate(
    package: &SigningPackage,
    shares: &BTreeMap<MemberIndex, SignatureShare>,
    public_keys: &PublicKeyPackage,
) -> Result<Signature, SigningError> {
    let n = public_keys.max_signers();
    let mut by_id = BTreeMap::new();
    for (i, s) in shares {
        by_id.insert(
            identifier(*i).map_err(|_| SigningError::InvalidShares { culprits: vec![*i] })?,
            *s,
        );
    }
    frost::aggregate_custom(
        package,
        &by_id,
        public_keys,
        frost::CheaterDetection::AllCheaters,
    )
    .map_err(|e| match e {
        frost::Error::InvalidSignatureShare { culprits } => SigningError::InvalidShares {
            culprits: culprits.iter().filter_map(|c| member_index(c, n)).collect(),
        },
        frost::Error::UnknownIdentifier | frost::Error::IncorrectNumberOfShares => {
            SigningError::ShareSet(e)
        }
        other => SigningError::Frost(other),
    })
}

/// Verifies a group signature over `digest` (RFC 9591 §6.5 `verify_signature_share`'s
/// group form). Errors: [`SigningError::InvalidSignature`].
pub fn verify(
    group_key: &GroupKey,
    digest: B256,
    signature: &Signature,
) -> Result<(), SigningError> {
    group_key
        .verifying_key()
        .verify(digest.as_slice(), signature)
        .map_err(|_| SigningError::InvalidSignature)
}

/// Runs a whole signing round in one process for the given signers (each with a fresh
/// nonce from a throwaway pool and [`crate::MemoryLedger`]) and returns the verified group
/// signature. For tests, benchmarks and fixtures; the node signs through [`sign`] with its
/// durable ledger.
///
/// Errors: any [`SigningError`] from the round, e.g. [`SigningError::ShareSet`] with fewer
/// than t signers.
pub fn sign_local<R: rand_core::RngCore + rand_core::CryptoRng>(
    keys: &BTreeMap<MemberIndex, KeyPackage>,
    public_keys: &PublicKeyPackage,
    digest: B256,
    rng: &mut R,
) -> Result<Signature, SigningError> {
    let mut parties = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for (i, key) in keys {
        let mut pool = NoncePool::new();
        let mut ledger = crate::nonce::MemoryLedger::new();
        let (id, c) = pool.refill(key, 1, &mut ledger, rng)?.remove(0);
        commitments.insert(*i, c);
        parties.insert(*i, (pool, ledger, id));
    }
    let package = signing_package(&commitments, digest)?;
    let mut shares = BTreeMap::new();
    for (i, (pool, ledger, id)) in parties.iter_mut() {
        let key = keys
            .get(i)
            .ok_or(SigningError::InvalidShares { culprits: vec![*i] })?;
        shares.insert(*i, sign(key, &package, *id, pool, ledger)?);
    }
    let signature = aggregate(&package, &shares, public_keys)?;
    let group_key = crate::keys::GroupKey::new(*public_keys.verifying_key())
        .map_err(|_| SigningError::InvalidSignature)?;
    verify(&group_key, digest, &signature)?;
    Ok(signature)
}

/// A group signature as `FrostVerifier.Signature`: R in affine coordinates and z, each a
/// big-endian uint256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OnchainSignature {
    /// x-coordinate of R.
    pub rx: U256,
    /// y-coordinate of R.
    pub ry: U256,
    /// Response scalar z (0 < z < n).
    pub z: U256,
}

impl OnchainSignature {
    /// Converts a FROST signature (R compressed, 33 bytes || z, 32 bytes).
    /// Errors: [`SigningError::Malformed`].
    pub fn from_frost(sig: &Signature) -> Result<Self, SigningError> {
        let bytes = sig.serialize().map_err(|_| SigningError::Malformed)?;
        Self::from_bytes(&bytes)
    }

    /// Parses the 65-byte FROST encoding `compress(R) || z`. Errors: [`SigningError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SigningError> {
        if bytes.len() != 65 {
            return Err(SigningError::Malformed);
        }
        let (rx, ry) = affine(&bytes[..33]).ok_or(SigningError::Malformed)?;
        Ok(Self {
            rx: U256::from_be_bytes(rx.0),
            ry: U256::from_be_bytes(ry.0),
            z: U256::from_be_slice(&bytes[33..]),
        })
    }

    /// Back to the 65-byte FROST encoding. Errors: none for values from [`Self::from_frost`].
    pub fn to_frost(&self) -> Result<Signature, SigningError> {
        let mut bytes = Vec::with_capacity(65);
        bytes.push(2 + u8::from(self.ry.bit(0)));
        bytes.extend_from_slice(&self.rx.to_be_bytes::<32>());
        bytes.extend_from_slice(&self.z.to_be_bytes::<32>());
        Signature::deserialize(&bytes).map_err(|_| SigningError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::trusted_dealer;
    use crate::nonce::MemoryLedger;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    struct Member {
        key: KeyPackage,
        pool: NoncePool,
        ledger: MemoryLedger,
    }

    fn committee(
        t: u16,
        n: u16,
        seed: u64,
    ) -> (Vec<Member>, PublicKeyPackage, GroupKey, ChaCha20Rng) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let keys = trusted_dealer(t, n, &mut rng).unwrap();
        let members = keys
            .key_packages
            .values()
            .map(|k| Member {
                key: k.clone(),
                pool: NoncePool::new(),
                ledger: MemoryLedger::new(),
            })
            .collect();
        (members, keys.public_key_package, keys.group_key, rng)
    }

    fn round(
        members: &mut [Member],
        signers: &[MemberIndex],
        digest: B256,
        rng: &mut ChaCha20Rng,
    ) -> (SigningPackage, BTreeMap<MemberIndex, NonceId>) {
        let mut commitments = BTreeMap::new();
        let mut ids = BTreeMap::new();
        for &i in signers {
            let m = &mut members[usize::from(i) - 1];
            let (id, c) = m
                .pool
                .refill(&m.key, 1, &mut m.ledger, rng)
                .unwrap()
                .remove(0);
            commitments.insert(i, c);
            ids.insert(i, id);
        }
        (signing_package(&commitments, digest).unwrap(), ids)
    }

    #[test]
    fn t_of_n_signature_verifies_and_converts() {
        let (mut ms, pk, gk, mut rng) = committee(3, 4, 1);
        let digest = crate::encoding::batch_digest(1, 1, B256::repeat_byte(7));
        let (pkg, ids) = round(&mut ms, &[1, 3, 4], digest, &mut rng);
        let mut shares = BTreeMap::new();
        for (i, id) in &ids {
            let m = &mut ms[usize::from(*i) - 1];
            let s = sign(&m.key, &pkg, *id, &mut m.pool, &mut m.ledger).unwrap();
            verify_share(&pkg, *i, &s, &pk).unwrap();
            shares.insert(*i, s);
        }
        let sig = aggregate(&pkg, &shares, &pk).unwrap();
        verify(&gk, digest, &sig).unwrap();
        let on = OnchainSignature::from_frost(&sig).unwrap();
        assert_eq!(on.to_frost().unwrap(), sig);
        assert!(verify(&gk, B256::repeat_byte(1), &sig).is_err());
    }

    #[test]
    fn nonce_is_single_use() {
        let (mut ms, _, _, mut rng) = committee(2, 3, 2);
        let (pkg, ids) = round(&mut ms, &[1, 2], B256::repeat_byte(1), &mut rng);
        let m = &mut ms[0];
        sign(&m.key, &pkg, ids[&1], &mut m.pool, &mut m.ledger).unwrap();
        let again = sign(&m.key, &pkg, ids[&1], &mut m.pool, &mut m.ledger).unwrap_err();
        assert!(
            matches!(
                again,
                SigningError::Nonce(NonceError::AlreadyConsumed { .. })
            ),
            "{again:?}"
        );
        let unknown = sign(&m.key, &pkg, NonceId(999), &mut m.pool, &mut m.ledger).unwrap_err();
        assert!(
            matches!(unknown, SigningError::Nonce(NonceError::Unknown { .. })),
            "{unknown:?}"
        );
    }

    #[test]
    fn nonces_generated_before_restart_are_refused() {
        let (mut ms, _, _, mut rng) = committee(2, 3, 3);
        let (pkg, ids) = round(&mut ms, &[1, 2], B256::repeat_byte(2), &mut rng);
        let m = &mut ms[0];
        // Crash: the in-memory pool is lost; the ledger discards uncertain ids.
        m.pool = NoncePool::new();
        m.ledger.restart();
        let err = sign(&m.key, &pkg, ids[&1], &mut m.pool, &mut m.ledger).unwrap_err();
        assert!(
            matches!(err, SigningError::Nonce(NonceError::AlreadyConsumed { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn wrong_commitment_consumes_nothing() {
        let (mut ms, _, _, mut rng) = committee(2, 3, 4);
        let (pkg, ids) = round(&mut ms, &[1, 2], B256::repeat_byte(3), &mut rng);
        let m = &mut ms[0];
        let (other, _) = m.pool.refill(&m.key, 1, &mut m.ledger, &mut rng).unwrap()[0];
        let err = sign(&m.key, &pkg, other, &mut m.pool, &mut m.ledger).unwrap_err();
        assert!(
            matches!(err, SigningError::IncorrectCommitment { member: 1, .. }),
            "{err:?}"
        );
        assert_eq!(m.ledger.status(other), crate::nonce::NonceStatus::Issued);
        sign(&m.key, &pkg, ids[&1], &mut m.pool, &mut m.ledger).unwrap();
    }

    #[test]
    fn aggregate_names_every_cheater() {
        let (mut ms, pk, _, mut rng) = committee(3, 5, 5);
        let digest = B256::repeat_byte(4);
        let (pkg, ids) = round(&mut ms, &[1, 2, 4, 5], digest, &mut rng);
        let mut shares = BTreeMap::new();
        for (i, id) in &ids {
            let m = &mut ms[usize::from(*i) - 1];
            shares.insert(
                *i,
                sign(&m.key, &pkg, *id, &mut m.pool, &mut m.ledger).unwrap(),
            );
        }
        // Members 2 and 5 send garbage scalars instead of their shares.
        let bogus = |b: u8| SignatureShare::deserialize(&[b; 32]).unwrap();
        let s5 = bogus(5);
        shares.insert(2, bogus(2));
        shares.insert(5, s5);
        match aggregate(&pkg, &shares, &pk).unwrap_err() {
            SigningError::InvalidShares { culprits } => assert_eq!(culprits, vec![2, 5]),
            e => panic!("unexpected {e:?}"),
        }
        assert!(verify_share(&pkg, 2, &s5, &pk).is_err());
        shares.remove(&2);
        assert!(matches!(
            aggregate(&pkg, &shares, &pk).unwrap_err(),
            SigningError::ShareSet(_)
        ));
    }
}
