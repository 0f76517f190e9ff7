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
//! After the key commit (committee epochs, step four), the epoch's last heights each carry
//! one [`pb::Block::handover`]: the outgoing committee signs, instead of a batch digest, the
//! `KeyRotation` digest of one destination inbox (contracts/V2.md §5), in the order of the
//! rotation's inboxes, and takes no more messages. Once the last of them is decided
//! ([`App::epoch_end`]) and attested, the epoch is over: the host builds the next epoch's
//! driver from the same storage, which continues at the next height with the carried
//! gateway nonces ([`pb::Block::carry`] on the key-commit block).
//!
//! Not yet built: the host's DKG of the incoming committee that produces the confirmations
//! (ARCHITECTURE.md, "Committee epochs").

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
        let Some((_, r)) = self.live_rotation(self.height) else {
            return Err("no rotation is decided (and not expired) in this epoch".into());
        };
        if let Some((h, _)) = &self.decided_key {
            return Err(format!("a key commit was already decided at height {h}"));
        }
        check_key_commit(&kc, r)?;
        self.offered_key = Some(kc);
        Ok(())
    }

    /// The key commit offered for proposal, if any (decided or not).
    pub fn offered_key_commit(&self) -> Option<&pb::KeyCommit> {
        self.offered_key.as_ref()
    }

    /// The key commit decided in this epoch and the height that decided it, if any.
    pub fn decided_key_commit(&self) -> Option<(Height, &pb::KeyCommit)> {
        self.decided_key.as_ref().map(|(h, k)| (*h, k))
    }

    /// The offered key commit while it is still to be decided.
    pub(super) fn key_commit_to_propose(&self, height: Height) -> Option<&pb::KeyCommit> {
        self.offered_key
            .as_ref()
            .filter(|_| self.decided_key.is_none() && self.live_rotation(height).is_some())
    }

    /// The key-commit part of `valid(v)`: none, or one that passes [`check_key_commit`]
    /// against the rotation decided at a lower height, when none is decided yet.
    pub(super) fn check_block_key_commit(&self, b: &pb::Block) -> Result<(), String> {
        let Some(kc) = &b.key_commit else {
            return Ok(());
        };
        let Some((_, r)) = self.live_rotation(b.height) else {
            return Err(
                "a key commit but no rotation is decided (and not expired) in this epoch".into(),
            );
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

impl App {
    /// Per watched source chain (ascending chain id), the first gateway nonce not decided
    /// once `ranges` are applied: what a key-commit block carries over ([`pb::Block::carry`]).
    pub(super) fn carry_after(&self, ranges: &[pb::Range]) -> Vec<pb::ChainNonce> {
        let mut chains: Vec<u64> = self.p.chains.iter().map(|(c, _)| *c).collect();
        chains.sort_unstable();
        chains.dedup();
        chains
            .into_iter()
            .map(|c| {
                let next = self.next_nonce.get(&c).copied().unwrap_or(0);
                let to = ranges
                    .iter()
                    .filter(|r| r.chain_id == c)
                    .map(|r| r.to_nonce)
                    .max()
                    .unwrap_or(0);
                pb::ChainNonce {
                    chain_id: c,
                    next_nonce: next.max(to),
                }
            })
            .collect()
    }

    /// The inbox whose key rotation the next height signs: after the key commit, the
    /// rotation's inboxes in order, one per height, until all are decided.
    pub fn handover_to_propose(&self) -> Option<&pb::Inbox> {
        self.decided_key.as_ref()?;
        let (_, r) = self.decided_rotation.as_ref()?;
        r.inboxes.get(self.decided_handovers.len())
    }

    /// The epoch's last height: the one that decided the last key-rotation block. `None`
    /// while the hand-over is not fully decided. No height after it is decided in this
    /// epoch; once it is attested the next committee takes over.
    pub fn epoch_end(&self) -> Option<Height> {
        self.decided_key.as_ref()?;
        let (_, r) = self.decided_rotation.as_ref()?;
        if r.inboxes.is_empty() || self.decided_handovers.len() < r.inboxes.len() {
            return None;
        }
        self.decided_handovers.last().copied()
    }

    /// The hand-over part of `valid(v)`. Before the key commit is decided: no handover, and
    /// `carry` is set exactly on a key-commit block, equal to [`App::carry_after`] of its
    /// ranges. After it: exactly the next inbox's handover, with no messages, rotation, key
    /// commit or carry.
    pub(super) fn check_block_handover(&self, b: &pb::Block) -> Result<(), String> {
        if self.decided_key.is_none() {
            if b.handover.is_some() {
                return Err("a key-rotation block before the key commit is decided".into());
            }
            if b.key_commit.is_some() {
                if b.carry != self.carry_after(&b.ranges) {
                    return Err("the key commit's carried nonces differ from ours".into());
                }
            } else if !b.carry.is_empty() {
                return Err("carried nonces without a key commit".into());
            }
            return Ok(());
        }
        let Some(want) = self.handover_to_propose() else {
            return Err("the epoch's hand-over is complete: no more heights".into());
        };
        let Some(got) = &b.handover else {
            return Err("after the key commit only key-rotation blocks are decided".into());
        };
        if got != want {
            return Err(format!(
                "key rotation for inbox {}:{} but the next is {}:{}",
                got.chain_id,
                alloy_primitives::hex::encode(&got.address),
                want.chain_id,
                alloy_primitives::hex::encode(&want.address)
            ));
        }
        if !b.ranges.is_empty() || b.count != 0 || b.root != B256::ZERO.as_slice() {
            return Err("a key-rotation block holds no messages".into());
        }
        if b.rotation.is_some() || b.key_commit.is_some() || !b.carry.is_empty() {
            return Err("a key-rotation block carries nothing else".into());
        }
        Ok(())
    }

    /// The digest a decided handover block is signed over and what it hands over: the
    /// inbox's `KeyRotation` digest from (this epoch, our group key) to (the rotation's
    /// epoch, the decided key) (contracts/V2.md §5). `None` for another block, or when a key
    /// is missing or malformed.
    pub(super) fn handover_digest(&self, b: &pb::Block) -> Option<(B256, pb::KeyHandover)> {
        let inbox = b.handover.as_ref()?;
        let old = self.group_key.as_ref()?;
        let (_, kc) = self.decided_key.as_ref()?;
        let new = GroupKey::from_compressed(&kc.group_key).ok()?;
        let address = Address::try_from(inbox.address.as_slice()).ok()?;
        let digest = sigil_crypto::rotation_digest(
            inbox.chain_id,
            address,
            self.p.epoch,
            old.x(),
            old.parity(),
            kc.epoch,
            new.x(),
            new.parity(),
        );
        Some((
            digest,
            pb::KeyHandover {
                inbox: Some(inbox.clone()),
                new_epoch: kc.epoch,
                new_group_key: kc.group_key.clone(),
            },
        ))
    }

    /// What the group signs for decided block `b`, and the hand-over it carries: the
    /// key-rotation digest for a handover block ([`App::handover_digest`]), otherwise
    /// `batch_digest(epoch, height, root)` (contracts/V2.md §3). `None` when the root is not
    /// 32 bytes or a handover block's keys are unknown.
    pub fn attestation_digest(&self, b: &pb::Block) -> Option<(B256, Option<pb::KeyHandover>)> {
        if b.handover.is_some() {
            return self.handover_digest(b).map(|(d, h)| (d, Some(h)));
        }
        let root = B256::try_from(b.root.as_slice()).ok()?;
        Some((sigil_crypto::batch_digest(b.epoch, b.height, root), None))
    }

    /// Records a decided key-rotation block (in inbox order, once each).
    pub(super) fn note_decided_handover(&mut self, height: Height, b: &pb::Block) {
        if b.handover.is_some()
            && b.handover.as_ref() == self.handover_to_propose()
            && self.decided_handovers.last().is_none_or(|h| *h < height)
        {
            self.decided_handovers.push(height);
        }
    }
}
