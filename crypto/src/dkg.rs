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
    /// A share refresh's round-1 package does not have t - 1 coefficient commitments.
    #[error("member {from} sent a refresh package with {got} coefficient commitments, need {want}")]
    MalformedRefreshPackage {
        /// Sender index.
        from: MemberIndex,
        /// Commitments received.
        got: usize,
        /// t - 1.
        want: usize,
    },
    /// A share refresh produced another group key (cannot happen with frost's refresh; checked
    /// so a refresh can never silently change the key the inboxes hold).
    #[error("the share refresh changed the group key; the old share is kept")]
    RefreshChangedKey,
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

/// What a proactive share refresh starts from: this member's key package and the
/// committee's public key package (their group key is kept).
struct Refresh {
    key_package: KeyPackage,
    public_key_package: PublicKeyPackage,
}

/// One member's DKG state machine (see module docs): a new key ([`Dkg::start`]) or a
/// proactive refresh of the shares of an existing one ([`Dkg::start_refresh`]).
pub struct Dkg {
    me: MemberIndex,
    n: u16,
    t: u16,
    refresh: Option<Box<Refresh>>,
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
            t,
            refresh: None,
            phase: Phase::Round1(secret),
            own_round1: package.clone(),
            round1: BTreeMap::new(),
            round2: BTreeMap::new(),
        };
        Ok((dkg, Outgoing::Broadcast(package)))
    }

    /// Starts a proactive share refresh (frost `keys::refresh`, the DKG flavour) for member
    /// `me` holding `key_package` of the committee whose public keys are
    /// `public_key_package`: the same two rounds and confirmations as a DKG, every one of
    /// the n members taking part; the output has new shares of the *same* group key, so no
    /// inbox changes. Old and new shares do not mix: a share that leaked before the refresh
    /// is useless once the members erase their old shares. Threshold and size stay.
    ///
    /// Errors: [`DkgError::Key`] when `me` is outside `1..=n` or `key_package` is not
    /// member `me`'s; [`DkgError::Frost`] for bad parameters.
    pub fn start_refresh<R: RngCore + CryptoRng>(
        me: MemberIndex,
        key_package: KeyPackage,
        public_key_package: PublicKeyPackage,
        rng: &mut R,
    ) -> Result<(Self, Outgoing), DkgError> {
        let n = u16::try_from(public_key_package.verifying_shares().len())
            .map_err(|_| DkgError::Frost(frost::Error::IncorrectNumberOfShares))?;
        let t = *key_package.min_signers();
        if me == 0 || me > n {
            return Err(KeyError::InvalidMember { index: me, n }.into());
        }
        if *key_package.identifier() != identifier(me)? {
            return Err(KeyError::InvalidMember { index: me, n }.into());
        }
        let (secret, package) =
            frost::keys::refresh::refresh_dkg_part1(identifier(me)?, n, t, &mut *rng)
                .map_err(DkgError::Frost)?;
        let dkg = Self {
            me,
            n,
            t,
            refresh: Some(Box::new(Refresh {
                key_package,
                public_key_package,
            })),
            phase: Phase::Round1(secret),
            own_round1: package.clone(),
            round1: BTreeMap::new(),
            round2: BTreeMap::new(),
        };
        Ok((dkg, Outgoing::Broadcast(package)))
    }

    /// Whether this is a share refresh (same group key) rather than a new key.
    pub fn is_refresh(&self) -> bool {
        self.refresh.is_some()
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
        // A refresh package commits to the t - 1 non-constant coefficients only (its
        // constant term is zero by construction); refuse any other length, naming the sender.
        let want = usize::from(self.t).saturating_sub(1);
        let got = package.commitment().serialize().map_or(0, |c| c.len());
        if self.refresh.is_some() && got != want {
            return Err(DkgError::MalformedRefreshPackage { from, got, want });
        }
        self.round1.insert(from, package);
        if self.round1.len() < usize::from(self.n) - 1 {
            return Ok(Vec::new());
        }
        let Phase::Round1(secret) = std::mem::replace(&mut self.phase, Phase::Done) else {
            return Err(DkgError::Finished);
        };
        let by_id = self.round1_by_identifier()?;
        let part2 = if self.refresh.is_some() {
            frost::keys::refresh::refresh_dkg_part2(secret.clone(), &by_id)
        } else {
            frost::keys::dkg::part2(secret.clone(), &by_id)
        };
        match part2 {
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
        let result = match &self.refresh {
            Some(old) => frost::keys::refresh::refresh_dkg_shares(
                secret,
                &r1,
                &r2,
                old.public_key_package.clone(),
                old.key_package.clone(),
            ),
            None => frost::keys::dkg::part3(secret, &r1, &r2),
        };
        let (key_package, public_key_package) = match result {
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
        if let Some(old) = &self.refresh
            && public_key_package.verifying_key() != old.public_key_package.verifying_key()
        {
            self.phase = Phase::Done;
            return Err(DkgError::RefreshChangedKey);
        }
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
        match exchange(machines, broadcasts) {
            Err(DkgError::Key(KeyError::GroupKeyOutOfRange { .. })) => continue,
            other => return other,
        }
    }
}

/// Runs a proactive share refresh ([`Dkg::start_refresh`]) among in-process members, each
/// starting from its `(key package, public key package)`; returns each member's refreshed
/// output by index (tests and tools).
///
/// Errors: any [`DkgError`] a participant raises.
pub fn refresh_local<R: RngCore + CryptoRng>(
    shares: &BTreeMap<MemberIndex, (KeyPackage, PublicKeyPackage)>,
    rng: &mut R,
) -> Result<BTreeMap<MemberIndex, DkgOutput>, DkgError> {
    let mut machines = BTreeMap::new();
    let mut broadcasts = Vec::new();
    for (i, (key, public)) in shares {
        let (m, out) = Dkg::start_refresh(*i, key.clone(), public.clone(), rng)?;
        machines.insert(*i, m);
        if let Outgoing::Broadcast(p) = out {
            broadcasts.push((*i, p));
        }
    }
    exchange(machines, broadcasts)
}

/// Delivers every round-1 broadcast and then every round-2 package; the outputs by index.
fn exchange(
    mut machines: BTreeMap<MemberIndex, Dkg>,
    broadcasts: Vec<(MemberIndex, round1::Package)>,
) -> Result<BTreeMap<MemberIndex, DkgOutput>, DkgError> {
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
    for (from, to, package) in directs {
        let m = machines
            .get_mut(&to)
            .ok_or(DkgError::UnknownParticipant { from: to })?;
        if let Some(out) = m.receive_round2(from, package)? {
            outputs.insert(to, out);
        }
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests;
