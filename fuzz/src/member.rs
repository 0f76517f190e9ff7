//! The `member` target: everything a faulty member 2 can send honest member 1 of a 4-member
//! committee, fed to member 1's real [`Driver`] (the code the node and the simulator run).
//!
//! An input is a sequence of frames `[channel u8][len u16 LE][len bytes]` (a short last
//! frame takes what is left). Channel (mod 5):
//! - 0: raw gossip bytes (any envelope: forged, or an honest member's that member 2 relays);
//! - 1: body bytes under member 2's valid envelope signature;
//! - 2: a point-to-point request from member 2 (`pb::Request` bytes);
//! - 3: a response from member 2 (`pb::Response` bytes: sync responses, hand-over blocks);
//! - 4: time passes (the first two bytes, little-endian, in ms), then a tick.
//!
//! The oracle: member 1 decides, attests and signs only what the honest committee (members
//! 2–4 running honestly, recorded once in [`Fixture`]) decided. Member 2 can relay honest
//! members' certificates, so member 1 may legitimately catch up; it must never decide a
//! different block at a height, attest another root, or publish a signature share for a
//! height it has not decided.

use alloy_primitives::{Address, B256, Bytes};
use k256::ecdsa::SigningKey;
use prost::Message as _;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sigil_crypto::{MemoryLedger, Message, NoncePool};
use sigil_engine::app::{App, AppParams, Block, Signer};
use sigil_engine::{
    ChainEvent, Committee, Cursor, Driver, DriverConfig, Effect, Input, MemStorage, Member,
    Observation,
};
use sigil_proto as pb;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::OnceLock;

/// Source chain id of the fixture's gateway.
const CHAIN: u64 = 1;
/// Messages the gateway emitted (observed by every member at start).
const MESSAGES: u64 = 12;
/// Engine clock at start (ms).
const START_MS: u64 = 1_000;
/// How long the honest committee runs when the fixture is recorded (ms of engine time).
const RECORD_MS: u64 = 12_000;

/// The committee's keys and what the honest committee did with them.
pub struct Fixture {
    dealt: sigil_crypto::keys::DealtKeys,
    node_keys: Vec<SigningKey>,
    committee: Committee,
    /// The block the honest members decided at each height.
    pub honest: BTreeMap<u64, Block>,
    /// Frames member 2 sent member 1 while the committee ran (channels 0–4).
    pub recorded: Vec<(u8, Vec<u8>)>,
}

/// The fixture, built once per process.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(record)
}

fn observation(nonce: u64) -> Observation {
    Observation {
        message: Message {
            source_chain_id: CHAIN,
            source_gateway: Address::repeat_byte(0x5a),
            nonce,
            sender: Address::repeat_byte(1),
            dest_chain_id: 2,
            dest_inbox: Address::repeat_byte(0x5b),
            recipient: Address::repeat_byte(3),
            gas_limit: 200_000,
            payload: Bytes::from(nonce.to_be_bytes().to_vec()),
        },
        block_number: nonce + 1,
        block_hash: B256::repeat_byte(1),
        observed_at_ms: 0,
        block_time: 0,
    }
}

fn chain_event() -> ChainEvent {
    ChainEvent {
        chain_id: CHAIN,
        observations: (0..MESSAGES).map(observation).collect(),
        cursor: Cursor {
            block_number: MESSAGES,
            block_hash: B256::repeat_byte(1),
            next_nonce: MESSAGES,
        },
        head: MESSAGES + 2,
        finalized: MESSAGES,
    }
}

fn keys() -> (sigil_crypto::keys::DealtKeys, Vec<SigningKey>, Committee) {
    let mut rng = ChaCha20Rng::seed_from_u64(0x5161);
    let dealt = sigil_crypto::keys::trusted_dealer(3, 4, &mut rng).expect("dealer");
    let node_keys: Vec<SigningKey> = (1u8..=4)
        .map(|i| SigningKey::from_slice(&[i; 32]).expect("key"))
        .collect();
    let committee = Committee::new(node_keys.iter().map(|k| *k.verifying_key()).collect());
    (dealt, node_keys, committee)
}

fn driver(
    dealt: &sigil_crypto::keys::DealtKeys,
    node_keys: &[SigningKey],
    committee: &Committee,
    me: Member,
) -> (Driver<MemStorage>, Vec<Effect>) {
    let params = AppParams {
        me: Some(me),
        n: 4,
        t: 3,
        epoch: 1,
        chains: vec![(CHAIN, Address::repeat_byte(0x5a))],
        max_messages: 5,
        max_bytes: 1 << 20,
        nonce_pool: 8,
        share_timeout_ms: 1_000,
        rotation_expiry_heights: sigil_engine::app::DEFAULT_ROTATION_EXPIRY_HEIGHTS,
    };
    let signer = Signer {
        key: dealt.key_packages[&me].clone(),
        public: dealt.public_key_package.clone(),
        pool: NoncePool::new(),
        ledger: Box::new(MemoryLedger::new()),
    };
    let app = App::new(
        params,
        Some(signer),
        Some(dealt.group_key),
        BTreeMap::from([(CHAIN, 0)]),
        Box::new(ChaCha20Rng::seed_from_u64(u64::from(me))),
    );
    let mut cfg = DriverConfig::new(me);
    cfg.consensus.propose_ms = 600;
    cfg.consensus.prevote_ms = 300;
    cfg.consensus.precommit_ms = 300;
    cfg.consensus.delta_ms = 200;
    cfg.observation_wait_ms = 200;
    cfg.heartbeat_ms = 500;
    cfg.gossip_ms = 300;
    cfg.rebroadcast_ms = 700;
    cfg.sync_timeout_ms = 1_500;
    cfg.stall_ms = 1_000;
    let key = node_keys[usize::from(me) - 1].clone();
    let (mut d, mut effects) = Driver::new(
        cfg,
        committee.clone(),
        key,
        app,
        MemStorage::new(),
        START_MS,
    )
    .expect("driver");
    effects.extend(d.handle(Input::Chain(chain_event()), START_MS));
    (d, effects)
}

/// Whether member `a` hears member `b` directly: member 1 is connected to member 2 only.
fn linked(a: Member, b: Member) -> bool {
    a != b && (a != 1 || b == 2) && (b != 1 || a == 2)
}

/// Runs the honest committee for [`RECORD_MS`] and records what member 2 sends member 1
/// (its own gossip, the others' gossip it relays, its requests and its answers).
fn record() -> Fixture {
    let (dealt, node_keys, committee) = keys();
    let mut ds: BTreeMap<Member, Driver<MemStorage>> = BTreeMap::new();
    let mut queue: VecDeque<(Member, Member, Input)> = VecDeque::new();
    let mut honest: BTreeMap<u64, Block> = BTreeMap::new();
    let mut recorded: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut requests: BTreeMap<u64, Member> = BTreeMap::new();
    let mut next_id = 0u64;
    let mut now = START_MS;
    let mut last_recorded = START_MS;
    let mut pending: Vec<(Member, Vec<Effect>)> = Vec::new();
    for m in 1..=4 {
        let (d, e) = driver(&dealt, &node_keys, &committee, m);
        ds.insert(m, d);
        pending.push((m, e));
    }
    for a in 1..=4u16 {
        for b in 1..=4u16 {
            if linked(a, b) {
                queue.push_back((a, b, Input::PeerUp(b)));
            }
        }
    }
    let mut record_frame = |recorded: &mut Vec<(u8, Vec<u8>)>, now: u64, ch: u8, data: Vec<u8>| {
        if now > last_recorded {
            let dt = u16::try_from(now - last_recorded).unwrap_or(u16::MAX);
            recorded.push((4, dt.to_le_bytes().to_vec()));
            last_recorded = now;
        }
        recorded.push((ch, data));
    };
    while now < START_MS + RECORD_MS {
        for (m, effects) in std::mem::take(&mut pending) {
            for e in effects {
                match e {
                    Effect::Publish { envelope, .. } => {
                        let bytes = envelope.encode_to_vec();
                        for to in 1..=4 {
                            if linked(m, to) {
                                next_id += 1;
                                queue.push_back((
                                    to,
                                    m,
                                    Input::Gossip {
                                        id: next_id,
                                        data: bytes.clone(),
                                    },
                                ));
                            }
                        }
                        if m == 2 {
                            record_frame(&mut recorded, now, 1, envelope.body.clone());
                        } else if m != 1 {
                            // Member 2 relays the honest members' gossip to member 1.
                            next_id += 1;
                            queue.push_back((
                                1,
                                m,
                                Input::Gossip {
                                    id: next_id,
                                    data: bytes.clone(),
                                },
                            ));
                            record_frame(&mut recorded, now, 0, bytes);
                        }
                    }
                    Effect::Send { to, request } => {
                        next_id += 1;
                        if !linked(m, to) {
                            queue.push_back((m, to, Input::RequestFailed));
                            continue;
                        }
                        requests.insert(next_id, m);
                        let data = request.encode_to_vec();
                        if m == 2 && to == 1 {
                            record_frame(&mut recorded, now, 2, data.clone());
                        }
                        queue.push_back((
                            to,
                            m,
                            Input::Request {
                                id: next_id,
                                from: m,
                                data,
                            },
                        ));
                    }
                    Effect::Respond { id, response } => {
                        let Some(to) = requests.remove(&id) else {
                            continue;
                        };
                        let data = response.encode_to_vec();
                        if m == 2 && to == 1 {
                            record_frame(&mut recorded, now, 3, data.clone());
                        }
                        queue.push_back((to, m, Input::Response { from: m, data }));
                    }
                    Effect::Decided { height, block, .. } if m != 1 => {
                        if let Some(prev) = honest.insert(height, block.clone()) {
                            assert_eq!(prev, block, "honest members disagree at {height}");
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some((to, _from, input)) = queue.pop_front() {
            if let Some(d) = ds.get_mut(&to) {
                let e = d.handle(input, now);
                pending.push((to, e));
            }
            continue;
        }
        now += 50;
        for (m, d) in ds.iter_mut() {
            pending.push((*m, d.handle(Input::Tick, now)));
        }
    }
    Fixture {
        dealt,
        node_keys,
        committee,
        honest,
        recorded,
    }
}

/// Splits fuzz bytes into frames (see the module docs).
pub fn frames(data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&ch, r)) = rest.split_first() {
        let (len, r) = match r {
            [a, b, r @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), r),
            _ => (r.len(), &r[r.len()..]),
        };
        let len = len.min(r.len());
        out.push((ch % 5, &r[..len]));
        rest = &r[len..];
    }
    out
}

/// Encodes frames (the inverse of [`frames`] for frames shorter than 64 KiB).
pub fn encode(frames: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ch, d) in frames {
        let len = u16::try_from(d.len()).unwrap_or(u16::MAX);
        out.push(*ch);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&d[..usize::from(len)]);
    }
    out
}

/// Checks member 1's effects against the honest committee; panics on a violation.
fn check(f: &Fixture, effects: &[Effect], decided: &mut BTreeSet<u64>) {
    for e in effects {
        match e {
            Effect::Decided { height, block, .. } => {
                assert_eq!(
                    f.honest.get(height),
                    Some(block),
                    "member 1 decided a block at height {height} the honest committee did not"
                );
                decided.insert(*height);
            }
            Effect::Attested { attestation, .. } => {
                let h = attestation.height;
                let honest = f.honest.get(&h).map(|b| b.0.root.clone());
                assert_eq!(
                    honest,
                    Some(attestation.root.clone()),
                    "member 1 attested a root at height {h} the honest committee did not decide"
                );
            }
            Effect::Publish { envelope, .. } => {
                if let Ok(pb::Body {
                    kind: Some(pb::body::Kind::Share(s)),
                }) = pb::Body::decode(envelope.body.as_slice())
                {
                    assert!(
                        decided.contains(&s.height),
                        "member 1 published a signature share for height {}, which it has not decided",
                        s.height
                    );
                }
            }
            _ => {}
        }
    }
}

/// Runs one input (see the module docs).
pub fn run(data: &[u8]) {
    drive(data);
}

/// Runs one input; returns the heights member 1 decided (all checked against the honest
/// committee's).
pub fn drive(data: &[u8]) -> BTreeSet<u64> {
    let f = fixture();
    let (mut d, effects) = driver(&f.dealt, &f.node_keys, &f.committee, 1);
    let mut decided = BTreeSet::new();
    check(f, &effects, &mut decided);
    let mut now = START_MS;
    let effects = d.handle(Input::PeerUp(2), now);
    check(f, &effects, &mut decided);
    let key2 = &f.node_keys[1];
    for (id, (ch, bytes)) in frames(data).into_iter().enumerate() {
        now += 1;
        let id = id as u64;
        let input = match ch {
            0 => Input::Gossip {
                id,
                data: bytes.to_vec(),
            },
            1 => Input::Gossip {
                id,
                data: sigil_engine::envelope::seal_bytes(key2, 2, bytes.to_vec()).encode_to_vec(),
            },
            2 => Input::Request {
                id,
                from: 2,
                data: bytes.to_vec(),
            },
            3 => Input::Response {
                from: 2,
                data: bytes.to_vec(),
            },
            _ => {
                let dt = match bytes {
                    [a, b, ..] => u64::from(u16::from_le_bytes([*a, *b])),
                    [a] => u64::from(*a),
                    [] => 50,
                };
                now += dt;
                Input::Tick
            }
        };
        let effects = d.handle(input, now);
        check(f, &effects, &mut decided);
    }
    decided
}

/// Seeds: the recorded traffic whole (capped at 64 KiB), and in windows of 24 frames.
pub fn seeds() -> Vec<Vec<u8>> {
    let f = fixture();
    let mut out = vec![encode(&f.recorded)];
    out[0].truncate(64 * 1024);
    for w in f.recorded.chunks(24) {
        out.push(encode(w));
    }
    out
}
