//! The admin API over real HTTP: the token guards every route, the emergency stop is
//! recorded in the store before it is acknowledged (so it survives a restart), and only a
//! configured source chain can be paused. Re-observe requests are checked and rate-limited
//! before they reach the chain's watcher.

use sigil_node::admin::{AdminState, Pending, ReobserveReport, router, token_digest};
use sigil_node::node::Status;
use sigil_node::store::Store;
use sigil_node::watcher::{ReobserveRange, ReobserveRequest};
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

const CHAIN: u64 = 1001;

type Served = (
    String,
    Store,
    Arc<RwLock<BTreeSet<u64>>>,
    tokio::sync::mpsc::Receiver<ReobserveRequest>,
);

async fn serve(dir: &std::path::Path) -> Served {
    let store = Store::open(dir).unwrap();
    let paused = Arc::new(RwLock::new(BTreeSet::new()));
    let (watcher_tx, watcher_rx) = tokio::sync::mpsc::channel(1);
    let status = Status {
        decided_height: 7,
        attested_height: 6,
        unattested: vec![7],
        pending_messages: 3,
        ..Default::default()
    };
    let state = AdminState {
        store: store.clone(),
        paused: paused.clone(),
        status: Arc::new(RwLock::new(status)),
        chains: BTreeSet::from([CHAIN]),
        token_digest: token_digest("s3cret"),
        reobserve: [(CHAIN, watcher_tx)].into(),
        last_reobserve: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    (url, store, paused, watcher_rx)
}

async fn get_pending(http: &reqwest::Client, url: &str) -> Pending {
    http.get(url)
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_emergency_stop_needs_the_token_and_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (url, store, paused, _watcher) = serve(dir.path()).await;
    let http = reqwest::Client::new();
    let pending = format!("{url}/admin/v1/pending");
    let pause = format!("{url}/admin/v1/chains/{CHAIN}/pause");

    // No token, a wrong one, or a non-bearer header: 401, and nothing changes.
    for req in [
        http.post(&pause),
        http.post(&pause).bearer_auth("guess"),
        http.post(&pause).header("authorization", "s3cret"),
        http.get(&pending),
    ] {
        assert_eq!(req.send().await.unwrap().status(), 401);
    }
    assert!(store.paused_chains().unwrap().is_empty());

    let p = get_pending(&http, &pending).await;
    assert_eq!((p.decided_height, p.attested_height), (7, 6));
    assert_eq!((p.unattested, p.pending_messages), (vec![7], 3));
    assert!(p.paused.is_empty());

    // Pause (twice: idempotent): in the store and in the set the node applies.
    for _ in 0..2 {
        let r = http
            .post(&pause)
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(store.paused_chains().unwrap(), BTreeSet::from([CHAIN]));
    assert_eq!(*paused.read().unwrap(), BTreeSet::from([CHAIN]));
    let p = get_pending(&http, &pending).await;
    assert_eq!(p.paused, vec![CHAIN]);

    // Only a configured source chain, named by its id.
    for (chain, code) in [("9999", 404), ("abc", 400)] {
        let r = http
            .post(format!("{url}/admin/v1/chains/{chain}/pause"))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), code, "{chain}");
    }

    // Resume undoes it, in the store too.
    let r = http
        .post(format!("{url}/admin/v1/chains/{CHAIN}/resume"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(paused.read().unwrap().is_empty());
    assert!(store.paused_chains().unwrap().is_empty());
}

#[test]
fn a_paused_chain_is_read_back_after_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        s.set_paused(CHAIN, true).unwrap();
        s.set_paused(7, true).unwrap();
        s.set_paused(7, false).unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.paused_chains().unwrap(), BTreeSet::from([CHAIN]));
}

/// The token is created readable by the owner only, read back as it was, and a token file
/// others can read (or a trivial token) stops the node instead of guarding the stop.
#[test]
fn the_token_file_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let t = sigil_node::admin::load_or_create_token(dir.path()).unwrap();
    assert_eq!(t.len(), 64);
    let p = dir.path().join(sigil_node::admin::TOKEN_FILE);
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        sigil_node::admin::load_or_create_token(dir.path()).unwrap(),
        t
    );
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = sigil_node::admin::load_or_create_token(dir.path()).unwrap_err();
    assert!(e.to_string().contains("readable by group or others"), "{e}");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&p, "short").unwrap();
    assert!(sigil_node::admin::load_or_create_token(dir.path()).is_err());
}

/// Malformed, oversized or unknown-chain requests are refused before any scan; a second
/// request while one runs, or within a second of the last, gets 429; the watcher's report
/// (or its reason for scanning nothing) is what the operator sees.
#[tokio::test]
async fn reobserve_is_checked_and_rate_limited_before_the_watcher_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _store, _paused, mut watcher) = serve(dir.path()).await;
    let http = reqwest::Client::new();
    let at = |chain: &str| format!("{url}/admin/v1/chains/{chain}/reobserve");
    let post = |u: String, body: &str| {
        http.post(u)
            .bearer_auth("s3cret")
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    // Refused without a token, and for bad bodies, chains and ranges; none reaches the
    // watcher (and none counts against the rate limit).
    let r = http
        .post(at("1001"))
        .json(&serde_json::json!({"fromBlock": 1, "toBlock": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    for (chain, body, want) in [
        ("1001", "{}", 400),
        ("1001", "not json", 400),
        ("1001", r#"{"fromBlock":1}"#, 400),
        ("1001", r#"{"fromBlock":5,"toBlock":4}"#, 400),
        ("1001", r#"{"fromBlock":0,"toBlock":10000}"#, 400),
        (
            "1001",
            r#"{"fromBlock":1,"toBlock":2,"tx":"0x0000000000000000000000000000000000000000000000000000000000000001"}"#,
            400,
        ),
        ("1001", r#"{"tx":"0x12"}"#, 400),
        ("1001", r#"{"fromBlock":1,"toBlock":2,"extra":1}"#, 400),
        ("7", r#"{"fromBlock":1,"toBlock":2}"#, 404),
        ("x", r#"{"fromBlock":1,"toBlock":2}"#, 400),
    ] {
        let r = post(at(chain), body).await.unwrap();
        assert_eq!(r.status(), want, "{chain} {body}");
    }
    assert!(
        watcher.try_recv().is_err(),
        "a refused request reached the watcher"
    );

    // A valid request reaches the watcher; while it runs, a second one is refused (rate
    // limit), and the answer carries the watcher's report.
    let first = tokio::spawn(post(at("1001"), r#"{"fromBlock":0,"toBlock":9999}"#));
    let req = watcher.recv().await.unwrap();
    assert_eq!(req.range, ReobserveRange::Blocks { from: 0, to: 9999 });
    let r = post(at("1001"), r#"{"fromBlock":1,"toBlock":2}"#)
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let report = ReobserveReport {
        chain: CHAIN,
        from_block: 0,
        to_block: 9999,
        logs: 3,
        known: 2,
        restored: 1,
        ..Default::default()
    };
    req.reply.send(Ok(report.clone())).unwrap();
    let r = first.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<ReobserveReport>().await.unwrap(), report);

    // After the rate limit's second, a transaction's block; the watcher's refusal is a 409
    // with its reason.
    tokio::time::sleep(sigil_node::admin::REOBSERVE_EVERY).await;
    let tx = "0x00000000000000000000000000000000000000000000000000000000000000aa";
    let second = tokio::spawn(post(at("1001"), &format!(r#"{{"tx":"{tx}"}}"#)));
    let req = watcher.recv().await.unwrap();
    assert_eq!(req.range, ReobserveRange::Tx(tx.parse().unwrap()));
    req.reply.send(Err("transaction unknown".into())).unwrap();
    let r = second.await.unwrap().unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("transaction unknown"));
}
