//! Admission of gossiped envelopes: size, decoding, member and signature
//! ([`crate::envelope`]), then the windows, then — only then — state, maps and the WAL.
//!
//! Windows (applied before anything is stored or written):
//! - height: the current height or the next one (what the machine itself buffers);
//! - round: at most `Params::max_round_ahead` above the current round (above 0 for the
//!   next height);
//! - proposer: a proposal must come from the round's proposer;
//! - duplicates: a vote or proposal already held is ignored without a WAL write; a
//!   conflicting vote (evidence, and counted by the machine toward its own value) is kept
//!   only for a value in play — nil, a value proposed in that round, or one another member
//!   voted for in that round and step — at most [`super::MAX_CONFLICTING_VOTES`] per
//!   (height, round, step, voter). An equivocator's made-up values are ignored, so they cannot
//!   crowd out the vote that completes a real quorum.

use super::{Driver, Verdict};
use crate::storage::Storage;
use crate::types::Member;
use crate::wire::{proposal_from_wire, step_of, vote_from_wire};
use sigil_consensus::{Height, Input, Round, Value};
use sigil_proto as pb;

impl<S: Storage> Driver<S> {
    /// Checks and applies one gossiped envelope.
    pub(super) fn on_gossip(&mut self, data: &[u8]) -> Verdict {
        let (env, from, body) = match self.committee.open_bytes(data) {
            Ok(x) => x,
            Err(e) => return Verdict::Reject(e.reason()),
        };
        if from == self.cfg.me {
            return Verdict::Ignore;
        }
        let Some(kind) = body.kind else {
            return Verdict::Reject("empty body");
        };
        match kind {
            pb::body::Kind::Proposal(p) => self.admit_proposal(from, &p, env),
            pb::body::Kind::Vote(v) => self.admit_vote(from, &v, env),
            pb::body::Kind::Cursors(c) => {
                self.app.on_cursors(from, &c);
                self.wake = true;
                Verdict::Accept
            }
            pb::body::Kind::Commitments(c) => {
                self.app.on_commitments(from, &c);
                self.wake = true;
                Verdict::Accept
            }
            pb::body::Kind::Share(s) => {
                let effects = self.app.on_share(from, &s, self.now);
                self.app_effects(effects);
                Verdict::Accept
            }
            pb::body::Kind::SignRequest(r) => {
                let effects = self.app.on_sign_request(from, &r, self.now);
                self.app_effects(effects);
                Verdict::Accept
            }
            pb::body::Kind::Attestation(a) => self.on_attestation(&a),
            pb::body::Kind::Heartbeat(hb) => {
                self.peer_heights
                    .insert(from, (hb.height, hb.decided_height, hb.attested_height));
                self.app.on_paused_announced(from, &hb.paused_chains);
                self.maybe_sync();
                Verdict::Accept
            }
            _ => Verdict::Reject("unexpected kind"),
        }
    }

    /// The height and round windows. `Err(Verdict::Ignore)` for stale messages.
    fn window(&self, height: Height, round: Round) -> Result<(), Verdict> {
        let h = self.cs.height();
        if height < h {
            return Err(Verdict::Ignore);
        }
        if height > h.saturating_add(1) {
            return Err(Verdict::Reject("height window"));
        }
        let base = if height == h { self.cs.round() } else { 0 };
        if round > base.saturating_add(self.cfg.consensus.max_round_ahead) {
            return Err(Verdict::Reject("round window"));
        }
        Ok(())
    }

    fn note_peer_height(&mut self, from: Member, height: Height) {
        if height > self.cs.height() {
            let e = self.peer_heights.entry(from).or_insert((0, 0, 0));
            e.0 = e.0.max(height);
        }
    }

    fn admit_proposal(&mut self, from: Member, p: &pb::Proposal, env: pb::Envelope) -> Verdict {
        if let Err(v) = self.window(p.height, p.round) {
            return v;
        }
        let prop = match proposal_from_wire(from, p) {
            Ok(x) => x,
            Err(e) => return Verdict::Reject(e.reason()),
        };
        if prop.value.0.height != prop.height {
            return Verdict::Reject("block height");
        }
        if *self.cs.validators().proposer(prop.height, prop.round) != from {
            return Verdict::Reject("not the round's proposer");
        }
        let id = prop.value.id();
        if self
            .proposals
            .get(&(prop.height, prop.round))
            .is_some_and(|l| l.iter().any(|(i, _)| *i == id))
        {
            return Verdict::Ignore;
        }
        if !self.remember_proposal(&prop, &env) {
            return Verdict::Reject("proposal flood");
        }
        self.note_peer_height(from, prop.height);
        let height = prop.height;
        let entry = pb::WalEntry {
            kind: Some(pb::wal_entry::Kind::Proposal(env)),
        };
        self.input(Input::Proposal(prop), entry, height, None);
        Verdict::Accept
    }

    fn admit_vote(&mut self, from: Member, v: &pb::Vote, env: pb::Envelope) -> Verdict {
        if let Err(verdict) = self.window(v.height, v.round) {
            return verdict;
        }
        let vote = match vote_from_wire(from, v) {
            Ok(x) => x,
            Err(e) => return Verdict::Reject(e.reason()),
        };
        let key = (vote.height, vote.round, step_of(vote.kind), from);
        if let Some((first, others)) = self.votes.get(&key) {
            if first.body == env.body || others.iter().any(|o| o.body == env.body) {
                return Verdict::Ignore;
            }
            if others.len() >= super::MAX_CONFLICTING_VOTES || !self.in_play(key, &v.value_id) {
                return Verdict::Ignore;
            }
        }
        match self.votes.get_mut(&key) {
            Some((_, others)) => others.push(env.clone()),
            None => {
                self.votes.insert(key, (env.clone(), Vec::new()));
            }
        }
        self.note_peer_height(from, vote.height);
        let height = vote.height;
        let entry = pb::WalEntry {
            kind: Some(pb::wal_entry::Kind::Vote(env.clone())),
        };
        self.input(Input::Vote(vote), entry, height, Some(&env));
        Verdict::Accept
    }

    /// Whether `value` (a vote's value id; empty = nil) is in play at `key`'s (height,
    /// round, step): nil, a value proposed in that round, or one another voter voted for.
    fn in_play(&self, key: super::VoteKey, value: &[u8]) -> bool {
        let (h, r, step, voter) = key;
        if value.is_empty() {
            return true;
        }
        if self
            .proposals
            .get(&(h, r))
            .is_some_and(|l| l.iter().any(|(id, _)| id.as_slice() == value))
        {
            return true;
        }
        self.votes
            .range((h, r, step, 0)..=(h, r, step, Member::MAX))
            .filter(|((.., m), _)| *m != voter)
            .any(|(_, (first, others))| {
                std::iter::once(first)
                    .chain(others)
                    .any(|e| super::vote_value(e).as_deref() == Some(value))
            })
    }

    /// A finished group signature: adopted by the live signing session, or — for a stored
    /// block without one (e.g. decided before a restart) — verified against the stored
    /// block's digest and stored.
    fn on_attestation(&mut self, a: &pb::Attestation) -> Verdict {
        if self.app.has_session(a.height) {
            let effects = self.app.on_attestation(a);
            self.app_effects(effects);
            return Verdict::Accept;
        }
        if a.height > self.decided || !self.unattested.contains(&a.height) {
            return Verdict::Ignore;
        }
        match self.storage.block(a.height) {
            Ok(Some(cb)) if cb.attestation.is_none() => {
                if self.attestation_verifies_stored(a, &cb) {
                    self.store_attestation(a.clone());
                    Verdict::Accept
                } else {
                    Verdict::Reject("attestation does not verify")
                }
            }
            Ok(_) => Verdict::Ignore,
            Err(e) => {
                self.event(super::Event::Storage(e));
                Verdict::Ignore
            }
        }
    }
}
