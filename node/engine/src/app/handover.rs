//! The new group key (committee epochs, step three): once the rotation of this epoch is
//! decided and every incoming member has confirmed one DKG transcript, a block carries
//! [`pb::KeyCommit`] — the new key and the n' signed `DkgConfirm` envelopes — and the
//! current committee decides it.
//!
//! The key commit is self-certifying: an outgoing member checks every envelope against the
//! decided rotation's node keys ([`check_key_commit`]), so it needs no trust in the proposer
//! and the answer never changes over time (Tendermint's assumption on `valid(v)`). A
//! Byzantine incoming member can withhold its confirmation (the rotation then waits: a
//! liveness matter the operators resolve with another rotation) but cannot make the
//! committee decide a key the others did not derive. At most one key commit is decided per
//! epoch.
//!
//! A decided key commit is kept in the epoch record stored with its block
//! ([`App::epoch_record`], `Storage::put_block`) and restored by `Driver::new`.
//!
//! Not yet built: the host's DKG of the incoming committee that produces the confirmations,
//! the `KeyRotation` signatures and the switch (ARCHITECTURE.md, "Committee epochs").

use super::*;
use crate::envelope::Committee;
use sigil_crypto::dkg::{Confirmation, Hash, Transcript};

/// A DKG confirmation from its wire form, for a committee of `n` (group key 33 bytes,
/// digests 32 bytes, n round-1 package hashes of 32 bytes).
///
/// Errors: the field with the wrong length.
pub fn confirmation_from_wire(c: pb::DkgConfirm, n: u16) -> Result<Confirmation, String> {
    let hash = |field: &str, b: &[u8]| -> Result<Hash, String> {
        Hash::try_from(b).map_err(|_| format!("{field} is {} bytes, want 32", b.len()))
    };
    if c.group_key.len() != 33 {
        return Err(format!("group_key is {} bytes, want 33", c.group_key.len()));
    }
    if c.round1_packages.len() != usize::from(n) {
        return Err(format!(
            "{} round-1 package hashes for {n} members",
            c.round1_packages.len()
        ));
    }
    let round1 = c
        .round1_packages
        .iter()
        .map(|h| hash("round1_packages entry", h))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Confirmation {
        group_key: c.group_key,
        transcript: Transcript {
            round1,
            round1_digest: hash("round1_digest", &c.round1_digest)?,
            verifying_shares_digest: hash("verifying_shares_digest", &c.verifying_shares_digest)?,
        },
    })
}

/// The incoming committee of `r` as an envelope verifier (node keys in member order).
///
/// Errors: a member key that is not a compressed secp256k1 point.
fn incoming(r: &pb::Rotation) -> Result<Committee, String> {
    let keys = r
        .members
        .iter()
        .enumerate()
        .map(|(i, k)| {
            k256::ecdsa::VerifyingKey::from_sec1_bytes(k)
                .map_err(|_| format!("rotation member {} is not a key", i + 1))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Committee::new(keys))
}

/// Checks a key commit against the decided rotation `r`: the same epoch; a group key that
/// the inbox can verify under (33-byte compressed point with x < n,
/// [`sigil_crypto::GroupKey::from_compressed`]); exactly one envelope per incoming member,
/// in member order, each signed by that member's node key and holding a `DkgConfirm` of
/// this epoch; and all n' confirmations agreeing on the group key, the round-1 transcript
/// and the verifying shares ([`sigil_crypto::dkg::check_confirmations`]). Returns the key.
///
/// Errors: a message naming the first member or field at fault.
pub fn check_key_commit(
    kc: &pb::KeyCommit,
    r: &pb::Rotation,
) -> Result<sigil_crypto::GroupKey, String> {
    if kc.epoch != r.epoch {
        return Err(format!(
            "key commit for epoch {} but the decided rotation is to epoch {}",
            kc.epoch, r.epoch
        ));
    }
    let key = sigil_crypto::GroupKey::from_compressed(&kc.group_key)
        .map_err(|e| format!("key commit group key: {e}"))?;
    let committee = incoming(r)?;
    let n = committee.len();
    if kc.confirmations.len() != usize::from(n) {
        return Err(format!(
            "key commit holds {} confirmations, the incoming committee has {n} members",
            kc.confirmations.len()
        ));
    }
    let mut confirms = BTreeMap::new();
    for (i, env) in kc.confirmations.iter().enumerate() {
        let want = u16::try_from(i + 1).map_err(|_| "too many confirmations".to_string())?;
        let (member, body) = committee
            .open(env)
            .map_err(|e| format!("confirmation {want}: {e}"))?;
        if member != want {
            return Err(format!(
                "confirmation {want} is from member {member} (member order required)"
            ));
        }
        let Some(pb::body::Kind::DkgConfirm(c)) = body.kind else {
            return Err(format!("confirmation {want} is not a DKG confirmation"));
        };
        if c.epoch != r.epoch {
            return Err(format!(
                "member {member} confirmed epoch {}, not {}",
                c.epoch, r.epoch
            ));
        }
        if c.group_key != kc.group_key {
            return Err(format!("member {member} confirmed another group key"));
        }
        let c = confirmation_from_wire(c, n).map_err(|e| format!("member {member}: {e}"))?;
        confirms.insert(member, c);
    }
    sigil_crypto::dkg::check_confirmations(n, 1, &confirms).map_err(|e| e.to_string())?;
    let first = &confirms[&1].transcript;
    if confirms.values().any(|c| {
        c.transcript.round1_digest != first.round1_digest
            || c.transcript.verifying_shares_digest != first.verifying_shares_digest
    }) {
        return Err("the incoming members' transcripts disagree".into());
    }
    Ok(key)
}

impl App {
    /// Hands the engine a key commit to propose (the host's DKG of the incoming committee
    /// gathered every confirmation). Kept only if it passes [`check_key_commit`] against the
    /// decided rotation and none is decided yet.
    ///
    /// Errors: no rotation decided in this epoch, a key commit already decided, or the check.
    pub fn offer_key_commit(&mut self, kc: pb::KeyCommit) -> Result<(), String> {
        let Some((_, r)) = &self.decided_rotation else {
            return Err("no rotation is decided in this epoch".into());
        };
        if let Some((h, _)) = &self.decided_key {
            return Err(format!("a key commit was already decided at height {h}"));
        }
        check_key_commit(&kc, r)?;
        self.offered_key = Some(kc);
        Ok(())
    }

    /// The key commit decided in this epoch and the height that decided it, if any.
    pub fn decided_key_commit(&self) -> Option<(Height, &pb::KeyCommit)> {
        self.decided_key.as_ref().map(|(h, k)| (*h, k))
    }

    /// The offered key commit while it is still to be decided.
    pub(super) fn key_commit_to_propose(&self) -> Option<&pb::KeyCommit> {
        self.offered_key
            .as_ref()
            .filter(|_| self.decided_key.is_none() && self.decided_rotation.is_some())
    }

    /// The key-commit part of `valid(v)`: none, or one that passes [`check_key_commit`]
    /// against the rotation decided at a lower height, when none is decided yet.
    pub(super) fn check_block_key_commit(&self, b: &pb::Block) -> Result<(), String> {
        let Some(kc) = &b.key_commit else {
            return Ok(());
        };
        let Some((_, r)) = &self.decided_rotation else {
            return Err("a key commit but no rotation is decided in this epoch".into());
        };
        if b.rotation.is_some() {
            return Err("a rotation and a key commit in one block".into());
        }
        if let Some((h, _)) = &self.decided_key {
            return Err(format!("a key commit was already decided at height {h}"));
        }
        check_key_commit(kc, r).map(|_| ())
    }

    /// Records the key commit a decided block carries (first one per epoch).
    pub(super) fn note_decided_key_commit(&mut self, height: Height, b: &pb::Block) {
        if let Some(kc) = &b.key_commit
            && self.decided_key.is_none()
        {
            self.decided_key = Some((height, kc.clone()));
        }
    }
}
