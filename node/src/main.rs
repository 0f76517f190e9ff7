//! `sigil`: the Sigil committee node binary. See `sigil --help`.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use sigil_node::api::AttestationView;
use sigil_node::config::Config;
use sigil_node::identity::{NodeKey, peer_id, public_key_hex};
use sigil_node::keyfiles;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Sigil peer-to-peer attestation node.
#[derive(Debug, Parser)]
#[command(name = "sigil", version, about, long_about = None)]
struct Cli {
    /// Node home directory (config.toml, keys, db/).
    #[arg(long, global = true, env = "SIGIL_HOME", default_value = "~/.sigil")]
    home: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create the home: a commented config.toml and an encrypted node key.
    Init {
        /// Name in logs and status.
        #[arg(long, default_value = "sigil")]
        moniker: String,
        /// libp2p listen multiaddr.
        #[arg(long, default_value = "/ip4/127.0.0.1/tcp/7001")]
        listen: String,
        /// The multiaddr other members dial, when not `--listen` (e.g. listening on
        /// /ip4/0.0.0.0/tcp/7001 behind /ip4/203.0.113.7/tcp/7001).
        #[arg(long)]
        advertise: Option<String>,
        /// HTTP API address.
        #[arg(long, default_value = "127.0.0.1:8001")]
        api: std::net::SocketAddr,
        /// Also generate a relayer transaction key (<home>/relayer.key).
        #[arg(long)]
        relayer_key: bool,
    },
    /// Print this node's public keys and peer id (and the group key after DKG).
    Keys,
    /// Run the FROST DKG with the committee in config.toml.
    Dkg {
        /// Give up (naming missing members) after this long.
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// Overwrite a key share already stored for this epoch (shares of other epochs are
        /// never touched).
        #[arg(long)]
        replace: bool,
        /// Proactively refresh this epoch's shares instead (every member, node stopped):
        /// new shares of the same group key, so no inbox changes; the old share is
        /// overwritten, and a share that leaked before is useless once all have refreshed.
        #[arg(long, conflicts_with = "replace")]
        refresh: bool,
        /// Undo this member's last refresh: put the pre-refresh share back (when a refresh
        /// finished on some members but not on others, all that finished undo it).
        #[arg(long, conflicts_with_all = ["replace", "refresh"])]
        undo_refresh: bool,
    },
    /// Run the node.
    Start {
        /// Join the next committee (this node's key is in the approved next committee, not
        /// in the current one): run its DKG with the members, fetch and check the
        /// hand-over, then run as a member of the new epoch.
        #[arg(long)]
        join: bool,
    },
    /// Relay attestations from node APIs to destination inboxes (no committee key needed).
    Relay {
        /// Node API base URL (repeat for fallbacks).
        #[arg(long = "api", required = true)]
        apis: Vec<String>,
        /// Destination chain as CHAIN_ID=RPC_URL@INBOX_ADDRESS (repeat).
        #[arg(long = "chain", required = true)]
        chains: Vec<String>,
        /// Transaction key (hex); prefer the environment variable.
        #[arg(long, env = "SIGIL_RELAYER_KEY", hide_env_values = true)]
        key: String,
        /// Serve Prometheus `/metrics` and `/healthz` on this address (e.g.
        /// 127.0.0.1:9464): deliveries, Failed messages, transactions, the account balance.
        #[arg(long)]
        metrics: Option<std::net::SocketAddr>,
        /// Most messages per deliverBatch transaction.
        #[arg(long, default_value_t = 64)]
        chunk: usize,
        /// Most gas per transaction: a deliverBatch holds messages while the sum of their gas
        /// limits plus the inbox's headroom (gas limit / 63 + 30,000 each) and overheads fits
        /// (the destination's block gas limit bounds it too).
        #[arg(long, default_value_t = 25_000_000)]
        max_tx_gas: u64,
        /// First retry of a Failed message after this long (doubling per attempt).
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        retry_min: Duration,
        /// Longest wait between two retries of a Failed message.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        retry_max: Duration,
        /// Serve the relayer's admin API on this loopback address (e.g. 127.0.0.1:9465):
        /// the Failed-message queue and "retry now" (`sigil admin retries` / `retry`); the
        /// token is <home>/admin.token (created on first use, mode 0600).
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
    },
    /// Retry a Failed message (its recipient reverted or ran out of its gas limit) on the
    /// inbox it names; anyone may. Uses an attestation file from `sigil attestation get`.
    Retry {
        /// The attestation file.
        file: PathBuf,
        /// JSON-RPC URL of the message's destination chain.
        #[arg(long)]
        rpc: String,
        /// Transaction key (hex); prefer the environment variable.
        #[arg(long, env = "SIGIL_RELAYER_KEY", hide_env_values = true)]
        key: String,
    },
    /// Show a node's status (from its API).
    Status {
        /// API base URL (default: node.api from config.toml).
        #[arg(long)]
        api: Option<String>,
    },
    /// Attestation lookups.
    Attestation {
        #[command(subcommand)]
        cmd: AttestationCmd,
    },
    /// The node's admin API (`[admin] listen`, token in <home>/admin.token): pending work,
    /// the emergency stop of one source chain, re-observing; and the relayer's (`sigil relay
    /// --admin`, token in its --home): retrying Failed messages.
    Admin {
        #[command(subcommand)]
        cmd: AdminCmd,
        /// Admin API base URL (default: admin.listen from config.toml).
        #[arg(long, global = true)]
        admin: Option<String>,
    },
    /// Check an attestation JSON (from `sigil attestation get`) offline.
    #[command(group(
        clap::ArgGroup::new("trusted_key")
            .required(true)
            .args(["group_key", "rpc", "trust_file_key"])
    ))]
    Verify {
        /// The attestation file.
        file: PathBuf,
        /// The committee's group key (33-byte compressed hex) as you obtained it yourself.
        #[arg(long)]
        group_key: Option<String>,
        /// JSON-RPC URL of the message's destination chain: the key is read from
        /// `--inbox`'s `keyOf(epoch)` there.
        #[arg(long, requires = "inbox")]
        rpc: Option<String>,
        /// The destination inbox address you trust (with `--rpc`), from your own deployment
        /// records: never copy it out of the file being verified.
        #[arg(long, requires = "rpc")]
        inbox: Option<alloy::primitives::Address>,
        /// Check against the key the file carries. This proves only that the file agrees
        /// with itself (a forger writes its own key in it): for debugging.
        #[arg(long)]
        trust_file_key: bool,
    },
    /// Committee epochs: this node's epoch and committee, and its operator's approval of the
    /// next committee (see README, "Changing the committee").
    Epoch {
        #[command(subcommand)]
        cmd: EpochCmd,
    },
    /// Run a local devnet (two anvil chains, N nodes); arguments go to `sigil-devnet`.
    #[command(disable_help_flag = true)]
    Devnet {
        /// Arguments for sigil-devnet.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum EpochCmd {
    /// The epoch and committee in config.toml, and the next committee approved in this home.
    Show,
    /// Approve the next committee (epoch + 1, threshold 2f + 1 of its size): writes
    /// <home>/rotation-approval.toml, which a running node re-reads within a second. The
    /// committee decides the rotation once 2f + 1 members' operators approved the same list.
    Approve {
        /// The whole next committee in member order (node keys from `sigil keys`; repeat or
        /// comma-separate).
        #[arg(long = "member", value_delimiter = ',', conflicts_with_all = ["add", "remove", "withdraw"])]
        members: Vec<String>,
        /// A node key joining: the current committee plus this one (repeatable).
        #[arg(long, value_delimiter = ',', conflicts_with = "withdraw")]
        add: Vec<String>,
        /// A node key leaving: the current committee without this one (repeatable).
        #[arg(long, value_delimiter = ',', conflicts_with = "withdraw")]
        remove: Vec<String>,
        /// Withdraw the approval (delete the file): the node stops proposing and prevoting it.
        #[arg(long)]
        withdraw: bool,
    },
    /// Erase the key shares of every epoch below EPOCH — only once the old epochs' grace
    /// period has ended on every inbox (their attestations can no longer be delivered).
    /// Never erases the epoch the node signs under now (its store's, or its API's).
    Prune {
        /// Erase shares of epochs strictly below this one.
        #[arg(long)]
        below: u64,
    },
    /// The running node's rotation progress (the `rotation` part of /v1/status).
    Status {
        /// API base URL (default: node.api from config.toml).
        #[arg(long)]
        api: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCmd {
    /// Paused chains, decided/attested heights, unattested heights, messages waiting.
    Pending,
    /// Emergency stop: propose, prevote and sign nothing of source chain CHAIN_ID (durable).
    Pause {
        /// Source chain id.
        chain: u64,
    },
    /// Undo `pause`.
    Resume {
        /// Source chain id.
        chain: u64,
    },
    /// Re-read a block range or a transaction's block of source chain CHAIN_ID at finality:
    /// observations missing from the store are restored, differing ones reported
    /// (idempotent; at most 10,000 blocks, one request per chain per second).
    #[command(group(clap::ArgGroup::new("what").required(true).args(["from_block", "tx"])))]
    Reobserve {
        /// Source chain id.
        chain: u64,
        /// First block.
        #[arg(long, requires = "to_block")]
        from_block: Option<u64>,
        /// Last block (inclusive).
        #[arg(long, requires = "from_block")]
        to_block: Option<u64>,
        /// A transaction hash: its block is re-read.
        #[arg(long, conflicts_with_all = ["from_block", "to_block"])]
        tx: Option<String>,
    },
    /// Relayer (`sigil relay --admin`): the queue of Failed messages awaiting retry.
    Retries,
    /// Relayer (`sigil relay --admin`): retry a Failed message now (its backoff restarts).
    /// A message the relayer does not hold needs the height of its batch.
    Retry {
        /// Message id (0x + 64 hex).
        id: String,
        /// The decided height holding it (for a message not in the relayer's queue).
        #[arg(long)]
        height: Option<u64>,
    },
}

/// Runs one admin command against the node in `home` (or `admin`); exits 2 on an HTTP
/// error after printing its body.
async fn admin_cmd(home: &Path, admin: Option<String>, cmd: AdminCmd) -> Result<()> {
    let base = match admin {
        Some(a) => a.trim_end_matches('/').to_owned(),
        None => {
            let cfg = load_config(home)?;
            let addr = cfg.admin.listen.ok_or_else(|| {
                anyhow!("config field `admin.listen` is not set: the node serves no admin API")
            })?;
            format!("http://{addr}")
        }
    };
    let token_path = home.join(sigil_node::admin::TOKEN_FILE);
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("read the admin token {}", token_path.display()))?;
    let http = reqwest::Client::new();
    let req = match cmd {
        AdminCmd::Pending => http.get(format!("{base}/admin/v1/pending")),
        AdminCmd::Pause { chain } => http.post(format!("{base}/admin/v1/chains/{chain}/pause")),
        AdminCmd::Resume { chain } => http.post(format!("{base}/admin/v1/chains/{chain}/resume")),
        AdminCmd::Reobserve {
            chain,
            from_block,
            to_block,
            tx,
        } => http
            .post(format!("{base}/admin/v1/chains/{chain}/reobserve"))
            .json(&serde_json::json!({
                "fromBlock": from_block,
                "toBlock": to_block,
                "tx": tx,
            })),
        AdminCmd::Retries => http.get(format!("{base}/admin/v1/retries")),
        AdminCmd::Retry { id, height } => {
            let q = height.map(|h| format!("?height={h}")).unwrap_or_default();
            http.post(format!("{base}/admin/v1/retries/{id}{q}"))
        }
    };
    let r = req
        .bearer_auth(token.trim())
        .send()
        .await
        .with_context(|| format!("admin API at {base}"))?;
    let status = r.status();
    let v: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
    println!("{}", serde_json::to_string_pretty(&v)?);
    if !status.is_success() {
        std::process::exit(2);
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
enum AttestationCmd {
    /// Fetch the attestation of a message id.
    Get {
        /// Message id (0x + 64 hex).
        id: String,
        /// API base URL (default: node.api from config.toml).
        #[arg(long)]
        api: Option<String>,
    },
}

fn expand(home: &str) -> PathBuf {
    if let Some(rest) = home.strip_prefix("~/")
        && let Ok(h) = std::env::var("HOME")
    {
        return Path::new(&h).join(rest);
    }
    PathBuf::from(home)
}

fn load_config(home: &Path) -> Result<Config> {
    Ok(Config::load(&home.join("config.toml"), std::env::vars())?)
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIGIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libp2p=warn,alloy=warn"));
    use std::io::IsTerminal as _;
    // Colour only on a terminal: log files and journald get plain text.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        // RPC URLs registered with `redact::register_url` never reach a log line whole.
        .with_writer(sigil_node::redact::writer);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn api_url(home: &Path, api: Option<String>) -> Result<String> {
    match api {
        Some(a) => Ok(a.trim_end_matches('/').to_owned()),
        None => Ok(format!("http://{}", load_config(home)?.node.api)),
    }
}

async fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        let _ = tx.send(true);
    });
    rx
}

/// `sigil retry`: checks the message is Failed on the inbox it names, then sends
/// `retry(message)` with the headroom the inbox requires. The recipient failing again is
/// reported (RecipientFailed during estimation) without sending anything.
async fn retry_message(a: &AttestationView, rpc: &str, key: &str) -> Result<()> {
    use alloy::providers::Provider;
    use sigil_node::contracts::{STATUS_DELIVERED, STATUS_FAILED, SigilInbox};
    let m = &a.message;
    if m.id() != a.message_id {
        bail!("messageId does not match the message fields");
    }
    let signer: alloy::signers::local::PrivateKeySigner = key
        .trim()
        .parse()
        .map_err(|_| anyhow!("--key: not a hex secp256k1 secret"))?;
    let from = signer.address();
    let provider = alloy::providers::ProviderBuilder::new()
        .wallet(alloy::network::EthereumWallet::from(signer))
        .connect_http(
            rpc.parse()
                .map_err(|_| anyhow!("--rpc `{rpc}`: not a URL"))?,
        );
    let chain = provider.get_chain_id().await?;
    if chain != m.dest_chain_id {
        bail!(
            "--rpc serves chain {chain}, but the message is for chain {}",
            m.dest_chain_id
        );
    }
    let inbox = SigilInbox::new(m.dest_inbox, &provider);
    let status = inbox
        .statusOf(m.source_chain_id, m.source_gateway, m.nonce)
        .call()
        .await?;
    if status != STATUS_FAILED {
        bail!(
            "message {} is not Failed on inbox {} (status {status}; 0 = not processed, 1 = delivered)",
            a.message_id,
            m.dest_inbox
        );
    }
    let call = inbox.retry(m.into()).from(from);
    let est = match call.estimate_gas().await {
        Ok(g) => g,
        Err(e)
            if e.as_decoded_error::<SigilInbox::RecipientFailed>()
                .is_some() =>
        {
            bail!(
                "the recipient failed again (RecipientFailed); the message stays Failed, retry later"
            )
        }
        Err(e) => return Err(e.into()),
    };
    let gas = (est + est / 5).max(sigil_node::relayer::delivery_gas([m], 0));
    let r = call.gas(gas).send().await?.get_receipt().await?;
    let after = inbox
        .statusOf(m.source_chain_id, m.source_gateway, m.nonce)
        .call()
        .await?;
    if !r.status() || after != STATUS_DELIVERED {
        bail!(
            "retry transaction {} did not deliver the message (status {after})",
            r.transaction_hash
        );
    }
    println!(
        "OK: message {} delivered by retry in {}",
        a.message_id, r.transaction_hash
    );
    Ok(())
}

/// `sigil epoch …`.
async fn epoch_cmd(home: &Path, cmd: EpochCmd) -> Result<()> {
    use sigil_node::epoch::{APPROVAL_FILE, Approval, next_members};
    match cmd {
        EpochCmd::Show => print!("{}", sigil_node::epoch::show(&load_config(home)?, home)),
        EpochCmd::Approve {
            members,
            add,
            remove,
            withdraw,
        } => {
            let path = home.join(APPROVAL_FILE);
            if withdraw {
                match std::fs::remove_file(&path) {
                    Ok(()) => println!("approval withdrawn ({} removed)", path.display()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        println!("nothing was approved ({} absent)", path.display())
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("removing {}", path.display()));
                    }
                }
                return Ok(());
            }
            let cfg = load_config(home)?;
            let current: Vec<String> = cfg
                .committee
                .members
                .iter()
                .map(|m| m.key.clone())
                .collect();
            let next = next_members(&current, members, add, remove).map_err(|e| anyhow!(e))?;
            let a = Approval::next(cfg.committee.epoch, next);
            a.to_rotation(
                &path,
                cfg.committee.epoch,
                &sigil_node::epoch::inboxes(&cfg),
            )?;
            a.write(&path)
                .with_context(|| format!("writing {}", path.display()))?;
            println!(
                "approved: epoch {}, {} members, threshold {} (written to {}; a running node applies it within a second)",
                a.epoch,
                a.members.len(),
                a.threshold,
                path.display()
            );
        }
        EpochCmd::Prune { below } => {
            let cfg = load_config(home)?;
            // The epoch the node signs under now: from its store (the configured epoch, or a
            // later one it switched to), or from the running node's API when the store is
            // locked by it.
            let current = match sigil_node::store::Store::open(&home.join("db")) {
                Ok(store) => sigil_engine::epochs::resume_epoch(&store, cfg.committee.epoch)?.epoch,
                Err(_) => {
                    let url = format!("{}/v1/status", api_url(home, None)?);
                    let v: serde_json::Value = reqwest::get(&url)
                        .await
                        .with_context(|| format!("the store is in use and GET {url} failed"))?
                        .json()
                        .await?;
                    v["epoch"]
                        .as_u64()
                        .ok_or_else(|| anyhow!("{url}: no epoch in the status"))?
                }
            };
            if below > current {
                bail!(
                    "--below {below} would erase the share of epoch {current}, the one this node signs under"
                );
            }
            let pass = keyfiles::passphrase()?;
            let erased = keyfiles::erase_key_shares_below(home, below, &pass)?;
            if erased.is_empty() {
                println!("no key share below epoch {below}");
            } else {
                println!("erased the key shares of epochs {erased:?}");
            }
        }
        EpochCmd::Status { api } => {
            let url = format!("{}/v1/status", api_url(home, api)?);
            let v: serde_json::Value = reqwest::get(&url)
                .await
                .with_context(|| format!("GET {url}"))?
                .json()
                .await?;
            println!("{}", serde_json::to_string_pretty(&v["rotation"])?);
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let cli = Cli::parse();
    let home = expand(&cli.home);
    match cli.cmd {
        Cmd::Init {
            moniker,
            listen,
            advertise,
            api,
            relayer_key,
        } => {
            std::fs::create_dir_all(&home)
                .with_context(|| format!("creating {}", home.display()))?;
            let cfg_path = home.join("config.toml");
            if cfg_path.exists() {
                bail!("{} exists; refusing to overwrite", cfg_path.display());
            }
            let pass = keyfiles::passphrase()?;
            let key = NodeKey::generate();
            keyfiles::write_node_key(&home, &key, &pass)?;
            let pk = public_key_hex(&key.public());
            std::fs::write(
                &cfg_path,
                sigil_node::config::template(&moniker, &listen, advertise.as_deref(), api, &pk),
            )?;
            if relayer_key {
                let k = alloy::signers::local::PrivateKeySigner::random();
                let p = home.join("relayer.key");
                std::fs::write(&p, hex::encode(k.to_bytes()))?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
                println!("relayer address: {}", k.address());
            }
            println!("home:      {}", home.display());
            println!("node key:  {pk}");
            println!("peer id:   {}", peer_id(&key.public())?);
            println!(
                "next: list every member's node key and address in {}, then run `sigil dkg`",
                cfg_path.display()
            );
        }
        Cmd::Keys => {
            let pass = keyfiles::passphrase()?;
            let key = keyfiles::read_node_key(&home, &pass)?;
            println!("node key:  {}", public_key_hex(&key.public()));
            println!("peer id:   {}", peer_id(&key.public())?);
            let g = home.join(keyfiles::GROUP_KEY);
            if g.exists() {
                let gk: keyfiles::GroupKeyFile =
                    serde_json::from_str(&std::fs::read_to_string(&g)?)?;
                println!("group key: {} (epoch {})", gk.compressed, gk.epoch);
            }
        }
        Cmd::Dkg {
            timeout,
            replace,
            refresh,
            undo_refresh,
        } => {
            let cfg = load_config(&home)?;
            init_logs(cfg.node.log_format == "json");
            let epoch = cfg.committee.epoch;
            if undo_refresh {
                keyfiles::undo_refresh(&home, epoch)?;
                println!("the pre-refresh key share of epoch {epoch} is back in place");
                return Ok(());
            }
            let path = keyfiles::key_share_path(&home, epoch);
            if path.exists() && !replace && !refresh {
                bail!(
                    "{} exists: a key share for epoch {epoch} is stored; pass --replace to run the DKG again and overwrite it, or --refresh to refresh it",
                    path.display()
                );
            }
            let pass = keyfiles::passphrase()?;
            let key = keyfiles::read_node_key(&home, &pass)?;
            let r = if refresh {
                let old = keyfiles::read_key_share(&home, &pass, epoch)?.ok_or_else(|| {
                    anyhow!("--refresh: no key share for epoch {epoch} to refresh; run `sigil dkg` first")
                })?;
                let r = sigil_node::dkg::refresh(&cfg, &key, &old, timeout).await?;
                println!(
                    "shares refreshed; the group key is unchanged (no inbox needs a rotation)"
                );
                r
            } else {
                sigil_node::dkg::run(&cfg, &key, timeout).await?
            };
            if refresh {
                keyfiles::keep_pre_refresh(&home, epoch)?;
            }
            keyfiles::write_key_share(&home, &r.share, &r.group_key, &pass, replace || refresh)?;
            println!("group key: {}", hex::encode(r.group_key.compressed()));
            println!("x: {}", r.group_key.x());
            println!("y: {}", r.group_key.y());
            println!("key share of epoch {epoch} written to {}", path.display());
        }
        Cmd::Start { join } => {
            let cfg = load_config(&home)?;
            for u in cfg.chains.iter().flat_map(|c| c.rpc.iter().chain(&c.ws)) {
                sigil_node::redact::register_url(u);
            }
            init_logs(cfg.node.log_format == "json");
            let pass = keyfiles::passphrase()?;
            let stop = shutdown_signal().await;
            sigil_node::start(&home, cfg, &pass, join, stop).await?;
        }
        Cmd::Relay {
            apis,
            chains,
            key,
            metrics,
            chunk,
            max_tx_gas,
            retry_min,
            retry_max,
            admin,
        } => {
            init_logs(false);
            let mut list = Vec::new();
            for c in chains {
                let (id, rest) = c
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--chain `{c}`: want CHAIN_ID=RPC_URL@INBOX"))?;
                let (rpc, inbox) = rest
                    .rsplit_once('@')
                    .ok_or_else(|| anyhow!("--chain `{c}`: want CHAIN_ID=RPC_URL@INBOX"))?;
                sigil_node::redact::register_url(rpc);
                list.push(sigil_node::relayer::RelayChain {
                    chain_id: id
                        .parse()
                        .map_err(|_| anyhow!("--chain `{c}`: bad chain id"))?,
                    rpc: rpc.to_owned(),
                    inbox: inbox
                        .parse()
                        .map_err(|_| anyhow!("--chain `{c}`: bad inbox address"))?,
                });
            }
            std::fs::create_dir_all(&home)?;
            let cfg = sigil_node::relayer::RelayerConfig {
                apis,
                chains: list,
                key: key
                    .trim()
                    .parse()
                    .map_err(|_| anyhow!("--key: not a hex secp256k1 secret"))?,
                state_dir: home.clone(),
                chunk,
                max_tx_gas,
                poll: Duration::from_millis(300),
                stuck_after: Duration::from_secs(20),
                retry_min,
                retry_max,
                admin: match admin {
                    Some(addr) => Some((
                        addr,
                        sigil_node::admin::token_digest(&sigil_node::admin::load_or_create_token(
                            &home,
                        )?),
                    )),
                    None => None,
                },
            };
            let stop = shutdown_signal().await;
            let m = std::sync::Arc::new(sigil_node::metrics::Metrics::new());
            if let Some(addr) = metrics {
                let mut registry = prometheus_client::registry::Registry::default();
                m.register(&mut registry);
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("--metrics {addr}: cannot listen"))?;
                let router = sigil_node::api::metrics_router(std::sync::Arc::new(registry));
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, router).await {
                        tracing::error!(error = %e, "metrics listener failed");
                    }
                });
                tracing::info!(%addr, "serving /metrics");
            }
            sigil_node::relayer::run(cfg, m, stop).await?;
        }
        Cmd::Status { api } => {
            let url = format!("{}/v1/status", api_url(&home, api)?);
            let v: serde_json::Value = reqwest::get(&url)
                .await
                .with_context(|| format!("GET {url}"))?
                .json()
                .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Cmd::Epoch { cmd } => epoch_cmd(&home, cmd).await?,
        Cmd::Admin { cmd, admin } => admin_cmd(&home, admin, cmd).await?,
        Cmd::Attestation {
            cmd: AttestationCmd::Get { id, api },
        } => {
            let url = format!("{}/v1/attestations/{id}", api_url(&home, api)?);
            let r = reqwest::get(&url)
                .await
                .with_context(|| format!("GET {url}"))?;
            let status = r.status();
            let v: serde_json::Value = r.json().await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            if !status.is_success() {
                std::process::exit(2);
            }
        }
        Cmd::Verify {
            file,
            group_key,
            rpc,
            inbox,
            trust_file_key,
        } => {
            use sigil_node::api::TrustedKey;
            let a: AttestationView = serde_json::from_str(&std::fs::read_to_string(&file)?)
                .with_context(|| format!("parsing {}", file.display()))?;
            let from_inbox = match (rpc, inbox) {
                (Some(rpc), Some(inbox)) => {
                    let m = &a.message;
                    sigil_node::redact::register_url(&rpc);
                    match sigil_node::verify::inbox_key(
                        &rpc,
                        inbox,
                        a.epoch,
                        m.dest_chain_id,
                        m.dest_inbox,
                    )
                    .await
                    {
                        Ok(k) => Some(k),
                        Err(e) => {
                            println!("INVALID: {}", sigil_node::redact::redact(&format!("{e:#}")));
                            std::process::exit(1);
                        }
                    }
                }
                _ => None,
            };
            let key = match (group_key.as_deref(), from_inbox.as_deref()) {
                (Some(k), _) | (None, Some(k)) => TrustedKey::Pinned(k),
                (None, None) => {
                    debug_assert!(trust_file_key);
                    eprintln!(
                        "WARNING: checking against the key the file itself carries; this proves only that the file agrees with itself"
                    );
                    TrustedKey::CarriedInFile
                }
            };
            let under = match key {
                TrustedKey::Pinned(k) if from_inbox.is_some() => {
                    format!("the inbox's key for epoch {} ({k})", a.epoch)
                }
                TrustedKey::Pinned(k) => format!("the pinned key {k}"),
                TrustedKey::CarriedInFile => "the file's own key (untrusted)".to_owned(),
            };
            match sigil_node::api::verify_attestation(&a, key) {
                Ok(()) => println!(
                    "OK: message {} (to inbox {} on chain {}, gas limit {}) is attested at height {} (root {}) under {under}",
                    a.message_id,
                    a.message.dest_inbox,
                    a.message.dest_chain_id,
                    a.message.gas_limit,
                    a.height,
                    a.root
                ),
                Err(e) => {
                    println!("INVALID: {e}");
                    std::process::exit(1);
                }
            }
        }
        Cmd::Retry { file, rpc, key } => {
            sigil_node::redact::register_url(&rpc);
            init_logs(false);
            let a: AttestationView = serde_json::from_str(&std::fs::read_to_string(&file)?)
                .with_context(|| format!("parsing {}", file.display()))?;
            retry_message(&a, &rpc, &key).await?;
        }
        Cmd::Devnet { args } => {
            let exe = std::env::current_exe()?;
            let devnet = exe.with_file_name("sigil-devnet");
            if !devnet.exists() {
                bail!(
                    "{} not found; build it with `cargo build -p sigil-testnet` (scripts/devnet.sh does)",
                    devnet.display()
                );
            }
            let status = std::process::Command::new(devnet).args(args).status()?;
            std::process::exit(status.code().unwrap_or(1));
        }
    }
    Ok(())
}
