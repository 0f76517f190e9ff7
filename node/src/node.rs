//! The node host: moves bytes between the world (libp2p swarm, chain watchers, a 50 ms
//! timer) and the member engine ([`sigil_engine::Driver`]), and executes the engine's
//! effects (publish, send, respond, gossip verdicts, metrics and logs). Every protocol rule
//! — envelope checks, windows, WAL, catch-up, validity, signing — lives in the engine, which
//! the simulator drives too; this file holds no protocol state.

use crate::config::Config;
use crate::identity::{Committee, NodeKey};
use crate::keyfiles::KeyShare;
use crate::metrics::{EngineTotals, Metrics};
use crate::now_ms;
use crate::p2p::{Behaviour, BehaviourEvent, Redial, Wire, topics};
use crate::store::{RocksLedger, Store};
use crate::watcher::ChainEvent;
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, Swarm, gossipsub, request_response};
use prost::Message as _;
use sigil_crypto::GroupKey;
use sigil_engine::app::{App, AppParams, Signer};
use sigil_engine::{Driver, DriverConfig, Effect, Event, Input, Topic, Verdict};
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
    /// Committee epochs: the rotation to the next epoch (approved, decided).
    pub rotation: crate::epoch::EpochStatus,
    /// Per chain.
    pub chains: Vec<ChainStatus>,
    /// Whether quorum peers are connected and every chain answered recently.
    pub ready: bool,
    /// Decided heights without an attestation.
    pub unattested: Vec<u64>,
    /// Messages observed at finality, not yet decided.
    pub pending_messages: u64,
    /// Source chains this node's operator paused (admin API).
    pub paused: Vec<u64>,
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
    /// A block this node treated as final changed hash (a reorg deeper than the finality
    /// rule): the chain is halted, nothing more is observed on it, until an operator acts
    /// (metric `sigil_chain_halted`). The node is then not `ready`.
    pub halted: bool,
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
    /// The group key of each epoch this node signed under (the node adds the next one when
    /// it switches), for the attestation views.
    pub group_keys: Arc<RwLock<BTreeMap<u64, GroupKey>>>,
    /// Recently served attested batches (bounded; see [`crate::api::BatchCache`]).
    pub batches: crate::api::BatchCache,
}

/// The running node: a libp2p swarm and one engine.
pub struct Node {
    cfg: Config,
    me: u16,
    committee: Committee,
    swarm: Swarm<Behaviour>,
    engine: Driver<Store>,
    metrics: Arc<Metrics>,
    status: Arc<RwLock<Status>>,
    /// Effects produced while building (WAL replay, restored sessions), run at start.
    startup: Vec<Effect>,
    redial: HashMap<PeerId, Redial>,
    connected: BTreeSet<u16>,
    /// Gossip messages awaiting the engine's verdict, by correlation id.
    gossip_ids: HashMap<u64, (gossipsub::MessageId, PeerId)>,
    /// Request channels awaiting the engine's answer, by correlation id.
    channels: HashMap<u64, request_response::ResponseChannel<Wire>>,
    next_id: u64,
    chain_status: BTreeMap<u64, ChainStatus>,
    /// The engine's cumulative counts as last exported to the metrics (see
    /// [`Node::export_engine_counts`]).
    exported: EngineTotals,
    /// Monotonic origin of the engine's clock.
    origin: Instant,
    /// The operator's approval file of the next committee, re-read when it changes.
    approval: Option<crate::epoch::ApprovalWatch>,
    /// Why the approval file was last refused (shown in `/v1/status`).
    approval_error: Option<String>,
    /// When the approval file was last polled.
    approval_polled: Option<Instant>,
    /// Committee epochs: the next committee's DKG, the switch (see [`handover`]).
    epochs: handover::EpochHost,
    /// Source chains the operator paused (the admin API writes it after the store; each
    /// tick applies it to the engine, the engine of a new epoch included).
    paused: Arc<RwLock<BTreeSet<u64>>>,
    /// Re-observe findings from the watchers (admin API), and the sender they clone.
    reobserved: (
        mpsc::Sender<crate::watcher::Reobserved>,
        Option<mpsc::Receiver<crate::watcher::Reobserved>>,
    ),
}

mod handover;
mod reobserve;
pub use handover::{committee_of, key_commit_path};

/// How often the approval file is polled (a stat per poll).
const APPROVAL_POLL: Duration = Duration::from_secs(1);

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
    /// The operator's approval of the next committee
    /// (`<home>/`[`crate::epoch::APPROVAL_FILE`]); `None`: never approve a rotation.
    pub approval: Option<std::path::PathBuf>,
    /// Where the next epoch's key share is written (`<home>/keys`) and the passphrase that
    /// encrypts it; `None`: this node takes no part in a next committee's DKG.
    pub keystore: Option<(std::path::PathBuf, zeroize::Zeroizing<Vec<u8>>)>,
    /// The group key of every epoch, shared with the API (the node adds the next one).
    pub group_keys: Arc<RwLock<BTreeMap<u64, GroupKey>>>,
}

/// The engine's timing from the config (ms).
fn driver_config(cfg: &Config, me: u16) -> DriverConfig {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let mut d = DriverConfig::new(me);
    d.consensus.propose_ms = ms(cfg.consensus.propose_timeout);
    d.consensus.prevote_ms = ms(cfg.consensus.prevote_timeout);
    d.consensus.precommit_ms = ms(cfg.consensus.precommit_timeout);
    d.consensus.delta_ms = ms(cfg.consensus.timeout_delta);
    d.observation_wait_ms = ms(cfg.consensus.observation_wait);
    d.heartbeat_ms = ms(cfg.node.heartbeat);
    d.version = env!("CARGO_PKG_VERSION").into();
    d
}

impl Node {
    /// Builds the node: committee, swarm, engine (WAL replay and restored signing sessions).
    /// Errors: config/key mismatch, p2p or storage failures.
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
            approval,
            keystore,
            group_keys,
        } = setup;
        // Which epoch the store is in (committee epochs): the configured one, or a later one
        // this node switched to before it stopped.
        let at = sigil_engine::epochs::resume_epoch(&store, cfg.committee.epoch)?;
        let committee = match at.rotation() {
            Some(r) => handover::committee_of(r)?,
            None => Committee::from_config(&cfg.committee)?,
        };
        let me = committee.index_of(&key.public()).ok_or_else(|| {
            if at.epoch > cfg.committee.epoch {
                anyhow::anyhow!(
                    "this node's key {} is not in the committee of epoch {} (it left the committee)",
                    crate::identity::public_key_hex(&key.public()),
                    at.epoch
                )
            } else {
                anyhow::anyhow!(
                    "this node's key {} is not in config field `committee.members`; add it",
                    crate::identity::public_key_hex(&key.public())
                )
            }
        })?;
        if share.member != me || share.n != committee.len() || share.epoch != at.epoch {
            anyhow::bail!(
                "key share is for member {} of {} (epoch {}), the committee of epoch {} has this node as member {me} of {}; rerun `sigil dkg` for this committee",
                share.member,
                share.n,
                share.epoch,
                at.epoch,
                committee.len()
            );
        }
        let built = handover::build_engine(
            &cfg,
            &key,
            share,
            store.clone(),
            &committee,
            me,
            at.epoch,
            approval.clone(),
            &metrics,
        )?;
        let swarm = crate::p2p::build(&key, &committee)?;
        let origin = Instant::now();
        let paused = Arc::new(RwLock::new(store.paused_chains()?));
        Ok(Self {
            cfg,
            me,
            committee,
            swarm,
            engine: built.engine,
            metrics,
            status,
            startup: built.startup,
            redial: HashMap::new(),
            connected: BTreeSet::new(),
            gossip_ids: HashMap::new(),
            channels: HashMap::new(),
            next_id: 0,
            chain_status: BTreeMap::new(),
            exported: EngineTotals::default(),
            origin,
            approval: built.approval,
            approval_error: built.approval_error,
            approval_polled: Some(Instant::now()),
            epochs: handover::EpochHost::new(key, store, at.epoch, keystore, approval, group_keys),
            paused,
            reobserved: {
                let (tx, rx) = mpsc::channel(4);
                (tx, Some(rx))
            },
        }
        .with_paused())
    }

    /// Applies the stored pause before the engine sees any input.
    fn with_paused(mut self) -> Self {
        self.apply_paused();
        self
    }

    /// The operator's paused source chains, shared with the admin API
    /// ([`crate::admin::AdminState::paused`]).
    pub fn paused_handle(&self) -> Arc<RwLock<BTreeSet<u64>>> {
        self.paused.clone()
    }

    /// Where the watchers send re-observe findings ([`crate::watcher::WatcherAdmin::results`]).
    pub fn reobserve_results(&self) -> mpsc::Sender<crate::watcher::Reobserved> {
        self.reobserved.0.clone()
    }

    /// Brings the engine's paused chains to what the operator set.
    fn apply_paused(&mut self) {
        let want = self.paused.read().map(|p| p.clone()).unwrap_or_default();
        let have = self.engine.app().paused().clone();
        for c in want.difference(&have) {
            self.engine.set_paused(*c, true);
            tracing::warn!(
                chain = c,
                "source chain paused by the operator: not proposing, prevoting or signing its messages"
            );
        }
        for c in have.difference(&want) {
            self.engine.set_paused(*c, false);
            tracing::warn!(chain = c, "source chain resumed by the operator");
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn drive(&mut self, input: Input) {
        let now = self.now();
        let effects = self.engine.handle(input, now);
        self.execute(effects);
        self.maybe_switch();
    }

    /// The effect executor.
    fn execute(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Publish { topic, envelope } => {
                    let topic = match topic {
                        Topic::Consensus => topics::CONSENSUS,
                        Topic::Signing => topics::SIGNING,
                        Topic::Observations => topics::OBSERVATIONS,
                        Topic::Heartbeat => topics::HEARTBEAT,
                    };
                    if let Err(e) = self
                        .swarm
                        .behaviour_mut()
                        .gossipsub
                        .publish(gossipsub::IdentTopic::new(topic), envelope.encode_to_vec())
                    {
                        tracing::debug!(topic, error = %e, "publish failed");
                    }
                }
                Effect::Send { to, request } => match self.committee.peer(to) {
                    Some(peer) => {
                        self.swarm
                            .behaviour_mut()
                            .rr
                            .send_request(&peer, Wire(request.encode_to_vec()));
                    }
                    None => self.drive(Input::RequestFailed),
                },
                Effect::Respond { id, response } => {
                    if let Some(ch) = self.channels.remove(&id) {
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .rr
                            .send_response(ch, Wire(response.encode_to_vec()));
                    }
                }
                Effect::Verdict { id, verdict } => {
                    use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
                    if let Some((mid, peer)) = self.gossip_ids.remove(&id) {
                        let acceptance = match verdict {
                            Verdict::Accept => Accept,
                            Verdict::Ignore => Ignore,
                            Verdict::Reject(_) => Reject,
                        };
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .gossipsub
                            .report_message_validation_result(&mid, &peer, acceptance);
                    }
                }
                Effect::Decided {
                    height,
                    round,
                    block,
                    caught_up,
                } => {
                    self.metrics.consensus.decided.inc();
                    self.metrics
                        .consensus
                        .decided_messages
                        .inc_by(u64::from(block.0.count));
                    tracing::info!(
                        height,
                        round,
                        messages = block.0.count,
                        caught_up,
                        "decided"
                    );
                }
                Effect::Attested {
                    attestation,
                    after_ms,
                } => {
                    self.metrics.signing.attestations.inc();
                    if let Some(ms) = after_ms {
                        self.metrics.signing.latency.observe(ms as f64 / 1000.0);
                    }
                    tracing::info!(height = attestation.height, "attested");
                }
                Effect::Event(ev) => self.on_event(ev),
            }
        }
    }

    fn on_event(&self, ev: Event) {
        match ev {
            Event::Rejected(reason) => {
                self.metrics.p2p.reject(reason);
                tracing::debug!(reason, "peer message rejected");
            }
            Event::Equivocation {
                voter,
                height,
                round,
            } => {
                self.metrics.consensus.equivocations.inc();
                tracing::warn!(voter, height, round, "equivocation evidence");
            }
            Event::TimeoutFired => {
                self.metrics.consensus.timeouts.inc();
            }
            Event::ProposalInvalid { height, reason } => {
                tracing::warn!(height, reason, "proposal invalid; prevoting nil")
            }
            Event::SigningRetry {
                height,
                attempt,
                excluded,
            } => {
                self.metrics.signing.retries.inc();
                tracing::warn!(
                    height,
                    attempt,
                    ?excluded,
                    "signing attempt timed out; retrying with fresh commitments"
                );
            }
            Event::Culprit {
                height,
                attempt,
                member,
            } => {
                self.metrics.signing.culprits.inc();
                tracing::warn!(height, attempt, member, "invalid signature share (culprit)");
            }
            Event::SignRefused { height, reason } => tracing::info!(height, reason, "not signing"),
            Event::CaughtUp { height } => tracing::info!(height, "caught up"),
            Event::SyncRequested {
                from_height,
                member,
            } => tracing::info!(from_height, member, "catching up"),
            Event::Storage(e) => tracing::error!(error = %e, "storage failed; input not processed"),
            Event::NoncePool(e) => tracing::error!(error = %e, "nonce pool refill failed"),
            Event::NonceReuse {
                member,
                epoch,
                nonce_id,
                heights,
            } => {
                self.metrics.signing.nonce_reuse.inc();
                tracing::error!(
                    member,
                    epoch,
                    nonce_id,
                    ?heights,
                    "two different signature shares under one nonce: that member's signing share is exposed"
                );
            }
            Event::RefusedSecondVote { height, round } => {
                tracing::error!(height, round, "refusing to send a second, different vote")
            }
        }
    }

    fn on_chain_event(&mut self, ev: ChainEvent) {
        let cursor = ev.cursor;
        if let Err(e) =
            self.engine
                .storage()
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
        if self.epochs.has_left() {
            // An archive decides nothing more: its engine's pool would only grow.
            return;
        }
        self.drive(Input::Chain(ev));
    }

    fn redial(&mut self) {
        let now = Instant::now();
        for idx in 1..=self.committee.len() {
            if idx == self.me || self.connected.contains(&idx) {
                continue;
            }
            let (Some(peer), Some(key)) = (self.committee.peer(idx), self.committee.key(idx))
            else {
                continue;
            };
            // The address the config lists for that key (a member of this epoch's committee
            // that the config does not list is dialled by it, not by us).
            let hex = crate::identity::public_key_hex(key);
            let Some(address) = self
                .cfg
                .committee
                .members
                .iter()
                .find(|m| m.key.trim_start_matches("0x").eq_ignore_ascii_case(&hex))
                .map(|m| m.address.clone())
            else {
                continue;
            };
            let r = self.redial.entry(peer).or_default();
            if r.next > now {
                continue;
            }
            r.dialed();
            if let Ok(addr) = address.parse::<libp2p::Multiaddr>() {
                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .addresses(vec![addr])
                    .build();
                if let Err(e) = self.swarm.dial(opts) {
                    tracing::debug!(member = idx, error = %e, "dial failed");
                }
            }
        }
    }

    /// Re-reads the operator's approval file when it changed (at most every
    /// [`APPROVAL_POLL`]) and hands it to the engine. A refused file withdraws the approval,
    /// is logged naming the field, counted, and shown in `/v1/status`.
    fn poll_approval(&mut self) {
        let Some(watch) = self.approval.as_mut() else {
            return;
        };
        if self
            .approval_polled
            .is_some_and(|t| t.elapsed() < APPROVAL_POLL)
        {
            return;
        }
        self.approval_polled = Some(Instant::now());
        let Some(change) = watch.poll() else {
            return;
        };
        let result = change
            .map_err(|e| e.to_string())
            .and_then(|r| self.engine.approve_rotation(r));
        match result {
            Ok(()) => {
                self.approval_error = None;
                match self.engine.app().approved_rotation() {
                    Some(r) => tracing::info!(
                        epoch = r.epoch,
                        members = r.members.len(),
                        threshold = r.threshold,
                        "operator approved the next committee"
                    ),
                    None => tracing::info!("no approved next committee"),
                }
            }
            Err(e) => {
                let _ = self.engine.approve_rotation(None);
                self.metrics.epoch.approval_errors.inc();
                tracing::error!(error = %e, "approval file refused; approval withdrawn");
                self.approval_error = Some(e);
            }
        }
    }

    fn update_status(&mut self) {
        let t = usize::from(self.engine.app().params().t);
        let fresh = self
            .chain_status
            .values()
            .all(|c| now_ms().saturating_sub(c.updated_ms) < 30_000);
        let chains_ok = self.chain_status.len() == self.cfg.chains.len() && fresh;
        let es = self.engine.status();
        let app = self.engine.app();
        let rotation = crate::epoch::EpochStatus::new(
            app.params().epoch,
            app.approved_rotation(),
            app.decided_rotation(),
            self.approval_error.clone(),
        )
        .with_handover(&app.epoch_record(), app.epoch_end());
        if let Ok(mut s) = self.status.write() {
            s.moniker = self.cfg.node.moniker.clone();
            s.version = env!("CARGO_PKG_VERSION").into();
            s.member = self.me;
            s.committee = self.committee.len();
            s.height = es.height;
            s.round = es.round;
            s.decided_height = es.decided;
            s.attested_height = es.attested;
            s.peers = self.connected.iter().copied().collect();
            s.epoch = self.engine.app().params().epoch;
            s.group_key = self
                .engine
                .app()
                .group_key()
                .map(|g| hex::encode(g.compressed()));
            s.chains = self.chain_status.values().cloned().collect();
            for c in &mut s.chains {
                c.halted = self
                    .metrics
                    .chain
                    .halted
                    .get_or_create(&crate::metrics::ChainLabel::new(c.chain_id))
                    .get()
                    != 0;
            }
            let halted = s.chains.iter().any(|c| c.halted);
            s.ready = self.connected.len() + 1 >= t && chains_ok && !halted;
            s.unattested = es.unattested.clone();
            s.pending_messages = app.pending_observations() as u64;
            s.paused = app.paused().iter().copied().collect();
            s.rotation = rotation.clone();
        }
        self.metrics
            .epoch
            .epoch
            .set(i64::try_from(rotation.epoch).unwrap_or(i64::MAX));
        self.metrics.epoch.rotation_stage.set(rotation.stage_code());
        self.metrics.epoch.rotation_decided_height.set(
            rotation
                .decided
                .as_ref()
                .and_then(|d| d.height)
                .map_or(0, |h| i64::try_from(h).unwrap_or(i64::MAX)),
        );
        self.metrics.p2p.peers.set(self.connected.len() as i64);
        let app = self.engine.app();
        let m = &self.metrics;
        m.consensus
            .committee_size
            .set(i64::from(self.committee.len()));
        m.consensus.quorum.set(t as i64);
        m.consensus
            .pending_messages
            .set(app.pending_observations() as i64);
        m.signing.unattested_heights.set(es.unattested.len() as i64);
        m.signing
            .nonces_available
            .set(app.nonces_available().unwrap_or(0) as i64);
        self.metrics.consensus.height.set(es.height as i64);
        self.metrics.consensus.round.set(i64::from(es.round));
    }

    /// Brings the counters the engine keeps itself (signing `AppStats`, the consensus
    /// machine's dropped inputs) up to their cumulative values. Culprits, retries and
    /// attestations are not read here: they arrive as events and effects and are counted in
    /// [`Node::execute`].
    fn export_engine_counts(&mut self) {
        let stats = &self.engine.app().stats;
        let now = EngineTotals {
            shares_sent: stats.shares_sent,
            requests_refused: stats.requests_refused,
            signing_dropped: stats.dropped,
            consensus_dropped: self.engine.consensus_dropped(),
        };
        self.metrics.export_engine(&mut self.exported, now);
    }

    fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                self.next_id = self.next_id.wrapping_add(1);
                let id = self.next_id;
                self.gossip_ids.insert(id, (message_id, propagation_source));
                self.drive(Input::Gossip {
                    id,
                    data: message.data,
                });
                // The engine answers every gossip input synchronously.
                self.gossip_ids.remove(&id);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rr(request_response::Event::Message {
                peer,
                message,
                ..
            })) => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    // Joiners asking for each other's addresses (members and guests only).
                    if (self.committee.index_of_peer(&peer).is_some()
                        || self.epochs.is_guest(&peer))
                        && let Some(r) = self.epochs.peers_request(&request.0)
                    {
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .rr
                            .send_response(channel, Wire(r.encode_to_vec()));
                        return;
                    }
                    // The next committee's DKG packages go to its session, not the engine.
                    if let Some(ack) = self.epochs.dkg_request(peer, &request.0) {
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .rr
                            .send_response(channel, Wire(ack.encode_to_vec()));
                        return;
                    }
                    // A joiner (guest) is member 0: the engine serves it the hand-over and
                    // takes its key commit, and refuses it everything else.
                    let from = match self.committee.index_of_peer(&peer) {
                        Some(m) => m,
                        None if self.epochs.is_guest(&peer) => 0,
                        None => {
                            self.metrics.p2p.reject("non-member request");
                            return;
                        }
                    };
                    self.next_id = self.next_id.wrapping_add(1);
                    let id = self.next_id;
                    self.channels.insert(id, channel);
                    self.drive(Input::Request {
                        id,
                        from,
                        data: request.0,
                    });
                    self.channels.remove(&id);
                }
                request_response::Message::Response {
                    response,
                    request_id,
                } => {
                    if self.epochs.dkg_response(request_id, &response.0) {
                        return;
                    }
                    match self.committee.index_of_peer(&peer) {
                        Some(from) => self.drive(Input::Response {
                            from,
                            data: response.0,
                        }),
                        None => self.drive(Input::RequestFailed),
                    }
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Rr(
                request_response::Event::OutboundFailure {
                    error, request_id, ..
                },
            )) => {
                tracing::debug!(error = %error, "request failed");
                if self.epochs.dkg_failure(request_id) {
                    return;
                }
                self.drive(Input::RequestFailed);
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                if let Some(i) = self.committee.index_of_peer(&peer_id) {
                    self.connected.insert(i);
                    if let Some(r) = self.redial.get_mut(&peer_id) {
                        r.reset();
                    }
                    tracing::info!(member = i, "peer connected");
                    self.drive(Input::PeerUp(i));
                } else if self.epochs.is_guest(&peer_id) {
                    tracing::info!(%peer_id, "joining member of the next committee connected");
                } else {
                    self.metrics.p2p.denied_connections.inc();
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
                    self.drive(Input::PeerDown(i));
                }
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                if matches!(error, libp2p::swarm::ListenError::Denied { .. }) {
                    self.metrics.p2p.denied_connections.inc();
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => tracing::info!(%address, "listening"),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(
                libp2p::identify::Event::Received { peer_id, info, .. },
            )) => self.epochs.identified(peer_id, &info.listen_addrs),
            _ => {}
        }
    }

    /// Runs until `shutdown` flips to true.
    pub async fn run(
        mut self,
        mut chain_rx: mpsc::Receiver<ChainEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        crate::p2p::listen(&mut self.swarm, &self.cfg.node)?;
        // Re-send what the WAL replay produced (same content: the machine is deterministic).
        let startup = std::mem::take(&mut self.startup);
        self.execute(startup);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reobserved = self
            .reobserved
            .1
            .take()
            .ok_or_else(|| anyhow::anyhow!("node run twice"))?;
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                Some(ev) = chain_rx.recv() => self.on_chain_event(ev),
                Some(r) = reobserved.recv() => self.on_reobserved(r),
                _ = tick.tick() => {
                    self.apply_paused();
                    self.poll_approval();
                    self.drive(Input::Tick);
                    self.epoch_step();
                    self.redial();
                    self.update_status();
                    self.export_engine_counts();
                }
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { break; }
                }
            }
        }
        let _ = sigil_engine::Storage::sync_wal(self.engine.storage_mut());
        tracing::info!("node stopped");
        Ok(())
    }
}
