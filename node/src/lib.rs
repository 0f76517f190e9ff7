//! # sigil-node
//!
//! The host of a Sigil committee member: libp2p networking ([`p2p`]), RocksDB storage
//! ([`store`]) and the host loop ([`node`]) around the pure member engine
//! ([`sigil_engine`]: envelope admission, consensus driving, WAL, catch-up, validity and
//! signing, which the simulator drives too), EVM
//! chain watchers ([`watcher`]), the relayer ([`relayer`]), the HTTP API and metrics
//! ([`api`], [`metrics`]), the networked DKG ([`dkg`]), configuration ([`config`]) and key
//! files ([`keyfiles`]). The `sigil` binary (src/main.rs) is a thin clap layer over it.

#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod admin;
pub mod api;
/// The application core lives in the engine crate; re-exported for the host's users.
pub use sigil_engine::app;
pub mod config;
pub mod contracts;
pub mod dkg;
pub mod epoch;
pub mod identity;
pub mod join;
pub mod keyfiles;
pub mod metrics;
pub mod node;
pub mod p2p;
pub mod redact;
pub mod relayer;
pub mod store;
pub mod verify;
pub mod watcher;

use std::path::Path;
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, watch};

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Starts a node from `home` (config.toml, keys, `db/`) and runs it until `shutdown` flips
/// to true: watchers per chain, the HTTP API, and the consensus/signing loop. With `join`,
/// a node outside the current committee first joins the approved next one ([`join`]).
/// Errors: config, key, storage or bind failures, each naming what to fix.
pub async fn start(
    home: &Path,
    cfg: config::Config,
    pass: &[u8],
    join: bool,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let key = keyfiles::read_node_key(home, pass)?;
    let mut store = store::Store::open(&home.join("db"))?;
    if join {
        join::run(&cfg, home, &key, pass, &mut store, shutdown.clone()).await?;
    }
    // The epoch the store is in: the configured one, or a later one the node switched to.
    let at = sigil_engine::epochs::resume_epoch(&store, cfg.committee.epoch)?;
    let epoch = at.epoch;
    // A stop between the hand-over and the switch leaves the decided key's share as a
    // candidate: installed now.
    if keyfiles::read_key_share(home, pass, epoch)?.is_none()
        && let Some(gk) = at.group_key()
    {
        keyfiles::install_candidate_share(home, pass, epoch, gk)?;
    }
    let share = keyfiles::read_key_share(home, pass, epoch)?.ok_or_else(|| {
        anyhow::anyhow!(
            "no key share for epoch {epoch} (config field `committee.epoch`) at {}; run `sigil dkg` first",
            keyfiles::key_share_path(home, epoch).display()
        )
    })?;
    let metrics = Arc::new(metrics::Metrics::new());
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let status = Arc::new(RwLock::new(node::Status::default()));
    let mut group_keys = std::collections::BTreeMap::new();
    if let Ok(k) = sigil_crypto::GroupKey::new(*share.public_key_package.verifying_key()) {
        group_keys.insert(share.epoch, k);
    }
    let group_keys = Arc::new(RwLock::new(group_keys));
    let (tx, rx) = mpsc::channel(64);
    // Every task is supervised: one that ends early (an error, a panic) is reported and
    // stops the node instead of leaving it half alive.
    let mut tasks: tokio::task::JoinSet<(&'static str, anyhow::Result<()>)> =
        tokio::task::JoinSet::new();
    // Re-observe requests (admin API) per chain; each watcher sends its findings to the
    // node (`reobserve_results`, wired below once the node exists).
    let (found_tx, mut found_rx) = mpsc::channel::<watcher::Reobserved>(4);
    let mut reobserve = std::collections::BTreeMap::new();
    for (i, c) in cfg.chains.iter().enumerate() {
        let cursor = store.cursor(c.chain_id)?;
        let w = watcher::Watcher::new(c.clone(), cfg.finality(i), metrics.clone(), cursor)?;
        let tx = tx.clone();
        let (req_tx, req_rx) = mpsc::channel(1);
        reobserve.insert(c.chain_id, req_tx);
        let link = watcher::WatcherAdmin {
            requests: req_rx,
            results: found_tx.clone(),
        };
        tasks.spawn(async move {
            w.run_with_admin(tx, Some(link)).await;
            ("chain watcher", Ok(()))
        });
    }
    drop(found_tx);
    let shared = node::Shared {
        store: store.clone(),
        status: status.clone(),
        metrics: metrics.clone(),
        registry: Arc::new(registry),
        group_keys: group_keys.clone(),
        batches: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind(cfg.node.api)
        .await
        .map_err(|e| {
            anyhow::anyhow!("config field `node.api`: cannot bind {}: {e}", cfg.node.api)
        })?;
    tracing::info!(api = %cfg.node.api, "HTTP API listening");
    tasks.spawn(serve(
        "HTTP API",
        listener,
        api::router(shared),
        shutdown.clone(),
    ));
    if cfg.relayer.enabled {
        let rcfg = relayer::RelayerConfig::from_node(&cfg, home)?;
        let (m, stop) = (metrics.clone(), shutdown.clone());
        tasks.spawn(async move { ("relayer", relayer::run(rcfg, m, stop).await) });
    }
    let admin_listen = cfg.admin.listen;
    let source_chains: std::collections::BTreeSet<u64> =
        cfg.chains.iter().map(|c| c.chain_id).collect();
    let (admin_store, admin_status) = (store.clone(), status.clone());
    let n = node::Node::new(
        node::NodeSetup {
            cfg,
            key,
            share,
            store,
            approval: Some(home.join(epoch::APPROVAL_FILE)),
            keystore: Some((home.to_owned(), zeroize::Zeroizing::new(pass.to_vec()))),
            group_keys,
        },
        metrics,
        status,
    )?;
    // The watchers' findings go to the node's own channel.
    let to_node = n.reobserve_results();
    tasks.spawn(async move {
        while let Some(f) = found_rx.recv().await {
            if let Err(mpsc::error::SendError(f)) = to_node.send(f).await {
                let _ = f.reply.send(Err("the node is stopping".into()));
                break;
            }
        }
        ("re-observe link", Ok(()))
    });
    if let Some(addr) = admin_listen {
        let token = admin::load_or_create_token(home)?;
        let state = admin::AdminState {
            store: admin_store,
            paused: n.paused_handle(),
            status: admin_status,
            chains: source_chains,
            token_digest: admin::token_digest(&token),
            reobserve,
            last_reobserve: Default::default(),
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("config field `admin.listen`: cannot bind {addr}: {e}"))?;
        tracing::info!(%addr, token_file = %home.join(admin::TOKEN_FILE).display(), "admin API listening");
        tasks.spawn(serve(
            "admin API",
            listener,
            admin::router(state),
            shutdown.clone(),
        ));
    }
    let stopping = shutdown.clone();
    let node = n.run(rx, shutdown);
    tokio::pin!(node);
    loop {
        tokio::select! {
            r = &mut node => return r,
            Some(done) = tasks.join_next() => {
                let (name, result) = match done {
                    Ok(x) => x,
                    Err(e) => ("task", Err(anyhow::anyhow!("panicked: {e}"))),
                };
                if *stopping.borrow() {
                    continue;
                }
                match result {
                    Err(e) => {
                        tracing::error!(task = name, error = %e, "task failed; stopping the node");
                        return Err(e.context(format!("{name} failed")));
                    }
                    Ok(()) => tracing::warn!(task = name, "task ended"),
                }
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown` flips to true; the task's `name` and
/// result, for the node's task supervision.
async fn serve(
    name: &'static str,
    listener: tokio::net::TcpListener,
    router: axum::Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> (&'static str, anyhow::Result<()>) {
    let r = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            while shutdown.changed().await.is_ok() {
                if *shutdown.borrow() {
                    break;
                }
            }
        })
        .await;
    (name, r.map_err(anyhow::Error::from))
}
