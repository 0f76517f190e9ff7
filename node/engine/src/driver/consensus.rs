//! Consensus plumbing: WAL-first inputs, the machine's outputs (own votes after the WAL
//! barrier, timers, value requests, validity questions, decisions, evidence), proposing and
//! validating through the application core.

use super::{Driver, Effect, Event, Topic};
use crate::app::{Block, Validity};
use crate::storage::Storage;
use crate::types::Member;
use crate::wire::{STEP_PRECOMMIT, STEP_PROPOSAL, proposal_to_wire, step_of, vote_to_wire};
use alloy_primitives::B256;
use sigil_consensus::{Decision, Height, Input, Output, Proposal, Value, Vote};
use sigil_proto as pb;

/// What the input being processed carried, for outputs that need it.
#[derive(Default)]
pub(super) struct Context<'a> {
    /// The envelope of the vote being processed (second half of equivocation evidence).
    pub env: Option<&'a pb::Envelope>,
    /// A verified attestation fetched with a catch-up certificate.
    pub attestation: Option<pb::Attestation>,
    /// Whether the input is a catch-up certificate.
    pub certificate: bool,
}

impl<S: Storage> Driver<S> {
    /// Appends `entry` to the WAL under `height`, then processes `input`. A failed append
    /// processes nothing. Returns whether the input was processed.
    pub(super) fn input(
        &mut self,
        input: Input<Member, Block>,
        entry: pb::WalEntry,
        height: Height,
        env: Option<&pb::Envelope>,
    ) -> bool {
        self.input_with(
            input,
            entry,
            height,
            Context {
                env,
                ..Context::default()
            },
        )
    }

    pub(super) fn input_with(
        &mut self,
        input: Input<Member, Block>,
        entry: pb::WalEntry,
        height: Height,
        ctx: Context<'_>,
    ) -> bool {
        self.wal_seq = self.wal_seq.saturating_add(1);
        if let Err(e) = self.storage.wal_append(height, self.wal_seq, &entry) {
            self.event(Event::Storage(e));
            return false;
        }
        let outs = self.cs.process(input);
        self.outputs(outs, ctx);
        true
    }

    /// Handles the machine's outputs. Own proposals and votes leave only after the WAL is
    /// synced and the vote is recorded per (height, round, step).
    pub(super) fn outputs(&mut self, outs: Vec<Output<Member, Block>>, mut ctx: Context<'_>) {
        if outs
            .iter()
            .any(|o| matches!(o, Output::Proposal(_) | Output::Vote(_)))
            && let Err(e) = self.storage.sync_wal()
        {
            // Not sending is safe; the votes are regenerated from the WAL after a restart.
            self.event(Event::Storage(e));
            return;
        }
        for o in outs {
            match o {
                Output::Proposal(p) => self.own_proposal(p),
                Output::Vote(v) => self.own_vote(v),
                Output::ScheduleTimeout { timeout, after_ms } => {
                    self.timer_seq = self.timer_seq.saturating_add(1);
                    self.timers
                        .insert((self.now.saturating_add(after_ms), self.timer_seq), timeout);
                }
                Output::RequestValue { height, round } => {
                    self.pending_request = Some((height, round));
                    if !self.replaying {
                        self.try_propose();
                    }
                }
                Output::Validate { value } => {
                    let deadline = self.now.saturating_add(self.cfg.observation_wait_ms);
                    // Bounded: the machine asks once per value id, and proposals are capped
                    // per round before they reach it.
                    self.pending_validations.push((value, deadline));
                    if !self.replaying {
                        self.check_validations();
                    }
                }
                Output::Decide(d) => {
                    let attestation = ctx.attestation.take();
                    self.on_decide(d, attestation, ctx.certificate);
                }
                Output::Equivocation { first, second } => {
                    self.event(Event::Equivocation {
                        voter: second.voter,
                        height: second.height,
                        round: second.round,
                    });
                    let key = (first.height, first.round, step_of(first.kind), first.voter);
                    let a = self.votes.get(&key).map(|(a, _)| a.clone());
                    if let (Some(a), Some(b)) = (a, ctx.env)
                        && let Err(e) = self.storage.put_evidence(
                            second.height,
                            second.round,
                            step_of(second.kind),
                            second.voter,
                            &a,
                            b,
                        )
                    {
                        self.event(Event::Storage(e));
                    }
                }
            }
        }
    }

    fn own_proposal(&mut self, p: Proposal<Member, Block>) {
        let id = p.value.id();
        match self
            .storage
            .record_own_vote(p.height, p.round, STEP_PROPOSAL, id.as_slice())
        {
            Ok(None) => {}
            Ok(Some(_)) => {
                return self.event(Event::RefusedSecondVote {
                    height: p.height,
                    round: p.round,
                });
            }
            Err(e) => return self.event(Event::Storage(e)),
        }
        let env = self.seal(pb::body::Kind::Proposal(proposal_to_wire(&p)));
        self.remember_proposal(&p, &env);
        self.publish(Topic::Consensus, env.clone());
        self.own_msgs.push(env);
    }

    fn own_vote(&mut self, v: Vote<Member, B256>) {
        let value = v.value.map(|b| b.to_vec()).unwrap_or_default();
        match self
            .storage
            .record_own_vote(v.height, v.round, step_of(v.kind), &value)
        {
            Ok(None) => {}
            Ok(Some(_)) => {
                return self.event(Event::RefusedSecondVote {
                    height: v.height,
                    round: v.round,
                });
            }
            Err(e) => return self.event(Event::Storage(e)),
        }
        let env = self.seal(pb::body::Kind::Vote(vote_to_wire(&v)));
        self.votes
            .entry((v.height, v.round, step_of(v.kind), self.cfg.me))
            .or_insert_with(|| (env.clone(), Vec::new()));
        self.publish(Topic::Consensus, env.clone());
        self.own_msgs.push(env);
    }

    /// Keeps a proposal envelope for certificates and catch-up answers. Returns `false` when
    /// the round already holds [`super::MAX_PROPOSALS_PER_ROUND`] other values.
    pub(super) fn remember_proposal(
        &mut self,
        p: &Proposal<Member, Block>,
        env: &pb::Envelope,
    ) -> bool {
        let list = self.proposals.entry((p.height, p.round)).or_default();
        let id = p.value.id();
        if list.iter().any(|(i, _)| *i == id) {
            return true;
        }
        if list.len() >= super::MAX_PROPOSALS_PER_ROUND {
            return false;
        }
        list.push((id, env.clone()));
        true
    }

    /// Asks the application for a value when the machine wants one (paper: `getValue()`).
    pub(super) fn try_propose(&mut self) {
        let Some((h, r)) = self.pending_request else {
            return;
        };
        if h != self.cs.height() || r != self.cs.round() {
            self.pending_request = None;
            return;
        }
        if let Some(block) = self.app.build_block(h, self.now) {
            self.pending_request = None;
            let entry = pb::WalEntry {
                kind: Some(pb::wal_entry::Kind::ProposeValue(pb::Proposal {
                    height: h,
                    round: r,
                    block: Some(block.0.clone()),
                    valid_round: -1,
                })),
            };
            self.input(
                Input::ProposeValue {
                    height: h,
                    round: r,
                    value: block,
                },
                entry,
                h,
                None,
            );
        }
    }

    /// Answers the machine's validity questions from the application's own check (paper:
    /// `valid(v)`); a value naming messages not yet observed waits until its deadline, then
    /// is answered invalid (this member prevotes nil).
    pub(super) fn check_validations(&mut self) {
        let pending = std::mem::take(&mut self.pending_validations);
        let h = self.cs.height();
        for (block, deadline) in pending {
            let answer = match self.app.validate(h, &block) {
                Validity::Valid => Some(true),
                Validity::Invalid(reason) => {
                    self.event(Event::ProposalInvalid { height: h, reason });
                    Some(false)
                }
                Validity::Pending if self.now >= deadline => {
                    self.event(Event::ProposalInvalid {
                        height: h,
                        reason: "names messages not observed in time".into(),
                    });
                    Some(false)
                }
                Validity::Pending => None,
            };
            match answer {
                Some(valid) => {
                    let id = block.id();
                    let entry = pb::WalEntry {
                        kind: Some(pb::wal_entry::Kind::Validity(pb::WalValidity {
                            value_id: id.to_vec(),
                            valid,
                        })),
                    };
                    self.input(Input::Validity { value: id, valid }, entry, h, None);
                }
                None => self.pending_validations.push((block, deadline)),
            }
        }
    }

    /// Starts the next height when a quorum observed new messages, or when f + 1 members
    /// (at least one correct) are already working on it.
    pub(super) fn maybe_start_height(&mut self) {
        if self.started {
            return;
        }
        let h = self.cs.height();
        if self.app.epoch_end().is_some_and(|end| self.decided >= end) {
            // The epoch's hand-over is decided: the next committee decides what follows.
            return;
        }
        let next = if self.decided >= h {
            h.saturating_add(1)
        } else {
            h
        };
        let ahead = self
            .peer_heights
            .values()
            .filter(|(ph, _, _)| *ph >= next)
            .count();
        if self.app.has_work() || ahead >= self.one_correct() {
            self.start_height(next);
        }
    }

    pub(super) fn start_height(&mut self, next: Height) {
        self.started = true;
        self.app.set_height(next);
        let entry = pb::WalEntry {
            kind: Some(pb::wal_entry::Kind::StartHeight(next)),
        };
        self.input(Input::StartHeight(next), entry, next, None);
    }

    /// A decision: store the block with its certificate, start signing, prune the height.
    fn on_decide(
        &mut self,
        d: Decision<Member, Block>,
        attestation: Option<pb::Attestation>,
        caught_up: bool,
    ) {
        let h = d.height;
        let id = d.value.id();
        // Message ids and the hand-over follow from the block alone; never a peer's.
        let handover = self.app.attestation_digest(&d.value.0).and_then(|(_, h)| h);
        let attestation = attestation.map(|a| pb::Attestation {
            message_ids: super::message_ids(&d.value),
            handover,
            ..a
        });
        let proposal = self
            .proposals
            .get(&(h, d.round))
            .and_then(|l| l.iter().find(|(i, _)| *i == id))
            .map(|(_, e)| e.clone());
        let precommits: Vec<pb::Envelope> = d
            .certificate
            .iter()
            .filter_map(|v| {
                // The envelope for the decided value (an equivocator's may be its second).
                self.held_vote(&(v.height, v.round, STEP_PRECOMMIT, v.voter), id.as_slice())
            })
            .collect();
        let effects = self
            .app
            .on_decided(h, &d.value, attestation.as_ref(), self.now);
        let nexts: Vec<(u64, u64)> = self
            .app
            .next_nonces()
            .iter()
            .map(|(c, n)| (*c, *n))
            .collect();
        let cb = pb::CommittedBlock {
            proposal,
            precommits,
            attestation: attestation.clone(),
        };
        // When this block decided the epoch's rotation or key commit, the epoch record is
        // stored with it.
        let changed = self.app.decided_rotation().is_some_and(|(rh, _)| rh == h)
            || self.app.decided_key_commit().is_some_and(|(kh, _)| kh == h)
            || self.app.epoch_record().handover_heights.contains(&h);
        let record = changed.then(|| self.app.epoch_record());
        let next_epoch = self.app.params().epoch.saturating_add(1);
        let record = record.as_ref().map(|r| (next_epoch, r));
        if let Err(e) = self.storage.put_block(h, &cb, &nexts, record) {
            // The machine has decided; the block will be fetched again by catch-up after a
            // restart. Count it loudly.
            self.event(Event::Storage(e));
        }
        self.decided = self.decided.max(h);
        if attestation.is_some() {
            self.attested = self.attested.max(h);
        } else {
            self.unattested.insert(h);
            self.decided_at.insert(h, self.now);
        }
        let floor = self.decided.saturating_sub(super::ATTESTATION_HORIZON);
        self.unattested.retain(|u| *u > floor);
        self.decided_at.retain(|u, _| *u > floor);
        self.out.push(Effect::Decided {
            height: h,
            round: d.round,
            block: d.value.clone(),
            caught_up,
        });
        self.proposals.retain(|(ph, _), _| *ph > h);
        self.votes.retain(|(vh, ..), _| *vh > h);
        self.own_msgs.clear();
        self.pending_request = None;
        self.pending_validations.clear();
        self.timers.retain(|_, t| t.height > h);
        self.started = false;
        self.last_progress = self.now;
        self.app_effects(effects);
        if let Some(a) = attestation {
            self.store_attestation_after_decide(a);
        }
    }

    /// An attestation that came with the certificate is already in the stored block; report
    /// it like any other.
    fn store_attestation_after_decide(&mut self, a: pb::Attestation) {
        let after_ms = Some(0);
        self.out.push(Effect::Attested {
            attestation: a,
            after_ms,
        });
    }
}
