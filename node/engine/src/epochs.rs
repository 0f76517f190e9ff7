//! Moving from one committee epoch to the next (committee epochs, step four: the switch).
//!
//! An epoch ends at the last key-rotation block of its hand-over
//! ([`crate::app::App::epoch_end`]); no height after it is decided by the outgoing
//! committee. The host then builds the next epoch's [`crate::Driver`] over the *same*
//! storage: heights continue (the new driver starts at the end + 1, with the gateway nonces
//! the key-commit block carried), so every message is in exactly one block, signed by the
//! old key or the new.
//!
//! Heights are disjoint between epochs, and every decided block names its epoch (checked by
//! `valid(v)`), so an envelope of one epoch is never decided in another even when a member
//! keeps its node key (and perhaps its index) across the boundary.
//!
//! Three pure functions serve the hosts (node and simulator alike):
//! - [`resume_epoch`]: at start, which epoch a member's storage is in;
//! - [`verify_handover`]: a joining member, which has no earlier block, checks the
//!   hand-over blocks a peer served (certificates against the outgoing committee, the key
//!   commit against its own rotation and DKG result);
//! - [`install_handover`]: it stores them, so its next-epoch driver starts after them.

use crate::app::check_key_commit;
use crate::envelope::Committee;
use crate::storage::{Storage, StorageError};
use sigil_consensus::{Height, Value as _, VoteKind};
use sigil_proto as pb;
use std::collections::BTreeSet;

/// Where a member's storage stands: its current epoch and, unless that is the configured
/// (genesis) epoch, the record that started it (the outgoing committee's decided rotation,
/// key commit and hand-over heights).
#[derive(Debug, Clone, PartialEq)]
pub struct EpochStart {
    /// The current key epoch.
    pub epoch: u64,
    /// The record of the hand-over into `epoch` (`None` for the configured epoch).
    pub record: Option<pb::EpochRecord>,
}

impl EpochStart {
    /// The epoch's committee as the record's rotation names it (node keys in member order,
    /// threshold); `None` for the configured epoch (the config's committee).
    pub fn rotation(&self) -> Option<&pb::Rotation> {
        self.record.as_ref()?.rotation.as_ref()
    }

    /// The epoch's 33-byte compressed group key from the record's key commit; `None` for the
    /// configured epoch.
    pub fn group_key(&self) -> Option<&[u8]> {
        Some(&self.record.as_ref()?.key_commit.as_ref()?.group_key)
    }

    /// The last height of the previous epoch (`0` for the configured epoch).
    pub fn previous_end(&self) -> Height {
        self.record.as_ref().map_or(0, record_end)
    }
}

/// The last hand-over height of a record (its last key-rotation block).
fn record_end(r: &pb::EpochRecord) -> Height {
    r.handover_heights.last().copied().unwrap_or(r.key_height)
}

/// Whether `r` is a complete hand-over: rotation and key commit decided and one key-rotation
/// height per inbox.
pub fn handover_complete(r: &pb::EpochRecord) -> bool {
    r.key_commit.is_some()
        && r.rotation.as_ref().is_some_and(|rot| {
            !rot.inboxes.is_empty() && r.handover_heights.len() == rot.inboxes.len()
        })
}

/// The epoch a member's storage is in, starting from the configured epoch `genesis`: each
/// stored record of epoch e + 1 whose hand-over is complete and whose last height is stored
/// *and attested* (the same moment the running engine switches at, [`crate::Driver::epoch_over`];
/// a member stopped before its last key rotation was signed resumes the outgoing epoch and
/// helps sign it) — or that a joining member installed — moves it to e + 1 (at most 1,000
/// steps).
///
/// Errors: the storage's.
pub fn resume_epoch<S: Storage>(storage: &S, genesis: u64) -> Result<EpochStart, StorageError> {
    let last = storage.last_height()?;
    let attested = |h: Height| -> Result<bool, StorageError> {
        Ok(storage.block(h)?.is_some_and(|cb| cb.attestation.is_some()))
    };
    let mut at = EpochStart {
        epoch: genesis,
        record: None,
    };
    for _ in 0..1000 {
        let Some(next) = at.epoch.checked_add(1) else {
            break;
        };
        match storage.epoch_record(next)? {
            Some(r)
                if handover_complete(&r)
                    && record_end(&r) <= last
                    && (r.joined || attested(record_end(&r))?) =>
            {
                at = EpochStart {
                    epoch: next,
                    record: Some(r),
                };
            }
            _ => break,
        }
    }
    Ok(at)
}

/// Hand-over blocks a joining member checked ([`verify_handover`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Handover {
    /// The blocks, key commit first, with their certificates (attestations removed: the
    /// joiner cannot check them against the old group key it never held).
    pub blocks: Vec<(Height, pb::CommittedBlock)>,
    /// Per source chain, the first gateway nonce the next committee decides (the key-commit
    /// block's carry).
    pub carry: Vec<(u64, u64)>,
    /// The record to store: the rotation, the key commit and the heights.
    pub record: pb::EpochRecord,
}

impl Handover {
    /// The outgoing epoch's last height; the joiner's driver starts after it.
    pub fn end(&self) -> Height {
        record_end(&self.record)
    }
}

/// Opens a certificate (proposal + precommits) under `committee`, requiring a quorum of
/// `t` distinct precommits for the proposed block at its height and round. Returns the
/// block.
fn check_certificate(cb: &pb::CommittedBlock, committee: &Committee) -> Result<pb::Block, String> {
    let penv = cb.proposal.as_ref().ok_or("a block without its proposal")?;
    let (from, body) = committee
        .open(penv)
        .map_err(|e| format!("proposal envelope: {e}"))?;
    let Some(pb::body::Kind::Proposal(p)) = body.kind else {
        return Err("not a proposal".into());
    };
    let proposal = crate::wire::proposal_from_wire(from, &p).map_err(|e| e.to_string())?;
    let id = proposal.value.id();
    let (_, t) = sigil_crypto::keys::thresholds(committee.len());
    if cb.precommits.len() > usize::from(committee.len()) {
        return Err("more precommits than members".into());
    }
    let mut voters = BTreeSet::new();
    for e in &cb.precommits {
        let (voter, body) = committee
            .open(e)
            .map_err(|e| format!("precommit envelope: {e}"))?;
        let Some(pb::body::Kind::Vote(v)) = body.kind else {
            return Err("a precommit that is not a vote".into());
        };
        let vote = crate::wire::vote_from_wire(voter, &v).map_err(|e| e.to_string())?;
        if vote.kind != VoteKind::Precommit
            || vote.height != proposal.height
            || vote.round != proposal.round
            || vote.value != Some(id)
        {
            return Err(format!(
                "member {voter}'s vote is not a precommit for the block"
            ));
        }
        voters.insert(voter);
    }
    if voters.len() < usize::from(t) {
        return Err(format!(
            "{} distinct precommits, a quorum is {t}",
            voters.len()
        ));
    }
    Ok(proposal.value.0)
}

/// Checks the hand-over blocks a peer served to a member joining epoch `rotation.epoch`:
/// every certificate holds a quorum of precommits of the `outgoing` committee (epoch
/// `rotation.epoch − 1`); the first block carries a key commit that passes
/// [`check_key_commit`] against `rotation` (what this member's operator approved) and names
/// `group_key` (this member's own DKG result, 33 bytes) and carries the gateway nonces; the
/// blocks after it, at consecutive heights, are the key-rotation blocks for
/// `rotation.inboxes` in order.
///
/// Errors: the first block or field at fault.
pub fn verify_handover(
    served: &[pb::CommittedBlock],
    outgoing: &Committee,
    rotation: &pb::Rotation,
    group_key: &[u8],
) -> Result<Handover, String> {
    let want = rotation.inboxes.len() + 1;
    if served.len() != want {
        return Err(format!(
            "{} hand-over blocks served, the rotation needs {want}",
            served.len()
        ));
    }
    let old_epoch = rotation
        .epoch
        .checked_sub(1)
        .ok_or("a rotation to epoch 0")?;
    let mut blocks = Vec::with_capacity(want);
    let mut record = pb::EpochRecord {
        rotation: Some(rotation.clone()),
        joined: true,
        ..Default::default()
    };
    let mut carry = Vec::new();
    for (i, cb) in served.iter().enumerate() {
        let b = check_certificate(cb, outgoing).map_err(|e| format!("hand-over block {i}: {e}"))?;
        if b.epoch != old_epoch {
            return Err(format!("hand-over block {i} is of epoch {}", b.epoch));
        }
        if i == 0 {
            let kc = b
                .key_commit
                .as_ref()
                .ok_or("the first block has no key commit")?;
            check_key_commit(kc, rotation)?;
            if kc.group_key != group_key {
                return Err("the key commit names another group key than our DKG".into());
            }
            if b.carry.is_empty() {
                return Err("the key-commit block carries no gateway nonces".into());
            }
            carry = b.carry.iter().map(|c| (c.chain_id, c.next_nonce)).collect();
            record.key_commit = Some(kc.clone());
            record.key_height = b.height;
        } else {
            if b.height != record.key_height + i as u64 {
                return Err(format!("hand-over block {i} at height {}", b.height));
            }
            if b.handover.as_ref() != rotation.inboxes.get(i - 1)
                || !b.ranges.is_empty()
                || b.key_commit.is_some()
            {
                return Err(format!(
                    "hand-over block {i} is not inbox {i}'s key rotation"
                ));
            }
            record.handover_heights.push(b.height);
        }
        blocks.push((
            b.height,
            pb::CommittedBlock {
                attestation: None,
                ..cb.clone()
            },
        ));
    }
    Ok(Handover {
        blocks,
        carry,
        record,
    })
}

/// Stores checked hand-over blocks in a joining member's (empty) storage, with the carried
/// gateway nonces and the record of the epoch they hand over to, so [`resume_epoch`] finds
/// that epoch and the next driver starts after them.
///
/// Errors: the storage's.
pub fn install_handover<S: Storage>(storage: &mut S, h: &Handover) -> Result<(), StorageError> {
    let epoch = h.record.rotation.as_ref().map_or(0, |r| r.epoch);
    for (height, cb) in &h.blocks {
        storage.put_block(*height, cb, &h.carry, Some((epoch, &h.record)))?;
    }
    Ok(())
}

/// The request a joining member sends (to any outgoing member) for the hand-over into
/// `epoch`; the answer is a sync response for [`verify_handover`].
pub fn handover_request(epoch: u64) -> pb::Request {
    pb::Request {
        kind: Some(pb::request::Kind::Handover(pb::HandoverRequest { epoch })),
    }
}

/// The blocks of a sync response (what a [`handover_request`] is answered with).
///
/// Errors: over the size limit, undecodable, or not a sync response.
pub fn served_blocks(data: &[u8]) -> Result<Vec<pb::CommittedBlock>, String> {
    use prost::Message as _;
    if data.len() > sigil_proto::MAX_SYNC_RESPONSE_BYTES {
        return Err("oversized response".into());
    }
    match pb::Response::decode(data).map_err(|e| e.to_string())?.kind {
        Some(pb::response::Kind::Sync(s)) => Ok(s.blocks),
        _ => Err("not a sync response".into()),
    }
}
