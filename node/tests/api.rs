//! HTTP API over a real RocksDB store holding one decided, attested batch: every endpoint,
//! 404s and malformed ids, and `sigil verify`'s check accepting a real attestation and
//! rejecting tampered ones.

use alloy_primitives::{Address, B256, Bytes, U256};
use prost::Message as _;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sigil_crypto::{BatchTree, Message};
use sigil_node::api::{AttestationView, BatchView, TrustedKey, verify_attestation};
use sigil_node::identity::NodeKey;
use sigil_node::metrics::Metrics;
use sigil_node::node::{Shared, Status};
use sigil_node::store::{Cursor, Observation, Store};
use sigil_proto as pb;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

const CHAIN: u64 = 77;

fn msg(nonce: u64) -> Message {
    Message {
        source_chain_id: CHAIN,
        source_gateway: Address::repeat_byte(0xaa),
        nonce,
        sender: Address::repeat_byte(1),
        dest_chain_id: 88,
        dest_inbox: Address::repeat_byte(0xbb),
        recipient: Address::repeat_byte(2),
        gas_limit: 200_000,
        payload: Bytes::from(format!("payload {nonce}").into_bytes()),
    }
}

async fn serve() -> (String, Arc<RwLock<Status>>, tempfile::TempDir, Vec<Message>) {
    serve_with(|_| {}).await
}

/// [`serve`], with `extra` writing more records before the API starts.
async fn serve_with(
    extra: impl FnOnce(&Store),
) -> (String, Arc<RwLock<Status>>, tempfile::TempDir, Vec<Message>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let messages: Vec<Message> = (0..5).map(msg).collect();
    let obs: Vec<Observation> = messages
        .iter()
        .map(|m| Observation {
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
            &Cursor {
                block_number: 10,
                block_hash: B256::repeat_byte(9),
                next_nonce: 5,
            },
        )
        .unwrap();
    let leaves: Vec<B256> = messages.iter().map(|m| m.leaf()).collect();
    let root = BatchTree::new(&leaves).unwrap().root();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let dealt = sigil_crypto::keys::trusted_dealer(3, 4, &mut rng).unwrap();
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
        signers: vec![],
        time_ms: 0,
        rotation: None,
        key_commit: None,
        handover: None,
        carry: vec![],
    };
    let proposer = NodeKey::generate();
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
            signature: sig.serialize().unwrap(),
            message_ids: messages.iter().map(|m| m.id().to_vec()).collect(),
            handover: None,
        }),
    };
    assert!(cb.encoded_len() > 0);
    store.put_block(1, &cb, &[(CHAIN, 5)], None).unwrap();
    extra(&store);
    let metrics = Arc::new(Metrics::new());
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let status = Arc::new(RwLock::new(Status::default()));
    let shared = Shared {
        store,
        status: status.clone(),
        metrics,
        registry: Arc::new(registry),
        group_keys: Arc::new(RwLock::new([(1, dealt.group_key)].into())),
        batches: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, sigil_node::api::router(shared)).await });
    (url, status, dir, messages)
}

async fn get(url: &str) -> (u16, serde_json::Value, String) {
    let r = reqwest::get(url).await.unwrap();
    let code = r.status().as_u16();
    let text = r.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    (code, json, text)
}

#[tokio::test]
async fn every_endpoint_and_its_errors() {
    let (url, status, _dir, messages) = serve().await;

    let (code, s, _) = get(&format!("{url}/v1/status")).await;
    assert_eq!(code, 200);
    assert!(s.get("height").is_some() && s.get("groupKey").is_some());

    let (code, b, _) = get(&format!("{url}/v1/batches/1")).await;
    assert_eq!(code, 200);
    let batch: BatchView = serde_json::from_value(b).unwrap();
    assert_eq!(batch.messages.len(), 5);
    assert!(batch.signature.is_some());
    assert_eq!(batch.messages[2].id, messages[2].id());

    for (path, want, code_str) in [
        ("/v1/batches/2", 404, "unknown_height"),
        ("/v1/batches/two", 400, "bad_height"),
        ("/v1/attestations/0x1234", 400, "bad_message_id"),
        ("/v1/attestations/not-hex", 400, "bad_message_id"),
        ("/nope", 404, "not_found"),
    ] {
        let (code, e, _) = get(&format!("{url}{path}")).await;
        assert_eq!(code, want, "{path}");
        assert_eq!(e["code"], code_str, "{path}");
    }
    let unknown = B256::repeat_byte(0x42);
    let (code, e, _) = get(&format!("{url}/v1/attestations/{unknown}")).await;
    assert_eq!((code, e["code"].as_str()), (404, Some("unknown_message")));

    let (code, _, body) = get(&format!("{url}/healthz")).await;
    assert_eq!((code, body.as_str()), (200, "ok"));
    let (code, e, _) = get(&format!("{url}/readyz")).await;
    assert_eq!((code, e["code"].as_str()), (503, Some("not_ready")));
    status.write().unwrap().ready = true;
    assert_eq!(get(&format!("{url}/readyz")).await.0, 200);
    let (code, _, text) = get(&format!("{url}/metrics")).await;
    assert_eq!(code, 200);
    assert!(text.contains("sigil_consensus_height"), "{text}");
}

#[tokio::test]
async fn an_attestation_verifies_offline_and_tampering_is_rejected() {
    let (url, _status, _dir, messages) = serve().await;
    let id = messages[3].id();
    let (code, a, _) = get(&format!("{url}/v1/attestations/{id}")).await;
    assert_eq!(code, 200, "{a}");
    // Format v2: the message names its destination inbox and the recipient's gas limit.
    assert_eq!(
        a["message"]["destInbox"],
        format!("{}", Address::repeat_byte(0xbb)).to_lowercase()
    );
    assert_eq!(a["message"]["gasLimit"], 200_000);
    let att: AttestationView = serde_json::from_value(a).unwrap();
    assert_eq!(att.message, messages[3]);
    assert_eq!(att.height, 1);
    verify_attestation(&att, TrustedKey::CarriedInFile).expect("a real attestation verifies");

    let mut payload = att.clone();
    payload.message.payload = Bytes::from_static(b"forged");
    assert!(
        verify_attestation(&payload, TrustedKey::CarriedInFile).is_err(),
        "tampered payload"
    );
    let mut inbox = att.clone();
    inbox.message.dest_inbox = Address::repeat_byte(0xbc);
    assert!(
        verify_attestation(&inbox, TrustedKey::CarriedInFile).is_err(),
        "another destination inbox"
    );
    let mut gas = att.clone();
    gas.message.gas_limit += 1;
    assert!(
        verify_attestation(&gas, TrustedKey::CarriedInFile).is_err(),
        "another gas limit"
    );
    let mut z = att.clone();
    z.signature.z += U256::from(1);
    assert!(
        verify_attestation(&z, TrustedKey::CarriedInFile).is_err(),
        "tampered signature"
    );
    let mut proof = att.clone();
    proof.proof[0] = B256::repeat_byte(7);
    assert!(
        verify_attestation(&proof, TrustedKey::CarriedInFile).is_err(),
        "tampered proof"
    );
    let mut height = att.clone();
    height.height = 2;
    assert!(
        verify_attestation(&height, TrustedKey::CarriedInFile).is_err(),
        "signature is for height 1"
    );
    let other =
        sigil_crypto::keys::trusted_dealer(3, 4, &mut ChaCha20Rng::seed_from_u64(99)).unwrap();
    let wrong_key = hex::encode(other.group_key.compressed());
    assert!(
        verify_attestation(&att, TrustedKey::Pinned(&wrong_key)).is_err(),
        "another committee's key"
    );
}

/// The attack `sigil verify` must not fall for: a forger signs a batch of its choosing with
/// a key of its own and writes that key into the file. The file agrees with itself, so
/// trusting the key it carries says "valid"; checked against the committee's key (pinned,
/// or read from the inbox), it is refused.
#[tokio::test]
async fn a_file_signed_by_the_key_it_carries_is_refused_against_the_pinned_key() {
    let (url, _status, _dir, messages) = serve().await;
    let id = messages[3].id();
    let (_, a, _) = get(&format!("{url}/v1/attestations/{id}")).await;
    let att: AttestationView = serde_json::from_value(a).unwrap();
    let real = sigil_crypto::keys::trusted_dealer(3, 4, &mut ChaCha20Rng::seed_from_u64(3))
        .unwrap()
        .group_key;
    let real_hex = hex::encode(real.compressed());
    verify_attestation(&att, TrustedKey::Pinned(&real_hex)).expect("the genuine file");

    let mut rng = ChaCha20Rng::seed_from_u64(666);
    let forger = sigil_crypto::keys::trusted_dealer(2, 2, &mut rng).unwrap();
    let mut forged = att.clone();
    forged.message.payload = Bytes::from_static(b"mint 1,000,000 to the forger");
    forged.message_id = forged.message.id();
    forged.leaf = forged.message.leaf();
    forged.proof = vec![];
    forged.root = forged.leaf;
    let sig = sigil_crypto::signing::sign_local(
        &forger.key_packages,
        &forger.public_key_package,
        sigil_crypto::batch_digest(forged.epoch, forged.height, forged.root),
        &mut rng,
    )
    .unwrap();
    let sig = sigil_crypto::OnchainSignature::from_frost(&sig).unwrap();
    (forged.signature.rx, forged.signature.ry, forged.signature.z) = (sig.rx, sig.ry, sig.z);
    let gk = forged.group_key.as_mut().unwrap();
    gk.compressed = hex::encode(forger.group_key.compressed());
    assert!(
        verify_attestation(&forged, TrustedKey::CarriedInFile).is_ok(),
        "self-consistent: why the file's key proves nothing"
    );
    let err = verify_attestation(&forged, TrustedKey::Pinned(&real_hex)).unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
}

/// Pollers waiting for the next attested height (the relayer, the devnet) ask with
/// `?attested=true`: a decided height without its signature is then 404 `not_attested`,
/// before any observation is read; without the flag it is served (or 503 here, where this
/// node lacks its observations). An attested batch is the same with or without the flag,
/// and asking again (from the cache) gives the same bytes.
#[tokio::test]
async fn attested_pollers_get_not_attested_for_a_decided_unsigned_height() {
    let (url, _status, _dir, _) = serve_with(|store| {
        let block = pb::Block {
            height: 2,
            epoch: 1,
            ranges: vec![pb::Range {
                chain_id: CHAIN,
                gateway: vec![0xaa; 20],
                from_nonce: 5,
                to_nonce: 7,
            }],
            root: vec![1; 32],
            count: 2,
            ..Default::default()
        };
        let env = NodeKey::generate().seal(
            1,
            &pb::Body {
                kind: Some(pb::body::Kind::Proposal(pb::Proposal {
                    height: 2,
                    round: 0,
                    block: Some(block),
                    valid_round: -1,
                })),
            },
        );
        let cb = pb::CommittedBlock {
            proposal: Some(env),
            precommits: vec![],
            attestation: None,
        };
        store.put_block(2, &cb, &[(CHAIN, 7)], None).unwrap();
    })
    .await;
    let (code, e, _) = get(&format!("{url}/v1/batches/2?attested=true")).await;
    assert_eq!((code, e["code"].as_str()), (404, Some("not_attested")));
    let (code, e, _) = get(&format!("{url}/v1/batches/2")).await;
    assert_eq!(
        (code, e["code"].as_str()),
        (503, Some("observations_missing"))
    );
    let (code, _, plain) = get(&format!("{url}/v1/batches/1")).await;
    assert_eq!(code, 200);
    let (code, _, flagged) = get(&format!("{url}/v1/batches/1?attested=true")).await;
    assert_eq!(code, 200);
    assert_eq!(plain, flagged);
    let batch: BatchView = serde_json::from_str(&flagged).unwrap();
    assert!(batch.signature.is_some() && batch.messages.len() == 5);
    let (code, e, _) = get(&format!("{url}/v1/batches/1?attested=maybe")).await;
    assert_eq!((code, e["code"].as_str()), (400, Some("bad_query")));
}
