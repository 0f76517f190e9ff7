//! The chain watcher against anvil started by the test: finality by confirmations and by
//! tag, a reorg below finality never yields an observation of the orphaned log, a final block
//! that changes hash halts the chain with a metric, and a fault-injecting RPC proxy (errors,
//! hangs, wrong answers) never makes it observe what is not canonical; it recovers.

use alloy::primitives::{Address, Bytes};
use alloy::providers::Provider;
use sigil_node::config::{ChainSection, Finality};
use sigil_node::metrics::{ChainLabel, Metrics};
use sigil_node::watcher::{ReobserveRange, Watcher};
use sigil_testnet::chain::{SigilGateway, deploy_gateway, provider_for, set_route, spawn_anvil};
use sigil_testnet::faultproxy::{FaultProxy, Mode};
use std::sync::Arc;
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
            ws: None,
        }
    }

    async fn send(&self, payload: &str) -> alloy::primitives::B256 {
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
        hash
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
    let refused = w
        .rescan(ReobserveRange::Blocks { from: 0, to: 1 })
        .await
        .unwrap_err();
    assert!(refused.contains("halted"), "{refused}");
    assert_eq!(seen, ["a"], "nothing observed after the violation");
    assert_eq!(
        metrics
            .chain
            .finality_violations
            .get_or_create(&ChainLabel::new(CHAIN))
            .get(),
        1
    );
    assert_eq!(
        metrics
            .chain
            .halted
            .get_or_create(&ChainLabel::new(CHAIN))
            .get(),
        1,
        "the halt is visible as sigil_chain_halted"
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

#[tokio::test]
async fn faulty_rpc_never_makes_it_observe_non_canonical_data_and_it_recovers() {
    let e = env().await;
    let bad = FaultProxy::start(e.anvil.endpoint(), Mode::Error)
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    // Two URLs, both must agree.
    let cfg = e.chain(
        vec![e.anvil.endpoint(), bad.url.clone()],
        2,
        "confirmations:1",
    );
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
    for m in [Mode::Error, Mode::Hang, Mode::Lie] {
        bad.set(m);
        let got = tokio::time::timeout(Duration::from_secs(3), rx.recv()).await;
        assert!(
            got.is_err(),
            "{m:?}: nothing observed without an agreeing quorum"
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
    assert!(
        metrics
            .chain
            .rpc_disagreements
            .get_or_create(&ChainLabel::new(CHAIN))
            .get()
            > 0,
        "the lies counted as disagreements"
    );
    bad.set(Mode::Honest);
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

/// A reorg deeper than the finality bound that lands between the watcher's `eth_getLogs`
/// and its re-read of the logs' blocks: the watcher must not move its cursor past the range
/// (it would never read the replacement log with the same gateway nonce, and stall on a
/// nonce gap without halting); it scans again and observes the canonical log only.
#[tokio::test]
async fn a_reorg_between_reading_logs_and_their_blocks_is_rescanned_not_skipped() {
    use alloy::sol_types::SolCall;
    let e = env().await;
    let metrics = Arc::new(Metrics::new());
    let snap = e.snapshot().await;
    e.send("orphan").await;
    e.mine(3).await;
    // Queued for the proxy: back to before "orphan", then "replacement" (same sender
    // nonce, so the same gateway nonce 0) and blocks on top.
    let calldata = SigilGateway::sendMessage_0Call {
        destChainId: DEST,
        recipient: Address::repeat_byte(2),
        payload: Bytes::from_static(b"replacement"),
    }
    .abi_encode();
    let from = e.anvil.addresses()[0];
    let rpc = |method: &str, params: serde_json::Value| serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let reorg = vec![
        rpc("evm_revert", serde_json::json!([snap])),
        rpc(
            "eth_sendTransaction",
            serde_json::json!([{
                "from": from.to_string(),
                "to": e.gateway.to_string(),
                "data": format!("0x{}", alloy::primitives::hex::encode(&calldata)),
                "gas": "0x7a120",
            }]),
        ),
        rpc("anvil_mine", serde_json::json!(["0x3"])),
    ];
    let proxy = FaultProxy::start(e.anvil.endpoint(), Mode::Honest)
        .await
        .unwrap();
    proxy.on_next_logs(reorg).await;
    let mut w = Watcher::new(
        e.chain(vec![proxy.url.clone()], 1, "confirmations:1"),
        Finality::Confirmations(1),
        metrics.clone(),
        None,
    )
    .unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        if let Some(ev) = w.step().await {
            seen.extend(
                ev.observations
                    .iter()
                    .map(|o| String::from_utf8_lossy(&o.message.payload).into_owned()),
            );
        }
    }
    assert_eq!(
        seen,
        ["replacement"],
        "the canonical log is observed, the orphan never"
    );
    assert!(!w.halted(), "nothing this member observed changed");
    assert_eq!(
        metrics
            .chain
            .dropped_logs
            .get_or_create(&ChainLabel::new(CHAIN))
            .get(),
        1,
        "the orphaned log was seen and dropped"
    );
}

/// An operator's re-observe re-reads final logs below the cursor without moving it (the
/// same quorum as the scans), counts final logs past the cursor as ahead, finds a
/// transaction's block, and refuses non-final, oversized or unknown targets.
#[tokio::test]
async fn rescan_reads_final_logs_back_without_moving_the_cursor() {
    let e = env().await;
    let metrics = Arc::new(Metrics::new());
    let mut w = Watcher::new(
        e.chain(vec![e.anvil.endpoint()], 1, "confirmations:1"),
        Finality::Confirmations(1),
        metrics,
        None,
    )
    .unwrap();
    e.send("a").await;
    let b = e.send("b").await;
    e.send("c").await;
    e.mine(1).await;
    let mut seen = Vec::new();
    drain(&mut w, &mut seen).await;
    assert_eq!(seen, ["a", "b", "c"]);
    e.send("d").await; // in the head block: not final yet
    let head = e.provider.get_block_number().await.unwrap();

    let (from, to, obs, ahead, _, fin) = w
        .rescan(ReobserveRange::Blocks { from: 0, to: head })
        .await
        .unwrap();
    assert_eq!(
        (from, to, fin),
        (0, head - 1, head - 1),
        "clamped to the final block"
    );
    let payloads: Vec<_> = obs.iter().map(|o| o.message.payload.to_vec()).collect();
    assert_eq!(payloads, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    assert_eq!(
        obs.iter().map(|o| o.message.nonce).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(ahead, 0);

    // Final now, but past the cursor: ahead; the cursor did not move, so the next step
    // still observes it.
    e.mine(1).await;
    let (_, _, obs, ahead, _, _) = w
        .rescan(ReobserveRange::Blocks { from: 0, to: head })
        .await
        .unwrap();
    assert_eq!((obs.len(), ahead), (3, 1));
    let mut later = Vec::new();
    drain(&mut w, &mut later).await;
    assert_eq!(later, ["d"]);

    // A transaction's block holds exactly its log.
    let (from, to, obs, _, _, _) = w.rescan(ReobserveRange::Tx(b)).await.unwrap();
    assert_eq!(from, to);
    assert_eq!(obs.len(), 1);
    assert_eq!(obs[0].message.payload.as_ref(), b"b");

    for (range, why) in [
        (
            ReobserveRange::Blocks {
                from: head + 5,
                to: head + 6,
            },
            "not final",
        ),
        (
            ReobserveRange::Blocks {
                from: 0,
                to: 10_000,
            },
            "at most",
        ),
        (ReobserveRange::Blocks { from: 3, to: 2 }, "want from <= to"),
        (
            ReobserveRange::Tx(alloy::primitives::B256::repeat_byte(7)),
            "unknown or not mined",
        ),
    ] {
        let e = w.rescan(range).await.unwrap_err();
        assert!(e.contains(why), "{range:?}: {e}");
    }
}

/// With a `ws` URL, each new head wakes the watcher at once: a message made final is
/// observed in well under the 30-s poll the watcher would otherwise wait for.
#[tokio::test]
async fn a_new_head_wakes_the_watcher_before_its_poll() {
    let e = env().await;
    let mut cfg = e.chain(vec![e.anvil.endpoint()], 1, "confirmations:1");
    cfg.poll_interval = Duration::from_secs(30);
    cfg.ws = Some(e.anvil.ws_endpoint());
    let w = Watcher::new(
        cfg,
        Finality::Confirmations(1),
        Arc::new(Metrics::new()),
        None,
    )
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let task = tokio::spawn(w.run(tx));
    // The start-up scan, and time for the subscription to open.
    tokio::time::sleep(Duration::from_millis(800)).await;
    while rx.try_recv().is_ok() {}
    e.send("woken").await;
    e.mine(1).await;
    let t0 = std::time::Instant::now();
    let seen = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let ev = rx.recv().await.expect("watcher stopped");
            if ev
                .observations
                .iter()
                .any(|o| o.message.payload.as_ref() == b"woken")
            {
                break;
            }
        }
    })
    .await;
    assert!(
        seen.is_ok(),
        "not observed within 5 s: the watcher waited for its poll"
    );
    println!(
        "observed {} ms after the confirming block",
        t0.elapsed().as_millis()
    );
    task.abort();
}
