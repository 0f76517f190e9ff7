//! HTTP API (axum). JSON everywhere; errors are `{"code": "...", "message": "..."}` with a
//! matching status (400 malformed input, 404 unknown, 503 not available yet).
//!
//! | route                          | answer                                                  |
//! |--------------------------------|---------------------------------------------------------|
//! | `GET /v1/status`               | [`crate::node::Status`]                                 |
//! | `GET /v1/batches/{height}`     | [`BatchView`]: block, signature, every message; with `?attested=true` a decided, unattested height is 404 `not_attested` |
//! | `GET /v1/attestations/{id}`    | [`AttestationView`]: message, proof, signature, key     |
//! | `GET /healthz`                 | 200 while the process serves                            |
//! | `GET /readyz`                  | 200 when quorum peers are connected and chains answer   |
//! | `GET /metrics`                 | Prometheus text format                                  |

use crate::node::Shared;
use crate::store::StoreError;
use alloy_primitives::{B256, U256};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sigil_crypto::{BatchTree, GroupKey, Message, OnchainSignature};
use sigil_proto as pb;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({"code": self.code, "message": self.message})),
        )
            .into_response()
    }
}

/// A group signature as the inbox takes it (uint256 each, `0x` hex).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignatureView {
    /// R.x.
    pub rx: U256,
    /// R.y.
    pub ry: U256,
    /// z.
    pub z: U256,
}

/// A message with its id and leaf. JSON: the message's fields flattened (camelCase, with
/// `destInbox` and `gasLimit`), then `id` and `leaf`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    /// The message.
    #[serde(flatten)]
    pub message: Message,
    /// `messageId` (32 bytes).
    pub id: B256,
    /// Merkle leaf (32 bytes).
    pub leaf: B256,
}

/// `GET /v1/batches/{height}`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchView {
    /// Key epoch.
    pub epoch: u64,
    /// Height.
    pub height: u64,
    /// Merkle root.
    pub root: B256,
    /// Message count.
    pub count: u32,
    /// Group signature, once attested.
    pub signature: Option<SignatureView>,
    /// Messages in leaf order.
    pub messages: Vec<MessageView>,
    /// Proposer's time (ms since epoch).
    pub time_ms: u64,
    /// On a key-rotation height (committee epochs): the inbox this height's signature
    /// rotates and the new key; `signature` is then the old key's signature over that
    /// inbox's `KeyRotation` digest (contracts/V2.md §5), posted with `rotateKey`, and the
    /// batch is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<HandoverView>,
}

/// A key rotation for one destination inbox, as JSON (from the attestation of a
/// key-rotation height; the node derives it from its own decided block).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandoverView {
    /// The inbox's chain id.
    pub chain_id: u64,
    /// The inbox address.
    pub inbox: alloy_primitives::Address,
    /// The epoch the new key signs under.
    pub new_epoch: u64,
    /// The new group key.
    pub new_key: GroupKeyView,
}

/// The hand-over an attestation carries, as JSON; `None` when absent or malformed.
fn handover_view(a: &pb::Attestation) -> Option<HandoverView> {
    let h = a.handover.as_ref()?;
    let inbox = h.inbox.as_ref()?;
    let key = GroupKey::from_compressed(&h.new_group_key).ok()?;
    Some(HandoverView {
        chain_id: inbox.chain_id,
        inbox: alloy_primitives::Address::try_from(inbox.address.as_slice()).ok()?,
        new_epoch: h.new_epoch,
        new_key: GroupKeyView {
            compressed: hex::encode(key.compressed()),
            x: key.x(),
            y: key.y(),
            parity: key.parity(),
        },
    })
}

/// The group key as JSON.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GroupKeyView {
    /// Compressed hex.
    pub compressed: String,
    /// x.
    pub x: B256,
    /// y.
    pub y: B256,
    /// y parity.
    pub parity: u8,
}

/// `GET /v1/attestations/{messageId}`: everything needed to verify or relay one message.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationView {
    /// Message id.
    pub message_id: B256,
    /// The message.
    pub message: Message,
    /// Its leaf.
    pub leaf: B256,
    /// Key epoch.
    pub epoch: u64,
    /// Height.
    pub height: u64,
    /// Merkle root.
    pub root: B256,
    /// OpenZeppelin `MerkleProof` sibling list.
    pub proof: Vec<B256>,
    /// Group signature.
    pub signature: SignatureView,
    /// Group key.
    pub group_key: Option<GroupKeyView>,
}

fn sig_view(bytes: &[u8]) -> Option<SignatureView> {
    let s = OnchainSignature::from_bytes(bytes).ok()?;
    Some(SignatureView {
        rx: s.rx,
        ry: s.ry,
        z: s.z,
    })
}

/// Most attested batches [`BatchCache`] keeps.
pub const BATCH_CACHE_ENTRIES: usize = 8;
/// Most bytes of rendered JSON [`BatchCache`] keeps (a 10,000-message batch is ~7 MiB).
/// The decoded views are kept beside it, so the cache's memory is about twice this.
pub const BATCH_CACHE_BYTES: usize = 64 << 20;

/// A batch as served: the view, its rendered JSON body, and the Merkle tree of its leaves
/// (`None` for an empty batch), built once to check the root and reused for every proof.
struct Served {
    view: BatchView,
    json: axum::body::Bytes,
    tree: Option<BatchTree>,
}

/// The most recently served attested batches (`/v1/batches/{h}`, `/v1/attestations/{id}`),
/// so the relayer, the devnet and every client asking for one height cost one read of its
/// observations and one rendering, not one each. Only attested heights are kept: the
/// decided block, its observations and its signature no longer change. Bounded by
/// [`BATCH_CACHE_ENTRIES`] and [`BATCH_CACHE_BYTES`], oldest evicted first, so a client
/// walking every height evicts entries and never grows it.
#[derive(Clone, Default)]
pub struct BatchCache(Arc<Mutex<VecDeque<Arc<Served>>>>);

impl BatchCache {
    fn get(&self, height: u64) -> Option<Arc<Served>> {
        let q = self.0.lock().ok()?;
        q.iter().find(|c| c.view.height == height).cloned()
    }

    fn put(&self, served: Arc<Served>) {
        if served.view.signature.is_none() || served.json.len() > BATCH_CACHE_BYTES {
            return;
        }
        let Ok(mut q) = self.0.lock() else {
            return;
        };
        if q.iter().any(|c| c.view.height == served.view.height) {
            return;
        }
        q.push_back(served);
        let mut bytes: usize = q.iter().map(|c| c.json.len()).sum();
        while q.len() > BATCH_CACHE_ENTRIES || bytes > BATCH_CACHE_BYTES {
            match q.pop_front() {
                Some(old) => bytes -= old.json.len(),
                None => break,
            }
        }
    }
}

/// The batch of `height` as served (view, JSON, tree), from the cache or from storage
/// (then cached if attested). With `attested_only`, a decided height without its attestation yet is
/// 404 `not_attested`, answered before any observation is read: pollers waiting for the
/// next attested height (the relayer, the devnet) cost a block read, not a whole batch.
/// Errors: those of [`batch_view`]; 503 `observations_conflict` when this node's
/// observations do not rebuild the decided root; 500 `encoding`.
fn cached_batch(
    shared: &Shared,
    height: u64,
    attested_only: bool,
) -> Result<Arc<Served>, ApiError> {
    if let Some(hit) = shared.batches.get(height) {
        return Ok(hit);
    }
    if attested_only
        && shared
            .store
            .block(height)?
            .is_some_and(|cb| cb.attestation.is_none())
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_attested",
            format!("height {height} is decided but not attested yet"),
        ));
    }
    let view = batch_view(shared, height)?;
    let mut tree = None;
    if !view.messages.is_empty() {
        // What this node observed must rebuild the decided root before it is served (and
        // kept): a node that caught up, then observed a message differently, would
        // otherwise serve leaves no proof can tie to the signed root.
        let leaves: Vec<B256> = view.messages.iter().map(|m| m.leaf).collect();
        tree = BatchTree::new(&leaves).ok();
        if tree.as_ref().map(BatchTree::root) != Some(view.root) {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "observations_conflict",
                format!(
                    "this node's observations of height {height} do not rebuild its decided root; ask another node"
                ),
            ));
        }
    }
    let json = serde_json::to_vec(&view)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "encoding", e.to_string()))?;
    let served = Arc::new(Served {
        view,
        json: axum::body::Bytes::from(json),
        tree,
    });
    shared.batches.put(served.clone());
    Ok(served)
}

/// Builds the batch view of `height` from storage.
/// Errors: 404 `unknown_height`; 503 `observations_missing` when this node did not observe
/// every message (e.g. it caught up from peers).
pub fn batch_view(shared: &Shared, height: u64) -> Result<BatchView, ApiError> {
    let cb = shared.store.block(height)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_height",
            format!("no decided block at height {height}"),
        )
    })?;
    let block = proposal_block(&cb).ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage",
            "stored block without proposal",
        )
    })?;
    let mut messages = Vec::with_capacity(block.count as usize);
    for r in &block.ranges {
        let obs = shared
            .store
            .observations(r.chain_id, r.from_nonce..r.to_nonce)?;
        if obs.len() as u64 != r.to_nonce - r.from_nonce {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "observations_missing",
                format!(
                    "this node has not observed every message of height {height}; ask another node"
                ),
            ));
        }
        for o in obs {
            messages.push(MessageView {
                id: o.message.id(),
                leaf: o.message.leaf(),
                message: o.message,
            });
        }
    }
    Ok(BatchView {
        epoch: block.epoch,
        height,
        root: B256::try_from(block.root.as_slice()).unwrap_or_default(),
        count: block.count,
        signature: cb.attestation.as_ref().and_then(|a| sig_view(&a.signature)),
        messages,
        time_ms: block.time_ms,
        handover: cb.attestation.as_ref().and_then(handover_view),
    })
}

/// The block inside a stored committed block's proposal envelope.
pub fn proposal_block(cb: &pb::CommittedBlock) -> Option<pb::Block> {
    use prost::Message as _;
    let env = cb.proposal.as_ref()?;
    let body = pb::Body::decode(env.body.as_slice()).ok()?;
    match body.kind? {
        pb::body::Kind::Proposal(p) => p.block,
        _ => None,
    }
}

/// The group key an attestation is checked against ([`verify_attestation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustedKey<'a> {
    /// A compressed secp256k1 group key (33 bytes as hex, `0x` optional) the verifier got
    /// on its own: pinned from the committee's announcement (`sigil verify --group-key`), or
    /// read from the destination inbox's `keyOf(epoch)` (`sigil verify --rpc --inbox`).
    Pinned(&'a str),
    /// The key written in the attestation itself. This proves only that the file agrees
    /// with itself: anyone can sign a forged batch with a key of their own and write that
    /// key in the file. For debugging (`sigil verify --trust-file-key`).
    CarriedInFile,
}

/// Offline check of an attestation (what `sigil verify` runs): id and leaf recomputed from
/// the message (format v2 leaf: it covers `destInbox` and `gasLimit` too, so neither can be
/// altered), the Merkle proof leads to the root, and the group signature verifies over
/// the EIP-712 batch digest `Batch(epoch, height, root)` under `key`. Errors name the
/// first check that fails (a malformed key, no key in the file for
/// [`TrustedKey::CarriedInFile`], a bad id, leaf, proof or signature).
pub fn verify_attestation(a: &AttestationView, key: TrustedKey<'_>) -> anyhow::Result<()> {
    use anyhow::{anyhow, bail};
    if a.message.id() != a.message_id {
        bail!("messageId does not match the message fields");
    }
    if a.message.leaf() != a.leaf {
        bail!("leaf does not match the message fields");
    }
    if sigil_crypto::merkle::process_proof(&a.leaf, &a.proof) != a.root {
        bail!("Merkle proof does not lead to the root");
    }
    let key_hex = match key {
        TrustedKey::Pinned(k) => k.to_owned(),
        TrustedKey::CarriedInFile => a
            .group_key
            .as_ref()
            .map(|g| g.compressed.clone())
            .ok_or_else(|| anyhow!("the file carries no group key"))?,
    };
    let gk =
        sigil_crypto::GroupKey::from_compressed(&hex::decode(key_hex.trim_start_matches("0x"))?)?;
    let sig = sigil_crypto::OnchainSignature {
        rx: a.signature.rx,
        ry: a.signature.ry,
        z: a.signature.z,
    }
    .to_frost()?;
    let digest = sigil_crypto::batch_digest(a.epoch, a.height, a.root);
    sigil_crypto::signing::verify(&gk, digest, &sig)
        .map_err(|_| anyhow!("group signature does not verify for this root and key"))?;
    Ok(())
}

async fn status(State(s): State<Shared>) -> Json<crate::node::Status> {
    Json(s.status.read().map(|g| g.clone()).unwrap_or_default())
}

/// Query of `GET /v1/batches/{height}`.
#[derive(Debug, Default, serde::Deserialize)]
struct BatchQuery {
    /// Only an attested batch: a decided, unattested height is 404 `not_attested`.
    #[serde(default)]
    attested: bool,
}

async fn batch(
    State(s): State<Shared>,
    Path(h): Path<String>,
    q: Result<Query<BatchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let h: u64 = h.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_height",
            format!("`{h}` is not a height"),
        )
    })?;
    let Query(q) =
        q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
    let served = cached_batch(&s, h, q.attested)?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        served.json.clone(),
    )
        .into_response())
}

async fn attestation(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<AttestationView>, ApiError> {
    let id: B256 = id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_message_id",
            format!("`{id}` is not a 32-byte hex message id"),
        )
    })?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_message",
            format!("no attestation for message {id}"),
        )
    };
    let h = s.store.height_of_message(&id)?.ok_or_else(not_found)?;
    let served = cached_batch(&s, h, false)?;
    let view = &served.view;
    let signature = view.signature.clone().ok_or_else(not_found)?;
    let m = view
        .messages
        .iter()
        .find(|m| m.id == id)
        .ok_or_else(not_found)?;
    let proof = served
        .tree
        .as_ref()
        .ok_or_else(not_found)?
        .proof(&m.leaf)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "merkle", e.to_string()))?;
    Ok(Json(AttestationView {
        message_id: id,
        message: m.message.clone(),
        leaf: m.leaf,
        epoch: view.epoch,
        height: h,
        root: view.root,
        proof,
        signature,
        group_key: s
            .group_keys
            .read()
            .ok()
            .and_then(|k| k.get(&view.epoch).copied())
            .map(|g| GroupKeyView {
                compressed: hex::encode(g.compressed()),
                x: g.x(),
                y: g.y(),
                parity: g.parity(),
            }),
    }))
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<Shared>) -> Result<&'static str, ApiError> {
    let ready = s.status.read().map(|g| g.ready).unwrap_or(false);
    if ready {
        Ok("ready")
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "waiting for quorum peers or chain RPCs",
        ))
    }
}

async fn metrics(State(s): State<Shared>) -> Response {
    encode_metrics(&s.registry)
}

/// The registry in the Prometheus text format (OpenMetrics 1.0), or 500.
fn encode_metrics(registry: &prometheus_client::registry::Registry) -> Response {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

async fn fallback() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// A router serving only `GET /metrics` (from `registry`) and `GET /healthz`: what
/// `sigil relay --metrics <addr>` listens with.
pub fn metrics_router(registry: Arc<prometheus_client::registry::Registry>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(
                |State(r): State<Arc<prometheus_client::registry::Registry>>| async move {
                    encode_metrics(&r)
                },
            ),
        )
        .route("/healthz", get(healthz))
        .fallback(fallback)
        .with_state(registry)
}

/// The API router.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/batches/{height}", get(batch))
        .route("/v1/attestations/{id}", get(attestation))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(fallback)
        .with_state(shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(height: u64, signed: bool, json: Vec<u8>) -> Arc<Served> {
        Arc::new(Served {
            view: BatchView {
                epoch: 1,
                height,
                root: B256::ZERO,
                count: 0,
                signature: signed.then(|| SignatureView {
                    rx: U256::from(1),
                    ry: U256::from(2),
                    z: U256::from(3),
                }),
                messages: vec![],
                time_ms: 0,
                handover: None,
            },
            json: axum::body::Bytes::from(json),
            tree: None,
        })
    }

    #[test]
    fn the_batch_cache_keeps_only_attested_batches_within_its_bounds() {
        let c = BatchCache::default();
        c.put(served(1, false, b"unsigned".to_vec()));
        assert!(c.get(1).is_none(), "an unattested batch may still change");
        for h in 1..=(BATCH_CACHE_ENTRIES as u64 + 1) {
            c.put(served(h, true, vec![b'x'; 10]));
        }
        assert!(
            c.get(1).is_none(),
            "the oldest is evicted past the entry bound"
        );
        assert_eq!(c.get(2).map(|c| c.view.height), Some(2));
        let n = BATCH_CACHE_ENTRIES as u64 + 1;
        assert_eq!(c.get(n).map(|c| c.json.len()), Some(10));
        // One body over half the byte bound, then another: the first goes.
        let half = BATCH_CACHE_BYTES / 2 + 1;
        c.put(served(100, true, vec![0u8; half]));
        c.put(served(101, true, vec![0u8; half]));
        assert!(c.get(100).is_none() && c.get(101).is_some());
        let total: usize = c.0.lock().unwrap().iter().map(|e| e.json.len()).sum();
        assert!(total <= BATCH_CACHE_BYTES, "{total}");
        // A body over the whole bound is not kept at all.
        c.put(served(102, true, vec![0u8; BATCH_CACHE_BYTES + 1]));
        assert!(c.get(102).is_none() && c.get(101).is_some());
    }
}
