//! In-process committee over real libp2p on loopback: four `Node`s with RocksDB homes,
//! fed a stream of test observations (the chain-edge channel), attest batches; with one
//! node stopped the rest still do; the stopped node restarts from its database and catches
//! up; a node killed at arbitrary points and restarted never equivocates (no evidence on any
//! peer) and never reuses a nonce; malformed peer input is dropped and counted.

use alloy_primitives::{Address, B256, Bytes};
use futures::StreamExt;
use libp2p::gossipsub;
use prost::Message as _;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sigil_crypto::Message;
use sigil_node::config::Config;
use sigil_node::epoch::{APPROVAL_FILE, Approval, next_members};
use sigil_node::identity::{NodeKey, public_key_hex};
use sigil_node::keyfiles::KeyShare;
use sigil_node::metrics::Metrics;
use sigil_node::node::{Node, NodeSetup, Status};
use sigil_node::store::{Cursor, Observation, Store};
use sigil_node::watcher::ChainEvent;
use sigil_proto as pb;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

const CHAIN: u64 = 77;
/// The keystore passphrase of the test nodes.
const PASS: &[u8] = b"committee test";

fn gateway() -> Address {
    Address::repeat_byte(0xaa)
}

struct Cluster {
    dir: tempfile::TempDir,
    keys: Vec<NodeKey>,
    shares: Vec<Option<KeyShare>>,
    config: String,
    group_key: sigil_crypto::GroupKey,
    running: Vec<Option<Running>>,
    /// Observations fed so far (nonce count).
    fed: u64,
}

struct Running {
    tx: mpsc::Sender<ChainEvent>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    metrics: Arc<Metrics>,
    status: Arc<RwLock<Status>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn message(nonce: u64) -> Observation {
    Observation {
        message: Message {
            source_chain_id: CHAIN,
            source_gateway: gateway(),
            nonce,
            sender: Address::repeat_byte(1),
            dest_chain_id: 88,
            dest_inbox: Address::repeat_byte(0xbb),
            recipient: Address::repeat_byte(2),
            gas_limit: 200_000,
            payload: Bytes::from(format!("payload {nonce}").into_bytes()),
        },
        block_number: 100 + nonce,
        block_hash: B256::repeat_byte(3),
        observed_at_ms: 0,
        block_time: 0,
    }
}

impl Cluster {
    fn new(n: u16) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("SIGIL_LOG"))
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<NodeKey> = (0..n).map(|_| NodeKey::generate()).collect();
        let (_, t) = sigil_crypto::keys::thresholds(n);
        let dealt =
            sigil_crypto::keys::trusted_dealer(t, n, &mut ChaCha20Rng::seed_from_u64(11)).unwrap();
        let shares = (1..=n)
            .map(|m| {
                Some(KeyShare {
                    epoch: 1,
                    member: m,
                    n,
                    t,
                    key_package: dealt.key_packages[&m].clone(),
                    public_key_package: dealt.public_key_package.clone(),
                })
            })
            .collect();
        let mut members = String::new();
        for k in &keys {
            members.push_str(&format!(
                "  {{ key = \"{}\", address = \"/ip4/127.0.0.1/tcp/{}\" }},\n",
                public_key_hex(&k.public()),
                free_port()
            ));
        }
        let config = format!(
            r#"[node]
listen = "LISTEN"
api = "127.0.0.1:1"
heartbeat = "500ms"
[committee]
members = [
{members}]
[consensus]
propose_timeout = "400ms"
prevote_timeout = "200ms"
precommit_timeout = "200ms"
timeout_delta = "200ms"
observation_wait = "1s"
[signing]
nonce_pool = 8
share_timeout = "1s"
[[chains]]
name = "test"
chain_id = {CHAIN}
rpc = ["http://127.0.0.1:1"]
gateway = "{}"
inbox = "{}"
"#,
            gateway(),
            Address::repeat_byte(0xbb)
        );
        Self {
            dir,
            keys,
            shares,
            config,
            group_key: dealt.group_key,
            running: (0..n).map(|_| None).collect(),
            fed: 0,
        }
    }

    fn home(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{}", i + 1))
    }

    fn cfg(&self, i: usize) -> Config {
        let base: Config = Config::parse(
            &self.config.replace("LISTEN", "/ip4/127.0.0.1/tcp/1"),
            "test".as_ref(),
            [],
        )
        .unwrap();
        let listen = base.committee.members[i].address.clone();
        Config::parse(&self.config.replace("LISTEN", &listen), "test".as_ref(), []).unwrap()
    }

    fn start(&mut self, i: usize) {
        let store = Store::open(&self.home(i).join("db")).unwrap();
        // A node that switched epochs before it stopped resumes in that epoch, with the
        // share its in-node DKG wrote (as `sigil start` does).
        let epoch = sigil_engine::epochs::resume_epoch(&store, 1).unwrap().epoch;
        let share = if epoch > 1 {
            sigil_node::keyfiles::read_key_share(&self.home(i), PASS, epoch)
                .unwrap()
                .expect("the next epoch's share on disk")
        } else {
            self.shares[i].as_ref().unwrap().clone()
        };
        let metrics = Arc::new(Metrics::new());
        let status = Arc::new(RwLock::new(Status::default()));
        let node = Node::new(
            NodeSetup {
                cfg: self.cfg(i),
                key: self.keys[i].clone(),
                share,
                store,
                approval: Some(self.home(i).join(APPROVAL_FILE)),
                keystore: Some((self.home(i), zeroize::Zeroizing::new(PASS.to_vec()))),
                group_keys: Arc::new(RwLock::new(Default::default())),
            },
            metrics.clone(),
            status.clone(),
        )
        .unwrap();
        let (tx, rx) = mpsc::channel(64);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(node.run(rx, stop_rx));
        self.running[i] = Some(Running {
            tx,
            stop,
            task,
            metrics,
            status,
        });
    }

    /// Graceful stop.
    async fn stop(&mut self, i: usize) {
        if let Some(r) = self.running[i].take() {
            let _ = r.stop.send(true);
            let _ = r.task.await;
        }
    }

    /// Crash: the task is dropped wherever it is.
    async fn kill(&mut self, i: usize) {
        if let Some(r) = self.running[i].take() {
            r.task.abort();
            let _ = r.task.await;
        }
    }

    /// Feeds `count` new observations (and the cursor) to every running node.
    /// The watcher's report of nonces `from..fed` with the cursor at `fed`.
    fn event(&self, from: u64) -> ChainEvent {
        ChainEvent {
            chain_id: CHAIN,
            observations: (from..self.fed).map(message).collect(),
            cursor: Cursor {
                block_number: 100 + self.fed,
                block_hash: B256::repeat_byte(3),
                next_nonce: self.fed,
            },
            head: 100 + self.fed,
            finalized: 100 + self.fed,
        }
    }

    async fn feed(&mut self, count: u64) {
        let from = self.fed;
        self.fed += count;
        for r in self.running.iter().flatten() {
            r.tx.send(self.event(from)).await.unwrap();
        }
    }

    /// Re-feeds everything to node i (after a restart its chain cursor is in the DB, so
    /// only the tail matters, but a full feed is idempotent).
    async fn refeed(&self, i: usize) {
        if let Some(r) = &self.running[i] {
            r.tx.send(self.event(0)).await.unwrap();
        }
    }
}

/// Opens a stopped node's DB and returns (attested message count, decided height, evidence records).
fn inspect(home: &std::path::Path, gk: &sigil_crypto::GroupKey) -> (u64, u64, usize) {
    let store = Store::open(&home.join("db")).unwrap();
    let last = store.last_height().unwrap();
    let mut attested = 0u64;
    for h in 1..=last {
        let cb = store.block(h).unwrap().unwrap();
        if let Some(a) = &cb.attestation {
            let sig = sigil_crypto::OnchainSignature::from_bytes(&a.signature)
                .unwrap()
                .to_frost()
                .unwrap();
            let digest = sigil_crypto::batch_digest(a.epoch, a.height, B256::from_slice(&a.root));
            sigil_crypto::signing::verify(gk, digest, &sig).expect("every attestation verifies");
            let block = sigil_node::api::proposal_block(&cb).unwrap();
            assert_eq!(block.root, a.root, "attestation covers the decided block");
            attested += u64::from(block.count);
        }
    }
    (attested, last, store.evidence_count().unwrap())
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn attested_metric(r: &Running) -> i64 {
    let mut s = String::new();
    let mut reg = prometheus_client::registry::Registry::default();
    r.metrics.register(&mut reg);
    prometheus_client::encoding::text::encode(&mut s, &reg).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("sigil_consensus_decided_messages_total "))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as i64)
}

fn metric(r: &Running, name: &str) -> f64 {
    let mut s = String::new();
    let mut reg = prometheus_client::registry::Registry::default();
    r.metrics.register(&mut reg);
    prometheus_client::encoding::text::encode(&mut s, &reg).unwrap();
    s.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_attest_survive_a_stop_and_catch_up() {
    let mut c = Cluster::new(4);
    for i in 0..4 {
        c.start(i);
    }
    c.feed(20).await;
    wait_until(
        "20 messages decided on all nodes",
        Duration::from_secs(60),
        || c.running.iter().flatten().all(|r| attested_metric(r) >= 20),
    )
    .await;
    // Stop node 4; the other three keep attesting.
    c.stop(3).await;
    c.feed(30).await;
    wait_until(
        "50 messages decided on nodes 1-3",
        Duration::from_secs(60),
        || c.running.iter().flatten().all(|r| attested_metric(r) >= 50),
    )
    .await;
    // Restart node 4: it catches up from peers (its watcher is behind: no refeed).
    c.start(3);
    c.feed(10).await;
    // It decided 20 before the stop; the 40 after come from catch-up and new heights.
    wait_until(
        "node 4 catches up to 60 messages",
        Duration::from_secs(60),
        || {
            c.running[3]
                .as_ref()
                .is_some_and(|r| attested_metric(r) >= 40)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in 0..4 {
        c.stop(i).await;
    }
    let mut heights = Vec::new();
    for i in 0..4 {
        let (attested, last, evidence) = inspect(&c.home(i), &c.group_key);
        assert_eq!(evidence, 0, "no equivocation seen by node {}", i + 1);
        heights.push(last);
        if i < 3 {
            assert_eq!(attested, 60, "node {} attested every message", i + 1);
        }
    }
    // Node 4 decided the same heights (caught up).
    assert!(
        heights[3] >= heights[0] - 1,
        "node 4 caught up: {heights:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_node_never_equivocates_or_reuses_a_nonce() {
    let mut c = Cluster::new(4);
    for i in 0..4 {
        c.start(i);
    }
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    for round in 0..6 {
        c.feed(5).await;
        // Kill node 1 (a proposer and signer) at an arbitrary moment, restart it at once.
        tokio::time::sleep(Duration::from_millis(100 + rng.next_u64() % 900)).await;
        c.kill(0).await;
        tokio::time::sleep(Duration::from_millis(rng.next_u64() % 300)).await;
        c.start(0);
        c.refeed(0).await;
        let _ = round;
    }
    wait_until(
        "30 messages decided on nodes 2-4",
        Duration::from_secs(90),
        || {
            c.running
                .iter()
                .skip(1)
                .flatten()
                .all(|r| attested_metric(r) >= 30)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let equivocations: f64 = c
        .running
        .iter()
        .flatten()
        .map(|r| metric(r, "sigil_consensus_equivocations_total"))
        .sum();
    assert_eq!(equivocations, 0.0, "no peer saw two different votes");
    for i in 0..4 {
        c.stop(i).await;
    }
    for i in 0..4 {
        let (_, _, evidence) = inspect(&c.home(i), &c.group_key);
        assert_eq!(evidence, 0);
    }
    // The killed node's own votes: one value per height/round/step (the store enforces it,
    // and the ledger never consumed an id twice).
    let store = Store::open(&c.home(0).join("db")).unwrap();
    let votes = store.own_votes().unwrap();
    let mut keys: Vec<_> = votes.iter().map(|(h, r, s, _)| (*h, *r, *s)).collect();
    let before = keys.len();
    keys.dedup();
    assert_eq!(before, keys.len());
    let ledger = sigil_node::store::RocksLedger::open(store.clone()).unwrap();
    let mut ids = ledger.consumed_ids().unwrap();
    let n = ids.len();
    ids.dedup();
    assert_eq!(n, ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_peer_input_is_dropped_and_counted() {
    let mut c = Cluster::new(4);
    for i in 0..3 {
        c.start(i);
    }
    // Member 4's key drives a raw libp2p swarm that sends garbage.
    let committee =
        sigil_node::identity::Committee::new(c.keys.iter().map(|k| k.public()).collect()).unwrap();
    let mut evil = sigil_node::p2p::build(&c.keys[3], &committee).unwrap();
    let target: libp2p::Multiaddr = c.cfg(0).committee.members[0].address.parse().unwrap();
    evil.dial(target).unwrap();
    // A non-member is refused.
    let outsider = NodeKey::generate();
    let outsider_committee =
        sigil_node::identity::Committee::new(vec![outsider.public(), c.keys[0].public()]).unwrap();
    let mut stranger = sigil_node::p2p::build(&outsider, &outsider_committee).unwrap();
    stranger
        .dial(
            c.cfg(0).committee.members[0]
                .address
                .parse::<libp2p::Multiaddr>()
                .unwrap(),
        )
        .unwrap();
    let t0 = Instant::now();
    let topic = gossipsub::IdentTopic::new(sigil_node::p2p::topics::CONSENSUS);
    let mut sent = 0;
    c.feed(10).await;
    while t0.elapsed() < Duration::from_secs(8) {
        tokio::select! {
            _ = evil.select_next_some() => {}
            _ = stranger.select_next_some() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                // Garbage, a bad signature, and a far-future vote.
                let _ = evil.behaviour_mut().gossipsub.publish(topic.clone(), vec![0xde, 0xad, 0xbe, 0xef, sent as u8]);
                let body = pb::Body { kind: Some(pb::body::Kind::Vote(pb::Vote { kind: 1, height: 1_000_000, round: 0, value_id: vec![] })) };
                let env = c.keys[3].seal(4, &body);
                let _ = evil.behaviour_mut().gossipsub.publish(topic.clone(), env.encode_to_vec());
                let mut forged = c.keys[3].seal(1, &body);
                forged.body.push(sent as u8);
                let _ = evil.behaviour_mut().gossipsub.publish(topic.clone(), forged.encode_to_vec());
                sent += 1;
            }
        }
    }
    wait_until(
        "10 messages decided despite the garbage",
        Duration::from_secs(60),
        || c.running.iter().flatten().all(|r| attested_metric(r) >= 10),
    )
    .await;
    let r0 = c.running[0].as_ref().unwrap();
    let rejected = metric(r0, "sigil_p2p_rejected_total");
    assert!(rejected >= 3.0, "rejections counted: {rejected}");
    let denied = metric(r0, "sigil_p2p_denied_connections_total");
    assert!(denied >= 1.0, "non-member refused: {denied}");
    for i in 0..3 {
        c.stop(i).await;
    }
}

/// The rotation part of a running node's `/v1/status`.
fn rotation(r: &Running) -> sigil_node::epoch::EpochStatus {
    r.status.read().unwrap().rotation.clone()
}

/// Operators approve the next committee (member 4 leaves, a new key joins) by writing the
/// approval file while the committee runs. With two approvals (fewer than 2f + 1 = 3)
/// nothing is decided and messages are still attested; after the third, every member —
/// the one that never approved included — decides the same rotation at the same height,
/// `/v1/status` and `sigil_rotation_stage` show it, and a restarted member reads it back
/// from its store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_rotation_is_decided_once_and_survives_restart() {
    let mut c = Cluster::new(4);
    for i in 0..4 {
        c.start(i);
    }
    let current: Vec<String> = c.keys.iter().map(|k| public_key_hex(&k.public())).collect();
    let joiner = public_key_hex(&NodeKey::generate().public());
    let next = next_members(&current, vec![], vec![joiner], vec![current[3].clone()]).unwrap();
    let approval = Approval::next(1, next);
    for i in 0..2 {
        approval.write(&c.home(i).join(APPROVAL_FILE)).unwrap();
    }
    wait_until(
        "two operators' approvals applied",
        Duration::from_secs(10),
        || (0..2).all(|i| rotation(c.running[i].as_ref().unwrap()).stage == "approved"),
    )
    .await;
    c.feed(10).await;
    wait_until(
        "10 messages decided with a minority of approvals",
        Duration::from_secs(60),
        || c.running.iter().flatten().all(|r| attested_metric(r) >= 10),
    )
    .await;
    for r in c.running.iter().flatten() {
        assert_eq!(
            rotation(r).decided,
            None,
            "two approvals of four decide nothing"
        );
    }
    assert_eq!(rotation(c.running[3].as_ref().unwrap()).stage, "none");
    approval.write(&c.home(2).join(APPROVAL_FILE)).unwrap();
    wait_until(
        "the rotation decided on every member",
        Duration::from_secs(60),
        || {
            c.running
                .iter()
                .flatten()
                .all(|r| rotation(r).decided.is_some())
        },
    )
    .await;
    let decided: Vec<_> = c
        .running
        .iter()
        .flatten()
        .map(|r| rotation(r).decided.unwrap())
        .collect();
    assert!(
        decided.windows(2).all(|w| w[0] == w[1]),
        "one rotation, one height: {decided:?}"
    );
    let d = &decided[0];
    assert_eq!((d.epoch, d.threshold, d.members.len()), (2, 3, 4));
    assert_eq!(d.members, approval.members);
    for r in c.running.iter().flatten() {
        assert_eq!(metric(r, "sigil_rotation_stage"), 2.0);
        assert_eq!(
            metric(r, "sigil_rotation_decided_height"),
            d.height.unwrap() as f64
        );
    }
    // A restarted member restores the decided rotation from its store.
    c.stop(1).await;
    c.start(1);
    wait_until(
        "the restarted member shows the decided rotation",
        Duration::from_secs(10),
        || rotation(c.running[1].as_ref().unwrap()).decided.as_ref() == Some(d),
    )
    .await;
    // Attestation goes on after the rotation is decided.
    c.feed(5).await;
    c.refeed(1).await;
    wait_until(
        "5 more messages decided after the rotation (the restarted member counts from 0)",
        Duration::from_secs(60),
        || {
            c.running.iter().enumerate().all(|(i, r)| {
                r.as_ref()
                    .is_some_and(|r| attested_metric(r) >= if i == 1 { 5 } else { 15 })
            })
        },
    )
    .await;
    // A bad approval file is refused, counted and withdraws the approval.
    std::fs::write(c.home(0).join(APPROVAL_FILE), "epoch = \"two\"\n").unwrap();
    wait_until(
        "a bad approval file refused",
        Duration::from_secs(10),
        || {
            let r = rotation(c.running[0].as_ref().unwrap());
            r.approval_error.is_some() && r.approved.is_none()
        },
    )
    .await;
    assert_eq!(
        metric(
            c.running[0].as_ref().unwrap(),
            "sigil_rotation_approval_errors_total"
        ),
        1.0
    );
    for i in 0..4 {
        c.stop(i).await;
    }
}

/// The same four operators rotate to a new group key while messages flow (committee
/// epochs end to end in the node): every operator approves the same member list; the
/// members run the new committee's DKG over their running swarm, the outgoing committee
/// decides the key commit and signs the key rotation for the configured inbox with the old
/// key, every node switches to epoch 2 at the same height, and later messages are attested
/// under the new key. A node restarted afterwards resumes in epoch 2 from its store and the
/// share its DKG wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_operators_rotate_to_a_new_key_while_messages_flow() {
    let mut c = Cluster::new(4);
    for i in 0..4 {
        c.start(i);
    }
    c.feed(10).await;
    wait_until("10 messages decided", Duration::from_secs(60), || {
        c.running.iter().flatten().all(|r| attested_metric(r) >= 10)
    })
    .await;
    let current: Vec<String> = c.keys.iter().map(|k| public_key_hex(&k.public())).collect();
    let approval = Approval::next(1, current);
    for i in 0..4 {
        approval.write(&c.home(i).join(APPROVAL_FILE)).unwrap();
    }
    let epoch_of = |r: &Running| r.status.read().unwrap().epoch;
    wait_until("every node in epoch 2", Duration::from_secs(120), || {
        c.running.iter().flatten().all(|r| epoch_of(r) == 2)
    })
    .await;
    let new_key = c.running[0]
        .as_ref()
        .unwrap()
        .status
        .read()
        .unwrap()
        .group_key
        .clone();
    assert!(new_key.is_some());
    assert_ne!(
        new_key,
        Some(hex::encode(c.group_key.compressed())),
        "a new group key"
    );
    for r in c.running.iter().flatten() {
        assert_eq!(
            r.status.read().unwrap().group_key,
            new_key,
            "one key on every node"
        );
    }
    c.feed(10).await;
    wait_until(
        "10 more messages decided in epoch 2",
        Duration::from_secs(60),
        || c.running.iter().flatten().all(|r| attested_metric(r) >= 20),
    )
    .await;
    // A restart resumes in epoch 2.
    c.stop(2).await;
    c.start(2);
    c.feed(5).await;
    c.refeed(2).await;
    wait_until(
        "5 more messages decided after the restart",
        Duration::from_secs(60),
        || {
            c.running.iter().enumerate().all(|(i, r)| {
                r.as_ref()
                    .is_some_and(|r| attested_metric(r) >= if i == 2 { 5 } else { 25 })
            })
        },
    )
    .await;
    assert_eq!(epoch_of(c.running[2].as_ref().unwrap()), 2);
    // Every decided height attested, not only the highest: an earlier height's
    // attestation may still be on its way when the last one is stored.
    wait_until(
        "every decided height attested",
        Duration::from_secs(60),
        || {
            c.running.iter().flatten().all(|r| {
                let s = r.status.read().unwrap();
                s.attested_height >= s.decided_height
                    && metric(r, "sigil_signing_unattested_heights") == 0.0
            })
        },
    )
    .await;
    for i in 0..4 {
        c.stop(i).await;
    }
    // Every stored attestation verifies under the key of its block's epoch: batches of
    // epoch 1 and the key rotation under the old key, batches of epoch 2 under the new one.
    let new =
        sigil_crypto::GroupKey::from_compressed(&hex::decode(new_key.unwrap()).unwrap()).unwrap();
    let store = Store::open(&c.home(0).join("db")).unwrap();
    let (mut old_batches, mut rotations, mut new_messages) = (0, 0, 0u64);
    for h in 1..=store.last_height().unwrap() {
        let cb = store.block(h).unwrap().unwrap();
        let b = sigil_node::api::proposal_block(&cb).unwrap();
        let Some(a) = cb.attestation else { continue };
        let sig = sigil_crypto::OnchainSignature::from_bytes(&a.signature)
            .unwrap()
            .to_frost()
            .unwrap();
        let (key, digest) = match (&b.handover, b.epoch) {
            (Some(inbox), 1) => {
                rotations += 1;
                let (o, n) = (c.group_key, new);
                let digest = sigil_crypto::rotation_digest(
                    inbox.chain_id,
                    Address::from_slice(&inbox.address),
                    1,
                    o.x(),
                    o.parity(),
                    2,
                    n.x(),
                    n.parity(),
                );
                (c.group_key, digest)
            }
            (None, 1) => {
                old_batches += 1;
                let d = sigil_crypto::batch_digest(1, h, B256::from_slice(&a.root));
                (c.group_key, d)
            }
            (None, 2) => {
                new_messages += u64::from(b.count);
                (
                    new,
                    sigil_crypto::batch_digest(2, h, B256::from_slice(&a.root)),
                )
            }
            other => panic!("unexpected block at height {h}: {other:?}"),
        };
        sigil_crypto::signing::verify(&key, digest, &sig)
            .unwrap_or_else(|e| panic!("height {h} (epoch {}): {e}", b.epoch));
    }
    assert_eq!(rotations, 1, "one key rotation: one configured inbox");
    assert!(old_batches >= 1);
    if new_messages < 15 {
        let mut table = String::new();
        for i in 0..4 {
            let st = Store::open(&c.home(i).join("db")).unwrap();
            for h in 1..=st.last_height().unwrap() {
                let cb = st.block(h).unwrap().unwrap();
                let b = sigil_node::api::proposal_block(&cb).unwrap();
                table += &format!(
                    "node {i} h {h} epoch {} count {} handover {} attested {}\n",
                    b.epoch,
                    b.count,
                    b.handover.is_some(),
                    cb.attestation.is_some()
                );
            }
        }
        panic!("messages attested under the new key: {new_messages}\n{table}");
    }
}

/// An operator joins and another leaves while messages flow: the operators approve the
/// next committee (member 4 out, a new node in); the new node, started with `--join`'s
/// phase ([`sigil_node::join::run`]), runs the DKG with members 1-3 over their running
/// swarm, offers the key commit, fetches and checks the hand-over, and starts as member 4 of
/// epoch 2; member 4 of epoch 1 stays behind as an archive. Later messages are decided by
/// the new committee, the joiner included, and attested under the new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_joins_and_another_leaves_while_messages_flow() {
    let mut c = Cluster::new(4);
    for i in 0..4 {
        c.start(i);
    }
    c.feed(10).await;
    wait_until("10 messages decided", Duration::from_secs(60), || {
        c.running.iter().flatten().all(|r| attested_metric(r) >= 10)
    })
    .await;
    let joiner = NodeKey::generate();
    let current: Vec<String> = c.keys.iter().map(|k| public_key_hex(&k.public())).collect();
    let next = next_members(
        &current,
        vec![],
        vec![public_key_hex(&joiner.public())],
        vec![current[3].clone()],
    )
    .unwrap();
    let approval = Approval::next(1, next);
    let jhome = c.dir.path().join("joiner");
    std::fs::create_dir_all(&jhome).unwrap();
    approval.write(&jhome.join(APPROVAL_FILE)).unwrap();
    for i in 0..4 {
        approval.write(&c.home(i).join(APPROVAL_FILE)).unwrap();
    }
    // The joiner's config lists the current committee; it listens on its own port.
    let jcfg = Config::parse(
        &c.config
            .replace("LISTEN", &format!("/ip4/127.0.0.1/tcp/{}", free_port())),
        "test".as_ref(),
        [],
    )
    .unwrap();
    let mut jstore = Store::open(&jhome.join("db")).unwrap();
    let (jstop, jstop_rx) = watch::channel(false);
    let joined = {
        let (jcfg, jhome, joiner) = (jcfg.clone(), jhome.clone(), joiner.clone());
        tokio::spawn(async move {
            sigil_node::join::run(&jcfg, &jhome, &joiner, PASS, &mut jstore, jstop_rx)
                .await
                .map(|()| jstore)
        })
    };
    let jstore = tokio::time::timeout(Duration::from_secs(120), joined)
        .await
        .expect("the join phase finishes")
        .unwrap()
        .unwrap();
    drop(jstop);
    let share = sigil_node::keyfiles::read_key_share(&jhome, PASS, 2)
        .unwrap()
        .expect("the joiner's share of epoch 2");
    assert_eq!((share.member, share.n, share.epoch), (4, 4, 2));
    let metrics = Arc::new(Metrics::new());
    let status = Arc::new(RwLock::new(Status::default()));
    let node = Node::new(
        NodeSetup {
            cfg: jcfg,
            key: joiner,
            share,
            store: jstore,
            approval: Some(jhome.join(APPROVAL_FILE)),
            keystore: Some((jhome.clone(), zeroize::Zeroizing::new(PASS.to_vec()))),
            group_keys: Arc::new(RwLock::new(Default::default())),
        },
        metrics.clone(),
        status.clone(),
    )
    .unwrap();
    let (tx, rx) = mpsc::channel(64);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(node.run(rx, stop_rx));
    let j = Running {
        tx,
        stop,
        task,
        metrics,
        status,
    };
    let epoch_of = |r: &Running| r.status.read().unwrap().epoch;
    wait_until(
        "members 1-3 and the joiner in epoch 2",
        Duration::from_secs(60),
        || (0..3).all(|i| epoch_of(c.running[i].as_ref().unwrap()) == 2) && epoch_of(&j) == 2,
    )
    .await;
    assert_eq!(
        epoch_of(c.running[3].as_ref().unwrap()),
        1,
        "the leaver stays behind as an archive"
    );
    c.feed(10).await;
    j.tx.send(c.event(0)).await.unwrap();
    wait_until(
        "10 messages decided by the new committee",
        Duration::from_secs(60),
        || {
            (0..3).all(|i| attested_metric(c.running[i].as_ref().unwrap()) >= 20)
                && attested_metric(&j) >= 10
        },
    )
    .await;
    wait_until("attested on the joiner", Duration::from_secs(60), || {
        let s = j.status.read().unwrap();
        s.attested_height >= s.decided_height && s.decided_height > 0
    })
    .await;
    let new_key = j.status.read().unwrap().group_key.clone().unwrap();
    assert_eq!(
        c.running[0]
            .as_ref()
            .unwrap()
            .status
            .read()
            .unwrap()
            .group_key,
        Some(new_key.clone())
    );
    let _ = j.stop.send(true);
    let _ = j.task.await;
    for i in 0..4 {
        c.stop(i).await;
    }
    // The joiner's store: the hand-over blocks (certified, without attestations), then the
    // new epoch's blocks, attested under the new key.
    let new = sigil_crypto::GroupKey::from_compressed(&hex::decode(new_key).unwrap()).unwrap();
    let store = Store::open(&jhome.join("db")).unwrap();
    let mut new_messages = 0u64;
    let mut first = None;
    for h in 1..=store.last_height().unwrap() {
        let Some(cb) = store.block(h).unwrap() else {
            continue;
        };
        first.get_or_insert(h);
        let b = sigil_node::api::proposal_block(&cb).unwrap();
        if b.epoch == 1 {
            assert!(
                b.key_commit.is_some() || b.handover.is_some(),
                "only the hand-over of epoch 1"
            );
            continue;
        }
        let a = cb.attestation.expect("attested");
        let sig = sigil_crypto::OnchainSignature::from_bytes(&a.signature)
            .unwrap()
            .to_frost()
            .unwrap();
        sigil_crypto::signing::verify(
            &new,
            sigil_crypto::batch_digest(2, h, B256::from_slice(&a.root)),
            &sig,
        )
        .unwrap();
        new_messages += u64::from(b.count);
    }
    assert!(
        first.unwrap() > 1,
        "the joiner never held the earlier blocks"
    );
    assert_eq!(
        new_messages, 10,
        "the new committee attested the 10 new messages"
    );
}
