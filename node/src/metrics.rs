//! Prometheus metrics (prometheus-client), one registry per node, served at `/metrics`.
//! Names follow `sigil_<subsystem>_<what>[_total|_seconds]`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of per-chain metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChainLabel {
    /// Chain id.
    pub chain: u64,
}

/// Label of rejected peer messages.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: String,
}

/// Every metric of a node.
#[derive(Debug)]
pub struct Metrics {
    /// Latest source chain head (block number).
    pub chain_head: Family<ChainLabel, Gauge>,
    /// Latest final block (number).
    pub chain_finalized: Family<ChainLabel, Gauge>,
    /// head − observed cursor (blocks).
    pub chain_lag: Family<ChainLabel, Gauge>,
    /// RPC errors (after which the call is retried).
    pub rpc_errors: Family<ChainLabel, Counter>,
    /// RPC latency (s).
    pub rpc_latency: Family<ChainLabel, Histogram, fn() -> Histogram>,
    /// Logs dropped because their block left the canonical chain.
    pub dropped_logs: Family<ChainLabel, Counter>,
    /// Finality violations (a final block changed hash); the chain is halted.
    pub finality_violations: Family<ChainLabel, Counter>,
    /// Messages observed at finality.
    pub observations: Family<ChainLabel, Counter>,
    /// Consensus height.
    pub height: Gauge,
    /// Consensus round.
    pub round: Gauge,
    /// Consensus timeouts fired.
    pub timeouts: Counter,
    /// Heights decided.
    pub decided: Counter,
    /// Messages in decided blocks.
    pub decided_messages: Counter,
    /// Equivocations detected.
    pub equivocations: Counter,
    /// Attestations formed.
    pub attestations: Counter,
    /// Decision-to-attestation latency (s).
    pub signing_latency: Histogram,
    /// Members that sent invalid shares.
    pub culprits: Counter,
    /// Signing attempts after the first.
    pub signing_retries: Counter,
    /// Connected committee peers.
    pub peers: Gauge,
    /// Peer messages dropped, by reason.
    pub rejected: Family<ReasonLabel, Counter>,
    /// Connections refused or closed because the peer is not a member.
    pub denied_connections: Counter,
    /// Relayer: transactions pending.
    pub relayer_pending: Gauge,
    /// Relayer: failed transactions.
    pub relayer_failed: Counter,
    /// Relayer: transactions replaced with higher fees (stuck or dropped).
    pub relayer_replaced: Counter,
    /// Relayer: gas spent.
    pub relayer_gas: Counter,
    /// Relayer: messages delivered.
    pub relayer_delivered: Counter,
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics.
    pub fn new() -> Self {
        Self {
            chain_head: Default::default(),
            chain_finalized: Default::default(),
            chain_lag: Default::default(),
            rpc_errors: Default::default(),
            rpc_latency: Family::new_with_constructor(latency),
            dropped_logs: Default::default(),
            finality_violations: Default::default(),
            observations: Default::default(),
            height: Default::default(),
            round: Default::default(),
            timeouts: Default::default(),
            decided: Default::default(),
            decided_messages: Default::default(),
            equivocations: Default::default(),
            attestations: Default::default(),
            signing_latency: latency(),
            culprits: Default::default(),
            signing_retries: Default::default(),
            peers: Default::default(),
            rejected: Default::default(),
            denied_connections: Default::default(),
            relayer_pending: Default::default(),
            relayer_failed: Default::default(),
            relayer_replaced: Default::default(),
            relayer_gas: Default::default(),
            relayer_delivered: Default::default(),
        }
    }

    /// Registers every metric in `r`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "sigil_chain_head",
            "Source chain head block number",
            self.chain_head.clone(),
        );
        r.register(
            "sigil_chain_finalized",
            "Final block number",
            self.chain_finalized.clone(),
        );
        r.register(
            "sigil_chain_lag_blocks",
            "Head minus observed cursor, blocks",
            self.chain_lag.clone(),
        );
        r.register(
            "sigil_rpc_errors",
            "RPC errors (retried)",
            self.rpc_errors.clone(),
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
            "sigil_observations",
            "Messages observed at finality",
            self.observations.clone(),
        );
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
            "sigil_signing_attestations",
            "Attestations formed",
            self.attestations.clone(),
        );
        r.register(
            "sigil_signing_latency_seconds",
            "Decision to attestation",
            self.signing_latency.clone(),
        );
        r.register(
            "sigil_signing_culprits",
            "Invalid signature shares",
            self.culprits.clone(),
        );
        r.register(
            "sigil_signing_retries",
            "Signing attempts after the first",
            self.signing_retries.clone(),
        );
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
        r.register(
            "sigil_relayer_pending",
            "Relayer transactions pending",
            self.relayer_pending.clone(),
        );
        r.register(
            "sigil_relayer_failed",
            "Relayer transactions failed",
            self.relayer_failed.clone(),
        );
        r.register(
            "sigil_relayer_replaced",
            "Relayer transactions replaced with higher fees",
            self.relayer_replaced.clone(),
        );
        r.register(
            "sigil_relayer_gas",
            "Relayer gas spent",
            self.relayer_gas.clone(),
        );
        r.register(
            "sigil_relayer_delivered",
            "Messages delivered",
            self.relayer_delivered.clone(),
        );
    }

    /// Counts a dropped peer message.
    pub fn reject(&self, reason: &str) {
        self.rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Per-chain label.
    pub fn chain(chain: u64) -> ChainLabel {
        ChainLabel { chain }
    }
}
