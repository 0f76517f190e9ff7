//! Node configuration: one TOML file (`<home>/config.toml`) with documented defaults,
//! overridden by `SIGIL_<SECTION>__<FIELD>` environment variables, validated once at
//! start-up. Every error names the field and what to change.

use alloy_primitives::Address;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration error naming the offending field (`section.field`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax or type error (the message names the key and line).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Parser message.
        message: String,
    },
    /// A field failed validation.
    #[error("config field `{field}`: {problem}; fix: {fix}")]
    Invalid {
        /// Dotted field path, e.g. `chains[0].rpc`.
        field: String,
        /// What is wrong.
        problem: String,
        /// What to change.
        fix: String,
    },
}

fn invalid(
    field: impl Into<String>,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// Smallest committee: n = 3f + 1 with f = 1. Below it `sigil_crypto::keys::thresholds`
/// gives f = 0, no faulty member is tolerated, and the FROST threshold (t = 2f + 1 = 1) is
/// below what FROST accepts (2), so such a committee could never attest.
pub const MIN_MEMBERS: usize = 4;

/// Largest committee.
pub const MAX_MEMBERS: usize = 1000;

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node.
    pub node: NodeSection,
    /// The committee (same list, same order, on every member).
    pub committee: CommitteeSection,
    /// Consensus timeouts.
    #[serde(default)]
    pub consensus: ConsensusSection,
    /// Batch limits.
    #[serde(default)]
    pub batch: BatchSection,
    /// Threshold signing.
    #[serde(default)]
    pub signing: SigningSection,
    /// Watched and served chains.
    #[serde(default)]
    pub chains: Vec<ChainSection>,
    /// Optional in-node relayer.
    #[serde(default)]
    pub relayer: RelayerSection,
    /// Optional admin API (repairs and the emergency stop).
    #[serde(default)]
    pub admin: AdminSection,
}

/// `[admin]`: the admin API, on its own loopback listener, every request carrying the
/// token in `<home>/admin.token` (`Authorization: Bearer <token>`; `sigil admin` reads it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Listen address, loopback only (e.g. `127.0.0.1:8101`); absent: no admin API.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// `[node]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Human name in logs and status.
    #[serde(default = "default_moniker")]
    pub moniker: String,
    /// libp2p listen multiaddr, e.g. `/ip4/127.0.0.1/tcp/7001`, or `/ip4/0.0.0.0/tcp/7001`
    /// for every interface.
    pub listen: String,
    /// The multiaddr other members dial to reach this node, when it differs from `listen`
    /// (a wildcard listen address, NAT, a container's port mapping), e.g.
    /// `/ip4/203.0.113.7/tcp/7001`: announced to peers (libp2p identify, so a joining member
    /// is reached there too) and written as this member's `address` by `sigil init`. It must
    /// be a concrete address: no 0.0.0.0 or ::.
    #[serde(default)]
    pub advertise: Option<String>,
    /// HTTP API bind address (default `127.0.0.1:8001`; loopback unless you mean otherwise).
    #[serde(default = "default_api")]
    pub api: SocketAddr,
    /// `text` or `json`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// Heartbeat period.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat: Duration,
}

fn default_moniker() -> String {
    "sigil".into()
}
fn default_api() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8001))
}
fn default_log_format() -> String {
    "text".into()
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(2)
}

/// `[committee]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitteeSection {
    /// Key epoch the committee signs under (the inbox's `currentEpoch`).
    #[serde(default = "one")]
    pub epoch: u64,
    /// Members in order; member index = position + 1. [`MIN_MEMBERS`] to [`MAX_MEMBERS`]
    /// entries; n members tolerate f = (n - 1) / 3 faulty ones.
    pub members: Vec<MemberEntry>,
}

fn one() -> u64 {
    1
}

/// One committee member.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberEntry {
    /// Node public key: 33-byte compressed secp256k1, hex (from `sigil keys`).
    pub key: String,
    /// Where to dial it (multiaddr).
    pub address: String,
}

/// `[consensus]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusSection {
    /// Propose step timeout of round 0.
    #[serde(with = "humantime_serde")]
    pub propose_timeout: Duration,
    /// Prevote step timeout of round 0.
    #[serde(with = "humantime_serde")]
    pub prevote_timeout: Duration,
    /// Precommit step timeout of round 0.
    #[serde(with = "humantime_serde")]
    pub precommit_timeout: Duration,
    /// Added to each timeout per round.
    #[serde(with = "humantime_serde")]
    pub timeout_delta: Duration,
    /// How long a validator waits for messages it has not observed yet before it
    /// prevotes nil.
    #[serde(with = "humantime_serde")]
    pub observation_wait: Duration,
}

impl Default for ConsensusSection {
    fn default() -> Self {
        Self {
            propose_timeout: Duration::from_millis(1500),
            prevote_timeout: Duration::from_millis(750),
            precommit_timeout: Duration::from_millis(750),
            timeout_delta: Duration::from_millis(500),
            observation_wait: Duration::from_secs(2),
        }
    }
}

/// `[batch]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSection {
    /// Most messages in one block.
    pub max_messages: u32,
    /// Most payload bytes in one block.
    pub max_bytes: u64,
}

impl Default for BatchSection {
    fn default() -> Self {
        Self {
            max_messages: 10_000,
            max_bytes: 8 * 1024 * 1024,
        }
    }
}

/// `[signing]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningSection {
    /// Pre-generated nonces kept ready (commitments published ahead of use).
    pub nonce_pool: u32,
    /// How long the first signing attempt waits for t valid shares before a new attempt
    /// with fresh commitments; each later attempt waits half as much again, at most 4 ×.
    #[serde(with = "humantime_serde")]
    pub share_timeout: Duration,
}

impl Default for SigningSection {
    fn default() -> Self {
        Self {
            nonce_pool: 16,
            share_timeout: Duration::from_secs(3),
        }
    }
}

/// How a chain's finality is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finality {
    /// The `finalized` block tag.
    Finalized,
    /// The `safe` block tag.
    Safe,
    /// `latest` minus N blocks.
    Confirmations(u64),
}

impl Finality {
    /// Parses `finalized`, `safe` or `confirmations:N`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "finalized" => Some(Self::Finalized),
            "safe" => Some(Self::Safe),
            _ => s
                .strip_prefix("confirmations:")
                .and_then(|n| n.parse().ok())
                .map(Self::Confirmations),
        }
    }
}

/// `[[chains]]`: one EVM chain with a gateway (watched) and an inbox (relayed to).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSection {
    /// Name in logs and metrics.
    pub name: String,
    /// EIP-155 chain id (checked against the RPC at start).
    pub chain_id: u64,
    /// JSON-RPC URLs (http). With several, `rpc_quorum` of them must agree.
    pub rpc: Vec<String>,
    /// How many RPC URLs must agree on block hashes and logs.
    #[serde(default = "one_u32")]
    pub rpc_quorum: u32,
    /// `SigilGateway` address.
    pub gateway: Address,
    /// `SigilInbox` address.
    pub inbox: Address,
    /// First block to scan.
    #[serde(default)]
    pub start_block: u64,
    /// `finalized`, `safe`, or `confirmations:N`.
    #[serde(default = "default_finality")]
    pub finality: String,
    /// Poll period.
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Most blocks per `eth_getLogs` call.
    #[serde(default = "default_range")]
    pub max_block_range: u64,
    /// Per-call deadline.
    #[serde(default = "default_deadline", with = "humantime_serde")]
    pub rpc_timeout: Duration,
    /// A WebSocket RPC URL (`ws://` or `wss://`) used only to hear of new heads
    /// (`eth_subscribe` `newHeads`): each one makes the watcher scan at once instead of at
    /// its next poll. Nothing it says is believed — every read still goes through `rpc` and
    /// its quorum, and `poll_interval` still applies when it is silent, slow or down.
    #[serde(default)]
    pub ws: Option<String>,
}

fn one_u32() -> u32 {
    1
}
fn default_finality() -> String {
    "finalized".into()
}
fn default_poll() -> Duration {
    Duration::from_secs(1)
}
fn default_range() -> u64 {
    1000
}
fn default_deadline() -> Duration {
    Duration::from_secs(5)
}

/// `[relayer]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayerSection {
    /// Relay this node's attestations itself.
    #[serde(default)]
    pub enabled: bool,
    /// Hex secp256k1 secret of the funded transaction key, or empty to read
    /// `<home>/relayer.key`. Never a committee key.
    #[serde(default)]
    pub key: String,
    /// Most messages per `deliverBatch` transaction.
    #[serde(default = "default_chunk")]
    pub chunk: usize,
    /// Most gas per relayer transaction. A `deliverBatch` holds messages while the sum of
    /// their gas limits plus the inbox's headroom (gas limit / 63 + 30,000 each) and a
    /// per-message overhead stays under it; the relayer also stays under the destination's
    /// block gas limit.
    #[serde(default = "default_max_tx_gas")]
    pub max_tx_gas: u64,
}

fn default_chunk() -> usize {
    64
}

fn default_max_tx_gas() -> u64 {
    25_000_000
}

impl Default for RelayerSection {
    fn default() -> Self {
        Self {
            enabled: false,
            key: String::new(),
            chunk: default_chunk(),
            max_tx_gas: default_max_tx_gas(),
        }
    }
}

impl Config {
    /// Reads `path`, applies `SIGIL_<SECTION>__<FIELD>` overrides from `env`, and validates.
    /// Errors: [`ConfigError`] naming the file or field.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path, env)
    }

    /// Parses TOML text (see [`Config::load`]).
    pub fn parse(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let parse_err = |message: String| ConfigError::Parse {
            path: path.to_owned(),
            message,
        };
        let mut value: toml::Table = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        for (k, v) in env {
            let Some(rest) = k.strip_prefix("SIGIL_") else {
                continue;
            };
            // Only SECTION__FIELD names are overrides; SIGIL_HOME, SIGIL_PASSPHRASE, ... are not.
            if !rest.contains("__") {
                continue;
            }
            let segs: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            set_path(&mut value, &segs, &v).map_err(|m| parse_err(format!("{k}: {m}")))?;
        }
        let cfg: Config = toml::Value::Table(value)
            .try_into()
            .map_err(|e: toml::de::Error| parse_err(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every field; the first problem is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(a) = self.admin.listen
            && !a.ip().is_loopback()
        {
            return Err(invalid(
                "admin.listen",
                format!("{a} is not a loopback address; the admin API can pause signing"),
                "use e.g. 127.0.0.1:8101 (reach it over SSH)",
            ));
        }
        if self.node.listen.parse::<libp2p::Multiaddr>().is_err() {
            return Err(invalid(
                "node.listen",
                format!("`{}` is not a multiaddr", self.node.listen),
                "use e.g. /ip4/127.0.0.1/tcp/7001",
            ));
        }
        if let Some(a) = &self.node.advertise {
            let ok = a.parse::<libp2p::Multiaddr>().is_ok_and(|m| {
                m.iter().all(|p| match p {
                    libp2p::multiaddr::Protocol::Ip4(ip) => !ip.is_unspecified(),
                    libp2p::multiaddr::Protocol::Ip6(ip) => !ip.is_unspecified(),
                    _ => true,
                })
            });
            if !ok {
                return Err(invalid(
                    "node.advertise",
                    format!("`{a}` is not a concrete multiaddr"),
                    "use the address others dial, e.g. /ip4/203.0.113.7/tcp/7001",
                ));
            }
        }
        if !matches!(self.node.log_format.as_str(), "text" | "json") {
            return Err(invalid(
                "node.log_format",
                "must be `text` or `json`",
                "set log_format = \"text\"",
            ));
        }
        let n = self.committee.members.len();
        if n < MIN_MEMBERS {
            return Err(invalid(
                "committee.members",
                format!(
                    "{n} member(s) cannot tolerate one faulty member (n = 3f + 1 members tolerate f), \
                     so signing threshold and consensus quorum cannot both be met"
                ),
                format!("list at least {MIN_MEMBERS} members, the same list on every member"),
            ));
        }
        if n > MAX_MEMBERS {
            return Err(invalid(
                "committee.members",
                format!("{n} members"),
                format!("list at most {MAX_MEMBERS} members"),
            ));
        }
        if self.committee.epoch == 0 {
            return Err(invalid(
                "committee.epoch",
                "epoch 0 is reserved",
                "set epoch = 1",
            ));
        }
        let mut keys = std::collections::BTreeSet::new();
        for (i, m) in self.committee.members.iter().enumerate() {
            let field = format!("committee.members[{i}]");
            if crate::identity::public_key_from_hex(&m.key).is_err() {
                return Err(invalid(
                    format!("{field}.key"),
                    "not a 33-byte compressed secp256k1 public key in hex",
                    "copy the `node key` line printed by `sigil keys` on that member",
                ));
            }
            if !keys.insert(m.key.to_ascii_lowercase()) {
                return Err(invalid(
                    format!("{field}.key"),
                    "listed twice",
                    "list each member once",
                ));
            }
            if m.address.parse::<libp2p::Multiaddr>().is_err() {
                return Err(invalid(
                    format!("{field}.address"),
                    format!("`{}` is not a multiaddr", m.address),
                    "use e.g. /ip4/127.0.0.1/tcp/7001",
                ));
            }
        }
        let c = &self.consensus;
        for (name, d) in [
            ("consensus.propose_timeout", c.propose_timeout),
            ("consensus.prevote_timeout", c.prevote_timeout),
            ("consensus.precommit_timeout", c.precommit_timeout),
        ] {
            if d < Duration::from_millis(10) {
                return Err(invalid(name, "shorter than 10ms", "use e.g. \"1s\""));
            }
        }
        if self.batch.max_messages == 0 || self.batch.max_messages > 100_000 {
            return Err(invalid(
                "batch.max_messages",
                "must be 1..=100000",
                "use e.g. 10000",
            ));
        }
        if self.batch.max_bytes < 65_536 {
            return Err(invalid(
                "batch.max_bytes",
                "smaller than one maximal payload (65536)",
                "use at least 65536",
            ));
        }
        if self.signing.nonce_pool < 2 {
            return Err(invalid(
                "signing.nonce_pool",
                "must be at least 2",
                "use e.g. 16",
            ));
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, ch) in self.chains.iter().enumerate() {
            let field = |f: &str| format!("chains[{i}].{f}");
            if ch.chain_id == 0 {
                return Err(invalid(
                    field("chain_id"),
                    "0 is not a chain id",
                    "use the chain's EIP-155 id",
                ));
            }
            if !ids.insert(ch.chain_id) {
                return Err(invalid(
                    field("chain_id"),
                    "listed twice",
                    "one [[chains]] entry per chain",
                ));
            }
            if ch.rpc.is_empty() {
                return Err(invalid(
                    field("rpc"),
                    "no RPC URL",
                    "add rpc = [\"http://127.0.0.1:8545\"]",
                ));
            }
            for (j, u) in ch.rpc.iter().enumerate() {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(invalid(
                        format!("chains[{i}].rpc[{j}]"),
                        format!("`{u}` is not an http(s) URL"),
                        "use e.g. http://127.0.0.1:8545",
                    ));
                }
            }
            if let Some(u) = &ch.ws
                && !(u.starts_with("ws://") || u.starts_with("wss://"))
            {
                return Err(invalid(
                    field("ws"),
                    format!("`{}` is not a ws(s) URL", crate::redact::safe_url(u)),
                    "use e.g. ws://127.0.0.1:8546, or leave it out to poll only",
                ));
            }
            if ch.rpc_quorum == 0 || ch.rpc_quorum as usize > ch.rpc.len() {
                return Err(invalid(
                    field("rpc_quorum"),
                    format!("{} of {} URLs", ch.rpc_quorum, ch.rpc.len()),
                    "use a number between 1 and the number of rpc URLs",
                ));
            }
            if Finality::parse(&ch.finality).is_none() {
                return Err(invalid(
                    field("finality"),
                    format!("`{}` is not a finality rule", ch.finality),
                    "use \"finalized\", \"safe\" or \"confirmations:N\"",
                ));
            }
            if ch.gateway == Address::ZERO {
                return Err(invalid(
                    field("gateway"),
                    "zero address",
                    "set the deployed SigilGateway address",
                ));
            }
            if ch.max_block_range == 0 {
                return Err(invalid(
                    field("max_block_range"),
                    "must be positive",
                    "use e.g. 1000",
                ));
            }
            if ch.poll_interval < Duration::from_millis(10) {
                return Err(invalid(
                    field("poll_interval"),
                    "shorter than 10ms",
                    "use e.g. \"1s\"",
                ));
            }
        }
        if self.relayer.chunk == 0 {
            return Err(invalid("relayer.chunk", "must be positive", "use e.g. 64"));
        }
        if self.relayer.max_tx_gas < 1_000_000 {
            return Err(invalid(
                "relayer.max_tx_gas",
                "below 1,000,000: too little for one message at the default gas limit",
                "use e.g. 25000000",
            ));
        }
        Ok(())
    }

    /// Finality rule of chain `i` (validated).
    pub fn finality(&self, i: usize) -> Finality {
        self.chains
            .get(i)
            .and_then(|c| Finality::parse(&c.finality))
            .unwrap_or(Finality::Finalized)
    }
}

fn set_path(table: &mut toml::Table, segs: &[String], raw: &str) -> Result<(), String> {
    let (last, parents) = segs.split_last().ok_or("empty key")?;
    let mut cur = table;
    for s in parents {
        let entry = cur
            .entry(s.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{s}` is not a section"))?;
    }
    // A TOML literal if it parses as one (numbers, booleans, arrays), else a string.
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    cur.insert(last.clone(), value);
    Ok(())
}

/// The commented `config.toml` that `sigil init` writes.
///
/// `advertise`: the address other members dial (`[node] advertise`, and this member's
/// `address`); `None`: `listen`.
pub fn template(
    moniker: &str,
    listen: &str,
    advertise: Option<&str>,
    api: SocketAddr,
    node_key_hex: &str,
) -> String {
    let address = advertise.unwrap_or(listen);
    let advertise_line = match advertise {
        Some(a) => format!("advertise = \"{a}\"\n"),
        None => "# The address others dial, when not `listen` (wildcard listen, NAT):\n# advertise = \"/ip4/203.0.113.7/tcp/7001\"\n".into(),
    };
    format!(
        r#"# Sigil node configuration. Every field can be overridden by an environment variable
# SIGIL_<SECTION>__<FIELD>, e.g. SIGIL_NODE__API=127.0.0.1:9001.

[node]
moniker = "{moniker}"
# libp2p listen address (multiaddr).
listen = "{listen}"
{advertise_line}# HTTP API and /metrics. Keep it on loopback unless a proxy guards it.
api = "{api}"
# "text" or "json"
log_format = "text"
heartbeat = "2s"

[committee]
# Key epoch (the inbox's currentEpoch).
epoch = 1
# Every member, in the same order on every node: at least 4 (n = 3f + 1 members
# tolerate f faulty ones). Add the others' keys and addresses. This node's key is
# {node_key_hex}
members = [
  {{ key = "{node_key_hex}", address = "{address}" }},
]

[consensus]
propose_timeout = "1500ms"
prevote_timeout = "750ms"
precommit_timeout = "750ms"
timeout_delta = "500ms"
# How long to wait for messages not yet observed before prevoting nil.
observation_wait = "2s"

[batch]
max_messages = 10000
max_bytes = 8388608

[signing]
nonce_pool = 16
share_timeout = "3s"

# One entry per chain: the gateway is watched, the inbox is relayed to.
# [[chains]]
# name = "a"
# chain_id = 31337
# rpc = ["http://127.0.0.1:8545"]
# rpc_quorum = 1
# gateway = "0x..."
# inbox = "0x..."
# start_block = 0
# finality = "finalized"        # or "safe" or "confirmations:N"
# poll_interval = "1s"
# max_block_range = 1000
# rpc_timeout = "5s"

[relayer]
enabled = false
# key = ""   # hex; empty reads <home>/relayer.key
chunk = 64
max_tx_gas = 25000000   # per transaction; each message needs its gas limit + 1/63 + 30000
"#
    )
}

#[cfg(test)]
mod tests;
