//! The devnet's command-line options.

use std::path::PathBuf;

/// Devnet options (`sigil devnet --help`).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "sigil-devnet",
    about = "Local devnet: two anvil chains, N sigil nodes, messages across, a report"
)]
pub struct DevnetArgs {
    /// Committee size (at least 4: the smallest committee that tolerates one faulty member).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(4..))]
    pub nodes: u16,
    /// Messages from chain A to chain B.
    #[arg(long, default_value_t = 1000)]
    pub messages: u32,
    /// Messages from chain B back to chain A (default: a tenth of --messages).
    #[arg(long)]
    pub back: Option<u32>,
    /// Send rate (messages per second, both directions together).
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Messages sent back to back in one burst (they land in one block).
    #[arg(long, default_value_t = 50)]
    pub burst: u32,
    /// Messages per gateway transaction: 1 sends each with `sendMessage`; more packs up to
    /// that many payloads of one burst, direction and kind into one `sendMessages` call
    /// (load generation: ~100,000 messages in minutes).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub per_tx: u32,
    /// Block gas limit of both anvil chains (anvil's default: 30,000,000). Raise it for
    /// throughput runs: a delivery transaction reserves its messages' gas limits.
    #[arg(long)]
    pub gas_limit: Option<u64>,
    /// Most messages per consensus block.
    #[arg(long, default_value_t = 10_000)]
    pub batch: u32,
    /// Poison messages: sent to a `GasBurnerReceiver` (which uses up any gas limit) among the
    /// good ones, alternating A->B and B->A, with the default gas limit. Each must end Failed
    /// (and retryable) on its inbox without delaying the others.
    #[arg(long, default_value_t = 0)]
    pub poison: u32,
    /// Kill this member (1-based) once half the messages are sent.
    #[arg(long)]
    pub kill_node: Option<u16>,
    /// Restart the killed member this many seconds after killing it.
    #[arg(long)]
    pub restart_after: Option<u64>,
    /// Churn: every this many seconds restart the member that is down and SIGKILL the next
    /// one, round robin (one member down at a time), until every message is delivered.
    #[arg(long, conflicts_with_all = ["kill_node", "rotate_at"], value_parser = clap::value_parser!(u64).range(1..))]
    pub churn: Option<u64>,
    /// Block confirmations the watchers wait for.
    #[arg(long, default_value_t = 2)]
    pub confirmations: u64,
    /// Reorgs below finality during the load, alternating chains: each pauses the chain's
    /// miner, mines an orphan message and rewrites the last `--reorg-depth` blocks with
    /// anvil_reorg, a replacement (same gateway nonce, other payload) in its place. The
    /// orphans must never be attested or delivered.
    #[arg(long, default_value_t = 0)]
    pub reorgs: u32,
    /// Give every node's watchers three RPC URLs per chain with a quorum of 2: the anvil
    /// endpoint, an honest proxy, and a proxy that lies (altered block hashes, log data and
    /// heads). Nothing it says may be observed, signed or stall a chain.
    #[arg(long)]
    pub lying_rpc: bool,
    /// The nodes' chain watchers poll their RPCs every this many ms once caught up (the
    /// config's `poll_interval`): lower cuts finality → observation latency, at the cost of
    /// more RPC calls.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(5..))]
    pub poll_ms: u64,
    /// Do not give the nodes a WebSocket URL for new-head notifications (`[[chains]] ws`):
    /// they then learn of new blocks only by polling every `--poll-ms`.
    #[arg(long)]
    pub no_ws: bool,
    /// Blocks each `--reorgs` reorg rewrites (1..=confirmations; default: confirmations).
    #[arg(long)]
    pub reorg_depth: Option<u64>,
    /// Hostile bytes at every node's p2p and API ports for the whole load (random bytes,
    /// garbage after a multistream header, half-open connections, random HTTP requests):
    /// the run fails if an API answer is a 5xx; each node's RSS after a 60-s warm-up and at
    /// the end is reported (compare with the same run without `--garbage`).
    #[arg(long, conflicts_with_all = ["churn", "kill_node", "rotate_at"])]
    pub garbage: bool,
    /// Run a real Prometheus (the Debian `prometheus` binary) scraping every node and the
    /// relayer with the alert rules of `monitoring/alerts.yml`, print its URL, and at the
    /// end run every query of `monitoring/dashboard.json` against it (each must return
    /// data) and list the alerts firing (`--deep-reorg` must fire `SigilChainHalted`).
    #[arg(long)]
    pub monitor: bool,
    /// Once the load is delivered, a reorg deeper than the confirmations on chain A that
    /// replaces an attested message: every member must halt chain A (API and metric), never
    /// attest the replacement, and still serve chain B.
    #[arg(long)]
    pub deep_reorg: bool,
    /// Once the load is delivered, the emergency stop with the real `sigil admin`: f + 1
    /// members pause chain A; an A → B message must not be attested while a B → A one is
    /// delivered; after `resume` the A → B message is delivered (before `--deep-reorg`).
    /// Then the repairs: `sigil admin reobserve` must find every log stored, and `sigil
    /// admin retry` must deliver a Failed message once its receiver is fixed.
    #[arg(long, visible_alias = "admin-check", conflicts_with_all = ["churn", "rotate_at"])]
    pub pause_check: bool,
    /// Every member on a host of its own: a Linux network namespace per member, veth links
    /// to a bridge, distinct addresses, members listening on 0.0.0.0 and advertising their
    /// address (needs root and iproute2).
    #[arg(long, conflicts_with_all = ["lying_rpc", "garbage"])]
    pub netns: bool,
    /// With `--netns`: one-way delay between members (ms): `tc netem` on each member's
    /// outgoing packets, or where the kernel has no netem, a delay proxy in front of each
    /// member (member-to-member traffic only).
    #[arg(long, default_value_t = 0, requires = "netns")]
    pub latency_ms: u64,
    /// Anvil block time (s).
    #[arg(long, default_value_t = 1)]
    pub block_time: u64,
    /// Give up waiting for delivery after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Run directory (default: ./devnet-runs/<unix time>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Leave everything running after the report, until Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
    /// Directory holding the `sigil` binary (default: next to this one).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// No progress line (CI logs).
    #[arg(long)]
    pub quiet: bool,
    /// Rotate the committee once this many messages are sent: every operator approves the
    /// next committee (`--leave` members out, `--join` new nodes in), which takes over as
    /// epoch 2 with a new group key while messages keep flowing (see `devnet::rotate`).
    #[arg(long)]
    pub rotate_at: Option<u32>,
    /// New nodes joining the committee at the rotation.
    #[arg(long, default_value_t = 0, requires = "rotate_at")]
    pub join: u16,
    /// Members leaving the committee at the rotation (the last ones).
    #[arg(long, default_value_t = 0, requires = "rotate_at")]
    pub leave: u16,
}
