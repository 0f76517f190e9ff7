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

use crate::keys::{GroupKey, KeyError, MemberIndex, identifier, member_index};
use frost::keys::dkg::{round1, round2};
use frost::keys::{KeyPackage, PublicKeyPackage};
use frost_secp256k1 as frost;
use rand_core::{CryptoRng, RngCore};
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
        Ok(Some(DkgOutput {
            key_package,
            public_key_package,
            group_key,
        }))
    }
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
