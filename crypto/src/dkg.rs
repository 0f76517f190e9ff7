//! FROST distributed key generation (Komlo–Goldberg PedPoP, as `frost_secp256k1::keys::dkg`
//! implements it) wrapped as a transport-agnostic, per-participant state machine.
//!
//! A participant is created with [`Dkg::start`], which returns its round-1 package to
//! **broadcast**. The host feeds every received package in with [`Dkg::receive_round1`] /
//! [`Dkg::receive_round2`]; when all n-1 round-1 packages are in, the machine emits one
//! round-2 package per peer to send **point-to-point** over an authenticated, encrypted
//! channel (it contains a secret share). When all n-1 round-2 packages are in, it yields the
//! [`DkgOutput`]: this member's key package, the shared public key package and the group
//! key. Packages may arrive in any order; round-2 packages that arrive early are held.
//!
//! Errors name the misbehaving member where the protocol can tell (bad proof of knowledge
//! in round 1, bad secret share in round 2, conflicting duplicates).
//!
//! ## Echo check (transcript confirmation)
//!
//! FROST's DKG assumes round 1 is a *broadcast*: every member must see the same commitment
//! vector from each sender. Over point-to-point links a Byzantine member can send different
//! commitment vectors with the same constant term to different members; every member then
//! derives the same group key but different verifying shares, and honest-only signing sets
//! can never produce a valid signature. So each [`DkgOutput`] carries a [`Transcript`]:
//! one SHA-256 hash per member of the round-1 package this member holds for it (its own
//! for itself), the digest over that list, and a digest over every member's verifying
//! share. Members exchange these in signed confirmations, and [`check_confirmations`]
//! accepts the DKG only when every confirmation agrees on the group key and both digests;
//! otherwise it names the member whose round-1 package differs between members
//! ([`ConfirmationError::Round1Equivocation`]) or whose result differs.

use crate::keys::{GroupKey, KeyError, MemberIndex, identifier, member_index};
use frost::keys::dkg::{round1, round2};
use frost::keys::{KeyPackage, PublicKeyPackage};
use frost_secp256k1 as frost;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

pub use frost::keys::dkg::round1::Package as Round1Package;
pub use frost::keys::dkg::round2::Package as Round2Package;

/// Why a DKG failed or refused a package.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DkgError {
    /// The package came from an index outside the committee, or from ourselves.
    #[error("package from member {from}, which is not a peer in this DKG")]
    UnknownParticipant {
        /// Sender index.
        from: MemberIndex,
    },
    /// A second, different package from the same member in the same round.
    #[error("member {from} sent two different round-{round} packages")]
    ConflictingPackage {
        /// Sender index.
        from: MemberIndex,
        /// 1 or 2.
        round: u8,
    },
    /// Round-1 proof of knowledge failed (RFC 9591 does not cover DKG; see the FROST paper,
    /// Fig. 1 round 1 step 5).
    #[error("member {culprit} sent an invalid proof of knowledge")]
    InvalidProofOfKnowledge {
        /// The member at fault.
        culprit: MemberIndex,
    },
    /// Round-2 secret share does not match the sender's commitment.
    #[error("member {culprit:?} sent an invalid secret share")]
    InvalidSecretShare {
        /// The member at fault, when known.
        culprit: Option<MemberIndex>,
    },
    /// The resulting group key cannot be verified on-chain (x >= n); run the DKG again.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The machine already finished or failed.
    #[error("the DKG is no longer accepting packages")]
    Finished,
    /// Any other FROST error.
    #[error("frost: {0}")]
    Frost(frost::Error),
}

/// A package to send.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// Round 1: broadcast to every member.
    Broadcast(round1::Package),
    /// Round 2: send only to `to`, over an authenticated and encrypted channel.
    Direct {
        /// Recipient index.
        to: MemberIndex,
        /// The package (holds a secret share).
        package: round2::Package,
    },
}

/// What a successful DKG leaves a member with.
#[derive(Debug, Clone)]
pub struct DkgOutput {
    /// This member's secret key package (keep encrypted at rest, see [`crate::keystore`]).
    pub key_package: KeyPackage,
    /// Every member's verifying share and the group verifying key.
    pub public_key_package: PublicKeyPackage,
    /// The group key, x < n checked.
    pub group_key: GroupKey,
    /// What this member saw, to confirm to every other member (see the module docs). The
    /// DKG has succeeded only once [`check_confirmations`] accepts all n transcripts.
    pub transcript: Transcript,
}

enum Phase {
    Round1(round1::SecretPackage),
    Round2(round2::SecretPackage),
    Done,
}

/// One member's DKG state machine (see module docs).
pub struct Dkg {
    me: MemberIndex,
    n: u16,
    phase: Phase,
    own_round1: round1::Package,
    round1: BTreeMap<MemberIndex, round1::Package>,
    round2: BTreeMap<MemberIndex, round2::Package>,
}

impl Dkg {
    /// Starts a DKG for member `me` of `n` with threshold `t`; returns the machine and the
    /// round-1 package to broadcast.
    ///
    /// Errors: [`DkgError::Key`] for `me` outside `1..=n`, [`DkgError::Frost`] for bad `t`/`n`.
    pub fn start<R: RngCore + CryptoRng>(
        me: MemberIndex,
        t: u16,
        n: u16,
        rng: &mut R,
    ) -> Result<(Self, Outgoing), DkgError> {
        if me == 0 || me > n {
            return Err(KeyError::InvalidMember { index: me, n }.into());
        }
        let (secret, package) =
            frost::keys::dkg::part1(identifier(me)?, n, t, &mut *rng).map_err(DkgError::Frost)?;
        let dkg = Self {
            me,
            n,
            phase: Phase::Round1(secret),
            own_round1: package.clone(),
            round1: BTreeMap::new(),
            round2: BTreeMap::new(),
        };
        Ok((dkg, Outgoing::Broadcast(package)))
    }

    /// This member's index.
    pub fn me(&self) -> MemberIndex {
        self.me
    }

    /// Members whose round-1 package has not arrived yet (for "who is missing" errors).
    pub fn missing_round1(&self) -> Vec<MemberIndex> {
        (1..=self.n)
            .filter(|i| *i != self.me && !self.round1.contains_key(i))
            .collect()
    }

    /// Members whose round-2 package has not arrived yet.
    pub fn missing_round2(&self) -> Vec<MemberIndex> {
        (1..=self.n)
            .filter(|i| *i != self.me && !self.round2.contains_key(i))
            .collect()
    }

    fn check_peer(&self, from: MemberIndex) -> Result<(), DkgError> {
        if from == 0 || from > self.n || from == self.me {
            return Err(DkgError::UnknownParticipant { from });
        }
        Ok(())
    }

    fn map_frost(&self, e: frost::Error) -> DkgError {
        match e {
            frost::Error::InvalidProofOfKnowledge { culprit } => {
                DkgError::InvalidProofOfKnowledge {
                    culprit: member_index(&culprit, self.n).unwrap_or(0),
                }
            }
            frost::Error::InvalidSecretShare { culprit } => DkgError::InvalidSecretShare {
                culprit: culprit.and_then(|c| member_index(&c, self.n)),
            },
            other => DkgError::Frost(other),
        }
    }

    /// Feeds a round-1 package from member `from`. When it completes round 1, returns the
    /// n-1 [`Outgoing::Direct`] round-2 packages (and, if round-2 packages were already
    /// held, possibly the final output through [`Dkg::receive_round2`] later).
    ///
    /// A repeat of an identical package is ignored. Errors: [`DkgError::UnknownParticipant`],
    /// [`DkgError::ConflictingPackage`], [`DkgError::InvalidProofOfKnowledge`] (the machine
    /// stays in round 1 without the culprit's package; the DKG cannot finish without it).
    pub fn receive_round1(
        &mut self,
        from: MemberIndex,
        package: round1::Package,
    ) -> Result<Vec<Outgoing>, DkgError> {
        self.check_peer(from)?;
        if let Some(prev) = self.round1.get(&from) {
            return if *prev == package {
                Ok(Vec::new())
            } else {
                Err(DkgError::ConflictingPackage { from, round: 1 })
            };
        }
        if !matches!(self.phase, Phase::Round1(_)) {
            return Err(DkgError::Finished);
        }
        self.round1.insert(from, package);
        if self.round1.len() < usize::from(self.n) - 1 {
            return Ok(Vec::new());
        }
        let Phase::Round1(secret) = std::mem::replace(&mut self.phase, Phase::Done) else {
            return Err(DkgError::Finished);
        };
        let by_id = self.round1_by_identifier()?;
        match frost::keys::dkg::part2(secret.clone(), &by_id) {
            Ok((secret2, packages)) => {
                self.phase = Phase::Round2(secret2);
                let mut out = Vec::with_capacity(packages.len());
                for (id, package) in packages {
                    let to = member_index(&id, self.n)
                        .ok_or(DkgError::Frost(frost::Error::UnknownIdentifier))?;
                    out.push(Outgoing::Direct { to, package });
                }
                Ok(out)
            }
            Err(e) => {
                let err = self.map_frost(e);
                if let DkgError::InvalidProofOfKnowledge { culprit } = err {
                    self.round1.remove(&culprit);
                }
                self.phase = Phase::Round1(secret);
                Err(err)
            }
        }
    }

    fn round1_by_identifier(
        &self,
    ) -> Result<BTreeMap<frost::Identifier, round1::Package>, DkgError> {
        self.round1
            .iter()
            .map(|(i, p)| Ok((identifier(*i)?, p.clone())))
            .collect()
    }

    /// Feeds a round-2 package (received point-to-point) from member `from`. Returns the
    /// output once all n-1 have arrived and round 1 is complete; `Ok(None)` while waiting.
    ///
    /// Errors: [`DkgError::UnknownParticipant`], [`DkgError::ConflictingPackage`],
    /// [`DkgError::InvalidSecretShare`], [`DkgError::Key`] when the group key has x >= n.
    pub fn receive_round2(
        &mut self,
        from: MemberIndex,
        package: round2::Package,
    ) -> Result<Option<DkgOutput>, DkgError> {
        self.check_peer(from)?;
        if let Some(prev) = self.round2.get(&from) {
            return if *prev == package {
                Ok(None)
            } else {
                Err(DkgError::ConflictingPackage { from, round: 2 })
            };
        }
        if matches!(self.phase, Phase::Done) {
            return Err(DkgError::Finished);
        }
        self.round2.insert(from, package);
        self.try_finish()
    }

    /// Completes the DKG when every package is present; `Ok(None)` otherwise.
    pub fn try_finish(&mut self) -> Result<Option<DkgOutput>, DkgError> {
        let Phase::Round2(secret) = &self.phase else {
            return Ok(None);
        };
        if self.round2.len() < usize::from(self.n) - 1 {
            return Ok(None);
        }
        let r1 = self.round1_by_identifier()?;
        let r2: BTreeMap<_, _> = self
            .round2
            .iter()
            .map(|(i, p)| Ok((identifier(*i)?, p.clone())))
            .collect::<Result<_, DkgError>>()?;
        let (key_package, public_key_package) = match frost::keys::dkg::part3(secret, &r1, &r2) {
            Ok(v) => v,
            Err(e) => {
                let err = self.map_frost(e);
                // Drop the culprit's share so a corrected resend can complete the DKG.
                if let DkgError::InvalidSecretShare { culprit: Some(c) } = err {
                    self.round2.remove(&c);
                }
                return Err(err);
            }
        };
        self.phase = Phase::Done;
        let group_key = GroupKey::new(*public_key_package.verifying_key())?;
        let transcript = self.transcript(&public_key_package)?;
        Ok(Some(DkgOutput {
            key_package,
            public_key_package,
            group_key,
            transcript,
        }))
    }

    /// This member's [`Transcript`]: the round-1 packages it holds (its own for itself) and
    /// the verifying shares it derived.
    fn transcript(&self, public_key_package: &PublicKeyPackage) -> Result<Transcript, DkgError> {
        let round1 = (1..=self.n)
            .map(|i| {
                let package = if i == self.me {
                    &self.own_round1
                } else {
                    self.round1
                        .get(&i)
                        .ok_or(DkgError::Frost(frost::Error::IncorrectNumberOfPackages))?
                };
                round1_package_hash(i, package)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Transcript {
            round1_digest: round1_digest(&round1),
            round1,
            verifying_shares_digest: verifying_shares_digest(public_key_package, self.n)?,
        })
    }
}

/// A SHA-256 output (32 bytes).
pub type Hash = [u8; 32];

/// Domain tag of [`round1_package_hash`].
pub const ROUND1_PACKAGE_DOMAIN: &[u8] = b"sigil/v1/dkg/round1-package";
/// Domain tag of [`round1_digest`].
pub const ROUND1_DIGEST_DOMAIN: &[u8] = b"sigil/v1/dkg/round1-digest";
/// Domain tag of [`verifying_shares_digest`].
pub const VERIFYING_SHARES_DOMAIN: &[u8] = b"sigil/v1/dkg/verifying-shares";

fn put(h: &mut Sha256, bytes: &[u8]) {
    // Length-prefixed, so concatenations cannot collide.
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// The hash of member `from`'s round-1 package: SHA-256 of [`ROUND1_PACKAGE_DOMAIN`], the
/// 2-byte big-endian index, and then, each prefixed with its 8-byte big-endian length, the
/// frost serialization of every coefficient commitment (in order) and of the proof of
/// knowledge.
///
/// Errors: [`DkgError::Frost`] when frost cannot serialize the package (an identity
/// element in the commitment).
pub fn round1_package_hash(from: MemberIndex, package: &Round1Package) -> Result<Hash, DkgError> {
    let mut h = Sha256::new();
    h.update(ROUND1_PACKAGE_DOMAIN);
    h.update(from.to_be_bytes());
    let coefficients = package.commitment().serialize().map_err(DkgError::Frost)?;
    h.update((coefficients.len() as u64).to_be_bytes());
    for c in &coefficients {
        put(&mut h, c);
    }
    put(
        &mut h,
        &package
            .proof_of_knowledge()
            .serialize()
            .map_err(DkgError::Frost)?,
    );
    Ok(h.finalize().into())
}

/// The digest over all members' round-1 package hashes (`hashes[i - 1]` is member i's, from
/// [`round1_package_hash`]): SHA-256 of [`ROUND1_DIGEST_DOMAIN`], the count as 8 bytes
/// big-endian, and the hashes in member order.
pub fn round1_digest(hashes: &[Hash]) -> Hash {
    let mut h = Sha256::new();
    h.update(ROUND1_DIGEST_DOMAIN);
    h.update((hashes.len() as u64).to_be_bytes());
    for x in hashes {
        h.update(x);
    }
    h.finalize().into()
}

/// The digest over the verifying shares of members `1..=n` in `package`: SHA-256 of
/// [`VERIFYING_SHARES_DOMAIN`], n as 2 bytes big-endian, then per member its 2-byte index and
/// its length-prefixed (8 bytes) frost serialization (33-byte compressed point).
///
/// Errors: [`DkgError::Frost`] when a member's share is missing
/// ([`frost::Error::UnknownIdentifier`]) or does not serialize.
pub fn verifying_shares_digest(package: &PublicKeyPackage, n: u16) -> Result<Hash, DkgError> {
    let mut h = Sha256::new();
    h.update(VERIFYING_SHARES_DOMAIN);
    h.update(n.to_be_bytes());
    for i in 1..=n {
        let share = package
            .verifying_shares()
            .get(&identifier(i)?)
            .ok_or(DkgError::Frost(frost::Error::UnknownIdentifier))?;
        h.update(i.to_be_bytes());
        put(&mut h, &share.serialize().map_err(DkgError::Frost)?);
    }
    Ok(h.finalize().into())
}

/// What one member saw in a DKG, as it confirms it to the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// `round1[i - 1]` is the [`round1_package_hash`] of the round-1 package this member
    /// holds for member i (the one it sent, for itself). n entries.
    pub round1: Vec<Hash>,
    /// [`round1_digest`] of `round1`.
    pub round1_digest: Hash,
    /// [`verifying_shares_digest`] of the public key package this member derived.
    pub verifying_shares_digest: Hash,
}

/// One member's signed DKG confirmation, as [`check_confirmations`] compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    /// The group key it derived, 33 bytes compressed ([`GroupKey::compressed`]).
    pub group_key: Vec<u8>,
    /// Its transcript.
    pub transcript: Transcript,
}

/// Why [`check_confirmations`] rejected a DKG. Every variant means the DKG failed and its
/// output must not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfirmationError {
    /// A confirmation from a member outside `1..=n`.
    #[error("confirmation from member {member}, which is not in this DKG")]
    UnknownMember {
        /// The index given.
        member: MemberIndex,
    },
    /// A confirmation whose round-1 hash list is not n long or does not match its own
    /// round-1 digest: the confirming member is at fault.
    #[error("member {member} sent a malformed DKG confirmation: {problem}")]
    Malformed {
        /// The confirming member.
        member: MemberIndex,
        /// What is wrong.
        problem: String,
    },
    /// Members hold different round-1 packages from `sender`: `sender` sent different
    /// commitment vectors to different members (a round-1 broadcast that was not one).
    /// `first` and `second` are the lowest-indexed members of the first two groups that hold
    /// different packages. (The hashes are reported by the members themselves, so a lying
    /// `second` could also produce this; either way the DKG must not be used.)
    #[error(
        "member {sender} sent different round-1 packages to members {first} and {second} (equivocation)"
    )]
    Round1Equivocation {
        /// The member whose round-1 package differs between members.
        sender: MemberIndex,
        /// A member holding one version.
        first: MemberIndex,
        /// A member holding another.
        second: MemberIndex,
    },
    /// `member` derived a different group key than `reference` although they hold the same
    /// round-1 packages: `member` or `reference` computed (or reported) wrongly.
    #[error(
        "member {member} derived a different group key ({member_key}) than member {reference} ({reference_key}); DKG failed"
    )]
    GroupKeyMismatch {
        /// The member that disagrees.
        member: MemberIndex,
        /// Its group key, hex.
        member_key: String,
        /// The member it was compared with (the checker itself).
        reference: MemberIndex,
        /// The reference group key, hex.
        reference_key: String,
    },
    /// `member` reports different verifying shares than `reference` although they hold the
    /// same round-1 packages.
    #[error(
        "member {member} derived different verifying shares than member {reference}; DKG failed"
    )]
    VerifyingSharesMismatch {
        /// The member that disagrees.
        member: MemberIndex,
        /// The member it was compared with (the checker itself).
        reference: MemberIndex,
    },
}

/// Compares DKG confirmations (one per member index, the checker's own included under
/// `reference`) and accepts only when all agree on the group key, the round-1 digest and the
/// verifying-shares digest. Works on a partial set too (to fail early); the caller must
/// still wait for all n before treating the DKG as done.
///
/// Checks, in order: every confirmation well-formed; for each sender in index order, every
/// confirmation holds the same round-1 package hash (else
/// [`ConfirmationError::Round1Equivocation`] naming that sender); then group key and
/// verifying-shares digest equal to `reference`'s (when `reference` is present).
///
/// Errors: [`ConfirmationError`].
pub fn check_confirmations(
    n: u16,
    reference: MemberIndex,
    confirms: &BTreeMap<MemberIndex, Confirmation>,
) -> Result<(), ConfirmationError> {
    for (&member, c) in confirms {
        if member == 0 || member > n {
            return Err(ConfirmationError::UnknownMember { member });
        }
        let t = &c.transcript;
        if t.round1.len() != usize::from(n) {
            return Err(ConfirmationError::Malformed {
                member,
                problem: format!("{} round-1 package hashes for {n} members", t.round1.len()),
            });
        }
        if round1_digest(&t.round1) != t.round1_digest {
            return Err(ConfirmationError::Malformed {
                member,
                problem: "round-1 digest does not match its package hashes".into(),
            });
        }
    }
    for sender in 1..=n {
        let slot = usize::from(sender) - 1;
        // Holders grouped by the hash they hold, groups in order of their lowest member.
        let mut groups: Vec<(Hash, MemberIndex)> = Vec::new();
        for (&member, c) in confirms {
            let h = c.transcript.round1[slot];
            if !groups.iter().any(|(g, _)| *g == h) {
                groups.push((h, member));
            }
        }
        if let [(_, first), (_, second), ..] = groups.as_slice() {
            return Err(ConfirmationError::Round1Equivocation {
                sender,
                first: *first,
                second: *second,
            });
        }
    }
    let Some(ours) = confirms.get(&reference) else {
        return Ok(());
    };
    for (&member, c) in confirms {
        if c.group_key != ours.group_key {
            return Err(ConfirmationError::GroupKeyMismatch {
                member,
                member_key: hex::encode(&c.group_key),
                reference,
                reference_key: hex::encode(&ours.group_key),
            });
        }
        if c.transcript.verifying_shares_digest != ours.transcript.verifying_shares_digest {
            return Err(ConfirmationError::VerifyingSharesMismatch { member, reference });
        }
    }
    Ok(())
}

/// Runs a complete DKG among `n` in-process participants (tests, benchmarks and the devnet's
/// single-process fallback). Delivers every package to its recipient, retries from scratch
/// while the group key has x >= n, and returns each member's output by index.
///
/// Errors: any [`DkgError`] a participant raises.
pub fn run_local<R: RngCore + CryptoRng>(
    t: u16,
    n: u16,
    rng: &mut R,
) -> Result<BTreeMap<MemberIndex, DkgOutput>, DkgError> {
    loop {
        let mut machines = BTreeMap::new();
        let mut broadcasts = Vec::new();
        for i in 1..=n {
            let (m, out) = Dkg::start(i, t, n, rng)?;
            machines.insert(i, m);
            if let Outgoing::Broadcast(p) = out {
                broadcasts.push((i, p));
            }
        }
        let mut directs = Vec::new();
        for (from, p) in &broadcasts {
            for (to, m) in machines.iter_mut() {
                if to != from {
                    for o in m.receive_round1(*from, p.clone())? {
                        if let Outgoing::Direct { to: dest, package } = o {
                            directs.push((*to, dest, package));
                        }
                    }
                }
            }
        }
        let mut outputs = BTreeMap::new();
        let mut out_of_range = false;
        for (from, to, package) in directs {
            let m = machines
                .get_mut(&to)
                .ok_or(DkgError::UnknownParticipant { from: to })?;
            match m.receive_round2(from, package) {
                Ok(Some(out)) => {
                    outputs.insert(to, out);
                }
                Ok(None) => {}
                Err(DkgError::Key(KeyError::GroupKeyOutOfRange { .. })) => out_of_range = true,
                Err(e) => return Err(e),
            }
        }
        if !out_of_range {
            return Ok(outputs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn local_dkg_agrees_on_group_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let out = run_local(3, 4, &mut rng).unwrap();
        assert_eq!(out.len(), 4);
        let gk = out[&1].group_key;
        for o in out.values() {
            assert_eq!(o.group_key, gk);
            assert_eq!(o.public_key_package, out[&1].public_key_package);
        }
    }

    #[test]
    fn rejects_unknown_and_self_and_conflicts() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let (mut a, _) = Dkg::start(1, 2, 3, &mut rng).unwrap();
        let (_, Outgoing::Broadcast(p2)) = Dkg::start(2, 2, 3, &mut rng).unwrap() else {
            panic!()
        };
        let (_, Outgoing::Broadcast(p2b)) = Dkg::start(2, 2, 3, &mut rng).unwrap() else {
            panic!()
        };
        assert_eq!(
            a.receive_round1(1, p2.clone()).unwrap_err(),
            DkgError::UnknownParticipant { from: 1 }
        );
        assert_eq!(
            a.receive_round1(4, p2.clone()).unwrap_err(),
            DkgError::UnknownParticipant { from: 4 }
        );
        assert!(a.receive_round1(2, p2.clone()).unwrap().is_empty());
        assert!(
            a.receive_round1(2, p2).unwrap().is_empty(),
            "identical repeat is ignored"
        );
        assert_eq!(
            a.receive_round1(2, p2b).unwrap_err(),
            DkgError::ConflictingPackage { from: 2, round: 1 }
        );
        assert_eq!(a.missing_round1(), vec![3]);
    }

    #[test]
    fn invalid_proof_of_knowledge_names_the_sender() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let (mut a, _) = Dkg::start(1, 2, 3, &mut rng).unwrap();
        let (_, Outgoing::Broadcast(p2)) = Dkg::start(2, 2, 3, &mut rng).unwrap() else {
            panic!()
        };
        // Member 3 replays member 2's package as its own: its proof of knowledge is bound
        // to identifier 2, so it fails for identifier 3.
        a.receive_round1(2, p2.clone()).unwrap();
        assert_eq!(
            a.receive_round1(3, p2).unwrap_err(),
            DkgError::InvalidProofOfKnowledge { culprit: 3 }
        );
        assert_eq!(a.missing_round1(), vec![3]);
    }

    fn confirmation(o: &DkgOutput) -> Confirmation {
        Confirmation {
            group_key: o.group_key.compressed().to_vec(),
            transcript: o.transcript.clone(),
        }
    }

    #[test]
    fn honest_transcripts_agree() {
        let mut rng = ChaCha20Rng::seed_from_u64(20);
        let out = run_local(3, 4, &mut rng).unwrap();
        let confirms: BTreeMap<_, _> = out.iter().map(|(i, o)| (*i, confirmation(o))).collect();
        for o in out.values() {
            assert_eq!(o.transcript, out[&1].transcript);
            assert_eq!(o.transcript.round1.len(), 4);
        }
        for r in 1..=4 {
            check_confirmations(4, r, &confirms).unwrap();
        }
        // A partial set (confirmations still arriving) is fine too.
        let partial: BTreeMap<_, _> = confirms.clone().into_iter().take(2).collect();
        check_confirmations(4, 1, &partial).unwrap();
    }

    /// Yields `shared`'s stream for the first `left` bytes, then `own`'s. frost's `part1`
    /// draws the secret a_0 first (one 32-byte scalar), so two `Dkg::start`s fed forks of
    /// one `shared` seed get the same a_0 and independent other coefficients.
    struct ForkRng {
        shared: ChaCha20Rng,
        own: ChaCha20Rng,
        left: usize,
    }

    impl RngCore for ForkRng {
        fn next_u32(&mut self) -> u32 {
            rand_core::impls::next_u32_via_fill(self)
        }
        fn next_u64(&mut self) -> u64 {
            rand_core::impls::next_u64_via_fill(self)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            let take = self.left.min(dest.len());
            let (a, b) = dest.split_at_mut(take);
            if !a.is_empty() {
                self.shared.fill_bytes(a);
            }
            if !b.is_empty() {
                self.own.fill_bytes(b);
            }
            self.left -= take;
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    impl CryptoRng for ForkRng {}

    /// Security review finding: round 1 went point-to-point with no echo. Member 4 sends
    /// member 1 a different commitment vector (same constant term) than members 2 and 3,
    /// with shares consistent with each. Every member's DKG completes with the same group
    /// key (the old group-key-only confirmation accepted it) but honest signing fails; the
    /// transcript check rejects it and names member 4.
    #[test]
    fn round1_equivocation_is_detected_and_names_the_sender() {
        let (t, n) = (3, 4);
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        let mut honest = BTreeMap::new();
        let mut r1 = BTreeMap::new();
        for i in 1..=3 {
            let (m, Outgoing::Broadcast(p)) = Dkg::start(i, t, n, &mut rng).unwrap() else {
                panic!()
            };
            honest.insert(i, m);
            r1.insert(i, p);
        }
        let fork = |seed| ForkRng {
            shared: ChaCha20Rng::seed_from_u64(40),
            own: ChaCha20Rng::seed_from_u64(seed),
            left: 32,
        };
        // Member 4 runs two machines: `to_rest` for members 2 and 3, `to_one` for member 1.
        let (mut to_rest, Outgoing::Broadcast(p4)) = Dkg::start(4, t, n, &mut fork(41)).unwrap()
        else {
            panic!()
        };
        let (mut to_one, Outgoing::Broadcast(p4_for_1)) =
            Dkg::start(4, t, n, &mut fork(42)).unwrap()
        else {
            panic!()
        };
        assert_ne!(p4, p4_for_1);
        assert_eq!(
            p4.commitment().serialize().unwrap()[0],
            p4_for_1.commitment().serialize().unwrap()[0],
            "same constant term, so the same group key"
        );

        // Round 1.
        let mut direct = Vec::new(); // (from, to, package)
        for (&to, m) in honest.iter_mut() {
            for (&from, p) in &r1 {
                if from != to {
                    for o in m.receive_round1(from, p.clone()).unwrap() {
                        if let Outgoing::Direct { to: d, package } = o {
                            direct.push((to, d, package));
                        }
                    }
                }
            }
            let p = if to == 1 { &p4_for_1 } else { &p4 };
            for o in m.receive_round1(4, p.clone()).unwrap() {
                if let Outgoing::Direct { to: d, package } = o {
                    direct.push((to, d, package));
                }
            }
        }
        for (evil, recipients) in [(&mut to_rest, &[2u16, 3][..]), (&mut to_one, &[1][..])] {
            let mut out = Vec::new();
            for (&from, p) in &r1 {
                out.extend(evil.receive_round1(from, p.clone()).unwrap());
            }
            for o in out {
                if let Outgoing::Direct { to, package } = o
                    && recipients.contains(&to)
                {
                    direct.push((4, to, package));
                }
            }
        }

        // Round 2.
        let mut outs = BTreeMap::new();
        for (from, to, package) in direct {
            let m = if to == 4 {
                &mut to_rest
            } else {
                honest.get_mut(&to).unwrap()
            };
            if let Some(o) = m.receive_round2(from, package).unwrap() {
                outs.insert(to, o);
            }
        }
        assert_eq!(outs.len(), 4, "every member's DKG completes");

        // What the old confirmation compared: all agree.
        assert!(outs.values().all(|o| o.group_key == outs[&1].group_key));
        assert_ne!(
            outs[&1].public_key_package, outs[&2].public_key_package,
            "but member 1's verifying shares differ from member 2's"
        );
        // And the honest members 1, 2, 3 cannot sign.
        let honest_keys: BTreeMap<_, _> =
            (1..=3).map(|i| (i, outs[&i].key_package.clone())).collect();
        let digest = alloy_primitives::B256::repeat_byte(9);
        for i in 1..=3 {
            assert!(
                crate::signing::sign_local(
                    &honest_keys,
                    &outs[&i].public_key_package,
                    digest,
                    &mut rng
                )
                .is_err(),
                "honest signing with member {i}'s public key package"
            );
        }

        // The transcript check fails at every honest member and names member 4.
        let confirms: BTreeMap<_, _> = outs.iter().map(|(i, o)| (*i, confirmation(o))).collect();
        for reference in 1..=3 {
            let err = check_confirmations(n, reference, &confirms).unwrap_err();
            assert_eq!(
                err,
                ConfirmationError::Round1Equivocation {
                    sender: 4,
                    first: 1,
                    second: 2
                }
            );
            assert_eq!(
                err.to_string(),
                "member 4 sent different round-1 packages to members 1 and 2 (equivocation)"
            );
        }
        // Member 1 alone with one other member already sees it.
        let two: BTreeMap<_, _> = [(1, confirms[&1].clone()), (3, confirms[&3].clone())].into();
        assert!(matches!(
            check_confirmations(n, 1, &two),
            Err(ConfirmationError::Round1Equivocation {
                sender: 4,
                first: 1,
                second: 3
            })
        ));
    }

    #[test]
    fn malformed_or_mismatched_confirmations_name_the_member() {
        let mut rng = ChaCha20Rng::seed_from_u64(22);
        let out = run_local(3, 4, &mut rng).unwrap();
        let good: BTreeMap<_, _> = out.iter().map(|(i, o)| (*i, confirmation(o))).collect();
        let with = |m: u16, f: &dyn Fn(&mut Confirmation)| {
            let mut c = good.clone();
            f(c.get_mut(&m).unwrap());
            c
        };
        let short = with(2, &|c| {
            c.transcript.round1.pop();
        });
        assert!(matches!(
            check_confirmations(4, 1, &short),
            Err(ConfirmationError::Malformed { member: 2, .. })
        ));
        // A hash list that does not match its own digest.
        let inconsistent = with(3, &|c| c.transcript.round1[0] = [7; 32]);
        assert!(matches!(
            check_confirmations(4, 1, &inconsistent),
            Err(ConfirmationError::Malformed { member: 3, .. })
        ));
        // A consistent but different hash for member 2's package, reported by member 3.
        let lied = with(3, &|c| {
            c.transcript.round1[1] = [7; 32];
            c.transcript.round1_digest = round1_digest(&c.transcript.round1);
        });
        assert_eq!(
            check_confirmations(4, 1, &lied),
            Err(ConfirmationError::Round1Equivocation {
                sender: 2,
                first: 1,
                second: 3
            })
        );
        let key = with(4, &|c| c.group_key = vec![2; 33]);
        assert!(matches!(
            check_confirmations(4, 1, &key),
            Err(ConfirmationError::GroupKeyMismatch {
                member: 4,
                reference: 1,
                ..
            })
        ));
        let shares = with(2, &|c| c.transcript.verifying_shares_digest = [1; 32]);
        assert_eq!(
            check_confirmations(4, 3, &shares),
            Err(ConfirmationError::VerifyingSharesMismatch {
                member: 2,
                reference: 3
            })
        );
        let mut stranger = good.clone();
        stranger.insert(5, good[&1].clone());
        assert_eq!(
            check_confirmations(4, 1, &stranger),
            Err(ConfirmationError::UnknownMember { member: 5 })
        );
    }

    #[test]
    fn invalid_secret_share_names_the_sender() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let n = 3;
        let mut ms = BTreeMap::new();
        let mut r1 = Vec::new();
        for i in 1..=n {
            let (m, Outgoing::Broadcast(p)) = Dkg::start(i, 2, n, &mut rng).unwrap() else {
                panic!()
            };
            ms.insert(i, m);
            r1.push((i, p));
        }
        let mut direct = Vec::new();
        for (from, p) in &r1 {
            for (to, m) in ms.iter_mut() {
                if to != from {
                    for o in m.receive_round1(*from, p.clone()).unwrap() {
                        if let Outgoing::Direct { to: d, package } = o {
                            direct.push((*to, d, package));
                        }
                    }
                }
            }
        }
        // Member 1 receives member 3's share intended for member 2, labelled as from 3.
        let wrong = direct
            .iter()
            .find(|(f, t, _)| *f == 3 && *t == 2)
            .unwrap()
            .2
            .clone();
        let m1 = ms.get_mut(&1).unwrap();
        let good2 = direct
            .iter()
            .find(|(f, t, _)| *f == 2 && *t == 1)
            .unwrap()
            .2
            .clone();
        assert!(m1.receive_round2(2, good2).unwrap().is_none());
        assert_eq!(
            m1.receive_round2(3, wrong).unwrap_err(),
            DkgError::InvalidSecretShare { culprit: Some(3) }
        );
    }
}
