//! Restart: WAL replay through a fresh machine, and signing sessions rebuilt for stored,
//! decided-but-unattested heights.
//!
//! The machine is deterministic, so replaying the durable WAL regenerates exactly the votes
//! this member sent before the crash; they are re-recorded (same value: accepted) and
//! published again. WAL records that were appended but not synced may be lost by a crash;
//! none of them was ever acted on outside the process, because every own vote waits for
//! the sync.

use super::consensus::Context;
use super::{ATTESTATION_HORIZON, Driver, DriverError};
use crate::app::Block;
use crate::storage::Storage;
use sigil_consensus::{Height, Input, Timeout};
use sigil_proto as pb;

impl<S: Storage> Driver<S> {
    pub(super) fn restore(&mut self, height: Height) -> Result<(), DriverError> {
        self.restore_sessions()?;
        let mut entries = Vec::new();
        for h in height..height.saturating_add(2) {
            entries.extend(self.storage.wal(h)?);
        }
        if entries.is_empty() {
            return Ok(());
        }
        self.replaying = true;
        for e in entries {
            if let Some(pb::wal_entry::Kind::Certificate(cb)) = e.kind.as_ref() {
                if let Some(opened) = self.certificate_inputs(cb) {
                    self.process_certificate(opened, None);
                }
                continue;
            }
            if let Some(input) = self.wal_to_input(&e) {
                if matches!(input, Input::StartHeight(_)) {
                    self.started = true;
                }
                let outs = self.cs.process(input);
                self.outputs(outs, Context::default());
            }
        }
        self.replaying = false;
        Ok(())
    }

    /// Every stored block within [`ATTESTATION_HORIZON`] that has no attestation gets its
    /// signing session back.
    fn restore_sessions(&mut self) -> Result<(), DriverError> {
        let last = self.decided;
        let first = last.saturating_sub(ATTESTATION_HORIZON).max(1);
        for h in first..=last {
            let Some(cb) = self.storage.block(h)? else {
                continue;
            };
            if cb.attestation.is_some() {
                self.attested = self.attested.max(h);
                continue;
            }
            let block = self.stored_block(&cb);
            // A block of an earlier epoch (before the hand-over) is not this committee's.
            let Some(block) = block.filter(|b| b.epoch == self.app.params().epoch) else {
                continue;
            };
            self.unattested.insert(h);
            let effects = self.app.on_decided(h, &Block(block), None, self.now);
            self.app_effects(effects);
        }
        self.app.set_height(last.saturating_add(1));
        Ok(())
    }

    /// The consensus input a WAL record stands for (certificates are handled by the caller).
    fn wal_to_input(&mut self, e: &pb::WalEntry) -> Option<Input<crate::types::Member, Block>> {
        use pb::wal_entry::Kind;
        let input = match e.kind.as_ref()? {
            Kind::StartHeight(h) => Input::StartHeight(*h),
            Kind::Proposal(env) | Kind::Vote(env) => {
                let (from, body) = self.committee.open(env).ok()?;
                match body.kind? {
                    pb::body::Kind::Proposal(p) => {
                        let prop = crate::wire::proposal_from_wire(from, &p).ok()?;
                        self.remember_proposal(&prop, env);
                        Input::Proposal(prop)
                    }
                    pb::body::Kind::Vote(v) => {
                        let vote = crate::wire::vote_from_wire(from, &v).ok()?;
                        let key = (
                            vote.height,
                            vote.round,
                            crate::wire::step_of(vote.kind),
                            vote.voter,
                        );
                        match self.votes.get_mut(&key) {
                            None => {
                                self.votes.insert(key, (env.clone(), Vec::new()));
                            }
                            Some((first, others)) => {
                                // A conflicting vote was admitted before the crash.
                                if first.body != env.body
                                    && !others.iter().any(|o| o.body == env.body)
                                    && others.len() < super::MAX_CONFLICTING_VOTES
                                {
                                    others.push(env.clone());
                                }
                            }
                        }
                        Input::Vote(vote)
                    }
                    _ => return None,
                }
            }
            Kind::Timeout(t) => Input::Timeout(Timeout {
                kind: crate::wire::timeout_kind(t.kind)?,
                height: t.height,
                round: t.round,
            }),
            Kind::Validity(v) => {
                let id = alloy_primitives::B256::try_from(v.value_id.as_slice()).ok()?;
                self.pending_validations
                    .retain(|(b, _)| sigil_consensus::Value::id(b) != id);
                Input::Validity {
                    value: id,
                    valid: v.valid,
                }
            }
            Kind::ProposeValue(p) => {
                self.pending_request = None;
                Input::ProposeValue {
                    height: p.height,
                    round: p.round,
                    value: Block(p.block.clone()?),
                }
            }
            Kind::Certificate(_) => return None,
        };
        Some(input)
    }
}
