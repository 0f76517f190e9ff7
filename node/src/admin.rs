//! The admin API: repairs and the emergency stop, on a loopback listener of its own
//! (`[admin] listen`), every request authenticated by the token in `<home>/admin.token`
//! (`Authorization: Bearer <token>`). `sigil admin …` wraps it.
//!
//! | route                                   | what                                                  |
//! |-----------------------------------------|-------------------------------------------------------|
//! | `GET  /admin/v1/pending`                | paused chains, decided/attested heights, unattested heights, messages waiting |
//! | `POST /admin/v1/chains/{chain}/pause`   | emergency stop for one source chain (durable, idempotent) |
//! | `POST /admin/v1/chains/{chain}/resume`  | undo it                                               |
//!
//! A paused chain's messages are still observed; this member proposes none of them,
//! prevotes nil on blocks carrying them and releases no share for them
//! (`sigil_engine::Driver::set_paused`). With f + 1 members paused the committee decides
//! and signs nothing of that chain; the other chains go on.

use crate::node::Status;
use crate::store::Store;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::Digest as _;
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

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

fn err(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

async fn auth(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(token_digest);
    if given != Some(s.token_digest) {
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

async fn set_paused(s: AdminState, chain: &str, paused: bool) -> Response {
    let Ok(chain) = chain.parse::<u64>() else {
        return err(
            StatusCode::BAD_REQUEST,
            format!("`{chain}` is not a chain id"),
        );
    };
    if !s.chains.contains(&chain) {
        return err(
            StatusCode::NOT_FOUND,
            format!("chain {chain} is not a source chain of this node"),
        );
    }
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

/// The admin router (every route behind the token check).
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/admin/v1/pending", get(pending))
        .route("/admin/v1/chains/{chain}/pause", post(pause))
        .route("/admin/v1/chains/{chain}/resume", post(resume))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state)
}
