//! The node host: drives the consensus state machine and the application core from libp2p,
//! the chain watchers and timers, persisting to RocksDB.
//!
//! Safety rules enforced here:
//! - every consensus input is appended to the WAL before it is processed, and the WAL is
//!   synced before any own proposal or vote leaves the process (DESIGN "Consensus");
//! - an own vote is recorded per height/round/step before it is sent, and a different one is
//!   never sent (restart replays the WAL through a fresh machine, which regenerates the
//!   same votes);
//! - nonces are consumed durably before a share leaves ([`crate::app`]).

use crate::app::{App, AppParams, Block, Effect, Signer, Validity};
use crate::config::Config;
use crate::identity::{Committee, NodeKey};
use crate::keyfiles::KeyShare;
use crate::metrics::Metrics;
use crate::now_ms;
use crate::p2p::{Behaviour, BehaviourEvent, Redial, Wire, topics};
use crate::store::{RocksLedger, Store};
use crate::watcher::ChainEvent;
use alloy_primitives::B256;
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, Swarm, gossipsub, request_response};
use prost::Message as _;
use sigil_consensus::{
    Consensus, Height, Input, Output, Params, Proposal, Round, Timeout, TimeoutKind, ValidatorSet,
    Value, Vote, VoteKind,
};
use sigil_crypto::GroupKey;
use sigil_proto as pb;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// What `/v1/status` shows.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Node name.
    pub moniker: String,
    /// Software version.
    pub version: String,
    /// Member index.
    pub member: u16,
    /// Committee size.
    pub committee: u16,
    /// Consensus height in progress.
    pub height: u64,
    /// Round.
    pub round: u32,
    /// Highest decided height.
    pub decided_height: u64,
    /// Highest attested height.
    pub attested_height: u64,
    /// Connected committee members.
    pub peers: Vec<u16>,
    /// Key epoch.
    pub epoch: u64,
    /// Group key (compressed hex).
    pub group_key: Option<String>,
    /// Per chain.
    pub chains: Vec<ChainStatus>,
    /// Whether quorum peers are connected and every chain answered recently.
    pub ready: bool,
}

/// Per-chain status.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainStatus {
    /// Chain id.
    pub chain_id: u64,
    /// Head block number.
    pub head: u64,
    /// Final block number.
    pub finalized: u64,
    /// Last block observed at finality.
    pub observed: u64,
    /// head − observed.
    pub lag: u64,
    /// Next gateway nonce observed.
    pub next_nonce: u64,
    /// Last time the watcher reported (ms since epoch).
    pub updated_ms: u64,
}

/// Handles shared with the HTTP API.
#[derive(Clone)]
pub struct Shared {
    /// Database.
    pub store: Store,
    /// Live status.
    pub status: Arc<RwLock<Status>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Metrics registry.
    pub registry: Arc<prometheus_client::registry::Registry>,
    /// Group key.
    pub group_key: Option<GroupKey>,
}

/// A decided round's proposal with its precommits (catch-up input).
type Certificate = (Proposal<u16, Block>, Vec<Vote<u16, B256>>);

const STEP_PROPOSAL: u8 = 0;
const STEP_PREVOTE: u8 = 1;
const STEP_PRECOMMIT: u8 = 2;

fn step_of(kind: VoteKind) -> u8 {
    match kind {
        VoteKind::Prevote => STEP_PREVOTE,
        VoteKind::Precommit => STEP_PRECOMMIT,
    }
}

fn timeout_code(k: TimeoutKind) -> u32 {
    match k {
        TimeoutKind::Propose => 0,
        TimeoutKind::Prevote => 1,
        TimeoutKind::Precommit => 2,
    }
}

fn timeout_kind(c: u32) -> Option<TimeoutKind> {
    match c {
        0 => Some(TimeoutKind::Propose),
        1 => Some(TimeoutKind::Prevote),
        2 => Some(TimeoutKind::Precommit),
        _ => None,
    }
}

/// Converts a wire proposal. Errors on malformed fields.
pub fn proposal_from_wire(
    from: u16,
    p: &pb::Proposal,
) -> Result<Proposal<u16, Block>, &'static str> {
    let block = p.block.clone().ok_or("proposal without block")?;
    let valid_round = if p.valid_round < 0 {
        None
    } else {
        Some(u32::try_from(p.valid_round).map_err(|_| "valid_round")?)
    };
    Ok(Proposal {
        height: p.height,
        round: p.round,
        value: Block(block),
        valid_round,
        proposer: from,
    })
}

/// Converts a wire vote. Errors on malformed fields.
pub fn vote_from_wire(from: u16, v: &pb::Vote) -> Result<Vote<u16, B256>, &'static str> {
    let kind = match v.kind {
        1 => VoteKind::Prevote,
        2 => VoteKind::Precommit,
        _ => return Err("vote kind"),
    };
    let value = match v.value_id.len() {
        0 => None,
        32 => Some(B256::from_slice(&v.value_id)),
        _ => return Err("vote value id length"),
    };
    Ok(Vote {
        kind,
        height: v.height,
        round: v.round,
        value,
        voter: from,
    })
}

fn vote_to_wire(v: &Vote<u16, B256>) -> pb::Vote {
    pb::Vote {
        kind: match v.kind {
            VoteKind::Prevote => 1,
            VoteKind::Precommit => 2,
        },
        height: v.height,
        round: v.round,
        value_id: v.value.map(|b| b.to_vec()).unwrap_or_default(),
    }
}

/// The running node.
pub struct Node {
    cfg: Config,
    me: u16,
    key: NodeKey,
    committee: Committee,
    store: Store,
    swarm: Swarm<Behaviour>,
    cs: Consensus<u16, Block>,
    app: App,
    metrics: Arc<Metrics>,
    status: Arc<RwLock<Status>>,
    timers: BTreeMap<(Instant, u64), Timeout>,
    timer_seq: u64,
    wal_seq: u64,
    proposals: HashMap<(Height, Round), Vec<(B256, pb::Envelope)>>,
    votes: HashMap<(Height, Round, u8, u16), pb::Envelope>,
    own_msgs: Vec<(&'static str, pb::Envelope)>,
    pending_request: Option<(Height, Round)>,
    pending_validations: Vec<(Block, Instant)>,
    started: bool,
    decided_at: HashMap<Height, Instant>,
    redial: HashMap<PeerId, Redial>,
    connected: BTreeSet<u16>,
    sync_inflight: Option<Instant>,
    peer_heights: BTreeMap<u16, u64>,
    replaying: bool,
    last_gossip: Instant,
    last_heartbeat: Instant,
    last_rebroadcast: Instant,
    last_progress: Instant,
    chain_status: BTreeMap<u64, ChainStatus>,
    current_env: Option<pb::Envelope>,
    attested_height: u64,
    fetched_attestation: Option<(Height, pb::Attestation)>,
    /// Highest decided (stored) height.
    decided: Height,
}

/// Everything needed to start a node.
pub struct NodeSetup {
    /// Validated config.
    pub cfg: Config,
    /// Node key.
    pub key: NodeKey,
    /// Key share from DKG.
    pub share: KeyShare,
    /// Opened database.
    pub store: Store,
}

impl Node {
    /// Builds the node: committee, swarm, WAL replay. Errors: config/key mismatch, p2p or
    /// storage failures.
    pub fn new(
        setup: NodeSetup,
        metrics: Arc<Metrics>,
        status: Arc<RwLock<Status>>,
    ) -> anyhow::Result<Self> {
        let NodeSetup {
            cfg,
            key,
            share,
            store,
        } = setup;
        let committee = Committee::from_config(&cfg.committee)?;
        let me = committee.index_of(&key.public()).ok_or_else(|| {
            anyhow::anyhow!(
                "this node's key {} is not in config field `committee.members`; add it",
                crate::identity::public_key_hex(&key.public())
            )
        })?;
        if share.member != me || share.n != committee.len() {
            anyhow::bail!(
                "key share is for member {} of {}, config says member {me} of {}; rerun `sigil dkg` for this committee",
                share.member,
                share.n,
                committee.len()
            );
        }
        let n = committee.len();
        let (_, t) = sigil_crypto::keys::thresholds(n);
        let group_key = GroupKey::new(*share.public_key_package.verifying_key())?;
        let validators = ValidatorSet::equal(1..=n)?;
        let params = Params {
            propose_ms: cfg.consensus.propose_timeout.as_millis() as u64,
            prevote_ms: cfg.consensus.prevote_timeout.as_millis() as u64,
            precommit_ms: cfg.consensus.precommit_timeout.as_millis() as u64,
            delta_ms: cfg.consensus.timeout_delta.as_millis() as u64,
            ..Params::default()
        };
        let mut next_nonce = BTreeMap::new();
        for c in &cfg.chains {
            next_nonce.insert(c.chain_id, store.next_nonce(c.chain_id)?);
        }
        let ledger = RocksLedger::open(store.clone())?;
        let signer = Signer {
            key: share.key_package,
            public: share.public_key_package,
            pool: sigil_crypto::NoncePool::new(),
            ledger: Box::new(ledger),
        };
        let app_params = AppParams {
            me: Some(me),
            n,
            t,
            epoch: cfg.committee.epoch,
            chains: cfg.chains.iter().map(|c| (c.chain_id, c.gateway)).collect(),
            max_messages: cfg.batch.max_messages,
            max_bytes: cfg.batch.max_bytes,
            nonce_pool: cfg.signing.nonce_pool,
            share_timeout_ms: cfg.signing.share_timeout.as_millis() as u64,
        };
        let mut app = App::new(
            app_params,
            Some(signer),
            Some(group_key),
            next_nonce.clone(),
        );
        // Restore observations not yet decided, and our cursors.
        for c in &cfg.chains {
            let from = next_nonce.get(&c.chain_id).copied().unwrap_or(0);
            let obs = store.observations(c.chain_id, from..u64::MAX)?;
            let cursor = store.cursor(c.chain_id)?.map(|cur| pb::Cursor {
                chain_id: c.chain_id,
                block_number: cur.block_number,
                block_hash: cur.block_hash.to_vec(),
                next_nonce: cur.next_nonce,
            });
            app.observe(obs, cursor);
        }
        let swarm = crate::p2p::build(&key, &committee)?;
        let last = store.last_height()?;
        let height = last + 1;
        app.set_height(height);
        let cs = Consensus::new(Some(me), validators, params, height);
        let now = Instant::now();
        let mut node = Self {
            cfg,
            me,
            key,
            committee,
            store,
            swarm,
            cs,
            app,
            metrics,
            status,
            timers: BTreeMap::new(),
            timer_seq: 0,
            wal_seq: (now_ms()) * 1000,
            proposals: HashMap::new(),
            votes: HashMap::new(),
            own_msgs: Vec::new(),
            pending_request: None,
            pending_validations: Vec::new(),
            started: false,
            decided_at: HashMap::new(),
            redial: HashMap::new(),
            connected: BTreeSet::new(),
            sync_inflight: None,
            peer_heights: BTreeMap::new(),
            replaying: false,
            last_gossip: now,
            last_heartbeat: now,
            last_rebroadcast: now,
            last_progress: now,
            chain_status: BTreeMap::new(),
            current_env: None,
            attested_height: 0,
            fetched_attestation: None,
            decided: last,
        };
        node.attested_height = (1..=last)
            .rev()
            .find(|h| {
                node.store
                    .block(*h)
                    .ok()
                    .flatten()
                    .is_some_and(|b| b.attestation.is_some())
            })
            .unwrap_or(0);
        node.replay_wal(height)?;
        Ok(node)
    }

    fn replay_wal(&mut self, height: Height) -> anyhow::Result<()> {
        let mut entries = Vec::new();
        for h in height..height + 3 {
            entries.extend(self.store.wal(h)?);
        }
        if entries.is_empty() {
            return Ok(());
        }
        tracing::info!(height, records = entries.len(), "replaying consensus WAL");
        self.replaying = true;
        for e in entries {
            if let Some(input) = self.wal_to_input(&e) {
                if matches!(input, Input::StartHeight(_)) {
                    self.started = true;
                }
                let outs = self.cs.process(input);
                self.handle_outputs(outs);
            }
        }
        self.replaying = false;
        Ok(())
    }

    fn wal_to_input(&mut self, e: &pb::WalEntry) -> Option<Input<u16, Block>> {
        use pb::wal_entry::Kind;
        match e.kind.as_ref()? {
            Kind::StartHeight(h) => Some(Input::StartHeight(*h)),
            Kind::Proposal(env) | Kind::Vote(env) => self.open_consensus(env),
            Kind::Timeout(t) => Some(Input::Timeout(Timeout {
                kind: timeout_kind(t.kind)?,
                height: t.height,
                round: t.round,
            })),
            Kind::Validity(v) => {
                let id = B256::try_from(v.value_id.as_slice()).ok()?;
                self.pending_validations.retain(|(b, _)| b.id() != id);
                Some(Input::Validity {
                    value: id,
                    valid: v.valid,
                })
            }
            Kind::ProposeValue(p) => {
                self.pending_request = None;
                Some(Input::ProposeValue {
                    height: p.height,
                    round: p.round,
                    value: Block(p.block.clone()?),
                })
            }
            Kind::Certificate(cb) => {
                let (proposal, precommits) = self.certificate_inputs(cb)?;
                Some(Input::Certificate {
                    proposal,
                    precommits,
                })
            }
        }
    }

    /// Opens a signed proposal or vote envelope (from the WAL or a catch-up certificate),
    /// remembers it for certificates and evidence, and returns the consensus input.
    fn open_consensus(&mut self, env: &pb::Envelope) -> Option<Input<u16, Block>> {
        let (from, body) = self.committee.open(env).ok()?;
        match body.kind? {
            pb::body::Kind::Proposal(p) => {
                let prop = proposal_from_wire(from, &p).ok()?;
                self.remember_proposal(&prop, env.clone());
                Some(Input::Proposal(prop))
            }
            pb::body::Kind::Vote(v) => {
                let vote = vote_from_wire(from, &v).ok()?;
                self.remember_vote(&vote, env);
                Some(Input::Vote(vote))
            }
            _ => None,
        }
    }

    fn certificate_inputs(&mut self, cb: &pb::CommittedBlock) -> Option<Certificate> {
        let Input::Proposal(proposal) = self.open_consensus(cb.proposal.as_ref()?)? else {
            return None;
        };
        let mut precommits = Vec::new();
        for e in &cb.precommits {
            let Input::Vote(vote) = self.open_consensus(e)? else {
                return None;
            };
            precommits.push(vote);
        }
        Some((proposal, precommits))
    }

    fn remember_vote(&mut self, v: &Vote<u16, B256>, env: &pb::Envelope) {
        self.votes
            .entry((v.height, v.round, step_of(v.kind), v.voter))
            .or_insert_with(|| env.clone());
    }

    fn remember_proposal(&mut self, p: &Proposal<u16, Block>, env: pb::Envelope) {
        let list = self.proposals.entry((p.height, p.round)).or_default();
        let id = p.value.id();
        if !list.iter().any(|(i, _)| *i == id) && list.len() < 4 {
            list.push((id, env));
        }
    }

    /// Appends `entry` to the WAL (under `height`) and processes `input`.
    fn input(&mut self, input: Input<u16, Block>, entry: pb::WalEntry, height: Height) {
        self.wal_seq += 1;
        if let Err(e) = self.store.wal_append(height, self.wal_seq, &entry) {
            tracing::error!(error = %e, "WAL append failed; input not processed");
            return;
        }
        let outs = self.cs.process(input);
        self.handle_outputs(outs);
    }

    fn publish(&mut self, topic: &'static str, env: &pb::Envelope) {
        let bytes = env.encode_to_vec();
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(gossipsub::IdentTopic::new(topic), bytes)
        {
            tracing::debug!(topic, error = %e, "publish failed");
        }
    }

    fn seal(&self, kind: pb::body::Kind) -> pb::Envelope {
        self.key.seal(self.me, &pb::Body { kind: Some(kind) })
    }

    fn handle_outputs(&mut self, outs: Vec<Output<u16, Block>>) {
        if outs
            .iter()
            .any(|o| matches!(o, Output::Proposal(_) | Output::Vote(_)))
            && let Err(e) = self.store.sync_wal()
        {
            tracing::error!(error = %e, "WAL sync failed; not sending");
            return;
        }
        for o in outs {
            match o {
                Output::Proposal(p) => {
                    let id = p.value.id();
                    match self.store.record_own_vote(
                        p.height,
                        p.round,
                        STEP_PROPOSAL,
                        id.as_slice(),
                    ) {
                        Ok(None) => {}
                        Ok(Some(_)) | Err(_) => {
                            tracing::error!(
                                height = p.height,
                                round = p.round,
                                "refusing to send a second, different proposal"
                            );
                            continue;
                        }
                    }
                    let env = self.seal(pb::body::Kind::Proposal(pb::Proposal {
                        height: p.height,
                        round: p.round,
                        block: Some(p.value.0.clone()),
                        valid_round: p.valid_round.map_or(-1, i64::from),
                    }));
                    self.remember_proposal(&p, env.clone());
                    self.publish(topics::CONSENSUS, &env);
                    self.own_msgs.push((topics::CONSENSUS, env));
                }
                Output::Vote(v) => {
                    let value = v.value.map(|b| b.to_vec()).unwrap_or_default();
                    match self
                        .store
                        .record_own_vote(v.height, v.round, step_of(v.kind), &value)
                    {
                        Ok(None) => {}
                        Ok(Some(_)) | Err(_) => {
                            tracing::error!(
                                height = v.height,
                                round = v.round,
                                "refusing to send a second, different vote"
                            );
                            continue;
                        }
                    }
                    let env = self.seal(pb::body::Kind::Vote(vote_to_wire(&v)));
                    self.votes
                        .insert((v.height, v.round, step_of(v.kind), self.me), env.clone());
                    self.publish(topics::CONSENSUS, &env);
                    self.own_msgs.push((topics::CONSENSUS, env));
                }
                Output::ScheduleTimeout { timeout, after_ms } => {
                    self.timer_seq += 1;
                    self.timers.insert(
                        (
                            Instant::now() + Duration::from_millis(after_ms),
                            self.timer_seq,
                        ),
                        timeout,
                    );
                }
                Output::RequestValue { height, round } => {
                    self.pending_request = Some((height, round));
                    if !self.replaying {
                        self.try_propose();
                    }
                }
                Output::Validate { value } => {
                    let deadline = Instant::now() + self.cfg.consensus.observation_wait;
                    self.pending_validations.push((value, deadline));
                    if !self.replaying {
                        self.check_validations();
                    }
                }
                Output::Decide(d) => self.on_decide(d, None),
                Output::Equivocation { first, second } => {
                    self.metrics.equivocations.inc();
                    tracing::warn!(
                        voter = first.voter,
                        height = first.height,
                        round = first.round,
                        "equivocation evidence"
                    );
                    let a = self
                        .votes
                        .get(&(first.height, first.round, step_of(first.kind), first.voter))
                        .cloned();
                    if let (Some(a), Some(b)) = (a, self.current_env.clone()) {
                        let _ = self.store.put_evidence(
                            second.height,
                            second.round,
                            step_of(second.kind),
                            second.voter,
                            &a,
                            &b,
                        );
                    }
                }
            }
        }
        self.metrics.height.set(self.cs.height() as i64);
        self.metrics.round.set(i64::from(self.cs.round()));
    }

    fn try_propose(&mut self) {
        let Some((h, r)) = self.pending_request else {
            return;
        };
        if h != self.cs.height() || r != self.cs.round() {
            self.pending_request = None;
            return;
        }
        if let Some(block) = self.app.build_block(h, now_ms()) {
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
            );
        }
    }

    fn check_validations(&mut self) {
        let now = Instant::now();
        let pending = std::mem::take(&mut self.pending_validations);
        let h = self.cs.height();
        for (block, deadline) in pending {
            let answer = match self.app.validate(h, &block) {
                Validity::Valid => Some(true),
                Validity::Invalid(reason) => {
                    tracing::warn!(height = h, reason, "proposal invalid");
                    Some(false)
                }
                Validity::Pending if now >= deadline => {
                    tracing::warn!(
                        height = h,
                        "proposal names messages not observed in time; prevoting nil"
                    );
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
                    self.input(Input::Validity { value: id, valid }, entry, h);
                }
                None => self.pending_validations.push((block, deadline)),
            }
        }
    }

    fn on_decide(
        &mut self,
        d: sigil_consensus::Decision<u16, Block>,
        attestation: Option<pb::Attestation>,
    ) {
        let h = d.height;
        let attestation = attestation.or_else(|| {
            self.fetched_attestation
                .take()
                .filter(|(fh, _)| *fh == h)
                .map(|(_, a)| a)
        });
        let id = d.value.id();
        let proposal = self
            .proposals
            .get(&(h, d.round))
            .and_then(|l| l.iter().find(|(i, _)| *i == id))
            .map(|(_, e)| e.clone());
        let precommits: Vec<pb::Envelope> = d
            .certificate
            .iter()
            .filter_map(|v| {
                self.votes
                    .get(&(v.height, v.round, STEP_PRECOMMIT, v.voter))
                    .cloned()
            })
            .collect();
        let effects = self
            .app
            .on_decided(h, &d.value, attestation.as_ref(), now_ms());
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
        if let Err(e) = self.store.put_block(h, &cb, &nexts) {
            tracing::error!(height = h, error = %e, "storing decided block failed");
        }
        self.decided = self.decided.max(h);
        if attestation.is_some() {
            self.attested_height = self.attested_height.max(h);
        }
        self.metrics.decided.inc();
        self.metrics
            .decided_messages
            .inc_by(u64::from(d.value.0.count));
        self.decided_at.insert(h, Instant::now());
        tracing::info!(
            height = h,
            round = d.round,
            messages = d.value.0.count,
            "decided"
        );
        self.proposals.retain(|(ph, _), _| *ph > h);
        self.votes.retain(|(vh, ..), _| *vh > h);
        self.own_msgs.clear();
        self.pending_request = None;
        self.pending_validations.clear();
        self.timers.retain(|_, t| t.height > h);
        self.started = false;
        self.last_progress = Instant::now();
        self.handle_effects(effects);
    }

    fn handle_effects(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Broadcast(kind) => {
                    let topic = match &kind {
                        pb::body::Kind::Cursors(_) => topics::OBSERVATIONS,
                        pb::body::Kind::Heartbeat(_) => topics::HEARTBEAT,
                        pb::body::Kind::Proposal(_) | pb::body::Kind::Vote(_) => topics::CONSENSUS,
                        _ => topics::SIGNING,
                    };
                    let env = self.seal(kind);
                    self.publish(topic, &env);
                }
                Effect::Attested(a) => self.store_attestation(a),
                Effect::Culprit {
                    height,
                    attempt,
                    member,
                } => {
                    self.metrics.culprits.inc();
                    tracing::warn!(height, attempt, member, "invalid signature share (culprit)");
                }
                Effect::Retry {
                    height,
                    attempt,
                    excluded,
                } => {
                    self.metrics.signing_retries.inc();
                    tracing::warn!(
                        height,
                        attempt,
                        ?excluded,
                        "signing attempt timed out; retrying with fresh commitments"
                    );
                }
                Effect::SignRefused { height, reason } => {
                    tracing::info!(height, reason, "not signing");
                }
            }
        }
    }

    fn store_attestation(&mut self, a: pb::Attestation) {
        let h = a.height;
        let Ok(Some(mut cb)) = self.store.block(h) else {
            tracing::error!(height = h, "attestation for a block not stored");
            return;
        };
        if cb.attestation.is_some() {
            return;
        }
        cb.attestation = Some(a);
        let nexts: Vec<(u64, u64)> = self
            .app
            .next_nonces()
            .iter()
            .map(|(c, n)| (*c, *n))
            .collect();
        if let Err(e) = self.store.put_block(h, &cb, &nexts) {
            tracing::error!(height = h, error = %e, "storing attestation failed");
            return;
        }
        self.metrics.attestations.inc();
        if let Some(t) = self.decided_at.remove(&h) {
            self.metrics
                .signing_latency
                .observe(t.elapsed().as_secs_f64());
        }
        self.attested_height = self.attested_height.max(h);
        tracing::info!(height = h, "attested");
    }

    fn maybe_start_height(&mut self) {
        if self.started {
            return;
        }
        let h = self.cs.height();
        let next = if self.decided >= h { h + 1 } else { h };
        let peer_ahead = self.peer_heights.values().any(|ph| *ph >= next);
        if self.app.has_work() || peer_ahead {
            self.started = true;
            self.app.set_height(next);
            let entry = pb::WalEntry {
                kind: Some(pb::wal_entry::Kind::StartHeight(next)),
            };
            self.input(Input::StartHeight(next), entry, next);
        }
    }

    fn on_gossip(&mut self, propagation: PeerId, id: gossipsub::MessageId, data: &[u8]) {
        use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
        let verdict = self.on_envelope_bytes(data);
        let acceptance = match verdict {
            Ok(true) => Accept,
            Ok(false) => Ignore,
            Err(reason) => {
                self.metrics.reject(reason);
                tracing::debug!(reason, "peer message rejected");
                Reject
            }
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &propagation, acceptance);
    }

    /// Checks and applies one envelope. `Ok(true)`: applied; `Ok(false)`: ignored (stale);
    /// `Err(reason)`: dropped and counted.
    fn on_envelope_bytes(&mut self, data: &[u8]) -> Result<bool, &'static str> {
        if data.len() > sigil_proto::MAX_ENVELOPE_BYTES {
            return Err("oversized");
        }
        let env = pb::Envelope::decode(data).map_err(|_| "decode")?;
        let (from, body) = self.committee.open(&env).map_err(|e| match e {
            crate::identity::IdentityError::UnknownMember(_) => "unknown member",
            _ => "signature",
        })?;
        if from == self.me {
            return Ok(false);
        }
        let Some(kind) = body.kind else {
            return Err("empty body");
        };
        let h = self.cs.height();
        let window = |mh: u64| -> Result<(), &'static str> {
            if mh + 1 < h {
                Err("stale")
            } else if mh > h + 2 {
                Err("height window")
            } else {
                Ok(())
            }
        };
        match kind {
            pb::body::Kind::Proposal(p) => {
                if p.height < h {
                    return Ok(false);
                }
                window(p.height)?;
                let prop = proposal_from_wire(from, &p)?;
                if prop.value.0.height != prop.height {
                    return Err("block height");
                }
                self.remember_proposal(&prop, env.clone());
                let entry = pb::WalEntry {
                    kind: Some(pb::wal_entry::Kind::Proposal(env)),
                };
                if p.height > h {
                    self.peer_heights.insert(from, p.height);
                }
                self.input(Input::Proposal(prop), entry, p.height);
            }
            pb::body::Kind::Vote(v) => {
                if v.height < h {
                    return Ok(false);
                }
                window(v.height)?;
                let vote = vote_from_wire(from, &v)?;
                self.remember_vote(&vote, &env);
                if v.height > h {
                    self.peer_heights.insert(from, v.height);
                }
                self.current_env = Some(env.clone());
                let entry = pb::WalEntry {
                    kind: Some(pb::wal_entry::Kind::Vote(env)),
                };
                self.input(Input::Vote(vote), entry, v.height);
                self.current_env = None;
            }
            pb::body::Kind::Cursors(c) => self.app.on_cursors(from, &c),
            pb::body::Kind::Commitments(c) => self.app.on_commitments(from, &c),
            pb::body::Kind::Share(s) => {
                let effects = self.app.on_share(from, &s, now_ms());
                self.handle_effects(effects);
            }
            pb::body::Kind::SignRequest(r) => {
                let effects = self.app.on_sign_request(from, &r, now_ms());
                self.handle_effects(effects);
            }
            pb::body::Kind::Attestation(a) => {
                let effects = self.app.on_attestation(&a);
                self.handle_effects(effects);
            }
            pb::body::Kind::Heartbeat(hb) => {
                self.peer_heights.insert(from, hb.height);
                self.maybe_sync(from, hb.height);
            }
            _ => return Err("unexpected kind"),
        }
        Ok(true)
    }

    fn maybe_sync(&mut self, from: u16, peer_height: u64) {
        let decided = self.decided;
        // The peer works on `peer_height`, so it decided everything below it.
        if peer_height <= decided + 1 {
            return;
        }
        if self
            .sync_inflight
            .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
        {
            return;
        }
        // Only when we are not making progress ourselves.
        if self.last_progress.elapsed() < Duration::from_secs(2) && peer_height <= decided + 2 {
            return;
        }
        let Some(peer) = self.committee.peer(from) else {
            return;
        };
        let req = pb::Request {
            kind: Some(pb::request::Kind::Sync(pb::SyncRequest {
                from_height: decided + 1,
                max_blocks: 32,
            })),
        };
        tracing::info!(from_height = decided + 1, member = from, "catching up");
        self.sync_inflight = Some(Instant::now());
        self.swarm
            .behaviour_mut()
            .rr
            .send_request(&peer, Wire(req.encode_to_vec()));
    }

    fn serve_request(&mut self, peer: PeerId, data: &[u8]) -> pb::Response {
        let ack = |ok: bool, error: &str| pb::Response {
            kind: Some(pb::response::Kind::Ack(pb::Ack {
                ok,
                error: error.into(),
            })),
        };
        if self.committee.index_of_peer(&peer).is_none() {
            self.metrics.reject("non-member request");
            return ack(false, "not a member");
        }
        let Ok(req) = pb::Request::decode(data) else {
            self.metrics.reject("decode");
            return ack(false, "malformed request");
        };
        match req.kind {
            Some(pb::request::Kind::Sync(s)) => {
                let mut blocks = Vec::new();
                let mut size = 0usize;
                for h in s.from_height
                    ..s.from_height
                        .saturating_add(u64::from(s.max_blocks.min(64)))
                {
                    match self.store.block(h) {
                        Ok(Some(b)) => {
                            size += b.encoded_len();
                            if size > sigil_proto::MAX_SYNC_RESPONSE_BYTES / 2 {
                                break;
                            }
                            blocks.push(b);
                        }
                        _ => break,
                    }
                }
                pb::Response {
                    kind: Some(pb::response::Kind::Sync(pb::SyncResponse { blocks })),
                }
            }
            _ => ack(false, "unsupported request"),
        }
    }

    fn on_sync_response(&mut self, data: &[u8]) {
        self.sync_inflight = None;
        let Ok(resp) = pb::Response::decode(data) else {
            self.metrics.reject("decode");
            return;
        };
        let Some(pb::response::Kind::Sync(s)) = resp.kind else {
            return;
        };
        for cb in s.blocks {
            if let Err(reason) = self.apply_committed(cb) {
                self.metrics.reject(reason);
                tracing::warn!(reason, "catch-up block rejected");
                return;
            }
        }
    }

    /// Applies one fetched committed block at the next height. Errors name the reason.
    fn apply_committed(&mut self, cb: pb::CommittedBlock) -> Result<(), &'static str> {
        let env = cb.proposal.as_ref().ok_or("sync block without proposal")?;
        let (_, body) = self
            .committee
            .open(env)
            .map_err(|_| "sync proposal signature")?;
        let Some(pb::body::Kind::Proposal(p)) = body.kind else {
            return Err("sync proposal kind");
        };
        let decided = self.decided;
        if p.height <= decided {
            return Ok(());
        }
        if p.height != decided + 1 {
            return Err("sync block out of order");
        }
        if !self.started || self.cs.height() < p.height {
            self.started = true;
            self.app.set_height(p.height);
            let entry = pb::WalEntry {
                kind: Some(pb::wal_entry::Kind::StartHeight(p.height)),
            };
            self.input(Input::StartHeight(p.height), entry, p.height);
        }
        if self.decided >= p.height {
            return Ok(());
        }
        let (proposal, precommits) = self
            .certificate_inputs(&cb)
            .ok_or("sync certificate malformed")?;
        // Verify the attestation before we keep it.
        let attestation = cb
            .attestation
            .clone()
            .filter(|a| self.attestation_verifies(a, &proposal.value));
        let entry = pb::WalEntry {
            kind: Some(pb::wal_entry::Kind::Certificate(pb::CommittedBlock {
                proposal: cb.proposal.clone(),
                precommits: cb.precommits.clone(),
                attestation: None,
            })),
        };
        self.wal_seq += 1;
        let _ = self.store.wal_append(p.height, self.wal_seq, &entry);
        let id = proposal.value.id();
        self.fetched_attestation = attestation.map(|a| (p.height, a));
        let outs = self.cs.process(Input::Certificate {
            proposal,
            precommits,
        });
        // A verified commit certificate means 2f+1 members (f+1 honest) validated the block:
        // accept it without our own observations.
        // (Also when we judged it invalid earlier, e.g. without the observations.)
        let rest: Vec<_> = outs
            .into_iter()
            .filter(|o| !matches!(o, Output::Validate { value } if value.id() == id))
            .collect();
        self.handle_outputs(rest);
        self.pending_validations.retain(|(b, _)| b.id() != id);
        if self.decided < p.height {
            let entry = pb::WalEntry {
                kind: Some(pb::wal_entry::Kind::Validity(pb::WalValidity {
                    value_id: id.to_vec(),
                    valid: true,
                })),
            };
            self.input(
                Input::Validity {
                    value: id,
                    valid: true,
                },
                entry,
                p.height,
            );
        }
        self.fetched_attestation = None;
        if self.decided < p.height {
            tracing::warn!(
                height = p.height,
                machine_height = self.cs.height(),
                "certificate did not decide"
            );
            return Err("sync certificate not accepted");
        }
        tracing::info!(height = p.height, "caught up");
        Ok(())
    }

    fn attestation_verifies(&self, a: &pb::Attestation, block: &Block) -> bool {
        let Some(gk) = self.app.group_key() else {
            return false;
        };
        if a.root != block.0.root || a.height != block.0.height || a.epoch != block.0.epoch {
            return false;
        }
        let Ok(sig) =
            sigil_crypto::OnchainSignature::from_bytes(&a.signature).and_then(|s| s.to_frost())
        else {
            return false;
        };
        let digest = sigil_crypto::batch_digest(a.epoch, a.height, B256::from_slice(&a.root));
        sigil_crypto::signing::verify(gk, digest, &sig).is_ok()
    }

    fn on_chain_event(&mut self, ev: ChainEvent) {
        let cursor = ev.cursor;
        if let Err(e) = self
            .store
            .put_observations(ev.chain_id, &ev.observations, &cursor)
        {
            tracing::error!(chain = ev.chain_id, error = %e, "storing observations failed");
            return;
        }
        let st = self.chain_status.entry(ev.chain_id).or_default();
        st.chain_id = ev.chain_id;
        st.head = ev.head;
        st.finalized = ev.finalized;
        st.observed = cursor.block_number;
        st.lag = ev.head.saturating_sub(cursor.block_number);
        st.next_nonce = cursor.next_nonce;
        st.updated_ms = now_ms();
        let pc = pb::Cursor {
            chain_id: ev.chain_id,
            block_number: cursor.block_number,
            block_hash: cursor.block_hash.to_vec(),
            next_nonce: cursor.next_nonce,
        };
        let changed = !ev.observations.is_empty();
        self.app.observe(ev.observations, Some(pc));
        if changed {
            let c = self.app.own_cursors();
            self.handle_effects(vec![Effect::Broadcast(pb::body::Kind::Cursors(c))]);
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        // Consensus timeouts due.
        while let Some((&(at, seq), _)) = self.timers.first_key_value() {
            if at > now {
                break;
            }
            let Some(t) = self.timers.remove(&(at, seq)) else {
                break;
            };
            self.metrics.timeouts.inc();
            let entry = pb::WalEntry {
                kind: Some(pb::wal_entry::Kind::Timeout(pb::WalTimeout {
                    kind: timeout_code(t.kind),
                    height: t.height,
                    round: t.round,
                })),
            };
            self.input(Input::Timeout(t), entry, t.height);
        }
        self.check_validations();
        self.try_propose();
        self.maybe_start_height();
        let mut online: Vec<u16> = self.connected.iter().copied().collect();
        online.push(self.me);
        self.app.set_online(&online);
        let effects = self.app.tick(now_ms());
        self.handle_effects(effects);
        if now.duration_since(self.last_gossip) >= Duration::from_secs(1) {
            self.last_gossip = now;
            let c = self.app.own_cursors();
            let mut effects = vec![Effect::Broadcast(pb::body::Kind::Cursors(c))];
            match self.app.refresh_commitments() {
                Ok(Some(list)) => {
                    effects.push(Effect::Broadcast(pb::body::Kind::Commitments(list)))
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "nonce pool refill failed"),
            }
            self.handle_effects(effects);
        }
        if now.duration_since(self.last_heartbeat) >= self.cfg.node.heartbeat {
            self.last_heartbeat = now;
            let hb = pb::Heartbeat {
                height: self.cs.height(),
                round: self.cs.round(),
                version: env!("CARGO_PKG_VERSION").into(),
                heads: self
                    .chain_status
                    .values()
                    .map(|c| pb::Cursor {
                        chain_id: c.chain_id,
                        block_number: c.head,
                        block_hash: Vec::new(),
                        next_nonce: c.next_nonce,
                    })
                    .collect(),
                time_ms: now_ms(),
                attested_height: self.attested_height,
            };
            self.handle_effects(vec![Effect::Broadcast(pb::body::Kind::Heartbeat(hb))]);
        }
        if now.duration_since(self.last_rebroadcast) >= Duration::from_secs(2) {
            self.last_rebroadcast = now;
            // Gossip is best-effort: repeat our messages of the current height.
            let msgs = self.own_msgs.clone();
            for (topic, env) in msgs {
                self.publish(topic, &env);
            }
        }
        self.redial();
        self.update_status();
    }

    fn redial(&mut self) {
        let now = Instant::now();
        for (i, m) in self.cfg.committee.members.clone().iter().enumerate() {
            let idx = i as u16 + 1;
            if idx == self.me || self.connected.contains(&idx) {
                continue;
            }
            let Some(peer) = self.committee.peer(idx) else {
                continue;
            };
            let r = self.redial.entry(peer).or_default();
            if r.next > now {
                continue;
            }
            r.dialed();
            if let Ok(addr) = m.address.parse::<libp2p::Multiaddr>() {
                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .addresses(vec![addr])
                    .build();
                if let Err(e) = self.swarm.dial(opts) {
                    tracing::debug!(member = idx, error = %e, "dial failed");
                }
            }
        }
    }

    fn update_status(&mut self) {
        let t = usize::from(self.app.params().t);
        let fresh = self
            .chain_status
            .values()
            .all(|c| now_ms().saturating_sub(c.updated_ms) < 30_000);
        let chains_ok = self.chain_status.len() == self.cfg.chains.len() && fresh;
        if let Ok(mut s) = self.status.write() {
            s.moniker = self.cfg.node.moniker.clone();
            s.version = env!("CARGO_PKG_VERSION").into();
            s.member = self.me;
            s.committee = self.committee.len();
            s.height = self.cs.height();
            s.round = self.cs.round();
            s.decided_height = self.decided;
            s.attested_height = self.attested_height;
            s.peers = self.connected.iter().copied().collect();
            s.epoch = self.cfg.committee.epoch;
            s.group_key = self.app.group_key().map(|g| hex::encode(g.compressed()));
            s.chains = self.chain_status.values().cloned().collect();
            s.ready = self.connected.len() + 1 >= t && chains_ok;
        }
        self.metrics.peers.set(self.connected.len() as i64);
    }

    fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_gossip(propagation_source, message_id, &message.data),
            SwarmEvent::Behaviour(BehaviourEvent::Rr(request_response::Event::Message {
                peer,
                message,
                ..
            })) => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let resp = self.serve_request(peer, &request.0);
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .rr
                        .send_response(channel, Wire(resp.encode_to_vec()));
                }
                request_response::Message::Response { response, .. } => {
                    self.on_sync_response(&response.0)
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Rr(
                request_response::Event::OutboundFailure { error, .. },
            )) => {
                self.sync_inflight = None;
                tracing::debug!(error = %error, "request failed");
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                if let Some(i) = self.committee.index_of_peer(&peer_id) {
                    self.connected.insert(i);
                    if let Some(r) = self.redial.get_mut(&peer_id) {
                        r.reset();
                    }
                    tracing::info!(member = i, "peer connected");
                } else {
                    self.metrics.denied_connections.inc();
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                if num_established == 0
                    && let Some(i) = self.committee.index_of_peer(&peer_id)
                {
                    self.connected.remove(&i);
                    tracing::info!(member = i, "peer disconnected");
                }
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                if matches!(error, libp2p::swarm::ListenError::Denied { .. }) {
                    self.metrics.denied_connections.inc();
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => tracing::info!(%address, "listening"),
            _ => {}
        }
    }

    /// Runs until `shutdown` flips to true.
    pub async fn run(
        mut self,
        mut chain_rx: mpsc::Receiver<ChainEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let listen: libp2p::Multiaddr = self.cfg.node.listen.parse()?;
        self.swarm.listen_on(listen)?;
        // Re-send what the WAL replay produced (same content: the machine is deterministic).
        let msgs = self.own_msgs.clone();
        for (topic, env) in msgs {
            self.publish(topic, &env);
        }
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                Some(ev) = chain_rx.recv() => self.on_chain_event(ev),
                _ = tick.tick() => self.tick(),
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { break; }
                }
            }
        }
        let _ = self.store.sync_wal();
        tracing::info!("node stopped");
        Ok(())
    }
}
