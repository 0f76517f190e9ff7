//! The chain watcher against anvil started by the test: finality by confirmations and by
//! tag, a reorg below finality never yields an observation of the orphaned log, a final block
//! that changes hash halts the chain with a metric, and a fault-injecting RPC proxy (errors,
//! hangs, wrong answers) never makes it observe what is not canonical; it recovers.

use alloy::primitives::{Address, Bytes};
use alloy::providers::Provider;
use sigil_node::config::{ChainSection, Finality};
use sigil_node::metrics::{ChainLabel, Metrics};
use sigil_node::watcher::Watcher;
use sigil_testnet::chain::{SigilGateway, deploy_gateway, provider_for, set_route, spawn_anvil};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

const CHAIN: u64 = 4242;
/// Destination of every test message, and the inbox the gateway routes it to.
const DEST: u64 = 9;
const DEST_INBOX: Address = Address::repeat_byte(0x1b);

struct Env {
    anvil: alloy::node_bindings::AnvilInstance,
    provider: alloy::providers::DynProvider,
    gateway: Address,
}

async fn env() -> Env {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let anvil = spawn_anvil(CHAIN).unwrap();
    let provider = provider_for(&anvil, 0).unwrap().erased();
    let gateway = deploy_gateway(&provider, anvil.addresses()[0])
        .await
        .unwrap();
    set_route(&provider, gateway, DEST, DEST_INBOX)
        .await
        .unwrap();
    Env {
        anvil,
        provider,
        gateway,
    }
}

impl Env {
    fn chain(&self, rpc: Vec<String>, quorum: u32, finality: &str) -> ChainSection {
        ChainSection {
            name: "t".into(),
            chain_id: CHAIN,
            rpc,
            rpc_quorum: quorum,
            gateway: self.gateway,
            inbox: Address::repeat_byte(1),
            start_block: 0,
            finality: finality.into(),
            poll_interval: Duration::from_millis(20),
            max_block_range: 1000,
            rpc_timeout: Duration::from_millis(500),
        }
    }

    async fn send(&self, payload: &str) {
        let gw = SigilGateway::new(self.gateway, &self.provider);
        // Explicit nonce: the wallet's cached nonce is wrong after an evm_revert.
        let from = self.anvil.addresses()[0];
        let nonce = self.provider.get_transaction_count(from).await.unwrap();
        let pending = gw
            .sendMessage_0(
                DEST,
                Address::repeat_byte(2),
                Bytes::from(payload.as_bytes().to_vec()),
            )
            .nonce(nonce)
            .send()
            .await
            .unwrap();
        // Poll the receipt directly: alloy's block heartbeat does not expect block numbers
        // to go backwards after a revert.
        let hash = *pending.tx_hash();
        let r = loop {
            if let Some(r) = self.provider.get_transaction_receipt(hash).await.unwrap() {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(r.status());
    }

    async fn mine(&self, n: u64) {
        let _: serde_json::Value = self
            .provider
            .raw_request("anvil_mine".into(), (format!("0x{n:x}"),))
            .await
            .unwrap();
    }

    async fn snapshot(&self) -> String {
        self.provider
            .raw_request("evm_snapshot".into(), ())
            .await
            .unwrap()
    }

    async fn revert(&self, id: &str) {
        let ok: bool = self
            .provider
            .raw_request("evm_revert".into(), (id,))
            .await
            .unwrap();
        assert!(ok);
    }
}

/// Steps until the watcher reaches the final block; returns every observed payload.
async fn drain(w: &mut Watcher, out: &mut Vec<String>) {
    for _ in 0..20 {
        match w.step().await {
            Some(ev) => {
                out.extend(
                    ev.observations
                        .iter()
                        .map(|o| String::from_utf8_lossy(&o.message.payload).into_owned()),
                );
                if ev.cursor.block_number >= ev.finalized {
                    return;
                }
            }
            None => return,
        }
    }
}

#[tokio::test]
async fn confirmations_and_reorgs_below_finality() {
    let e = env().await;
    let metrics = Arc::new(Metrics::new());
    let mut w = Watcher::new(
        e.chain(vec![e.anvil.endpoint()], 1, "confirmations:3"),
        Finality::Confirmations(3),
        metrics.clone(),
        None,
    )
    .unwrap();
    w.check_chain_id().await.unwrap();
    e.send("m0").await;
    e.send("m1").await;
    let mut seen = Vec::new();
    drain(&mut w, &mut seen).await;
    assert!(seen.is_empty(), "not final yet: {seen:?}");
    e.mine(3).await;
    drain(&mut w, &mut seen).await;
    assert_eq!(seen, ["m0", "m1"]);

    // A message that is reorged out before finality is never observed.
    let snap = e.snapshot().await;
    e.send("orphan").await;
    e.mine(1).await;
    drain(&mut w, &mut seen).await;
    assert_eq!(seen, ["m0", "m1"], "orphan not final yet");
    e.revert(&snap).await;
    e.send("canonical").await;
    e.mine(4).await;
    drain(&mut w, &mut seen).await;
    assert_eq!(seen, ["m0", "m1", "canonical"]);
    assert!(!w.halted());
}

#[tokio::test]
async fn a_final_block_that_changes_hash_halts_the_chain() {
    let e = env().await;
    let metrics = Arc::new(Metrics::new());
    let snap = e.snapshot().await;
    let mut w = Watcher::new(
        e.chain(vec![e.anvil.endpoint()], 1, "confirmations:1"),
        Finality::Confirmations(1),
        metrics.clone(),
        None,
    )
    .unwrap();
    e.send("a").await;
    e.mine(2).await;
    let mut seen = Vec::new();
    drain(&mut w, &mut seen).await;
    assert_eq!(seen, ["a"]);
    // Rewrite history deeper than the finality rule allows.
    e.revert(&snap).await;
    e.mine(1).await;
    e.send("b").await;
    e.mine(3).await;
    drain(&mut w, &mut seen).await;
    assert!(w.halted(), "finality violation halts the chain");
    assert_eq!(seen, ["a"], "nothing observed after the violation");
    assert_eq!(
        metrics
            .chain
            .finality_violations
            .get_or_create(&ChainLabel::new(CHAIN))
            .get(),
        1
    );
}

#[tokio::test]
async fn finalized_tag_bounds_observation() {
    let e = env().await;
    let metrics = Arc::new(Metrics::new());
    let mut w = Watcher::new(
        e.chain(vec![e.anvil.endpoint()], 1, "finalized"),
        Finality::Finalized,
        metrics,
        None,
    )
    .unwrap();
    e.send("x").await;
    let fin = |p: &alloy::providers::DynProvider| {
        let p = p.clone();
        async move {
            p.get_block_by_number(alloy::eips::BlockNumberOrTag::Finalized)
                .await
                .unwrap()
                .map_or(0, |b| b.header.number)
        }
    };
    let ev = w.step().await;
    let f0 = fin(&e.provider).await;
    if let Some(ev) = ev {
        assert!(ev.cursor.block_number <= f0.max(ev.finalized));
    }
    e.mine(200).await;
    let mut seen = Vec::new();
    drain(&mut w, &mut seen).await;
    assert_eq!(
        seen,
        ["x"],
        "observed once the block is behind the finalized tag"
    );
}

/// A JSON-RPC proxy in front of anvil. Modes: 0 honest, 1 HTTP 500, 2 hang, 3 lie (every
/// block hash and log payload altered).
async fn proxy(upstream: String, mode: Arc<AtomicU8>) -> String {
    use axum::routing::post;
    let client = reqwest::Client::new();
    let app = axum::Router::new().route(
        "/",
        post(move |body: String| {
            let client = client.clone();
            let upstream = upstream.clone();
            let mode = mode.clone();
            async move {
                match mode.load(Ordering::SeqCst) {
                    1 => {
                        return (
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            String::from("boom"),
                        );
                    }
                    2 => tokio::time::sleep(Duration::from_secs(30)).await,
                    _ => {}
                }
                let resp = client
                    .post(&upstream)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                let resp = if mode.load(Ordering::SeqCst) == 3 {
                    // Corrupt every 32-byte hash and every payload-bearing data field.
                    let mut v: serde_json::Value = serde_json::from_str(&resp).unwrap();
                    lie(&mut v);
                    v.to_string()
                } else {
                    resp
                };
                (axum::http::StatusCode::OK, resp)
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    url
}

fn lie(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "hash" || k == "blockHash" {
                    *x = serde_json::Value::String(format!("0x{}", "ab".repeat(32)));
                } else {
                    lie(x);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(lie),
        _ => {}
    }
}

#[tokio::test]
async fn faulty_rpc_never_makes_it_observe_non_canonical_data_and_it_recovers() {
    let e = env().await;
    let mode = Arc::new(AtomicU8::new(1));
    let bad = proxy(e.anvil.endpoint(), mode.clone()).await;
    let metrics = Arc::new(Metrics::new());
    // Two URLs, both must agree.
    let cfg = e.chain(vec![e.anvil.endpoint(), bad], 2, "confirmations:1");
    let mut w = Watcher::new(cfg, Finality::Confirmations(1), metrics.clone(), None).unwrap();
    e.send("p").await;
    e.mine(2).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let task = tokio::spawn(async move {
        loop {
            if let Some(ev) = w.step().await
                && tx.send(ev).await.is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    for m in [1u8, 2, 3] {
        mode.store(m, Ordering::SeqCst);
        let got = tokio::time::timeout(Duration::from_secs(3), rx.recv()).await;
        assert!(
            got.is_err(),
            "mode {m}: nothing observed without an agreeing quorum"
        );
    }
    assert!(
        metrics
            .chain
            .rpc_errors
            .get_or_create(&ChainLabel::new(CHAIN))
            .get()
            > 0,
        "errors counted"
    );
    mode.store(0, Ordering::SeqCst);
    let ev = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("recovers")
        .unwrap();
    assert_eq!(ev.observations.len(), 1);
    assert_eq!(&ev.observations[0].message.payload[..], b"p");
    // Format v2: the observation carries the routed inbox and the default gas limit.
    assert_eq!(ev.observations[0].message.dest_inbox, DEST_INBOX);
    assert_eq!(ev.observations[0].message.gas_limit, 200_000);
    let canonical = e
        .provider
        .get_block_by_number(ev.observations[0].block_number.into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.observations[0].block_hash, canonical.header.hash);
    task.abort();
}
