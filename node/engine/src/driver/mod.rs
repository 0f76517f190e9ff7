//! The member driver: `Driver::handle(Input, now_ms) -> Vec<Effect>`.
//!
//! One `Driver` is one committee member. It owns the consensus machine
//! ([`sigil_consensus::Consensus`]), the application core ([`crate::app::App`]) and every
//! piece of glue between them and the world: envelope admission with height/round windows
//! ([`admission`]), the WAL and its replay ([`consensus`], [`replay`]), catch-up
//! ([`catchup`]), validity plumbing and signing sessions. It reads no clock (`now_ms` is an
//! input), opens no socket and spawns nothing; storage is the synchronous [`Storage`] port.
//! The node host and the simulator drive this same type.
//!
//! Rules enforced here, each by construction of the code paths below:
//! - every consensus input is appended to the WAL before it is processed, and the WAL is
//!   synced before any own proposal or vote is even turned into a publish effect;
//! - an own proposal/vote is recorded per (height, round, step) before it is published, and
//!   a different second one is never published;
//! - the machine learns validity only from [`crate::app::App::validate`]; a catch-up block is
//!   decided only through a commit certificate the machine itself accepted;
//! - nothing a peer sends is stored, WAL-appended or buffered before its envelope signature,
//!   its height window (current or next height) and its round window
//!   (`Params::max_round_ahead`) are checked; every per-peer map is bounded.

mod admission;
mod catchup;
mod consensus;
mod io;
mod replay;

pub use io::{DriverConfig, DriverError, DriverStatus, Effect, Event, Input, Topic, Verdict};

use crate::app::{App, Block};
use crate::envelope::{Committee, seal};
use crate::storage::Storage;
use crate::types::{ChainEvent, Member};
use alloy_primitives::B256;
use k256::ecdsa::SigningKey;
use sigil_consensus::{Consensus, Height, Round, Timeout, ValidatorSet};
use sigil_proto as pb;
use std::collections::{BTreeMap, BTreeSet};

/// Distinct proposals kept per (height, round): the first plus a few equivocations, enough
/// for L36/L49 to find a decided value among a Byzantine proposer's flood.
pub const MAX_PROPOSALS_PER_ROUND: usize = 8;

/// Decided heights (behind the newest) whose missing attestation is still pursued.
pub const ATTESTATION_HORIZON: u64 = 64;

/// Most conflicting votes held per (height, round, step, voter) besides the first, each for a
/// different value in play (see `admission.rs`); within the machine's own bound
/// ([`sigil_consensus::MAX_VALUES_PER_VOTER`]).
pub const MAX_CONFLICTING_VOTES: usize = 8;

/// Most blocks asked for (and applied from) one catch-up response.
pub const SYNC_BATCH: u32 = 32;

/// Least time between two reactions to gossip (ms): a member flooding cursors makes this
/// member do a tick's proposal work at most once per gap (see `Driver::react`).
pub const REACT_GAP_MS: u64 = 5;

/// The message ids of a block, in leaf order: `message_id(chain, gateway, nonce)` for every
/// nonce of every range (32 bytes each), at most `block.count` of them. Ranges with a
/// malformed gateway contribute none.
pub fn message_ids(block: &Block) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for r in &block.0.ranges {
        let Ok(gw) = alloy_primitives::Address::try_from(r.gateway.as_slice()) else {
            continue;
        };
        for nonce in r.from_nonce..r.to_nonce {
            if out.len() >= block.0.count as usize {
                return out;
            }
            out.push(sigil_crypto::message_id(r.chain_id, gw, nonce).to_vec());
        }
    }
    out
}

/// (height, round, step, voter) of a held vote envelope.
type VoteKey = (Height, Round, u8, Member);

/// One committee member (see the module docs).
pub struct Driver<S: Storage> {
    cfg: DriverConfig,
    f: u16,
    committee: Committee,
    key: SigningKey,
    storage: S,
    cs: Consensus<Member, Block>,
    app: App,
    now: u64,
    out: Vec<Effect>,
    timers: BTreeMap<(u64, u64), Timeout>,
    timer_seq: u64,
    wal_seq: u64,
    proposals: BTreeMap<(Height, Round), Vec<(B256, pb::Envelope)>>,
    /// Votes by (height, round, step, voter): the first envelope, and a conflicting second
    /// once evidence exists.
    votes: BTreeMap<VoteKey, (pb::Envelope, Vec<pb::Envelope>)>,
    own_msgs: Vec<pb::Envelope>,
    pending_request: Option<(Height, Round)>,
    pending_validations: Vec<(Block, u64)>,
    started: bool,
    decided: Height,
    attested: Height,
    unattested: BTreeSet<Height>,
    decided_at: BTreeMap<Height, u64>,
    online: BTreeSet<Member>,
    /// Per member: (heartbeat height, decided height, attested height).
    peer_heights: BTreeMap<Member, (Height, Height, Height)>,
    sync_inflight: Option<u64>,
    /// No missing-attestation fetch before this time (ms).
    next_fetch_ms: u64,
    /// The member the request in flight went to.
    sync_peer: Option<Member>,
    /// Round-robin position among catch-up candidates.
    sync_rotation: u64,
    replaying: bool,
    /// A peer's cursors or nonce commitments were applied since the last reaction: a height
    /// or a proposal may have become possible ([`Self::react`]).
    wake: bool,
    /// When the last reaction to gossip ran (ms): at most one per [`REACT_GAP_MS`], so a
    /// member flooding cursors costs no more than a tick's work per gap.
    last_react: u64,
    last_gossip: u64,
    last_heartbeat: u64,
    last_rebroadcast: u64,
    last_progress: u64,
    heads: BTreeMap<u64, (u64, u64)>,
}

impl<S: Storage> std::fmt::Debug for Driver<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("me", &self.cfg.me)
            .field("height", &self.cs.height())
            .field("decided", &self.decided)
            .finish()
    }
}

/// The value id of a vote envelope (empty = nil), if its body is a vote.
fn vote_value(env: &pb::Envelope) -> Option<Vec<u8>> {
    use prost::Message as _;
    match pb::Body::decode(env.body.as_slice()).ok()?.kind? {
        pb::body::Kind::Vote(v) => Some(v.value_id),
        _ => None,
    }
}

impl<S: Storage> Driver<S> {
    /// Builds member `cfg.me` from its committee, node key, application core and storage,
    /// then restores it: replays the WAL of the heights after the last stored block through
    /// a fresh machine (regenerating the same votes, published again as effects) and
    /// rebuilds the signing sessions of stored, decided-but-unattested heights.
    /// Returns the driver and the effects of the restore.
    /// Errors: [`DriverError`].
    pub fn new(
        cfg: DriverConfig,
        committee: Committee,
        key: SigningKey,
        app: App,
        storage: S,
        now_ms: u64,
    ) -> Result<(Self, Vec<Effect>), DriverError> {
        let n = committee.len();
        if cfg.me == 0 || cfg.me > n {
            return Err(DriverError::NotAMember { me: cfg.me, n });
        }
        let (f, _) = sigil_crypto::keys::thresholds(n);
        let validators = ValidatorSet::equal(1..=n)?;
        let last = storage.last_height()?;
        let wal_seq = storage.last_wal_seq()?;
        let height = last.saturating_add(1);
        let cs = Consensus::new(Some(cfg.me), validators, cfg.consensus, height);
        let mut d = Self {
            cfg,
            f,
            committee,
            key,
            storage,
            cs,
            app,
            now: now_ms,
            out: Vec::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            wal_seq,
            proposals: BTreeMap::new(),
            votes: BTreeMap::new(),
            own_msgs: Vec::new(),
            pending_request: None,
            pending_validations: Vec::new(),
            started: false,
            decided: last,
            attested: 0,
            unattested: BTreeSet::new(),
            decided_at: BTreeMap::new(),
            online: BTreeSet::new(),
            peer_heights: BTreeMap::new(),
            sync_inflight: None,
            sync_peer: None,
            next_fetch_ms: 0,
            sync_rotation: 0,
            replaying: false,
            wake: false,
            last_react: 0,
            last_gossip: now_ms,
            last_heartbeat: now_ms,
            last_rebroadcast: now_ms,
            last_progress: now_ms,
            heads: BTreeMap::new(),
        };
        d.app.set_height(height);
        let next_epoch = d.app.params().epoch.saturating_add(1);
        if let Some(r) = d.storage.epoch_record(next_epoch)? {
            d.app.restore_epoch_record(r);
        }
        d.restore(height)?;
        let effects = std::mem::take(&mut d.out);
        Ok((d, effects))
    }

    /// Processes one input at time `now_ms` (ms, any monotonic origin the host keeps) and
    /// returns what the host must do, in order.
    pub fn handle(&mut self, input: Input, now_ms: u64) -> Vec<Effect> {
        self.now = self.now.max(now_ms);
        match input {
            Input::Gossip { id, data } => {
                let verdict = self.on_gossip(&data);
                let accepted = matches!(verdict, Verdict::Accept);
                if let Verdict::Reject(reason) = verdict {
                    self.event(Event::Rejected(reason));
                }
                self.out.push(Effect::Verdict { id, verdict });
                if accepted && self.wake && self.now >= self.last_react.saturating_add(REACT_GAP_MS)
                {
                    self.wake = false;
                    self.last_react = self.now;
                    self.react(false);
                }
            }
            Input::Request { id, from, data } => {
                let response = self.serve_request(from, &data);
                self.out.push(Effect::Respond { id, response });
            }
            Input::Response { from, data } => self.on_sync_response(from, &data),
            Input::RequestFailed => {
                self.sync_inflight = None;
                self.sync_peer = None;
            }
            Input::Chain(ev) => {
                let observed = self.on_chain_event(ev);
                self.react(observed);
            }
            Input::PeerUp(m) => {
                if m != self.cfg.me && self.committee.key(m).is_some() {
                    self.online.insert(m);
                }
            }
            Input::PeerDown(m) => {
                self.online.remove(&m);
            }
            Input::Tick => self.tick(),
        }
        std::mem::take(&mut self.out)
    }

    /// Progress snapshot.
    pub fn status(&self) -> DriverStatus {
        DriverStatus {
            height: self.cs.height(),
            round: self.cs.round(),
            decided: self.decided,
            attested: self.attested,
            unattested: self.unattested.iter().copied().collect(),
            online: self.online.iter().copied().collect(),
        }
    }

    /// The application core (read-only: pool, sessions, counters).
    pub fn app(&self) -> &App {
        &self.app
    }

    /// Sets what this member's operator approved as the next committee (`None` withdraws
    /// it); see `App::approve_rotation`. The host calls it at start and whenever the
    /// operator changes the approval; it takes effect from the next proposal or prevote.
    ///
    /// Errors: the rotation's shape check ([`crate::app::check_rotation`]); the previous
    /// approval is then withdrawn too, so nothing the operator did not approve is prevoted.
    pub fn approve_rotation(&mut self, r: Option<pb::Rotation>) -> Result<(), String> {
        let result = self.app.approve_rotation(r);
        if result.is_err() {
            let _ = self.app.approve_rotation(None);
        }
        result
    }

    /// The operator's emergency stop for source chain `chain` (EVM chain id): while paused
    /// this member proposes no message of it, prevotes nil on any block carrying one, and
    /// releases no signature share for a decided block carrying one
    /// ([`crate::app::App::set_paused`]). With f + 1 members paused nothing of that chain
    /// is decided or signed; the other chains keep going. Takes effect from the next
    /// proposal, prevote or share; the host persists it.
    pub fn set_paused(&mut self, chain: u64, paused: bool) {
        if self.app.paused().contains(&chain) != paused {
            // Announce it with the next tick's heartbeat rather than a period later.
            self.last_heartbeat = 0;
        }
        self.app.set_paused(chain, paused);
    }

    /// Offers the incoming committee's key commit for proposal
    /// ([`crate::app::App::offer_key_commit`]); the same key commit again is a no-op.
    ///
    /// Errors: no rotation decided, a key already decided, or a failed
    /// [`crate::app::check_key_commit`].
    pub fn offer_key_commit(&mut self, kc: pb::KeyCommit) -> Result<(), String> {
        if self.app.offered_key_commit() == Some(&kc) {
            return Ok(());
        }
        self.app.offer_key_commit(kc)
    }

    /// The epoch's last height once the epoch is over for this member: the hand-over is
    /// decided to its last key-rotation block ([`crate::app::App::epoch_end`]) and every
    /// height this member still pursued is attested, the last one included. The host then
    /// builds the next epoch's driver (or, for a member leaving, none) from
    /// [`Driver::into_storage`]; see [`crate::epochs`].
    pub fn epoch_over(&self) -> Option<Height> {
        let end = self.app.epoch_end()?;
        (self.decided >= end && self.unattested.is_empty()).then_some(end)
    }

    /// Gives the storage back (the hand-over to the next epoch's driver).
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// The storage port (the simulator inspects its disk).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Mutable storage (the simulator injects disk faults).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// Messages the consensus machine dropped as out of window or malformed.
    pub fn consensus_dropped(&self) -> u64 {
        self.cs.dropped()
    }

    /// Entries held in the driver's peer-fed maps (proposals, votes, pending validations,
    /// timers, peer heights): the figure the simulator bounds.
    pub fn held_entries(&self) -> usize {
        self.proposals.values().map(Vec::len).sum::<usize>()
            + self.votes.len()
            + self.pending_validations.len()
            + self.timers.len()
            + self.peer_heights.len()
    }

    /// The held envelope of `key`'s voter for exactly `value` (first or conflicting).
    fn held_vote(&self, key: &VoteKey, value: &[u8]) -> Option<pb::Envelope> {
        let (first, others) = self.votes.get(key)?;
        std::iter::once(first)
            .chain(others)
            .find(|e| vote_value(e).as_deref() == Some(value))
            .cloned()
    }

    /// Other members' vote envelopes of the current height that form a quorum for one
    /// non-nil value in their (round, step): what the rebroadcast repeats.
    fn quorum_votes(&self) -> Vec<pb::Envelope> {
        let h = self.cs.height();
        // (round, step, value) -> the voters and their envelopes for it.
        type Groups<'a> = BTreeMap<(Round, u8, Vec<u8>), Vec<(Member, &'a pb::Envelope)>>;
        let mut groups: Groups<'_> = BTreeMap::new();
        for ((_, r, step, voter), (first, others)) in self
            .votes
            .range((h, 0, 0, 0)..=(h, Round::MAX, u8::MAX, Member::MAX))
        {
            for e in std::iter::once(first).chain(others) {
                if let Some(value) = vote_value(e).filter(|v| !v.is_empty()) {
                    groups
                        .entry((*r, *step, value))
                        .or_default()
                        .push((*voter, e));
                }
            }
        }
        let validators = self.cs.validators();
        groups
            .into_values()
            .filter(|votes| {
                let power: u64 = votes
                    .iter()
                    .filter_map(|(m, _)| validators.power_of(m))
                    .sum();
                validators.is_quorum(power)
            })
            .flatten()
            .filter(|(m, _)| *m != self.cfg.me)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// When a member reports (by heartbeat) that it is still at the height we decided last
    /// (its heartbeat height is that height and its decided height is below it),
    /// re-publishes that height's decided proposal and precommit envelopes, so it decides
    /// through the ordinary L49 rule. Without this, a member whose precommit reached only
    /// itself decides alone, the others stay locked at that height, and catch-up (which needs
    /// f + 1 members claiming to be ahead) never starts. Bounded: one stored block per
    /// rebroadcast period.
    fn help_previous_height(&mut self) {
        // The highest height decided here (the machine may still sit at it, with nothing new
        // to propose for the next one).
        let prev = self.decided;
        if prev == 0
            || !self
                .peer_heights
                .values()
                .any(|(h, decided, _)| *h == prev && *decided < prev)
        {
            return;
        }
        match self.storage.block(prev) {
            Ok(Some(cb)) => {
                for env in cb.proposal.into_iter().chain(cb.precommits) {
                    self.publish(Topic::Consensus, env);
                }
            }
            Ok(None) => {}
            Err(e) => self.event(Event::Storage(e)),
        }
    }

    fn event(&mut self, e: Event) {
        self.out.push(Effect::Event(e));
    }

    fn seal(&self, kind: pb::body::Kind) -> pb::Envelope {
        seal(&self.key, self.cfg.me, &pb::Body { kind: Some(kind) })
    }

    fn publish(&mut self, topic: Topic, envelope: pb::Envelope) {
        self.out.push(Effect::Publish { topic, envelope });
    }

    /// f + 1: the fewest members among whom at least one is correct.
    fn one_correct(&self) -> usize {
        usize::from(self.f) + 1
    }

    /// Acts on new observations (`observed`) or a peer's cursors / nonce commitments at once
    /// rather than at the next tick (no fixed tick on the latency path): a proposal waiting
    /// for messages just observed is answered, a value the machine asked for is built, and a
    /// height a quorum's cursors now justify is started. Each step is what [`Self::tick`]
    /// does anyway, so this only moves it earlier; it is a no-op during WAL replay.
    fn react(&mut self, observed: bool) {
        if self.replaying {
            return;
        }
        if observed {
            self.check_validations();
        }
        self.try_propose();
        self.maybe_start_height();
    }

    /// Applies a chain event; whether it brought new observations.
    fn on_chain_event(&mut self, ev: ChainEvent) -> bool {
        self.heads
            .insert(ev.chain_id, (ev.head, ev.cursor.next_nonce));
        let changed = !ev.observations.is_empty();
        let cursor = ev.cursor.to_wire(ev.chain_id);
        self.app.observe(ev.observations, Some(cursor));
        if changed {
            let c = self.app.own_cursors();
            let env = self.seal(pb::body::Kind::Cursors(c));
            self.publish(Topic::Observations, env);
        }
        changed
    }

    fn tick(&mut self) {
        let now = self.now;
        while let Some((&(at, seq), _)) = self.timers.first_key_value() {
            if at > now {
                break;
            }
            let Some(t) = self.timers.remove(&(at, seq)) else {
                break;
            };
            self.event(Event::TimeoutFired);
            let entry = pb::WalEntry {
                kind: Some(pb::wal_entry::Kind::Timeout(pb::WalTimeout {
                    kind: crate::wire::timeout_code(t.kind),
                    height: t.height,
                    round: t.round,
                })),
            };
            self.input(sigil_consensus::Input::Timeout(t), entry, t.height, None);
        }
        self.check_validations();
        self.try_propose();
        self.maybe_start_height();
        let mut online: Vec<Member> = self.online.iter().copied().collect();
        online.push(self.cfg.me);
        self.app.set_online(&online);
        let effects = self.app.tick(now);
        self.app_effects(effects);
        if now.saturating_sub(self.last_gossip) >= self.cfg.gossip_ms {
            self.last_gossip = now;
            let c = self.app.own_cursors();
            let env = self.seal(pb::body::Kind::Cursors(c));
            self.publish(Topic::Observations, env);
            match self.app.refresh_commitments() {
                Ok(Some(list)) => {
                    let env = self.seal(pb::body::Kind::Commitments(list));
                    self.publish(Topic::Observations, env);
                }
                Ok(None) => {}
                Err(e) => self.event(Event::NoncePool(e.to_string())),
            }
        }
        if now.saturating_sub(self.last_heartbeat) >= self.cfg.heartbeat_ms {
            self.last_heartbeat = now;
            let hb = pb::Heartbeat {
                height: self.cs.height(),
                round: self.cs.round(),
                version: self.cfg.version.clone(),
                heads: self
                    .heads
                    .iter()
                    .map(|(c, (head, next))| pb::Cursor {
                        chain_id: *c,
                        block_number: *head,
                        block_hash: Vec::new(),
                        next_nonce: *next,
                    })
                    .collect(),
                time_ms: now,
                attested_height: self.attested,
                decided_height: self.decided,
                paused_chains: self.app.paused().iter().copied().collect(),
            };
            let env = self.seal(pb::body::Kind::Heartbeat(hb));
            self.publish(Topic::Heartbeat, env);
        }
        if now.saturating_sub(self.last_rebroadcast) >= self.cfg.rebroadcast_ms {
            self.last_rebroadcast = now;
            // Gossip is best-effort: repeat our messages of the current height, and the
            // votes of every quorum we hold at it (so a quorum one member saw, including an
            // equivocator's vote others were not sent, reaches every member).
            for env in self.own_msgs.clone() {
                self.publish(Topic::Consensus, env);
            }
            for env in self.quorum_votes() {
                self.publish(Topic::Consensus, env);
            }
            self.help_previous_height();
        }
        if self
            .sync_inflight
            .is_some_and(|t| now.saturating_sub(t) >= self.cfg.sync_timeout_ms)
        {
            self.sync_inflight = None;
            self.sync_peer = None;
        }
        self.fetch_missing_attestations();
    }

    /// Maps the application's effects to envelopes, stores and events.
    fn app_effects(&mut self, effects: Vec<crate::app::Effect>) {
        use crate::app::Effect as A;
        for e in effects {
            match e {
                A::Broadcast(kind) => {
                    let topic = match &kind {
                        pb::body::Kind::Cursors(_) | pb::body::Kind::Commitments(_) => {
                            Topic::Observations
                        }
                        pb::body::Kind::Heartbeat(_) => Topic::Heartbeat,
                        pb::body::Kind::Proposal(_) | pb::body::Kind::Vote(_) => Topic::Consensus,
                        _ => Topic::Signing,
                    };
                    let env = self.seal(kind);
                    self.publish(topic, env);
                }
                A::Attested(a) => self.store_attestation(a),
                A::Culprit {
                    height,
                    attempt,
                    member,
                } => self.event(Event::Culprit {
                    height,
                    attempt,
                    member,
                }),
                A::Retry {
                    height,
                    attempt,
                    excluded,
                } => self.event(Event::SigningRetry {
                    height,
                    attempt,
                    excluded,
                }),
                A::SignRefused { height, reason } => {
                    self.event(Event::SignRefused { height, reason })
                }
                A::Shares(records) => match self.storage.record_shares(&records) {
                    Ok(conflicts) => {
                        for first in conflicts {
                            let later = records
                                .iter()
                                .find(|r| r.key() == first.key())
                                .map_or(first.height, |r| r.height);
                            self.event(Event::NonceReuse {
                                member: first.member,
                                epoch: first.epoch,
                                nonce_id: first.nonce_id,
                                heights: (first.height, later),
                            });
                        }
                    }
                    // The record is the audit trail; the ledger's synced consumption is
                    // what kept the nonce single-use, so the share still goes out.
                    Err(e) => self.event(Event::Storage(e)),
                },
            }
        }
    }

    /// The block of a stored committed block (its proposal envelope, signature checked).
    fn stored_block(&self, cb: &pb::CommittedBlock) -> Option<pb::Block> {
        let (_, body) = self.committee.open(cb.proposal.as_ref()?).ok()?;
        match body.kind {
            Some(pb::body::Kind::Proposal(p)) => p.block,
            _ => None,
        }
    }

    /// Stores a verified attestation into its decided block (once).
    fn store_attestation(&mut self, a: pb::Attestation) {
        let h = a.height;
        let mut cb = match self.storage.block(h) {
            Ok(Some(cb)) => cb,
            Ok(None) => return,
            Err(e) => return self.event(Event::Storage(e)),
        };
        if cb.attestation.is_some() {
            self.unattested.remove(&h);
            return;
        }
        let Some(block) = self.stored_block(&cb) else {
            return;
        };
        // Message ids and the hand-over follow from the block alone; never trust a peer's.
        let handover = self.app.attestation_digest(&block).and_then(|(_, h)| h);
        let a = pb::Attestation {
            message_ids: message_ids(&Block(block)),
            handover,
            ..a
        };
        cb.attestation = Some(a.clone());
        let nexts: Vec<(u64, u64)> = self
            .app
            .next_nonces()
            .iter()
            .map(|(c, n)| (*c, *n))
            .collect();
        if let Err(e) = self.storage.put_block(h, &cb, &nexts, None) {
            return self.event(Event::Storage(e));
        }
        self.unattested.remove(&h);
        self.attested = self.attested.max(h);
        let after_ms = self
            .decided_at
            .remove(&h)
            .map(|t| self.now.saturating_sub(t));
        self.out.push(Effect::Attested {
            attestation: a,
            after_ms,
        });
    }
}
