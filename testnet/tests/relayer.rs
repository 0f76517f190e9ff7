//! The relayer against anvil: it reads an attested batch from a node API (here a stub
//! serving a real 3-of-4 FROST attestation), submits the root and delivers every message;
//! a second relayer starting from scratch sends nothing (idempotent); a transaction stuck
//! in the mempool is replaced with higher fees and the batch still lands, and many lost by
//! the node at once are sent again without waiting out the stuck timeout; a
//! recipient that fails leaves its message Failed without holding up the rest, the relayer
//! records and retries it and delivers it once the recipient is fixed, a gas-burning
//! recipient stays Failed, and messages naming another inbox are counted and never sent.

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sigil_crypto::{BatchTree, Message, OnchainSignature};
use sigil_node::api::{BatchView, MessageView, SignatureView};
use sigil_node::contracts::{STATUS_DELIVERED, STATUS_FAILED};
use sigil_node::metrics::Metrics;
use sigil_node::relayer::{RelayChain, RelayerConfig, TxRecord};
use sigil_testnet::chain::{
    FixableReceiver, RecordingReceiver, SigilInbox, deploy_inbox, deploy_receiver, provider_for,
    spawn_anvil,
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
    fixable: Address,
    burner: Address,
    api: String,
    messages: Vec<Message>,
}

/// Where message `n` goes: (destination chain, inbox it names, recipient, gas limit).
struct Route {
    dest: u64,
    inbox: Address,
    recipient: Address,
    gas_limit: u32,
}

/// The contracts a route can name: (inbox, recording receiver, fixable, gas burner).
type Contracts = (Address, Address, Address, Address);

async fn setup(count: u64) -> Setup {
    // Every fifth message goes to another chain.
    setup_with(count, |n, (inbox, receiver, _, _)| Route {
        dest: if n % 5 == 4 { 999 } else { DEST },
        inbox,
        recipient: receiver,
        gas_limit: 200_000,
    })
    .await
}

async fn setup_with(count: u64, route: impl Fn(u64, Contracts) -> Route) -> Setup {
    setup_heights(count, 1, None, route).await
}

/// `count` messages split evenly over heights 1..=`heights` (one attested batch each, every
/// one served at once), on an anvil mining every `block_time` seconds (`None`: a block per
/// transaction).
async fn setup_heights(
    count: u64,
    heights: u64,
    block_time: Option<u64>,
    route: impl Fn(u64, Contracts) -> Route,
) -> Setup {
    let anvil = match block_time {
        Some(_) => sigil_testnet::chain::spawn_anvil_with(DEST, block_time, None).unwrap(),
        None => spawn_anvil(DEST).unwrap(),
    };
    let provider = provider_for(&anvil, 0).unwrap().erased();
    let (inbox, receiver) = deploy_inbox(&provider, anvil.addresses()[0]).await.unwrap();
    let fixable = deploy_receiver(&provider, "FixableReceiver", inbox)
        .await
        .unwrap();
    let burner = deploy_receiver(&provider, "GasBurnerReceiver", inbox)
        .await
        .unwrap();
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
        .map(|n| {
            let r = route(n, (inbox, receiver, fixable, burner));
            Message {
                source_chain_id: 1,
                source_gateway: Address::repeat_byte(0xaa),
                nonce: n,
                sender: Address::repeat_byte(1),
                dest_chain_id: r.dest,
                dest_inbox: r.inbox,
                recipient: r.recipient,
                gas_limit: r.gas_limit,
                payload: Bytes::from(format!("relay {n}").into_bytes()),
            }
        })
        .collect();
    let signers: BTreeMap<u16, _> = dealt
        .key_packages
        .iter()
        .take(3)
        .map(|(i, k)| (*i, k.clone()))
        .collect();
    let per = count.div_ceil(heights).max(1) as usize;
    let mut served: BTreeMap<u64, String> = BTreeMap::new();
    for (k, part) in messages.chunks(per).enumerate() {
        let height = k as u64 + 1;
        let leaves: Vec<B256> = part.iter().map(|m| m.leaf()).collect();
        let root = BatchTree::new(&leaves).unwrap().root();
        let sig = sigil_crypto::signing::sign_local(
            &signers,
            &dealt.public_key_package,
            sigil_crypto::batch_digest(1, height, root),
            &mut rng,
        )
        .unwrap();
        let on = OnchainSignature::from_frost(&sig).unwrap();
        let batch = BatchView {
            epoch: 1,
            height,
            root,
            count: part.len() as u32,
            signature: Some(SignatureView {
                rx: on.rx,
                ry: on.ry,
                z: on.z,
            }),
            messages: part
                .iter()
                .map(|m| MessageView {
                    message: m.clone(),
                    id: m.id(),
                    leaf: m.leaf(),
                })
                .collect(),
            time_ms: 0,
            handover: None,
        };
        served.insert(height, serde_json::to_string(&batch).unwrap());
    }
    let served = Arc::new(served);
    let app = axum::Router::new().route(
        "/v1/batches/{h}",
        axum::routing::get(move |axum::extract::Path(h): axum::extract::Path<u64>| {
            let served = served.clone();
            async move {
                match served.get(&h) {
                    Some(json) => (
                        axum::http::StatusCode::OK,
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        json.clone(),
                    ),
                    None => (
                        axum::http::StatusCode::NOT_FOUND,
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        "{\"code\":\"unknown_height\"}".to_string(),
                    ),
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    Setup {
        anvil,
        provider,
        inbox,
        receiver,
        fixable,
        burner,
        api,
        messages,
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
        max_tx_gas: 25_000_000,
        poll: Duration::from_millis(100),
        stuck_after,
        retry_min: Duration::from_millis(300),
        retry_max: Duration::from_secs(1),
        admin: None,
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
    let state = d2.path().join(format!("relayer_state_{DEST}.json"));
    run_until(
        relayer(&s, d2.path(), Duration::from_secs(20)),
        Arc::new(Metrics::new()),
        async || std::fs::read_to_string(&state).is_ok_and(|t| t.contains("\"next_height\":2")),
    )
    .await;
    assert!(records(d2.path()).is_empty(), "idempotent: no transaction");
    assert_eq!(received(&s).await, want, "nothing delivered twice");
}

/// Pipelining: with six attested heights waiting and a block every 2 s, every root and
/// every delivery goes out without waiting for earlier receipts, so they all land within
/// two blocks (one height after another, waiting for each receipt, took at least two blocks
/// per height: twelve).
#[tokio::test]
async fn attested_heights_are_pipelined_without_waiting_for_receipts() {
    let s = setup_heights(24, 6, Some(2), |_, (inbox, receiver, _, _)| Route {
        dest: DEST,
        inbox,
        recipient: receiver,
        gas_limit: 100_000,
    })
    .await;
    let d = tempfile::tempdir().unwrap();
    let m = Arc::new(Metrics::new());
    // Delivered, and the relayer has read the receipts and recorded them (under load it
    // may see the receipts after the receiver already counts the messages).
    run_until(
        relayer(&s, d.path(), Duration::from_secs(20)),
        m.clone(),
        async || {
            received(&s).await == 24
                && records(d.path())
                    .iter()
                    .filter(|r| r.kind == "submitBatch")
                    .count()
                    == 6
        },
    )
    .await;
    let recs = records(d.path());
    assert_eq!(
        recs.iter().filter(|r| r.kind == "submitBatch").count(),
        6,
        "one root per height"
    );
    assert_eq!(recs.iter().map(|r| r.messages).sum::<usize>(), 24);
    let mut blocks = std::collections::BTreeSet::new();
    for r in &recs {
        let receipt = s
            .provider
            .get_transaction_receipt(r.tx)
            .await
            .unwrap()
            .unwrap();
        blocks.insert(receipt.block_number.unwrap());
    }
    assert!(
        blocks.len() <= 2,
        "six heights should land in at most two blocks, took {blocks:?}"
    );
    assert_eq!(m.relayer.failed.get(), 0, "nothing reverted or refused");
}

/// An API that answers height 1 with height 2's (genuinely attested) batch is not believed:
/// otherwise the relayer would save progress past height 1 without relaying it.
#[tokio::test]
async fn an_api_answering_another_height_is_not_believed() {
    let s = setup_heights(8, 2, None, |_, (inbox, receiver, _, _)| Route {
        dest: DEST,
        inbox,
        recipient: receiver,
        gas_limit: 100_000,
    })
    .await;
    let http = reqwest::Client::new();
    let h2 = http
        .get(format!("{}/v1/batches/2", s.api))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let liar = axum::Router::new().fallback(move || {
        let body = h2.clone();
        async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let liar_api = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, liar).await });
    let fetch = sigil_node::relayer::fetch_batch;
    assert!(
        fetch(&http, std::slice::from_ref(&liar_api), 1)
            .await
            .is_err(),
        "a lone lying API is an error, not height 2 as height 1"
    );
    let b = fetch(&http, &[liar_api, s.api.clone()], 1)
        .await
        .unwrap()
        .expect("the honest API answers");
    assert_eq!(b.height, 1, "the lying answer is skipped");
}

#[tokio::test]
async fn a_stuck_transaction_is_replaced_with_higher_fees() {
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
    // Wait for the submitBatch to sit in the mempool, unmined past `stuck_after`.
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
    tokio::time::sleep(Duration::from_millis(2_500)).await;
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
    assert_eq!(m.relayer.resent.get(), 0, "the node never lost it");
    assert!(
        m.relayer.replaced.get() >= 1,
        "the stuck transaction was replaced"
    );
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

/// A node that loses several of the relayer's transactions at once (anvil drops every later
/// nonce of an account when one transaction does not fit the block's gas; real nodes evict
/// under mempool pressure or restart) must not cost one stuck timeout per transaction: the
/// relayer notices the node no longer knows them and sends them again, unchanged, at once.
#[tokio::test]
async fn transactions_lost_by_the_node_are_sent_again_without_waiting_out_the_stuck_timeout() {
    let s = setup_heights(24, 6, None, |_, (inbox, receiver, _, _)| Route {
        dest: DEST,
        inbox,
        recipient: receiver,
        gas_limit: 100_000,
    })
    .await;
    let _: serde_json::Value = s
        .provider
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let m = Arc::new(Metrics::new());
    let stuck_after = Duration::from_secs(20);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(sigil_node::relayer::run(
        relayer(&s, d.path(), stuck_after),
        m.clone(),
        rx,
    ));
    // Wait until every height's transactions sit in the mempool, then lose them all.
    let relayer_addr = s.anvil.addresses()[1];
    let t0 = std::time::Instant::now();
    while s
        .provider
        .get_transaction_count(relayer_addr)
        .pending()
        .await
        .unwrap()
        < 12
    {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "relayer sent too little"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _: serde_json::Value = s
        .provider
        .raw_request("anvil_dropAllTransactions".into(), ())
        .await
        .unwrap();
    let _: serde_json::Value = s
        .provider
        .raw_request("evm_setIntervalMining".into(), (1,))
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    while received(&s).await < 24 {
        assert!(
            t0.elapsed() < stuck_after,
            "12 lost transactions still not delivered after {stuck_after:?} (one stuck timeout each?)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        m.relayer.resent.get() >= 12,
        "each lost transaction was sent again, counted: {}",
        m.relayer.resent.get()
    );
    assert_eq!(m.relayer.replaced.get(), 0, "no fee bump was needed");
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let t0 = std::time::Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(60), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status(s: &Setup, m: &Message) -> u8 {
    SigilInbox::new(s.inbox, &s.provider)
        .statusOf(m.source_chain_id, m.source_gateway, m.nonce)
        .call()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_failing_recipient_is_retried_and_never_holds_up_the_rest() {
    // n % 4 == 1: FixableReceiver (Failed until fixed); n % 4 == 3: names another inbox on
    // this chain (never sent); n == 11: gas burner with a 2,000,000 gas limit (always
    // Failed); the rest: the recording receiver.
    let other_inbox = Address::repeat_byte(0x99);
    let s = setup_with(12, |n, (inbox, receiver, fixable, burner)| {
        let (inbox, recipient, gas_limit) = match n {
            11 => (inbox, burner, 2_000_000),
            _ if n % 4 == 1 => (inbox, fixable, 200_000),
            _ if n % 4 == 3 => (other_inbox, receiver, 200_000),
            _ => (inbox, receiver, 200_000),
        };
        Route {
            dest: DEST,
            inbox,
            recipient,
            gas_limit,
        }
    })
    .await;
    let fixable_msgs: Vec<Message> = s
        .messages
        .iter()
        .filter(|m| m.recipient == s.fixable)
        .cloned()
        .collect();
    let burner_msg = s
        .messages
        .iter()
        .find(|m| m.recipient == s.burner)
        .unwrap()
        .clone();
    assert_eq!(fixable_msgs.len(), 3);
    let d = tempfile::tempdir().unwrap();
    let m = Arc::new(Metrics::new());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(sigil_node::relayer::run(
        relayer(&s, d.path(), Duration::from_secs(20)),
        m.clone(),
        rx,
    ));
    // The good messages arrive; the failing ones end Failed and are counted.
    let t0 = std::time::Instant::now();
    while received(&s).await < 6 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "good messages not delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for("failed messages counted", || {
        m.relayer.failed_messages.get() == 4
    })
    .await;
    for fm in fixable_msgs.iter().chain([&burner_msg]) {
        assert_eq!(status(&s, fm).await, STATUS_FAILED, "Failed, retryable");
    }
    assert_eq!(
        m.relayer.skipped.get(),
        2,
        "messages naming another inbox are counted"
    );
    for other in s.messages.iter().filter(|x| x.dest_inbox == other_inbox) {
        assert_eq!(status(&s, other).await, 0, "never sent");
    }
    let failed_ids: Vec<B256> = records(d.path())
        .iter()
        .flat_map(|r| r.failed.clone())
        .collect();
    assert_eq!(failed_ids.len(), 4, "each Failed message is in the ledger");
    assert!(failed_ids.contains(&burner_msg.id()));

    // Fix the recipient: the relayer's retries deliver its three messages, each once.
    FixableReceiver::new(s.fixable, &s.provider)
        .fix()
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let fixable = FixableReceiver::new(s.fixable, &s.provider);
    let t0 = std::time::Instant::now();
    while fixable.count().call().await.unwrap() < U256::from(3) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "retries did not deliver"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for fm in &fixable_msgs {
        assert_eq!(status(&s, fm).await, STATUS_DELIVERED);
        assert_eq!(
            fixable
                .timesReceived(alloy::primitives::keccak256(&fm.payload))
                .call()
                .await
                .unwrap(),
            U256::from(1)
        );
    }
    wait_for("retries counted", || m.relayer.retried.get() == 3).await;
    assert_eq!(
        m.relayer.retry_pending.get(),
        1,
        "the gas burner stays queued"
    );
    assert_eq!(status(&s, &burner_msg).await, STATUS_FAILED);
    let retries = records(d.path())
        .into_iter()
        .filter(|r| r.kind == "retry")
        .count();
    assert_eq!(retries, 3);
    assert_eq!(received(&s).await, 6, "nothing delivered twice");
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

/// The relayer's admin API: an operator sees the Failed-message queue and, once the
/// recipient is fixed, retries a message at once instead of waiting out its backoff (an
/// hour here); a message already delivered is not delivered twice, and malformed or
/// unauthenticated requests change nothing.
#[tokio::test]
async fn an_operator_retries_a_failed_message_at_once() {
    use sigil_node::relayer::{RetryAccepted, RetryView};
    let s = setup_with(4, |n, (inbox, receiver, fixable, _)| Route {
        dest: DEST,
        inbox,
        recipient: if n == 1 { fixable } else { receiver },
        gas_limit: 200_000,
    })
    .await;
    let failing = s.messages[1].clone();
    let d = tempfile::tempdir().unwrap();
    let m = Arc::new(Metrics::new());
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut cfg = relayer(&s, d.path(), Duration::from_secs(20));
    cfg.retry_min = Duration::from_secs(3600);
    cfg.retry_max = Duration::from_secs(3600);
    cfg.admin = Some((addr, sigil_node::admin::token_digest("tok")));
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(sigil_node::relayer::run(cfg, m.clone(), rx));
    let t0 = std::time::Instant::now();
    while received(&s).await < 3 || m.relayer.failed_messages.get() < 1 {
        assert!(t0.elapsed() < Duration::from_secs(60), "batch not relayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(&s, &failing).await, STATUS_FAILED);

    let http = reqwest::Client::new();
    let base = format!("http://{addr}/admin/v1/retries");
    let queue: Vec<RetryView> = http
        .get(&base)
        .bearer_auth("tok")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(
        (queue[0].id, queue[0].height, queue[0].chain),
        (failing.id(), 1, DEST)
    );
    assert!(
        queue[0].next_at_ms > sigil_node::now_ms() + 3_000_000,
        "backoff is an hour"
    );

    FixableReceiver::new(s.fixable, &s.provider)
        .fix()
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let one = format!("{base}/{}", failing.id());
    for (req, want) in [
        (http.post(&one), 401),
        (http.post(&one).bearer_auth("wrong"), 401),
        (http.post(format!("{base}/0x12")).bearer_auth("tok"), 400),
        (
            http.post(format!("{base}/{}", B256::repeat_byte(3)))
                .bearer_auth("tok"),
            404,
        ),
        (
            http.post(format!("{base}/{}?height=1", B256::repeat_byte(3)))
                .bearer_auth("tok"),
            404,
        ),
    ] {
        assert_eq!(req.send().await.unwrap().status(), want);
    }
    assert_eq!(
        status(&s, &failing).await,
        STATUS_FAILED,
        "nothing retried yet"
    );

    let r = http.post(&one).bearer_auth("tok").send().await.unwrap();
    assert_eq!(r.status(), 202);
    let a: RetryAccepted = r.json().await.unwrap();
    assert_eq!((a.chain, a.height, a.added), (DEST, 1, false));
    let t0 = std::time::Instant::now();
    while status(&s, &failing).await != STATUS_DELIVERED {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the operator's retry did not deliver"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for("retry counted", || m.relayer.retried.get() == 1).await;

    // Delivered: no longer queued. Asking again needs the height; the relayer queues it,
    // finds it delivered on-chain and drops it without sending anything.
    let r = http.post(&one).bearer_auth("tok").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .post(format!("{one}?height=1"))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(r.json::<RetryAccepted>().await.unwrap().added);
    wait_for("re-queued message dropped", || {
        m.relayer.retry_pending.get() == 0
    })
    .await;
    let fixable = FixableReceiver::new(s.fixable, &s.provider);
    assert_eq!(
        fixable.count().call().await.unwrap(),
        U256::from(1),
        "delivered once"
    );
    let retries = records(d.path())
        .into_iter()
        .filter(|r| r.kind == "retry")
        .count();
    assert_eq!(retries, 1);
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}
