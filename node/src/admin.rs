//! The admin API: repairs and the emergency stop, on a loopback listener of its own
//! (`[admin] listen`), every request authenticated by the token in `<home>/admin.token`
//! (`Authorization: Bearer <token>`). `sigil admin …` wraps it.
//!
//! | route                                   | what                                                  |
//! |-----------------------------------------|-------------------------------------------------------|
//! | `GET  /admin/v1/pending`                | paused chains, decided/attested heights, unattested heights, messages waiting |
//! | `POST /admin/v1/chains/{chain}/pause`   | emergency stop for one source chain (durable, idempotent) |
//! | `POST /admin/v1/chains/{chain}/resume`  | undo it                                               |
//! | `POST /admin/v1/chains/{chain}/reobserve` | re-read blocks (`{"fromBlock":a,"toBlock":b}`) or a transaction's block (`{"tx":"0x…"}`) at finality; restore observations missing from the store, report ones that differ ([`ReobserveReport`]) |
//!
//! Re-observing is idempotent (a log already stored is counted `known`, nothing is
//! written) and rate-limited: one request per chain at a time, at most one per
//! [`REOBSERVE_EVERY`] per chain, at most [`MAX_REOBSERVE_BLOCKS`] blocks each; it runs
//! through the chain's RPC quorum like the watcher's own scans and is refused on a chain a
//! finality violation halted.
//!
//! A paused chain's messages are still observed; this member proposes none of them,
//! prevotes nil on blocks carrying them and releases no share for them
//! (`sigil_engine::Driver::set_paused`). With f + 1 members paused the committee decides
//! and signs nothing of that chain; the other chains go on.

use crate::node::Status;
use crate::store::Store;
pub use crate::watcher::{MAX_REOBSERVE_BLOCKS, ReobserveReport};
use crate::watcher::{ReobserveRange, ReobserveRequest};
use alloy_primitives::B256;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::Digest as _;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Least time between two re-observe requests of one chain.
pub const REOBSERVE_EVERY: Duration = Duration::from_secs(1);

/// Longest the API waits for a re-observe's outcome before answering 504 (the scan goes on).
pub const REOBSERVE_WAIT: Duration = Duration::from_secs(120);

/// The token file in a node's home.
pub const TOKEN_FILE: &str = "admin.token";

/// What the admin handlers share with the node.
#[derive(Clone)]
pub struct AdminState {
    /// The node's store (the pause is recorded there before it is applied).
    pub store: Store,
    /// The paused source chains; the node applies changes to its engine on its next tick.
    pub paused: Arc<RwLock<BTreeSet<u64>>>,
    /// The node's live status.
    pub status: Arc<RwLock<Status>>,
    /// The configured source chains (chain ids); pausing another is refused.
    pub chains: BTreeSet<u64>,
    /// SHA-256 of the token (compared digest to digest, so the comparison's timing says
    /// nothing about the token).
    pub token_digest: [u8; 32],
    /// Each source chain's watcher, for re-observe requests (capacity 1: a second request
    /// while one runs is refused). A chain missing here answers 503.
    pub reobserve: BTreeMap<u64, mpsc::Sender<ReobserveRequest>>,
    /// When each chain's last re-observe was accepted (rate limit).
    pub last_reobserve: Arc<Mutex<BTreeMap<u64, Instant>>>,
}

/// `POST /admin/v1/chains/{chain}/reobserve` body: a block range or a transaction.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReobserveBody {
    /// First block of the range.
    pub from_block: Option<u64>,
    /// Last block of the range (inclusive; clamped to the final block).
    pub to_block: Option<u64>,
    /// A transaction hash (0x + 64 hex): its block is re-read.
    pub tx: Option<B256>,
}

/// `GET /admin/v1/pending`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// Source chains this operator paused.
    pub paused: Vec<u64>,
    /// Highest decided height.
    pub decided_height: u64,
    /// Highest attested height.
    pub attested_height: u64,
    /// Decided heights without an attestation.
    pub unattested: Vec<u64>,
    /// Messages observed at finality and not yet decided.
    pub pending_messages: u64,
}

/// Reads the token from `<home>/admin.token`, creating it if absent (32 random bytes as
/// hex, created with mode 0600, never readable by others in between). Errors: the file
/// cannot be read or created, is readable by group or others, or holds fewer than 16
/// characters.
pub fn load_or_create_token(home: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Write as _;
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    let p = home.join(TOKEN_FILE);
    match std::fs::metadata(&p) {
        Ok(m) => {
            if m.mode() & 0o077 != 0 {
                anyhow::bail!(
                    "{} is readable by group or others (mode {:o}); chmod 600 it",
                    p.display(),
                    m.mode() & 0o777
                );
            }
            let t = std::fs::read_to_string(&p)?.trim().to_owned();
            if t.len() < 16 {
                anyhow::bail!("{} holds a token shorter than 16 characters", p.display());
            }
            Ok(t)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
            let token = hex::encode(bytes);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)?;
            f.write_all(token.as_bytes())?;
            f.sync_all()?;
            Ok(token)
        }
        Err(e) => Err(e.into()),
    }
}

/// SHA-256 of `token` ([`AdminState::token_digest`]).
pub fn token_digest(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.trim().as_bytes()).into()
}

/// A JSON error answer `{"error": message}` with `status`.
pub(crate) fn err(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// Middleware of every admin route (the node's and the relayer's): 401 unless the request
/// carries `Authorization: Bearer <token>` whose SHA-256 is `digest`.
pub(crate) async fn require_token(
    State(digest): State<[u8; 32]>,
    req: Request,
    next: Next,
) -> Response {
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(token_digest);
    if given != Some(digest) {
        return err(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token (Authorization: Bearer <contents of admin.token>)",
        );
    }
    next.run(req).await
}

async fn pending(State(s): State<AdminState>) -> Json<Pending> {
    let st = s.status.read().map(|g| g.clone()).unwrap_or_default();
    Json(Pending {
        paused: s
            .paused
            .read()
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default(),
        decided_height: st.decided_height,
        attested_height: st.attested_height,
        unattested: st.unattested,
        pending_messages: st.pending_messages,
    })
}

/// `chain` (a path segment) as one of this node's source chains; else the 400 or 404
/// status and why.
fn source_chain(s: &AdminState, chain: &str) -> Result<u64, (StatusCode, String)> {
    let Ok(chain) = chain.parse::<u64>() else {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("`{chain}` is not a chain id"),
        ));
    };
    if !s.chains.contains(&chain) {
        return Err((
            StatusCode::NOT_FOUND,
            format!("chain {chain} is not a source chain of this node"),
        ));
    }
    Ok(chain)
}

async fn set_paused(s: AdminState, chain: &str, paused: bool) -> Response {
    let chain = match source_chain(&s, chain) {
        Ok(c) => c,
        Err((status, why)) => return err(status, why),
    };
    // Durable first (a pause acknowledged survives a crash), under the lock, so that
    // concurrent pause and resume calls leave the store and the node agreeing.
    let Ok(mut p) = s.paused.write() else {
        return err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "paused set lock poisoned",
        );
    };
    if let Err(e) = s.store.set_paused(chain, paused) {
        return err(StatusCode::INTERNAL_SERVER_ERROR, format!("store: {e}"));
    }
    if paused {
        p.insert(chain);
    } else {
        p.remove(&chain);
    }
    drop(p);
    tracing::warn!(chain, paused, "operator changed the emergency stop");
    Json(serde_json::json!({ "chain": chain, "paused": paused })).into_response()
}

async fn pause(State(s): State<AdminState>, Path(chain): Path<String>) -> Response {
    set_paused(s, &chain, true).await
}

async fn resume(State(s): State<AdminState>, Path(chain): Path<String>) -> Response {
    set_paused(s, &chain, false).await
}

async fn reobserve(
    State(s): State<AdminState>,
    Path(chain): Path<String>,
    body: Result<Json<ReobserveBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let chain = match source_chain(&s, &chain) {
        Ok(c) => c,
        Err((status, why)) => return err(status, why),
    };
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return err(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let range = match (body.from_block, body.to_block, body.tx) {
        (Some(from), Some(to), None) => {
            if to < from || to - from >= MAX_REOBSERVE_BLOCKS {
                return err(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "blocks {from}..={to}: want fromBlock <= toBlock and at most {MAX_REOBSERVE_BLOCKS} blocks"
                    ),
                );
            }
            ReobserveRange::Blocks { from, to }
        }
        (None, None, Some(tx)) => ReobserveRange::Tx(tx),
        _ => {
            return err(
                StatusCode::BAD_REQUEST,
                "give either fromBlock and toBlock, or tx",
            );
        }
    };
    let Some(watcher) = s.reobserve.get(&chain) else {
        return err(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("chain {chain}'s watcher takes no re-observe requests"),
        );
    };
    {
        let Ok(mut last) = s.last_reobserve.lock() else {
            return err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rate limit lock poisoned",
            );
        };
        let now = Instant::now();
        if let Some(t) = last.get(&chain)
            && now.duration_since(*t) < REOBSERVE_EVERY
        {
            return err(
                StatusCode::TOO_MANY_REQUESTS,
                format!("at most one re-observe per {REOBSERVE_EVERY:?} per chain"),
            );
        }
        last.insert(chain, now);
    }
    tracing::warn!(chain, ?range, "operator asked to re-observe");
    let words = TaskWords {
        busy: format!("a re-observe of chain {chain} is already running"),
        gone: format!("chain {chain}'s watcher is not running (stopping?)"),
        late: format!("no outcome within {REOBSERVE_WAIT:?}; the scan goes on (RPC slow or down?)"),
    };
    match ask_task(
        watcher,
        |reply| ReobserveRequest { range, reply },
        REOBSERVE_WAIT,
        words,
    )
    .await
    {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(why)) => err(StatusCode::CONFLICT, why),
        Err(refused) => refused,
    }
}

/// What [`ask_task`] answers when the task cannot take or answer a request.
pub(crate) struct TaskWords {
    /// 429: the task's queue is full (a request of this kind is already running).
    pub busy: String,
    /// 503: the task is not running, or dropped the request.
    pub gone: String,
    /// 504: no answer within the wait (the work may go on).
    pub late: String,
}

/// Hands a request to a task's bounded queue without waiting for room, then waits up to
/// `wait` for the task's answer on the request's oneshot channel (the node's watcher for a
/// re-observe, a relayer chain task for a retry). Errors: the response to send instead —
/// 429 `busy`, 503 `gone`, 504 `late` (see [`TaskWords`]).
pub(crate) async fn ask_task<R, A>(
    task: &mpsc::Sender<R>,
    request: impl FnOnce(tokio::sync::oneshot::Sender<A>) -> R,
    wait: Duration,
    words: TaskWords,
) -> Result<A, Response> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    if let Err(e) = task.try_send(request(reply)) {
        return Err(match e {
            mpsc::error::TrySendError::Full(_) => err(StatusCode::TOO_MANY_REQUESTS, words.busy),
            mpsc::error::TrySendError::Closed(_) => {
                err(StatusCode::SERVICE_UNAVAILABLE, words.gone)
            }
        });
    }
    match tokio::time::timeout(wait, answer).await {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(_)) => Err(err(StatusCode::SERVICE_UNAVAILABLE, words.gone)),
        Err(_) => Err(err(StatusCode::GATEWAY_TIMEOUT, words.late)),
    }
}

/// The admin router (every route behind the token check).
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/admin/v1/pending", get(pending))
        .route("/admin/v1/chains/{chain}/reobserve", post(reobserve))
        .route("/admin/v1/chains/{chain}/pause", post(pause))
        .route("/admin/v1/chains/{chain}/resume", post(resume))
        .route_layer(axum::middleware::from_fn_with_state(
            state.token_digest,
            require_token,
        ))
        .with_state(state)
}
