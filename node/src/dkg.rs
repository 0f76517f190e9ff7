//! `sigil dkg`: the committee in the config runs FROST DKG (RFC 9591 companion,
//! `frost-secp256k1` `keys::dkg` part1/2/3 through [`sigil_crypto::dkg::Dkg`]) over libp2p.
//!
//! Every package travels point-to-point over request-response (Noise-encrypted,
//! authenticated streams); the sender's envelope signature is checked and must come from the
//! member's own peer id. Each message is re-sent until the recipient acknowledges it. When a
//! member finishes it sends every other member a signed confirmation of the group key it
//! derived; the DKG succeeds only when all n agree. After `timeout` the error names the
//! members still missing.

use crate::config::Config;
use crate::identity::{Committee, NodeKey};
use crate::keyfiles::KeyShare;
use crate::p2p::{BehaviourEvent, Redial, Wire};
use anyhow::{Result, anyhow, bail};
use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use prost::Message as _;
use sigil_crypto::GroupKey;
use sigil_crypto::dkg::{Dkg, Outgoing};
use sigil_proto as pb;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Outcome of a DKG.
pub struct DkgResult {
    /// This member's share.
    pub share: KeyShare,
    /// The group key all members confirmed.
    pub group_key: GroupKey,
}

struct Outbox {
    to: u16,
    env: pb::Envelope,
    acked: bool,
    inflight: Option<OutboundRequestId>,
    next: Instant,
}

/// Runs the DKG for this node. Errors: timeout naming the missing members, a conflicting or
/// invalid package naming its sender, a group key mismatch naming the member.
pub async fn run(cfg: &Config, key: &NodeKey, timeout: Duration) -> Result<DkgResult> {
    let committee = Committee::from_config(&cfg.committee)?;
    let me = committee
        .index_of(&key.public())
        .ok_or_else(|| anyhow!("this node's key is not in config field `committee.members`"))?;
    let n = committee.len();
    if n < 2 {
        bail!("config field `committee.members`: a DKG needs at least 2 members");
    }
    let (_, t) = sigil_crypto::keys::thresholds(n);
    let t = t.max(2);
    let epoch = cfg.committee.epoch;
    let mut swarm = crate::p2p::build(key, &committee)?;
    swarm.listen_on(cfg.node.listen.parse()?)?;
    let (mut dkg, first) = Dkg::start(me, t, n, &mut rand_core::OsRng)?;
    let mut outbox: Vec<Outbox> = Vec::new();
    let now = Instant::now();
    let seal = |kind: pb::body::Kind| key.seal(me, &pb::Body { kind: Some(kind) });
    if let Outgoing::Broadcast(p) = first {
        let env = seal(pb::body::Kind::DkgRound1(pb::DkgRound1 {
            epoch,
            package: serde_json::to_vec(&p)?,
        }));
        for to in (1..=n).filter(|i| *i != me) {
            outbox.push(Outbox {
                to,
                env: env.clone(),
                acked: false,
                inflight: None,
                next: now,
            });
        }
    }
    let mut output: Option<sigil_crypto::dkg::DkgOutput> = None;
    let mut confirms: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
    let mut redial: HashMap<u16, Redial> = HashMap::new();
    let mut connected: BTreeSet<u16> = BTreeSet::new();
    let deadline = Instant::now() + timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut fatal: Option<anyhow::Error> = None;
    loop {
        if let Some(e) = fatal.take() {
            return Err(e);
        }
        if let Some(out) = &output {
            let mine = out.group_key.compressed().to_vec();
            for (m, k) in &confirms {
                if *k != mine {
                    bail!(
                        "member {m} derived a different group key ({}) than ours ({}); DKG failed",
                        hex::encode(k),
                        hex::encode(&mine)
                    );
                }
            }
            let all_confirmed = confirms.len() == usize::from(n) - 1;
            if all_confirmed && outbox.iter().all(|o| o.acked) {
                let share = KeyShare {
                    epoch,
                    member: me,
                    n,
                    t,
                    key_package: out.key_package.clone(),
                    public_key_package: out.public_key_package.clone(),
                };
                // Linger briefly so peers get our acks.
                let linger = Instant::now() + Duration::from_millis(1500);
                while Instant::now() < linger {
                    tokio::select! {
                        ev = swarm.select_next_some() => {
                            if let SwarmEvent::Behaviour(BehaviourEvent::Rr(request_response::Event::Message { message: request_response::Message::Request { channel, .. }, .. })) = ev {
                                let ack = pb::Response { kind: Some(pb::response::Kind::Ack(pb::Ack { ok: true, error: String::new() })) };
                                let _ = swarm.behaviour_mut().rr.send_response(channel, Wire(ack.encode_to_vec()));
                            }
                        }
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
                return Ok(DkgResult {
                    share,
                    group_key: out.group_key,
                });
            }
        }
        if Instant::now() > deadline {
            let missing: Vec<u16> = if output.is_none() {
                // Round 2 cannot start before round 1 is complete: name round-1 laggards first.
                let r1 = dkg.missing_round1();
                if r1.is_empty() {
                    dkg.missing_round2()
                } else {
                    r1
                }
            } else {
                let mut m: BTreeSet<u16> = (1..=n)
                    .filter(|i| *i != me && !confirms.contains_key(i))
                    .collect();
                m.extend(outbox.iter().filter(|o| !o.acked).map(|o| o.to));
                m.into_iter().collect()
            };
            let names: Vec<String> = missing
                .iter()
                .map(|i| {
                    let m = &cfg.committee.members[usize::from(*i) - 1];
                    format!(
                        "member {i} (key {}, {})",
                        &m.key[..16.min(m.key.len())],
                        m.address
                    )
                })
                .collect();
            bail!(
                "DKG timed out after {timeout:?}; no answer from: {}",
                names.join(", ")
            );
        }
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                for (i, m) in cfg.committee.members.iter().enumerate() {
                    let idx = i as u16 + 1;
                    if idx == me || connected.contains(&idx) { continue; }
                    let r = redial.entry(idx).or_default();
                    if r.next > now { continue; }
                    r.dialed();
                    if let (Some(peer), Ok(addr)) = (committee.peer(idx), m.address.parse::<libp2p::Multiaddr>()) {
                        let _ = swarm.dial(libp2p::swarm::dial_opts::DialOpts::peer_id(peer).addresses(vec![addr]).build());
                    }
                }
                for o in outbox.iter_mut() {
                    if o.acked || o.inflight.is_some() || o.next > now || !connected.contains(&o.to) { continue; }
                    if let Some(peer) = committee.peer(o.to) {
                        let req = pb::Request { kind: Some(pb::request::Kind::Direct(o.env.clone())) };
                        o.inflight = Some(swarm.behaviour_mut().rr.send_request(&peer, Wire(req.encode_to_vec())));
                        o.next = now + Duration::from_millis(500);
                    }
                }
            }
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                    if let Some(i) = committee.index_of_peer(&peer_id) { connected.insert(i); }
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                    if let Some(i) = committee.index_of_peer(&peer_id) { connected.remove(&i); }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Rr(request_response::Event::Message { peer, message, .. })) => match message {
                    request_response::Message::Request { request, channel, .. } => {
                        let result = handle(&committee, &mut dkg, peer, &request.0, epoch);
                        let (ok, error) = match result {
                            Ok(h) => {
                                for o in h.outgoing {
                                    if let Outgoing::Direct { to, package } = o {
                                        let env = seal(pb::body::Kind::DkgRound2(pb::DkgRound2 { epoch, package: serde_json::to_vec(&package)? }));
                                        outbox.push(Outbox { to, env, acked: false, inflight: None, next: Instant::now() });
                                    }
                                }
                                if let Some(out) = h.done
                                    && output.is_none() {
                                        let env = seal(pb::body::Kind::DkgConfirm(pb::DkgConfirm { epoch, group_key: out.group_key.compressed().to_vec() }));
                                        for to in (1..=n).filter(|i| *i != me) {
                                            outbox.push(Outbox { to, env: env.clone(), acked: false, inflight: None, next: Instant::now() });
                                        }
                                        tracing::info!(group_key = %hex::encode(out.group_key.compressed()), "DKG complete; confirming");
                                        output = Some(*out);
                                    }
                                if let Some((from, k)) = h.confirm {
                                    confirms.insert(from, k);
                                }
                                (true, String::new())
                            }
                            Err(HandleError::Retry(e)) => (false, e),
                            Err(HandleError::Fatal(e)) => { fatal = Some(anyhow!(e.clone())); (false, e) }
                        };
                        let ack = pb::Response { kind: Some(pb::response::Kind::Ack(pb::Ack { ok, error })) };
                        let _ = swarm.behaviour_mut().rr.send_response(channel, Wire(ack.encode_to_vec()));
                    }
                    request_response::Message::Response { request_id, response } => {
                        let ok = pb::Response::decode(response.0.as_slice()).ok().and_then(|r| match r.kind {
                            Some(pb::response::Kind::Ack(a)) => Some(a.ok),
                            _ => None,
                        }).unwrap_or(false);
                        for o in outbox.iter_mut() {
                            if o.inflight == Some(request_id) {
                                o.inflight = None;
                                o.acked |= ok;
                            }
                        }
                    }
                },
                SwarmEvent::Behaviour(BehaviourEvent::Rr(request_response::Event::OutboundFailure { request_id, .. })) => {
                    for o in outbox.iter_mut() {
                        if o.inflight == Some(request_id) { o.inflight = None; }
                    }
                }
                _ => {}
            }
        }
    }
}

#[derive(Default)]
struct Handled {
    outgoing: Vec<Outgoing>,
    done: Option<Box<sigil_crypto::dkg::DkgOutput>>,
    confirm: Option<(u16, Vec<u8>)>,
}

enum HandleError {
    /// The sender should retry later (e.g. we are not in that round yet).
    Retry(String),
    /// The DKG cannot succeed (conflicting or invalid package).
    Fatal(String),
}

fn handle(
    committee: &Committee,
    dkg: &mut Dkg,
    peer: libp2p::PeerId,
    data: &[u8],
    epoch: u64,
) -> Result<Handled, HandleError> {
    use sigil_crypto::dkg::DkgError;
    let req =
        pb::Request::decode(data).map_err(|_| HandleError::Retry("malformed request".into()))?;
    let Some(pb::request::Kind::Direct(env)) = req.kind else {
        return Err(HandleError::Retry("not a DKG message".into()));
    };
    let (from, body) = committee
        .open(&env)
        .map_err(|e| HandleError::Retry(e.to_string()))?;
    if committee.peer(from) != Some(peer) {
        return Err(HandleError::Retry(
            "envelope member does not match the connection's peer".into(),
        ));
    }
    let fatal = |e: DkgError| match e {
        DkgError::ConflictingPackage { .. }
        | DkgError::InvalidProofOfKnowledge { .. }
        | DkgError::InvalidSecretShare { .. }
        | DkgError::Key(_) => HandleError::Fatal(format!("member {from}: {e}")),
        other => HandleError::Retry(other.to_string()),
    };
    match body.kind {
        Some(pb::body::Kind::DkgRound1(r)) if r.epoch == epoch => {
            let p = serde_json::from_slice(&r.package).map_err(|e| {
                HandleError::Fatal(format!("member {from}: bad round-1 package: {e}"))
            })?;
            let outgoing = dkg.receive_round1(from, p).map_err(fatal)?;
            // Round-2 packages that arrived early may complete us now; ours still go out.
            let done = dkg.try_finish().map_err(fatal)?.map(Box::new);
            Ok(Handled {
                outgoing,
                done,
                confirm: None,
            })
        }
        Some(pb::body::Kind::DkgRound2(r)) if r.epoch == epoch => {
            let p = serde_json::from_slice(&r.package).map_err(|e| {
                HandleError::Fatal(format!("member {from}: bad round-2 package: {e}"))
            })?;
            let done = dkg.receive_round2(from, p).map_err(fatal)?.map(Box::new);
            Ok(Handled {
                done,
                ..Default::default()
            })
        }
        Some(pb::body::Kind::DkgConfirm(c)) if c.epoch == epoch => Ok(Handled {
            confirm: Some((from, c.group_key)),
            ..Default::default()
        }),
        _ => Err(HandleError::Retry("unexpected message or epoch".into())),
    }
}
