//! The relayer hands an inbox over to the next committee (committee epochs): it reads the
//! key-rotation heights from a node API (here a stub serving real FROST signatures: the old
//! 3-of-4 key over this inbox's `KeyRotation` digest), posts `rotateKey` for its own inbox
//! only, in height order, then delivers the new epoch's batch under the new key; a late
//! batch of the old epoch still lands inside the grace period; an inbox another relayer
//! already rotated gets no second rotation (idempotent).

use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sigil_crypto::keys::DealtKeys;
use sigil_crypto::{BatchTree, Message, OnchainSignature};
use sigil_node::api::{BatchView, GroupKeyView, HandoverView, MessageView, SignatureView};
use sigil_node::metrics::Metrics;
use sigil_node::relayer::{RelayChain, RelayerConfig, TxRecord};
use sigil_testnet::chain::{
    RecordingReceiver, SigilInbox, deploy_inbox, provider_for, spawn_anvil,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const DEST: u64 = 5151;

fn sign(keys: &DealtKeys, digest: B256, rng: &mut ChaCha20Rng) -> SignatureView {
    let signers: BTreeMap<u16, _> = keys
        .key_packages
        .iter()
        .take(3)
        .map(|(i, k)| (*i, k.clone()))
        .collect();
    let sig =
        sigil_crypto::signing::sign_local(&signers, &keys.public_key_package, digest, rng).unwrap();
    let on = OnchainSignature::from_frost(&sig).unwrap();
    SignatureView {
        rx: on.rx,
        ry: on.ry,
        z: on.z,
    }
}

fn messages(inbox: Address, receiver: Address, from: u64, count: u64) -> Vec<Message> {
    (from..from + count)
        .map(|n| Message {
            source_chain_id: 1,
            source_gateway: Address::repeat_byte(0xaa),
            nonce: n,
            sender: Address::repeat_byte(1),
            dest_chain_id: DEST,
            dest_inbox: inbox,
            recipient: receiver,
            gas_limit: 200_000,
            payload: Bytes::from(format!("epoch message {n}").into_bytes()),
        })
        .collect()
}

fn batch(
    epoch: u64,
    height: u64,
    ms: &[Message],
    keys: &DealtKeys,
    rng: &mut ChaCha20Rng,
) -> BatchView {
    let leaves: Vec<B256> = ms.iter().map(|m| m.leaf()).collect();
    let root = BatchTree::new(&leaves).unwrap().root();
    BatchView {
        epoch,
        height,
        root,
        count: ms.len() as u32,
        signature: Some(sign(
            keys,
            sigil_crypto::batch_digest(epoch, height, root),
            rng,
        )),
        messages: ms
            .iter()
            .map(|m| MessageView {
                message: m.clone(),
                id: m.id(),
                leaf: m.leaf(),
            })
            .collect(),
        time_ms: 0,
        handover: None,
    }
}

fn key_view(k: &sigil_crypto::GroupKey) -> GroupKeyView {
    GroupKeyView {
        compressed: hex::encode(k.compressed()),
        x: k.x(),
        y: k.y(),
        parity: k.parity(),
    }
}

/// A key-rotation height for inbox (`chain`, `inbox`), signed by `old` over that inbox's
/// rotation digest from epoch 1 to epoch 2 and `new`.
fn handover(
    height: u64,
    chain: u64,
    inbox: Address,
    old: &DealtKeys,
    new: &DealtKeys,
    rng: &mut ChaCha20Rng,
) -> BatchView {
    let (o, n) = (old.group_key, new.group_key);
    let digest =
        sigil_crypto::rotation_digest(chain, inbox, 1, o.x(), o.parity(), 2, n.x(), n.parity());
    BatchView {
        epoch: 1,
        height,
        root: B256::ZERO,
        count: 0,
        signature: Some(sign(old, digest, rng)),
        messages: Vec::new(),
        time_ms: 0,
        handover: Some(HandoverView {
            chain_id: chain,
            inbox,
            new_epoch: 2,
            new_key: key_view(&n),
        }),
    }
}

struct Setup {
    anvil: alloy::node_bindings::AnvilInstance,
    provider: DynProvider,
    inbox: Address,
    receiver: Address,
    /// Heights 1..=4 as the API serves them.
    heights: Vec<BatchView>,
}

/// Heights: 1 an epoch-1 batch (3 messages), 2 this inbox's key rotation, 3 another
/// inbox's key rotation (another chain), 4 an epoch-2 batch (4 messages, new key).
async fn setup() -> Setup {
    let anvil = spawn_anvil(DEST).unwrap();
    let provider = provider_for(&anvil, 0).unwrap().erased();
    let (inbox, receiver) = deploy_inbox(&provider, anvil.addresses()[0]).await.unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let old = sigil_crypto::keys::trusted_dealer(3, 4, &mut rng).unwrap();
    let new = sigil_crypto::keys::trusted_dealer(3, 4, &mut rng).unwrap();
    SigilInbox::new(inbox, &provider)
        .initialize(1, old.group_key.x_u256(), old.group_key.y_u256())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let heights = vec![
        batch(1, 1, &messages(inbox, receiver, 0, 3), &old, &mut rng),
        handover(2, DEST, inbox, &old, &new, &mut rng),
        handover(3, 999, Address::repeat_byte(0x99), &old, &new, &mut rng),
        batch(2, 4, &messages(inbox, receiver, 3, 4), &new, &mut rng),
    ];
    Setup {
        anvil,
        provider,
        inbox,
        receiver,
        heights,
    }
}

/// Serves `heights` as `/v1/batches/{h}`; returns the API's base URL.
async fn serve(heights: Vec<BatchView>) -> String {
    let mut app = axum::Router::new();
    for b in heights {
        let json = serde_json::to_string(&b).unwrap();
        app = app.route(
            &format!("/v1/batches/{}", b.height),
            axum::routing::get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    json,
                )
            }),
        );
    }
    let app = app.fallback(|| async {
        (
            axum::http::StatusCode::NOT_FOUND,
            "{\"code\":\"unknown_height\"}",
        )
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    api
}

fn relayer(s: &Setup, api: &str, dir: &std::path::Path) -> RelayerConfig {
    RelayerConfig {
        apis: vec![api.to_owned()],
        chains: vec![RelayChain {
            chain_id: DEST,
            rpc: s.anvil.endpoint(),
            inbox: s.inbox,
        }],
        key: PrivateKeySigner::from(s.anvil.keys()[1].clone()),
        state_dir: dir.to_owned(),
        chunk: 8,
        max_tx_gas: 25_000_000,
        poll: Duration::from_millis(100),
        stuck_after: Duration::from_secs(20),
        retry_min: Duration::from_millis(300),
        retry_max: Duration::from_secs(1),
        admin: None,
    }
}

/// Runs a relayer until its state reaches height 5 (every height relayed).
async fn relay_all(cfg: RelayerConfig) {
    let state = cfg.state_dir.join(format!("relayer_state_{DEST}.json"));
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(sigil_node::relayer::run(cfg, Arc::new(Metrics::new()), rx));
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(&state).is_ok_and(|t| t.contains("\"next_height\":5")) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "relayer did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

fn records(dir: &std::path::Path) -> Vec<TxRecord> {
    std::fs::read_to_string(dir.join("relayer_txs.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn epoch(s: &Setup) -> u64 {
    SigilInbox::new(s.inbox, &s.provider)
        .currentEpoch()
        .call()
        .await
        .unwrap()
}

async fn received(s: &Setup) -> u64 {
    RecordingReceiver::new(s.receiver, &s.provider)
        .count()
        .call()
        .await
        .unwrap()
        .to::<u64>()
}

#[tokio::test]
async fn the_relayer_rotates_its_inbox_once_then_delivers_under_the_new_key() {
    let s = setup().await;
    let api = serve(s.heights.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    relay_all(relayer(&s, &api, dir.path())).await;
    assert_eq!(
        epoch(&s).await,
        2,
        "the inbox moved to the new committee's key"
    );
    assert_eq!(
        received(&s).await,
        7,
        "both epochs' messages delivered once"
    );
    let kinds: Vec<(u64, String)> = records(dir.path())
        .into_iter()
        .map(|r| (r.height, r.kind))
        .collect();
    let rotations: Vec<&(u64, String)> = kinds.iter().filter(|(_, k)| k == "rotateKey").collect();
    assert_eq!(
        rotations,
        vec![&(2, "rotateKey".to_string())],
        "only its own inbox's rotation"
    );
    let first_new = kinds.iter().position(|(h, _)| *h == 4).unwrap();
    let rotation = kinds.iter().position(|(h, _)| *h == 2).unwrap();
    assert!(
        rotation < first_new,
        "the rotation lands before the new epoch's batch"
    );
    // A second relayer from scratch: everything is done, nothing is sent.
    let again = tempfile::tempdir().unwrap();
    relay_all(relayer(&s, &api, again.path())).await;
    assert!(
        records(again.path()).is_empty(),
        "idempotent: no transaction"
    );
}

#[tokio::test]
async fn an_inbox_rotated_by_another_relayer_still_takes_the_old_epochs_late_batch() {
    let s = setup().await;
    // Another relayer rotated the inbox first (straight from height 2's attestation).
    let h = s.heights[1].clone();
    let (sig, hv) = (h.signature.unwrap(), h.handover.unwrap());
    SigilInbox::new(s.inbox, &s.provider)
        .rotateKey(
            2,
            alloy::primitives::U256::from_be_bytes(hv.new_key.x.0),
            alloy::primitives::U256::from_be_bytes(hv.new_key.y.0),
            SigilInbox::Signature {
                rx: sig.rx,
                ry: sig.ry,
                z: sig.z,
            },
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert_eq!(epoch(&s).await, 2);
    // This relayer is behind: height 1 (epoch 1) lands inside the grace period, height 2
    // needs no second rotation, height 4 lands under the new key.
    let api = serve(s.heights.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    relay_all(relayer(&s, &api, dir.path())).await;
    assert_eq!(received(&s).await, 7);
    let recs = records(dir.path());
    assert!(
        recs.iter().all(|r| r.kind != "rotateKey"),
        "no second rotation"
    );
    assert!(
        recs.iter()
            .any(|r| r.height == 1 && r.kind == "submitBatch")
    );
}
