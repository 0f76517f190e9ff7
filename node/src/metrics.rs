//! Prometheus metrics (prometheus-client), one registry per node, served at `/metrics`.
//!
//! One struct per subsystem — [`ChainMetrics`] (watchers), [`ConsensusMetrics`],
//! [`SigningMetrics`], [`P2pMetrics`], [`RelayerMetrics`], [`EpochMetrics`] — held by [`Metrics`], whose
//! [`Metrics::register`] adds them all to one [`Registry`]. Each subsystem gets only its
//! own struct where it can (the relayer's helpers take `&RelayerMetrics`).
//!
//! Names follow `sigil_<subsystem>_<what>[_seconds]`; the text encoding appends `_total` to
//! every counter, so the counter registered as `sigil_signing_shares_sent` is scraped as
//! `sigil_signing_shares_sent_total`. Names are stable (the devnet and docs read them): a
//! few older chain counters (`sigil_rpc_errors`, `sigil_dropped_logs`,
//! `sigil_finality_violations`, `sigil_observations`) predate the rule and keep their names.
//!
//! The engine keeps some counts itself (it has no metrics handle): [`EngineTotals`] is
//! their cumulative value, and [`Metrics::export_engine`] brings the counters up to it on
//! every host tick.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of per-chain metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChainLabel {
    /// EVM chain id of the watched source chain (`chains[].chain_id` in the config).
    pub chain: u64,
}

impl ChainLabel {
    /// The label of chain `chain` (EVM chain id).
    pub fn new(chain: u64) -> Self {
        Self { chain }
    }
}

/// Label of rejected peer messages.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Short static reason the engine or host gave (e.g. `decode`, `non-member request`).
    pub reason: String,
}

/// Latency buckets (s): 5 ms doubling 14 times, up to ~41 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Source-chain watchers: progress, RPC health and what was observed, per chain
/// ([`ChainLabel`]).
#[derive(Debug)]
pub struct ChainMetrics {
    /// Latest source chain head (block number). `sigil_chain_head`.
    pub head: Family<ChainLabel, Gauge>,
    /// Latest final block (block number). `sigil_chain_finalized`.
    pub finalized: Family<ChainLabel, Gauge>,
    /// Head minus the observed cursor (blocks). `sigil_chain_lag_blocks`.
    pub lag: Family<ChainLabel, Gauge>,
    /// RPC calls that failed or passed their deadline (calls; each is retried).
    /// `sigil_rpc_errors_total`.
    pub rpc_errors: Family<ChainLabel, Counter>,
    /// Calls whose answers did not reach `rpc_quorum` identical ones although enough RPCs
    /// answered (calls; each is retried): a lying or lagging RPC.
    /// `sigil_chain_rpc_disagreements_total`.
    pub rpc_disagreements: Family<ChainLabel, Counter>,
    /// Latency of successful RPC calls (s). `sigil_rpc_latency_seconds`.
    pub rpc_latency: Family<ChainLabel, Histogram, fn() -> Histogram>,
    /// Logs dropped because their block left the canonical chain (logs).
    /// `sigil_dropped_logs_total`.
    pub dropped_logs: Family<ChainLabel, Counter>,
    /// Final blocks that later changed hash (blocks); each halts its chain.
    /// `sigil_finality_violations_total`.
    pub finality_violations: Family<ChainLabel, Counter>,
    /// 1 while a finality violation keeps this chain halted (nothing more is observed until
    /// an operator acts), else 0. `sigil_chain_halted`; also `halted` in `/v1/status`.
    pub halted: Family<ChainLabel, Gauge>,
    /// Gateway messages observed at finality (messages). `sigil_observations_total`.
    pub observations: Family<ChainLabel, Counter>,
    /// Logs an operator's re-observe found differing from the stored observation (logs;
    /// each is left as stored): a reorg past finality or a lying RPC earlier.
    /// `sigil_chain_reobserve_conflicts_total`.
    pub reobserve_conflicts: Family<ChainLabel, Counter>,
}

impl Default for ChainMetrics {
    fn default() -> Self {
        Self {
            head: Default::default(),
            finalized: Default::default(),
            lag: Default::default(),
            rpc_errors: Default::default(),
            rpc_disagreements: Default::default(),
            rpc_latency: Family::new_with_constructor(latency),
            dropped_logs: Default::default(),
            finality_violations: Default::default(),
            halted: Default::default(),
            observations: Default::default(),
            reobserve_conflicts: Default::default(),
        }
    }
}

impl ChainMetrics {
    /// Registers the chain metrics in `r`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "sigil_chain_head",
            "Source chain head block number",
            self.head.clone(),
        );
        r.register(
            "sigil_chain_finalized",
            "Final block number",
            self.finalized.clone(),
        );
        r.register(
            "sigil_chain_lag_blocks",
            "Head minus observed cursor, blocks",
            self.lag.clone(),
        );
        r.register(
            "sigil_rpc_errors",
            "RPC errors (retried)",
            self.rpc_errors.clone(),
        );
        r.register(
            "sigil_chain_rpc_disagreements",
            "RPC calls without a quorum of identical answers (retried)",
            self.rpc_disagreements.clone(),
        );
        r.register(
            "sigil_rpc_latency_seconds",
            "RPC latency",
            self.rpc_latency.clone(),
        );
        r.register(
            "sigil_dropped_logs",
            "Logs of non-canonical blocks dropped",
            self.dropped_logs.clone(),
        );
        r.register(
            "sigil_finality_violations",
            "Final blocks that changed hash",
            self.finality_violations.clone(),
        );
        r.register(
            "sigil_chain_halted",
            "1 while a finality violation halts the chain",
            self.halted.clone(),
        );
        r.register(
            "sigil_observations",
            "Messages observed at finality",
            self.observations.clone(),
        );
        r.register(
            "sigil_chain_reobserve_conflicts",
            "Logs an operator re-observe found differing from the stored observation",
            self.reobserve_conflicts.clone(),
        );
    }
}

/// The consensus machine as the host sees it: where it is, how it moves, what it decided
/// and what it threw away.
#[derive(Debug, Default)]
pub struct ConsensusMetrics {
    /// Consensus height in progress (height number). `sigil_consensus_height`.
    pub height: Gauge,
    /// Round in progress at that height (0-based). `sigil_consensus_round`.
    pub round: Gauge,
    /// Propose/prevote/precommit timeouts fired (timeouts).
    /// `sigil_consensus_timeouts_total`.
    pub timeouts: Counter,
    /// Heights decided, live or by catch-up (heights). `sigil_consensus_decided_total`.
    pub decided: Counter,
    /// Gateway messages in decided blocks (messages).
    /// `sigil_consensus_decided_messages_total`.
    pub decided_messages: Counter,
    /// Equivocation evidence seen: a member's second, different vote (votes).
    /// `sigil_consensus_equivocations_total`.
    pub equivocations: Counter,
    /// Inputs the consensus machine dropped as out of window or malformed (far-future
    /// height or round, full buffer, non-member, wrong proposer) (messages). Copied from
    /// the engine's cumulative count on each tick. `sigil_consensus_dropped_inputs_total`.
    pub dropped_inputs: Counter,
    /// Messages observed at finality and not yet in a decided block (messages).
    /// `sigil_consensus_pending_messages`.
    pub pending_messages: Gauge,
    /// Committee size (members). `sigil_committee_size`.
    pub committee_size: Gauge,
    /// Members needed to decide and to sign, this one included (members; the signing
    /// threshold t). `sigil_committee_quorum`.
    pub quorum: Gauge,
}

impl ConsensusMetrics {
    /// Registers the consensus metrics in `r`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "sigil_consensus_height",
            "Consensus height",
            self.height.clone(),
        );
        r.register(
            "sigil_consensus_round",
            "Consensus round",
            self.round.clone(),
        );
        r.register(
            "sigil_consensus_pending_messages",
            "Messages observed at finality, not yet decided",
            self.pending_messages.clone(),
        );
        r.register(
            "sigil_committee_size",
            "Committee members",
            self.committee_size.clone(),
        );
        r.register(
            "sigil_committee_quorum",
            "Members needed to decide and sign, this one included",
            self.quorum.clone(),
        );
        r.register(
            "sigil_consensus_timeouts",
            "Consensus timeouts fired",
            self.timeouts.clone(),
        );
        r.register(
            "sigil_consensus_decided",
            "Heights decided",
            self.decided.clone(),
        );
        r.register(
            "sigil_consensus_decided_messages",
            "Messages in decided blocks",
            self.decided_messages.clone(),
        );
        r.register(
            "sigil_consensus_equivocations",
            "Equivocations detected",
            self.equivocations.clone(),
        );
        r.register(
            "sigil_consensus_dropped_inputs",
            "Messages the consensus machine dropped as out of window or malformed",
            self.dropped_inputs.clone(),
        );
    }
}

/// Threshold signing of decided blocks: attestations, their latency, misbehaving signers,
/// retries, and the signing core's own counts (`AppStats` in the engine).
#[derive(Debug)]
pub struct SigningMetrics {
    /// Attestations stored for decided blocks, formed here or adopted from a peer
    /// (attestations). `sigil_signing_attestations_total`.
    pub attestations: Counter,
    /// Decision-to-attestation latency (s). `sigil_signing_latency_seconds`.
    pub latency: Histogram,
    /// Invalid signature shares seen (shares; one per culprit member and attempt).
    /// `sigil_signing_culprits_total`.
    pub culprits: Counter,
    /// Signing attempts after the first (attempts). `sigil_signing_retries_total`.
    pub retries: Counter,
    /// Decided heights still without an attestation (heights).
    /// `sigil_signing_unattested_heights`.
    pub unattested_heights: Gauge,
    /// Pre-generated signing nonces held (nonces; the pool refills below half of
    /// `signing.nonce_pool`). `sigil_signing_nonces_available`.
    pub nonces_available: Gauge,
    /// Two different shares of one member under one nonce seen (conflicts; the member's
    /// signing share is exposed, page someone). `sigil_signing_nonce_reuse_total`.
    pub nonce_reuse: Counter,
    /// Signature shares this member released (shares; `AppStats::shares_sent`).
    /// `sigil_signing_shares_sent_total`.
    pub shares_sent: Counter,
    /// Signing requests this member refused: wrong coordinator, not the next attempt,
    /// replayed or stale commitments (requests; `AppStats::requests_refused`).
    /// `sigil_signing_requests_refused_total`.
    pub requests_refused: Counter,
    /// Signing inputs dropped as stale, unknown or malformed: commitments, shares,
    /// attestations (inputs; `AppStats::dropped`). `sigil_signing_dropped_inputs_total`.
    pub dropped_inputs: Counter,
}

impl Default for SigningMetrics {
    fn default() -> Self {
        Self {
            attestations: Default::default(),
            latency: latency(),
            culprits: Default::default(),
            retries: Default::default(),
            unattested_heights: Default::default(),
            nonces_available: Default::default(),
            nonce_reuse: Default::default(),
            shares_sent: Default::default(),
            requests_refused: Default::default(),
            dropped_inputs: Default::default(),
        }
    }
}

impl SigningMetrics {
    /// Registers the signing metrics in `r`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "sigil_signing_attestations",
            "Attestations formed",
            self.attestations.clone(),
        );
        r.register(
            "sigil_signing_latency_seconds",
            "Decision to attestation",
            self.latency.clone(),
        );
        r.register(
            "sigil_signing_culprits",
            "Invalid signature shares",
            self.culprits.clone(),
        );
        r.register(
            "sigil_signing_retries",
            "Signing attempts after the first",
            self.retries.clone(),
        );
        r.register(
            "sigil_signing_unattested_heights",
            "Decided heights without an attestation",
            self.unattested_heights.clone(),
        );
        r.register(
            "sigil_signing_nonces_available",
            "Pre-generated signing nonces held",
            self.nonces_available.clone(),
        );
        r.register(
            "sigil_signing_nonce_reuse",
            "Two different signature shares of one member under one nonce (key exposed)",
            self.nonce_reuse.clone(),
        );
        r.register(
            "sigil_signing_shares_sent",
            "Signature shares this member released",
            self.shares_sent.clone(),
        );
        r.register(
            "sigil_signing_requests_refused",
            "Signing requests refused (wrong coordinator or attempt, stale commitments)",
            self.requests_refused.clone(),
        );
        r.register(
            "sigil_signing_dropped_inputs",
            "Signing inputs dropped as stale, unknown or malformed",
            self.dropped_inputs.clone(),
        );
    }
}

/// The libp2p side: committee connectivity and what peers sent that was not accepted.
#[derive(Debug, Default)]
pub struct P2pMetrics {
    /// Connected committee members, this node excluded (peers). `sigil_p2p_peers`.
    pub peers: Gauge,
    /// Peer messages dropped, by [`ReasonLabel`] (messages). `sigil_p2p_rejected_total`.
    pub rejected: Family<ReasonLabel, Counter>,
    /// Connections refused or closed because the peer is not a member (connections).
    /// `sigil_p2p_denied_connections_total`.
    pub denied_connections: Counter,
}

impl P2pMetrics {
    /// Registers the p2p metrics in `r`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "sigil_p2p_peers",
            "Connected committee peers",
            self.peers.clone(),
        );
        r.register(
            "sigil_p2p_rejected",
            "Peer messages dropped",
            self.rejected.clone(),
        );
        r.register(
            "sigil_p2p_denied_connections",
            "Non-member connections refused",
            self.denied_connections.clone(),
        );
    }

    /// Counts one dropped peer message under `reason`.
    pub fn reject(&self, reason: &str) {
        self.rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }
}

/// The relayer: destination-chain transactions, the messages they delivered, and the
/// messages that ended Failed at their recipient and are retried.
#[derive(Debug, Default)]
pub struct RelayerMetrics {
    /// Transactions sent and not yet mined or replaced (transactions).
    /// `sigil_relayer_pending`.
    pub pending: Gauge,
    /// Reverted transactions plus failed relay attempts of a batch to a chain (failures;
    /// each is retried). `sigil_relayer_failed_total`.
    pub failed: Counter,
    /// Transactions replaced with the same nonce and higher fees because they were stuck
    /// or dropped (transactions). `sigil_relayer_replaced_total`.
    pub replaced: Counter,
    /// Transactions sent again unchanged (same nonce, fees and hash) because the node no
    /// longer knew them: evicted from its mempool, lost in a restart, or dropped behind an
    /// earlier transaction of this account (transactions). `sigil_relayer_resent_total`.
    pub resent: Counter,
    /// Gas used by mined relayer transactions (gas units). `sigil_relayer_gas_total`.
    pub gas: Counter,
    /// Gateway messages delivered to destination inboxes: `MessageDelivered` events of the
    /// relayer's own transactions, first deliveries and successful retries (messages).
    /// `sigil_relayer_delivered_total`.
    pub delivered: Counter,
    /// Messages that ended Failed in the relayer's deliveries: the recipient reverted or ran
    /// out of its gas limit (`MessageFailed`; not a relayer error, the message stays
    /// retryable) (messages). `sigil_relayer_failed_messages_total`.
    pub failed_messages: Counter,
    /// Failed messages waiting for a successful `retry` (messages).
    /// `sigil_relayer_retry_pending`.
    pub retry_pending: Gauge,
    /// The relayer account's balance on each destination chain (ether, as f64; read every
    /// 15 s). `sigil_relayer_balance_eth{chain}`.
    pub balance_eth: Family<ChainLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Failed messages a `retry` by this relayer delivered (messages).
    /// `sigil_relayer_retried_total`.
    pub retried: Counter,
    /// Messages for a configured destination chain that name another inbox than the one
    /// configured there: logged and not sent, since that inbox alone may deliver them
    /// (messages). `sigil_relayer_skipped_messages_total`.
    pub skipped: Counter,
}

impl RelayerMetrics {
    /// Registers the relayer metrics in `r`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "sigil_relayer_pending",
            "Relayer transactions pending",
            self.pending.clone(),
        );
        r.register(
            "sigil_relayer_failed",
            "Relayer transactions failed",
            self.failed.clone(),
        );
        r.register(
            "sigil_relayer_replaced",
            "Relayer transactions replaced with higher fees",
            self.replaced.clone(),
        );
        r.register(
            "sigil_relayer_resent",
            "Relayer transactions the node had lost, sent again unchanged",
            self.resent.clone(),
        );
        r.register("sigil_relayer_gas", "Relayer gas spent", self.gas.clone());
        r.register(
            "sigil_relayer_balance_eth",
            "Relayer account balance per destination chain (ether)",
            self.balance_eth.clone(),
        );
        r.register(
            "sigil_relayer_delivered",
            "Messages delivered",
            self.delivered.clone(),
        );
        r.register(
            "sigil_relayer_failed_messages",
            "Messages whose recipient reverted or ran out of gas (Failed, retryable)",
            self.failed_messages.clone(),
        );
        r.register(
            "sigil_relayer_retry_pending",
            "Failed messages awaiting a successful retry",
            self.retry_pending.clone(),
        );
        r.register(
            "sigil_relayer_retried",
            "Failed messages delivered by a retry",
            self.retried.clone(),
        );
        r.register(
            "sigil_relayer_skipped_messages",
            "Messages naming another inbox than the configured one (not sent)",
            self.skipped.clone(),
        );
    }
}

/// Every metric of a node, one struct per subsystem.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Source-chain watchers.
    pub chain: ChainMetrics,
    /// Consensus machine.
    pub consensus: ConsensusMetrics,
    /// Threshold signing.
    pub signing: SigningMetrics,
    /// libp2p connectivity and rejected peer messages.
    pub p2p: P2pMetrics,
    /// Relayer transactions.
    pub relayer: RelayerMetrics,
    /// Committee epochs.
    pub epoch: EpochMetrics,
}

/// Committee epochs: the epoch signed under and the rotation's progress.
#[derive(Debug, Default)]
pub struct EpochMetrics {
    /// The key epoch this committee signs under (epoch number). `sigil_epoch`.
    pub epoch: Gauge,
    /// Progress of the rotation to the next epoch: 0 none, 1 approved by this operator,
    /// 2 decided by the committee. `sigil_rotation_stage`.
    pub rotation_stage: Gauge,
    /// Height of the block that decided the rotation (height; 0 while undecided).
    /// `sigil_rotation_decided_height`.
    pub rotation_decided_height: Gauge,
    /// Approval files refused (bad TOML, a field out of shape); each withdraws the approval
    /// (files). `sigil_rotation_approval_errors_total`.
    pub approval_errors: Counter,
}

impl EpochMetrics {
    /// Registers the epoch metrics in `r`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "sigil_epoch",
            "Key epoch the committee signs under",
            self.epoch.clone(),
        );
        r.register(
            "sigil_rotation_stage",
            "Rotation to the next epoch: 0 none, 1 approved by this operator, 2 decided",
            self.rotation_stage.clone(),
        );
        r.register(
            "sigil_rotation_decided_height",
            "Height of the block that decided the rotation (0 while undecided)",
            self.rotation_decided_height.clone(),
        );
        r.register(
            "sigil_rotation_approval_errors",
            "Approval files refused (each withdraws the approval)",
            self.approval_errors.clone(),
        );
    }
}

/// Cumulative counts the engine keeps itself (it has no metrics handle), read by the host
/// on each tick. Counts only what no engine `Event`/`Effect` already reports: culprits,
/// retries and attestations reach the host as `Event::Culprit`, `Event::SigningRetry` and
/// `Effect::Attested` and are counted there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineTotals {
    /// Signature shares released (shares; `AppStats::shares_sent`).
    pub shares_sent: u64,
    /// Signing requests refused (requests; `AppStats::requests_refused`).
    pub requests_refused: u64,
    /// Signing inputs dropped (inputs; `AppStats::dropped`).
    pub signing_dropped: u64,
    /// Inputs the consensus machine dropped (messages; `Driver::consensus_dropped`).
    pub consensus_dropped: u64,
}

/// Raises `counter` by what the cumulative count `now` adds to `last`. A count below
/// `last` means the engine started again from zero, so all of `now` is new; the counter
/// never decreases.
fn advance(counter: &Counter, last: u64, now: u64) {
    let new = now.checked_sub(last).unwrap_or(now);
    if new > 0 {
        counter.inc_by(new);
    }
}

impl Metrics {
    /// Fresh metrics, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers every metric of every subsystem in `r`.
    pub fn register(&self, r: &mut Registry) {
        self.chain.register(r);
        self.consensus.register(r);
        self.signing.register(r);
        self.p2p.register(r);
        self.relayer.register(r);
        self.epoch.register(r);
    }

    /// Brings the engine-kept counters up to `now` (the engine's cumulative counts), given
    /// the counts `last` exported before; then remembers `now` in `last`.
    pub fn export_engine(&self, last: &mut EngineTotals, now: EngineTotals) {
        advance(&self.signing.shares_sent, last.shares_sent, now.shares_sent);
        advance(
            &self.signing.requests_refused,
            last.requests_refused,
            now.requests_refused,
        );
        advance(
            &self.signing.dropped_inputs,
            last.signing_dropped,
            now.signing_dropped,
        );
        advance(
            &self.consensus.dropped_inputs,
            last.consensus_dropped,
            now.consensus_dropped,
        );
        *last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(m: &Metrics) -> String {
        let mut reg = Registry::default();
        m.register(&mut reg);
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &reg).unwrap();
        s
    }

    fn value(text: &str, name: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map(|v| v.trim().parse::<f64>().unwrap() as u64)
    }

    #[test]
    fn existing_names_are_kept_and_new_ones_are_exported() {
        let m = Metrics::new();
        m.chain.head.get_or_create(&ChainLabel::new(1)).set(7);
        m.p2p.reject("decode");
        let text = scrape(&m);
        for name in [
            "sigil_chain_head{",
            "sigil_p2p_rejected_total{",
            "sigil_consensus_height ",
            "sigil_consensus_round ",
            "sigil_consensus_timeouts_total ",
            "sigil_consensus_decided_total ",
            "sigil_consensus_decided_messages_total ",
            "sigil_consensus_equivocations_total ",
            "sigil_consensus_dropped_inputs_total ",
            "sigil_signing_attestations_total ",
            "sigil_signing_latency_seconds_count ",
            "sigil_signing_culprits_total ",
            "sigil_signing_retries_total ",
            "sigil_signing_nonce_reuse_total ",
            "sigil_signing_shares_sent_total ",
            "sigil_signing_requests_refused_total ",
            "sigil_signing_dropped_inputs_total ",
            "sigil_p2p_peers ",
            "sigil_p2p_denied_connections_total ",
            "sigil_relayer_pending ",
            "sigil_relayer_failed_total ",
            "sigil_relayer_replaced_total ",
            "sigil_relayer_resent_total ",
            "sigil_relayer_gas_total ",
            "sigil_relayer_delivered_total ",
            "sigil_relayer_failed_messages_total ",
            "sigil_relayer_retry_pending ",
            "sigil_relayer_retried_total ",
            "sigil_relayer_skipped_messages_total ",
            "sigil_consensus_pending_messages ",
            "sigil_committee_size ",
            "sigil_committee_quorum ",
            "sigil_signing_unattested_heights ",
            "sigil_signing_nonces_available ",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "{name} missing:\n{text}"
            );
        }
    }

    /// Every `sigil_*` series the alert rules (monitoring/alerts.yml) and the dashboard
    /// (monitoring/dashboard.json) query is one this node exports: a renamed metric fails
    /// here, not silently in production.
    #[test]
    fn every_metric_the_alerts_and_dashboard_use_is_exported() {
        let m = Metrics::new();
        m.chain.head.get_or_create(&ChainLabel::new(1)).set(7);
        m.p2p.reject("decode");
        for f in [&m.chain.finalized, &m.chain.lag, &m.chain.halted] {
            f.get_or_create(&ChainLabel::new(1)).set(1);
        }
        for f in [
            &m.chain.rpc_errors,
            &m.chain.rpc_disagreements,
            &m.chain.dropped_logs,
            &m.chain.finality_violations,
            &m.chain.observations,
            &m.chain.reobserve_conflicts,
        ] {
            f.get_or_create(&ChainLabel::new(1)).inc();
        }
        m.chain
            .rpc_latency
            .get_or_create(&ChainLabel::new(1))
            .observe(0.1);
        m.relayer
            .balance_eth
            .get_or_create(&ChainLabel::new(1))
            .set(1.0);
        let text = scrape(&m);
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitoring");
        let mut checked = 0;
        for file in ["alerts.yml", "dashboard.json"] {
            let src = std::fs::read_to_string(dir.join(file)).unwrap();
            let mut rest = src.as_str();
            while let Some(i) = rest.find("sigil_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                checked += 1;
                assert!(
                    text.lines().any(|l| l.starts_with(&format!("{name} "))
                        || l.starts_with(&format!("{name}{{"))),
                    "{file} uses {name}, which the node does not export"
                );
            }
        }
        assert!(checked > 20, "only {checked} names found");
    }

    #[test]
    fn engine_totals_are_exported_as_increments_and_never_decrease() {
        let m = Metrics::new();
        let mut last = EngineTotals::default();
        let mut now = EngineTotals {
            shares_sent: 3,
            requests_refused: 1,
            signing_dropped: 2,
            consensus_dropped: 5,
        };
        m.export_engine(&mut last, now);
        m.export_engine(&mut last, now);
        assert_eq!(last, now);
        let text = scrape(&m);
        assert_eq!(value(&text, "sigil_signing_shares_sent_total"), Some(3));
        assert_eq!(
            value(&text, "sigil_signing_requests_refused_total"),
            Some(1)
        );
        assert_eq!(value(&text, "sigil_signing_dropped_inputs_total"), Some(2));
        assert_eq!(
            value(&text, "sigil_consensus_dropped_inputs_total"),
            Some(5)
        );
        now.shares_sent = 4;
        m.export_engine(&mut last, now);
        assert_eq!(m.signing.shares_sent.get(), 4);
        // The engine counted again from zero: its new count is added, nothing subtracted.
        now.consensus_dropped = 2;
        m.export_engine(&mut last, now);
        assert_eq!(m.consensus.dropped_inputs.get(), 7);
    }
}
