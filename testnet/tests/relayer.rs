//! The relayer against anvil: it reads an attested batch from a node API (here a stub
//! serving a real 3-of-4 FROST attestation), submits the root and delivers every message;
//! a second relayer starting from scratch sends nothing (idempotent); a transaction that
//! disappears from the mempool is replaced with higher fees and the batch still lands.

use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sigil_crypto::{BatchTree, Message, OnchainSignature};
use sigil_node::api::{BatchView, MessageView, SignatureView};
use sigil_node::metrics::Metrics;
use sigil_node::relayer::{RelayChain, RelayerConfig, TxRecord};
use sigil_testnet::chain::{
    RecordingReceiver, SigilInbox, deploy_inbox, provider_for, spawn_anvil,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const DEST: u64 = 5150;

struct Setup {
    anvil: alloy::node_bindings::AnvilInstance,
    provider: DynProvider,
    inbox: Address,
    receiver: Address,
    api: String,
}

async fn setup(count: u64) -> Setup {
    let anvil = spawn_anvil(DEST).unwrap();
    let provider = provider_for(&anvil, 0).unwrap().erased();
    let (inbox, receiver) = deploy_inbox(&provider, anvil.addresses()[0]).await.unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let dealt = sigil_crypto::keys::trusted_dealer(3, 4, &mut rng).unwrap();
    SigilInbox::new(inbox, &provider)
        .initialize(1, dealt.group_key.x_u256(), dealt.group_key.y_u256())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let messages: Vec<Message> = (0..count)
        .map(|n| Message {
            source_chain_id: 1,
            source_gateway: Address::repeat_byte(0xaa),
            nonce: n,
            sender: Address::repeat_byte(1),
            dest_chain_id: if n % 5 == 4 { 999 } else { DEST },
            recipient: receiver,
            payload: Bytes::from(format!("relay {n}").into_bytes()),
        })
        .collect();
    let leaves: Vec<B256> = messages.iter().map(|m| m.leaf()).collect();
    let root = BatchTree::new(&leaves).unwrap().root();
    let signers: BTreeMap<u16, _> = dealt
        .key_packages
        .iter()
        .take(3)
        .map(|(i, k)| (*i, k.clone()))
        .collect();
    let sig = sigil_crypto::signing::sign_local(
        &signers,
        &dealt.public_key_package,
        sigil_crypto::batch_digest(1, 1, root),
        &mut rng,
    )
    .unwrap();
    let on = OnchainSignature::from_frost(&sig).unwrap();
    let batch = BatchView {
        epoch: 1,
        height: 1,
        root,
        count: count as u32,
        signature: Some(SignatureView {
            rx: on.rx,
            ry: on.ry,
            z: on.z,
        }),
        messages: messages
            .iter()
            .map(|m| MessageView {
                message: m.clone(),
                id: m.id(),
                leaf: m.leaf(),
            })
            .collect(),
        time_ms: 0,
    };
    let json = serde_json::to_string(&batch).unwrap();
    let app = axum::Router::new()
        .route(
            "/v1/batches/1",
            axum::routing::get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    json,
                )
            }),
        )
        .fallback(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                "{\"code\":\"unknown_height\"}",
            )
        });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    Setup {
        anvil,
        provider,
        inbox,
        receiver,
        api,
    }
}

fn relayer(s: &Setup, dir: &std::path::Path, stuck_after: Duration) -> RelayerConfig {
    RelayerConfig {
        apis: vec![s.api.clone()],
        chains: vec![RelayChain {
            chain_id: DEST,
            rpc: s.anvil.endpoint(),
            inbox: s.inbox,
        }],
        key: PrivateKeySigner::from(s.anvil.keys()[1].clone()),
        state_dir: dir.to_owned(),
        chunk: 8,
        poll: Duration::from_millis(100),
        stuck_after,
    }
}

async fn run_until(cfg: RelayerConfig, metrics: Arc<Metrics>, cond: impl AsyncFn() -> bool) {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(sigil_node::relayer::run(cfg, metrics, rx));
    let t0 = std::time::Instant::now();
    while !cond().await {
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

async fn received(s: &Setup) -> u64 {
    RecordingReceiver::new(s.receiver, &s.provider)
        .count()
        .call()
        .await
        .unwrap()
        .to::<u64>()
}

#[tokio::test]
async fn relays_once_and_a_second_relayer_sends_nothing() {
    let s = setup(20).await;
    let want = 16; // every fifth message goes to another chain
    let d1 = tempfile::tempdir().unwrap();
    let m = Arc::new(Metrics::new());
    run_until(
        relayer(&s, d1.path(), Duration::from_secs(20)),
        m.clone(),
        async || received(&s).await == want,
    )
    .await;
    let r1 = records(d1.path());
    assert_eq!(r1.iter().filter(|r| r.kind == "submitBatch").count(), 1);
    assert_eq!(r1.iter().map(|r| r.messages).sum::<usize>(), want as usize);
    assert!(
        r1.iter().any(|r| r.kind == "deliverBatch"),
        "multiproof delivery used"
    );
    assert_eq!(m.relayer.delivered.get(), want);
    // A fresh relayer (no state) re-reads height 1: root stored, all delivered, nothing sent.
    let d2 = tempfile::tempdir().unwrap();
    let state = d2.path().join("relayer_state.json");
    run_until(
        relayer(&s, d2.path(), Duration::from_secs(20)),
        Arc::new(Metrics::new()),
        async || std::fs::read_to_string(&state).is_ok_and(|t| t.contains("\"next_height\":2")),
    )
    .await;
    assert!(records(d2.path()).is_empty(), "idempotent: no transaction");
    assert_eq!(received(&s).await, want, "nothing delivered twice");
}

#[tokio::test]
async fn a_dropped_transaction_is_replaced_with_higher_fees() {
    let s = setup(3).await;
    let _: serde_json::Value = s
        .provider
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let m = Arc::new(Metrics::new());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(sigil_node::relayer::run(
        relayer(&s, d.path(), Duration::from_secs(1)),
        m.clone(),
        rx,
    ));
    // Wait for the submitBatch to sit in the mempool, then make it vanish.
    let relayer_addr = s.anvil.addresses()[1];
    for _ in 0..100 {
        let pending = s
            .provider
            .get_transaction_count(relayer_addr)
            .pending()
            .await
            .unwrap();
        if pending > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _: serde_json::Value = s
        .provider
        .raw_request("anvil_dropAllTransactions".into(), ())
        .await
        .unwrap();
    let _: serde_json::Value = s
        .provider
        .raw_request("evm_setAutomine".into(), (true,))
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    while received(&s).await < 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "not delivered after the replacement"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        m.relayer.replaced.get() >= 1,
        "the dropped transaction was replaced"
    );
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}
