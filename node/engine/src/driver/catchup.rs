//! Catch-up: serving and fetching decided blocks with their commit certificates and
//! attestations.
//!
//! A fetched block at the next height is decided only if the consensus machine accepts its
//! commit certificate (the round's proposer signed the proposal, and precommits for its id
//! from distinct members hold more than 2/3 of the power, each signature checked here).
//! Nothing else about the fetched block is believed: it never becomes "valid" for later
//! rounds, and a certificate the machine refuses decides nothing. A fetched attestation is
//! kept only if its FROST signature verifies over our own digest of the block. Requests go
//! out only when f + 1 members claim to be ahead (one of them is correct), at most one at a
//! time.

use super::consensus::Context;
use super::{Driver, Event, SYNC_BATCH};
use crate::app::Block;
use crate::storage::Storage;
use crate::types::Member;
use alloy_primitives::B256;
use prost::Message as _;
use sigil_consensus::{Input, Proposal, Vote};
use sigil_proto as pb;

/// Why a catch-up block was refused (counted as a rejection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SyncError {
    Reason(&'static str),
}

type Certificate = (Proposal<Member, Block>, Vec<Vote<Member, B256>>);

/// A certificate whose envelopes opened: the machine's input and the envelopes to keep if
/// it decides.
pub(super) struct Opened {
    certificate: Certificate,
    proposal_env: pb::Envelope,
    votes: Vec<(Vote<Member, B256>, pb::Envelope)>,
}

impl<S: Storage> Driver<S> {
    /// Sends a catch-up request when f + 1 members (at least one correct) claim decided
    /// heights above ours, to each of them in turn.
    pub(super) fn maybe_sync(&mut self) {
        if self.sync_inflight.is_some() {
            return;
        }
        let decided = self.decided;
        let ahead: Vec<Member> = self
            .peer_heights
            .iter()
            .filter(|(_, (_, d, _))| *d > decided)
            .map(|(m, _)| *m)
            .collect();
        if ahead.len() < self.one_correct() {
            return;
        }
        // One height behind while we are still progressing: normal gossip will do.
        let gap_one = ahead.iter().all(|m| {
            self.peer_heights
                .get(m)
                .is_some_and(|(_, d, _)| *d <= decided.saturating_add(1))
        });
        if gap_one && self.now.saturating_sub(self.last_progress) < self.cfg.stall_ms {
            return;
        }
        // Rotate among the members ahead, so a liar that heartbeats often is not the only
        // one ever asked.
        let to = ahead[(self.sync_rotation as usize) % ahead.len()];
        self.send_sync(to, decided.saturating_add(1), SYNC_BATCH);
    }

    fn send_sync(&mut self, to: Member, from_height: u64, max_blocks: u32) {
        self.sync_inflight = Some(self.now);
        self.sync_peer = Some(to);
        self.sync_rotation = self.sync_rotation.wrapping_add(1);
        self.event(Event::SyncRequested {
            from_height,
            member: to,
        });
        self.out.push(super::Effect::Send {
            to,
            request: pb::Request {
                kind: Some(pb::request::Kind::Sync(pb::SyncRequest {
                    from_height,
                    max_blocks,
                })),
            },
        });
    }

    /// Decided heights without attestation, older than two share timeouts: ask a member
    /// whose heartbeat says it attested them (its answer is verified, so one is enough).
    pub(super) fn fetch_missing_attestations(&mut self) {
        // At most one fetch per sync timeout: a peer's attested height is its highest, not
        // proof that it holds every lower one, so answers may come back empty.
        if self.sync_inflight.is_some() || self.now < self.next_fetch_ms {
            return;
        }
        let wait = self.app.params().share_timeout_ms.saturating_mul(2);
        let Some(h) = self.unattested.iter().copied().find(|h| {
            self.decided_at
                .get(h)
                .is_none_or(|t| self.now.saturating_sub(*t) >= wait)
        }) else {
            return;
        };
        let candidates: Vec<Member> = self
            .peer_heights
            .iter()
            .filter(|(_, (_, _, att))| *att >= h)
            .map(|(m, _)| *m)
            .collect();
        if candidates.is_empty() {
            return;
        }
        let to = candidates[(self.sync_rotation as usize) % candidates.len()];
        self.next_fetch_ms = self.now.saturating_add(self.cfg.sync_timeout_ms);
        self.send_sync(to, h, 8);
    }

    /// Answers a request from member `from` with stored blocks (bounded by count and size).
    pub(super) fn serve_request(&mut self, from: Member, data: &[u8]) -> pb::Response {
        let ack = |error: &str| pb::Response {
            kind: Some(pb::response::Kind::Ack(pb::Ack {
                ok: false,
                error: error.into(),
            })),
        };
        let Ok(req) = pb::Request::decode(data) else {
            self.event(Event::Rejected("decode"));
            return ack("malformed request");
        };
        match req.kind {
            Some(pb::request::Kind::Handover(h)) => {
                // Public, stored, certified blocks: served to any peer the transport
                // admitted (a joiner is not a member of this committee).
                return self.serve_handover(h.epoch);
            }
            Some(pb::request::Kind::KeyCommit(kc)) => {
                // Self-certifying, so accepted from any admitted peer (an incoming member).
                // Once one is held, others are refused before any signature work: every
                // valid key commit's shares are on its members' disks (they store a share
                // before confirming it), so the first is as good as any.
                if self
                    .app
                    .offered_key_commit()
                    .is_some_and(|held| *held != kc)
                {
                    return ack("a key commit is already held");
                }
                return match self.offer_key_commit(kc) {
                    Ok(()) => pb::Response {
                        kind: Some(pb::response::Kind::Ack(pb::Ack {
                            ok: true,
                            error: String::new(),
                        })),
                    },
                    Err(e) => ack(&e),
                };
            }
            _ => {}
        }
        if self.committee.key(from).is_none() {
            self.event(Event::Rejected("non-member request"));
            return ack("not a member");
        }
        let Some(pb::request::Kind::Sync(s)) = req.kind else {
            return ack("unsupported request");
        };
        let mut blocks = Vec::new();
        let mut size = 0usize;
        let end = s
            .from_height
            .saturating_add(u64::from(s.max_blocks.min(SYNC_BATCH)));
        for h in s.from_height..end.min(self.decided.saturating_add(1)) {
            match self.storage.block(h) {
                Ok(Some(b)) => {
                    size = size.saturating_add(b.encoded_len());
                    if size > sigil_proto::MAX_SYNC_RESPONSE_BYTES / 2 {
                        break;
                    }
                    blocks.push(b);
                }
                Ok(None) => break,
                Err(e) => {
                    self.event(Event::Storage(e));
                    break;
                }
            }
        }
        pb::Response {
            kind: Some(pb::response::Kind::Sync(pb::SyncResponse { blocks })),
        }
    }

    /// The stored hand-over blocks to `epoch` (key commit through the last key-rotation
    /// block), at most [`crate::app::MAX_ROTATION_INBOXES`] + 1 of them and half the sync
    /// response size limit.
    fn serve_handover(&mut self, epoch: u64) -> pb::Response {
        let mut blocks = Vec::new();
        let record = match self.storage.epoch_record(epoch) {
            Ok(r) => r,
            Err(e) => {
                self.event(Event::Storage(e));
                None
            }
        };
        if let Some(r) = record.filter(|r| r.key_commit.is_some()) {
            let last = r.handover_heights.last().copied().unwrap_or(r.key_height);
            let mut size = 0usize;
            let most = crate::app::MAX_ROTATION_INBOXES as u64 + 1;
            for h in r.key_height..=last.min(r.key_height.saturating_add(most - 1)) {
                match self.storage.block(h) {
                    Ok(Some(b)) => {
                        size = size.saturating_add(b.encoded_len());
                        if size > sigil_proto::MAX_SYNC_RESPONSE_BYTES / 2 {
                            break;
                        }
                        blocks.push(b);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.event(Event::Storage(e));
                        break;
                    }
                }
            }
        }
        pb::Response {
            kind: Some(pb::response::Kind::Sync(pb::SyncResponse { blocks })),
        }
    }

    /// Applies a catch-up answer; stops at the first block refused.
    ///
    /// Every answer is checked the same way whoever sent it (the simulator even delivers
    /// unsolicited ones, which libp2p request-response cannot); only the member asked
    /// clears the request in flight.
    pub(super) fn on_sync_response(&mut self, from: Member, data: &[u8]) {
        if self.sync_peer == Some(from) {
            self.sync_inflight = None;
            self.sync_peer = None;
        }
        if data.len() > sigil_proto::MAX_SYNC_RESPONSE_BYTES {
            return self.event(Event::Rejected("oversized sync response"));
        }
        let Ok(resp) = pb::Response::decode(data) else {
            return self.event(Event::Rejected("decode"));
        };
        let Some(pb::response::Kind::Sync(s)) = resp.kind else {
            return;
        };
        for cb in s.blocks.into_iter().take(SYNC_BATCH as usize) {
            if let Err(SyncError::Reason(reason)) = self.apply_committed(cb) {
                self.event(Event::Rejected(reason));
                return;
            }
        }
    }

    /// One fetched block: a missing attestation for a stored height, or the next height
    /// through its certificate.
    fn apply_committed(&mut self, cb: pb::CommittedBlock) -> Result<(), SyncError> {
        let r = SyncError::Reason;
        let env = cb
            .proposal
            .as_ref()
            .ok_or(r("sync block without proposal"))?;
        let (_, body) = self
            .committee
            .open(env)
            .map_err(|_| r("sync proposal signature"))?;
        let Some(pb::body::Kind::Proposal(p)) = body.kind else {
            return Err(r("sync proposal kind"));
        };
        if p.height <= self.decided {
            return self.backfill_attestation(p.height, cb.attestation.as_ref());
        }
        if p.height != self.decided.saturating_add(1) {
            return Err(r("sync block out of order"));
        }
        if self.app.epoch_end().is_some_and(|end| p.height > end) {
            // Heights after the hand-over belong to the next committee.
            return Err(r("sync block after the epoch's end"));
        }
        // Cheap bounds before any signature work: a certificate holds between a quorum and
        // n precommits.
        let (_, t) = sigil_crypto::keys::thresholds(self.committee.len());
        if cb.precommits.len() < usize::from(t)
            || cb.precommits.len() > usize::from(self.committee.len())
        {
            return Err(r("sync certificate without a quorum of precommits"));
        }
        let opened = self
            .certificate_inputs(&cb)
            .ok_or(r("sync certificate malformed"))?;
        if !self.started || self.cs.height() < p.height {
            self.start_height(p.height);
        }
        if self.decided >= p.height {
            return Ok(());
        }
        let attestation = cb
            .attestation
            .clone()
            .filter(|a| self.attestation_verifies(a, &opened.certificate.0.value));
        let entry = pb::WalEntry {
            kind: Some(pb::wal_entry::Kind::Certificate(pb::CommittedBlock {
                proposal: cb.proposal.clone(),
                precommits: cb.precommits.clone(),
                attestation: None,
            })),
        };
        self.wal_seq = self.wal_seq.saturating_add(1);
        if let Err(e) = self.storage.wal_append(p.height, self.wal_seq, &entry) {
            self.event(Event::Storage(e));
            return Err(r("sync certificate not written to the WAL"));
        }
        if !self.process_certificate(opened, attestation) {
            return Err(r("sync certificate not accepted"));
        }
        self.event(Event::CaughtUp { height: p.height });
        Ok(())
    }

    /// Opens the proposal and precommit envelopes of a certificate (signatures checked).
    /// `None` if any fails to open, has the wrong kind or another height. Stores nothing.
    pub(super) fn certificate_inputs(&self, cb: &pb::CommittedBlock) -> Option<Opened> {
        let penv = cb.proposal.as_ref()?;
        let (from, body) = self.committee.open(penv).ok()?;
        let Some(pb::body::Kind::Proposal(p)) = body.kind else {
            return None;
        };
        let proposal = crate::wire::proposal_from_wire(from, &p).ok()?;
        let mut precommits = Vec::with_capacity(cb.precommits.len());
        let mut envs = Vec::with_capacity(cb.precommits.len());
        for e in &cb.precommits {
            let (voter, body) = self.committee.open(e).ok()?;
            let Some(pb::body::Kind::Vote(v)) = body.kind else {
                return None;
            };
            let vote = crate::wire::vote_from_wire(voter, &v).ok()?;
            if vote.height != proposal.height {
                return None;
            }
            envs.push((vote.clone(), e.clone()));
            precommits.push(vote);
        }
        Some(Opened {
            certificate: (proposal, precommits),
            proposal_env: penv.clone(),
            votes: envs,
        })
    }

    /// Processes an opened certificate (already in the WAL). Its envelopes are held while
    /// the machine looks at it (a decision stores them with the block) and dropped again if
    /// it decides nothing, so a refused certificate never makes the real proposal or votes
    /// look like duplicates later. Returns whether the height was decided.
    pub(super) fn process_certificate(
        &mut self,
        opened: Opened,
        attestation: Option<pb::Attestation>,
    ) -> bool {
        let Opened {
            certificate: (proposal, precommits),
            proposal_env,
            votes,
        } = opened;
        let height = proposal.height;
        let key = (proposal.height, proposal.round);
        let id = sigil_consensus::Value::id(&proposal.value);
        let added_proposal = !self
            .proposals
            .get(&key)
            .is_some_and(|l| l.iter().any(|(i, _)| *i == id));
        if added_proposal {
            self.remember_proposal(&proposal, &proposal_env);
        }
        let mut added_votes = Vec::new();
        for (v, e) in votes {
            let k = (v.height, v.round, crate::wire::step_of(v.kind), v.voter);
            if let std::collections::btree_map::Entry::Vacant(slot) = self.votes.entry(k) {
                slot.insert((e, Vec::new()));
                added_votes.push(k);
            }
        }
        let outs = self.cs.process(Input::Certificate {
            proposal,
            precommits,
        });
        self.outputs(
            outs,
            Context {
                env: None,
                attestation,
                certificate: true,
            },
        );
        let decided = self.decided >= height;
        if !decided {
            if added_proposal && let Some(list) = self.proposals.get_mut(&key) {
                list.retain(|(i, _)| *i != id);
            }
            for k in added_votes {
                self.votes.remove(&k);
            }
        }
        decided
    }

    /// A stored block's missing attestation, from a peer: kept only if it verifies.
    fn backfill_attestation(
        &mut self,
        height: u64,
        a: Option<&pb::Attestation>,
    ) -> Result<(), SyncError> {
        let Some(a) = a else { return Ok(()) };
        if !self.unattested.contains(&height) || a.height != height {
            return Ok(());
        }
        let cb = match self.storage.block(height) {
            Ok(Some(cb)) => cb,
            Ok(None) => return Ok(()),
            Err(e) => {
                self.event(Event::Storage(e));
                return Ok(());
            }
        };
        if cb.attestation.is_some() {
            return Ok(());
        }
        if !self.attestation_verifies_stored(a, &cb) {
            return Err(SyncError::Reason("sync attestation does not verify"));
        }
        if self.app.has_session(height) {
            let effects = self.app.on_attestation(a);
            self.app_effects(effects);
        } else {
            self.store_attestation(a.clone());
        }
        Ok(())
    }

    /// Whether `a` is a valid group signature over our own digest of `block`
    /// ([`crate::app::App::attestation_digest`]: the batch digest, or a key-rotation
    /// digest; every length checked first).
    pub(super) fn attestation_verifies(&self, a: &pb::Attestation, block: &Block) -> bool {
        let Some(gk) = self.app.group_key() else {
            return false;
        };
        let Some((digest, _)) = self.app.attestation_digest(&block.0) else {
            return false;
        };
        if a.root != block.0.root || a.height != block.0.height || a.epoch != block.0.epoch {
            return false;
        }
        let Ok(sig) = frost_secp256k1::Signature::deserialize(&a.signature) else {
            return false;
        };
        sigil_crypto::signing::verify(gk, digest, &sig).is_ok()
    }

    /// [`Self::attestation_verifies`] against a stored committed block.
    pub(super) fn attestation_verifies_stored(
        &self,
        a: &pb::Attestation,
        cb: &pb::CommittedBlock,
    ) -> bool {
        let block = self.stored_block(cb);
        block.is_some_and(|b| self.attestation_verifies(a, &Block(b)))
    }
}
