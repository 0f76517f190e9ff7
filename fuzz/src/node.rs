//! Targets inside `sigil-node` (feature `node`): the config file, the attestation JSON
//! `sigil verify` reads, and HTTP requests to the node API. They share one fixture: a real
//! RocksDB store holding one decided, attested batch of five messages, served by the API's
//! real router.

use crate::Target;
use alloy_primitives::{Address, B256, Bytes};
use prost::Message as _;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sigil_crypto::{BatchTree, Message};
use sigil_node::api::{AttestationView, TrustedKey, verify_attestation};
use sigil_node::metrics::Metrics;
use sigil_node::node::{Shared, Status};
use sigil_node::store::Store;
use sigil_proto as pb;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock};

/// The `node` feature's targets.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "config",
            run: config,
            seeds: config_seeds,
            max_len: 16 * 1024,
            afl: false,
        },
        Target {
            name: "attestation",
            run: attestation,
            seeds: attestation_seeds,
            max_len: 16 * 1024,
            afl: false,
        },
        Target {
            name: "api",
            run: api,
            seeds: api_seeds,
            max_len: 4 * 1024,
            afl: false,
        },
    ]
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    messages: Vec<Message>,
    /// The API's answer for message 2 (JSON).
    genuine: Vec<u8>,
    /// The pinned group key (compressed hex).
    group_key: String,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(build)
}

fn build() -> Fixture {
    const CHAIN: u64 = 77;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let messages: Vec<Message> = (0..5)
        .map(|nonce| Message {
            source_chain_id: CHAIN,
            source_gateway: Address::repeat_byte(0xaa),
            nonce,
            sender: Address::repeat_byte(1),
            dest_chain_id: 88,
            dest_inbox: Address::repeat_byte(0xbb),
            recipient: Address::repeat_byte(2),
            gas_limit: 200_000,
            payload: Bytes::from(format!("payload {nonce}").into_bytes()),
        })
        .collect();
    let leaves: Vec<B256> = messages.iter().map(|m| m.leaf()).collect();
    let root = BatchTree::new(&leaves).expect("tree").root();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let dealt = sigil_crypto::keys::trusted_dealer(3, 4, &mut rng).expect("dealer");
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
    .expect("sign");
    let block = pb::Block {
        height: 1,
        epoch: 1,
        ranges: vec![pb::Range {
            chain_id: CHAIN,
            gateway: vec![0xaa; 20],
            from_nonce: 0,
            to_nonce: 5,
        }],
        root: root.to_vec(),
        count: 5,
        ..Default::default()
    };
    let proposer = sigil_node::identity::NodeKey::generate();
    let env = proposer.seal(
        1,
        &pb::Body {
            kind: Some(pb::body::Kind::Proposal(pb::Proposal {
                height: 1,
                round: 0,
                block: Some(block),
                valid_round: -1,
            })),
        },
    );
    let cb = pb::CommittedBlock {
        proposal: Some(env),
        precommits: vec![],
        attestation: Some(pb::Attestation {
            epoch: 1,
            height: 1,
            root: root.to_vec(),
            signature: sig.serialize().expect("signature"),
            message_ids: messages.iter().map(|m| m.id().to_vec()).collect(),
            handover: None,
        }),
    };
    let obs: Vec<sigil_node::store::Observation> = messages
        .iter()
        .map(|m| sigil_node::store::Observation {
            message: m.clone(),
            block_number: 10,
            block_hash: B256::repeat_byte(9),
            observed_at_ms: 0,
            block_time: 0,
        })
        .collect();
    store
        .put_observations(
            CHAIN,
            &obs,
            &sigil_node::store::Cursor {
                block_number: 10,
                block_hash: B256::repeat_byte(9),
                next_nonce: 5,
            },
        )
        .expect("observations");
    assert!(cb.encoded_len() > 0);
    store.put_block(1, &cb, &[(CHAIN, 5)], None).expect("block");
    let metrics = Arc::new(Metrics::new());
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let shared = Shared {
        store,
        status: Arc::new(RwLock::new(Status::default())),
        metrics,
        registry: Arc::new(registry),
        group_keys: Arc::new(RwLock::new([(1, dealt.group_key)].into())),
        batches: Default::default(),
    };
    let router = sigil_node::api::router(shared);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (status, genuine) = rt.block_on(request(
        &router,
        "GET",
        &format!("/v1/attestations/{}", messages[2].id()),
        Vec::new(),
    ));
    assert_eq!(status, 200, "the fixture serves its attestation");
    let a: AttestationView = serde_json::from_slice(&genuine).expect("attestation JSON");
    let group_key = a.group_key.expect("group key in the view").compressed;
    Fixture {
        rt,
        router,
        messages,
        genuine,
        group_key,
        _dir: dir,
    }
}

async fn request(router: &axum::Router, method: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    use tower::ServiceExt as _;
    let Ok(req) = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .body(axum::body::Body::from(body))
    else {
        return (0, Vec::new());
    };
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    (status, bytes)
}

/// `config`: TOML text. Oracle: no panic; parsing is deterministic (an accepted text gives
/// the same config twice, a refused one the same error).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parse = || {
        sigil_node::config::Config::parse(text, Path::new("config.toml"), [])
            .map(|c| format!("{c:?}"))
            .map_err(|e| e.to_string())
    };
    assert_eq!(parse(), parse(), "config parsing is not deterministic");
}

fn config_seeds() -> Vec<Vec<u8>> {
    let keys = [
        "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
        "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5",
        "02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9",
        "02e493dbf1c10d80f3581e4904930b1404cc6c13900ee0758474fa94abe8c4cd13",
    ];
    let members: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            format!(
                "{{ key = \"{k}\", address = \"/ip4/127.0.0.1/tcp/{}\" }}",
                7001 + i
            )
        })
        .collect();
    let full = format!(
        "[node]\nmoniker = \"node-1\"\nlisten = \"/ip4/127.0.0.1/tcp/7001\"\napi = \"127.0.0.1:9001\"\nheartbeat = \"1s\"\n\n[committee]\nepoch = 1\nmembers = [\n  {}\n]\n\n[consensus]\npropose_timeout = \"1s\"\nprevote_timeout = \"500ms\"\nprecommit_timeout = \"500ms\"\ntimeout_delta = \"500ms\"\nobservation_wait = \"2s\"\n\n[batch]\nmax_messages = 64\nmax_bytes = 8388608\n\n[signing]\nnonce_pool = 16\nshare_timeout = \"2s\"\n\n[[chains]]\nname = \"a\"\nchain_id = 1001\nrpc = [\"http://127.0.0.1:8545\", \"http://127.0.0.1:8546\"]\nrpc_quorum = 2\ngateway = \"0x00000000000000000000000000000000000000aa\"\ninbox = \"0x00000000000000000000000000000000000000bb\"\nfinality = \"confirmations:2\"\npoll_interval = \"250ms\"\n",
        members.join(",\n  ")
    );
    let tagged = full.replace("confirmations:2", "tag:finalized");
    let template = sigil_node::config::template(
        "n",
        "/ip4/127.0.0.1/tcp/7001",
        None,
        "127.0.0.1:9001".parse().expect("addr"),
        keys[0],
    );
    vec![
        full.into_bytes(),
        tagged.into_bytes(),
        template.into_bytes(),
    ]
}

/// `attestation`: the JSON `sigil verify` reads. Oracle: under the pinned group key only
/// the genuine batch verifies: one of its five messages, at its epoch, height and root.
pub fn attestation(data: &[u8]) {
    let f = fixture();
    let Ok(a) = serde_json::from_slice::<AttestationView>(data) else {
        return;
    };
    if verify_attestation(&a, TrustedKey::Pinned(&f.group_key)).is_ok() {
        assert!(
            f.messages.contains(&a.message) && a.epoch == 1 && a.height == 1,
            "a forged attestation verified under the pinned key: {a:?}"
        );
    }
    // With the key the file carries anything self-signed may verify; it must not panic.
    let _ = verify_attestation(&a, TrustedKey::CarriedInFile);
}

fn attestation_seeds() -> Vec<Vec<u8>> {
    let f = fixture();
    let pretty: serde_json::Value = serde_json::from_slice(&f.genuine).expect("json");
    vec![
        f.genuine.clone(),
        serde_json::to_vec_pretty(&pretty).expect("json"),
    ]
}

/// `api`: `METHOD PATH\n` then a body. Oracle: no panic, no 5xx (every bad request is the
/// client's error) but `/readyz`'s 503 "not_ready", and the genuine attestation's answer always verifies.
pub fn api(data: &[u8]) {
    let f = fixture();
    let (line, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], data[i + 1..].to_vec()),
        None => (data, Vec::new()),
    };
    let Ok(line) = std::str::from_utf8(line) else {
        return;
    };
    let (method, path) = line.split_once(' ').unwrap_or(("GET", line));
    let (status, resp) = f.rt.block_on(request(&f.router, method, path, body));
    // `/readyz` answers 503 by design while the node is not ready (no peers here).
    let not_ready = status == 503 && resp.starts_with(b"{\"code\":\"not_ready\"");
    assert!(
        !(500..600).contains(&status) || not_ready,
        "{method} {path:?} answered {status}: {}",
        String::from_utf8_lossy(&resp)
    );
    if status == 200 && path.starts_with("/v1/attestations/") {
        let a: AttestationView = serde_json::from_slice(&resp).expect("an attestation view");
        verify_attestation(&a, TrustedKey::Pinned(&f.group_key))
            .expect("a served attestation verifies");
    }
}

fn api_seeds() -> Vec<Vec<u8>> {
    let f = fixture();
    [
        "GET /v1/status".to_string(),
        "GET /v1/batches/1".to_string(),
        "GET /v1/batches/2".to_string(),
        format!("GET /v1/attestations/{}", f.messages[2].id()),
        "GET /healthz".to_string(),
        "GET /readyz".to_string(),
        "GET /metrics".to_string(),
        "POST /v1/batches/1\n{\"x\":1}".to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}
