//! The relayer's admin API (`sigil relay --admin ADDR`, loopback only): the queue of Failed
//! messages and "retry this one now", every request authenticated by the token in
//! `<state dir>/admin.token` (`Authorization: Bearer <token>`, as the node's admin API).
//! `sigil admin retries` / `sigil admin retry` wrap it.
//!
//! | route                                  | what                                           |
//! |----------------------------------------|------------------------------------------------|
//! | `GET  /admin/v1/retries`               | every queued Failed message ([`RetryView`])    |
//! | `POST /admin/v1/retries/{id}[?height=H]` | retry message `id` at once ([`RetryAccepted`]) |
//!
//! "At once" means at the chain task's next turn: once what it has in flight has settled,
//! `retry(message)` is estimated (a recipient that still fails costs no transaction) and
//! sent; the backoff restarts from `retry_min`. A message not in the queue (the relayer
//! restarted without its state, another relayer delivered the batch) is looked up in the
//! batch of `height` from the node APIs; the inbox itself refuses a message that is not
//! Failed or does not match its stored leaf, so nothing here can make it deliver a forgery.

use super::fetch_batch;
use super::ledger::RetryEntry;
use crate::admin::{TaskWords, ask_task, err, require_token};
use alloy_primitives::B256;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sigil_crypto::Message;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, oneshot};

/// Most Failed messages one chain's queue holds; an admin request past it is refused.
pub const MAX_QUEUED_RETRIES: usize = 100_000;

/// A queued Failed message (`GET /admin/v1/retries`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryView {
    /// Destination chain.
    pub chain: u64,
    /// Message id (32 bytes).
    pub id: B256,
    /// The decided height that carried it.
    pub height: u64,
    /// Retries so far.
    pub attempts: u32,
    /// When the next retry is due (ms since the Unix epoch).
    pub next_at_ms: u64,
}

impl RetryView {
    pub(super) fn of(chain: u64, e: &RetryEntry) -> Self {
        Self {
            chain,
            id: e.message.id(),
            height: e.height,
            attempts: e.attempts,
            next_at_ms: e.next_at_ms,
        }
    }
}

/// `POST /admin/v1/retries/{id}`: what was scheduled.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryAccepted {
    /// Destination chain.
    pub chain: u64,
    /// Message id.
    pub id: B256,
    /// Its height.
    pub height: u64,
    /// Whether it was added to the queue (false: it was queued already).
    pub added: bool,
    /// Retries before this request.
    pub attempts_before: u32,
}

/// Each destination chain's retry queue, as its task last saved it.
pub(super) type Queues = Arc<RwLock<BTreeMap<u64, Vec<RetryView>>>>;

/// A request to a chain task.
#[derive(Debug)]
pub(super) struct RetryNow {
    pub(super) id: B256,
    /// The message and its height, when the queue may not hold it.
    pub(super) message: Option<(u64, Message)>,
    pub(super) reply: oneshot::Sender<Result<RetryAccepted, String>>,
}

/// What the admin handlers share with the chain tasks.
#[derive(Clone)]
pub(super) struct AdminState {
    pub(super) commands: BTreeMap<u64, mpsc::Sender<RetryNow>>,
    /// Each chain's queue as its task last saved it.
    pub(super) queues: Queues,
    pub(super) apis: Vec<String>,
    pub(super) http: reqwest::Client,
    pub(super) token_digest: [u8; 32],
}

async fn retries(State(s): State<AdminState>) -> Json<Vec<RetryView>> {
    Json(
        s.queues
            .read()
            .map(|q| q.values().flatten().cloned().collect())
            .unwrap_or_default(),
    )
}

#[derive(Debug, serde::Deserialize)]
struct RetryQuery {
    height: Option<u64>,
}

async fn retry(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    Query(q): Query<RetryQuery>,
) -> Response {
    let Ok(id) = id.parse::<B256>() else {
        return err(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not a message id (0x + 64 hex)"),
        );
    };
    let queued = s.queues.read().ok().and_then(|q| {
        q.iter()
            .find(|(_, v)| v.iter().any(|r| r.id == id))
            .map(|(c, _)| *c)
    });
    let (chain, message) = match (queued, q.height) {
        (Some(chain), _) => (chain, None),
        (None, None) => {
            return err(
                StatusCode::NOT_FOUND,
                format!("{id} is not in the retry queue; give the height of its batch (?height=H)"),
            );
        }
        (None, Some(h)) => match fetch_batch(&s.http, &s.apis, h).await {
            Ok(Some(b)) => {
                let Some(m) = b
                    .messages
                    .into_iter()
                    .map(|v| v.message)
                    .find(|m| m.id() == id)
                else {
                    return err(
                        StatusCode::NOT_FOUND,
                        format!("height {h} does not carry message {id}"),
                    );
                };
                (m.dest_chain_id, Some((h, m)))
            }
            Ok(None) => {
                return err(
                    StatusCode::NOT_FOUND,
                    format!("height {h} is not attested on any node API"),
                );
            }
            Err(e) => return err(StatusCode::BAD_GATEWAY, format!("node API: {e:#}")),
        },
    };
    let Some(task) = s.commands.get(&chain) else {
        return err(
            StatusCode::NOT_FOUND,
            format!("message {id} goes to chain {chain}, which this relayer does not deliver to"),
        );
    };
    let words = TaskWords {
        busy: format!("chain {chain}'s task has requests waiting; try again"),
        gone: format!("chain {chain}'s task is not running (stopping?)"),
        late: format!("chain {chain}'s task did not answer within {RETRY_WAIT:?} (busy sending?)"),
    };
    match ask_task(
        task,
        |reply| RetryNow { id, message, reply },
        RETRY_WAIT,
        words,
    )
    .await
    {
        Ok(Ok(a)) => (StatusCode::ACCEPTED, Json(a)).into_response(),
        Ok(Err(why)) => err(StatusCode::CONFLICT, why),
        Err(refused) => refused,
    }
}

/// How long a retry request waits for its chain task's answer.
const RETRY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The router (every route behind the token check).
pub(super) fn router(state: AdminState) -> Router {
    Router::new()
        .route("/admin/v1/retries", get(retries))
        .route("/admin/v1/retries/{id}", post(retry))
        .route_layer(axum::middleware::from_fn_with_state(
            state.token_digest,
            require_token,
        ))
        .with_state(state)
}

impl super::ChainTask {
    /// Publishes this chain's queue to the admin API.
    pub(super) fn publish_queue(&self) {
        if let Some(q) = &self.queue_view
            && let Ok(mut q) = q.write()
        {
            let c = self.chain_id();
            q.insert(
                c,
                self.retries.values().map(|e| RetryView::of(c, e)).collect(),
            );
        }
    }

    /// Serves the admin requests waiting for this chain (called at each turn of its loop).
    pub(super) fn serve_admin(&mut self) -> anyhow::Result<()> {
        let Some(rx) = self.admin_rx.as_mut() else {
            return Ok(());
        };
        let mut cmds = Vec::new();
        while let Ok(c) = rx.try_recv() {
            cmds.push(c);
        }
        if cmds.is_empty() {
            return Ok(());
        }
        for c in cmds {
            let out = self.retry_now(c.id, c.message);
            let _ = c.reply.send(out);
        }
        self.save_retries()
    }

    fn retry_now(
        &mut self,
        id: B256,
        message: Option<(u64, Message)>,
    ) -> Result<RetryAccepted, String> {
        let now = crate::now_ms();
        let chain = self.chain_id();
        if let Some(e) = self.retries.get_mut(&id) {
            let before = e.attempts;
            e.attempts = 0;
            e.next_at_ms = now;
            tracing::warn!(chain, %id, "operator asked to retry a Failed message now");
            return Ok(RetryAccepted {
                chain,
                id,
                height: e.height,
                added: false,
                attempts_before: before,
            });
        }
        let Some((height, m)) = message else {
            return Err(format!(
                "{id} left the retry queue (delivered?); give its height to queue it again"
            ));
        };
        if m.id() != id || m.dest_chain_id != chain || m.dest_inbox != self.dest.chain.inbox {
            return Err(format!(
                "message {id} is not for this relayer's inbox {} on chain {chain}",
                self.dest.chain.inbox
            ));
        }
        if self.retries.len() >= MAX_QUEUED_RETRIES {
            return Err(format!(
                "chain {chain}'s retry queue is full ({MAX_QUEUED_RETRIES})"
            ));
        }
        self.retries.insert(
            id,
            RetryEntry {
                height,
                message: m,
                attempts: 0,
                next_at_ms: now,
            },
        );
        self.metrics.relayer.retry_pending.inc();
        tracing::warn!(chain, %id, height, "operator queued a message for retry");
        Ok(RetryAccepted {
            chain,
            id,
            height,
            added: true,
            attempts_before: 0,
        })
    }
}
