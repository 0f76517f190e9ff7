//! `sigil dkg`: the committee in the config runs FROST DKG (RFC 9591 companion,
//! `frost-secp256k1` `keys::dkg` part1/2/3 through [`sigil_crypto::dkg::Dkg`]) over libp2p.
//!
//! Every package travels point-to-point over request-response (Noise-encrypted,
//! authenticated streams); the sender's envelope signature is checked and must come from the
//! member's own peer id. Each message is re-sent until the recipient acknowledges it.
//!
//! Round 1 is meant to be a broadcast, but point-to-point delivery lets a Byzantine member
//! send different commitment vectors to different members. So when a member finishes it
//! sends every other member a signed [`pb::DkgConfirm`] with the group key it derived, a
//! hash of every member's round-1 package as it holds it, a digest over those hashes and a
//! digest over all verifying shares (an echo of the transcript,
//! [`sigil_crypto::dkg::Transcript`]). The DKG succeeds only when all n confirmations agree
//! on all three ([`sigil_crypto::dkg::check_confirmations`]); otherwise it fails naming the
//! member whose round-1 package differs between members, or whose result differs. After
//! `timeout` the error names the members still missing.
//!
//! The threshold is [`sigil_crypto::keys::thresholds`]`(n)`, the same one the node signs and
//! votes with; [`Config::validate`] guarantees n >= 4.

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
use sigil_crypto::dkg::{Confirmation, Dkg, DkgOutput, Outgoing};
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

/// Runs the DKG for this node (`cfg` validated, so n >= 4).
///
/// Errors: timeout naming the missing members; a conflicting or invalid package or a
/// malformed confirmation naming its sender; confirmations that disagree, naming the member
/// whose round-1 package differs between members (equivocation) or whose group key or
/// verifying shares differ; a FROST parameter error for a committee too small for
/// [`sigil_crypto::keys::thresholds`].
pub async fn run(cfg: &Config, key: &NodeKey, timeout: Duration) -> Result<DkgResult> {
    run_with(cfg, key, timeout, None).await
}

/// Proactively refreshes this member's key share with the whole committee in `cfg` (every
/// member takes part): the same rounds and confirmations as [`run`], through
/// [`Dkg::start_refresh`], from `share` (this epoch's). The result holds new shares of the
/// *same* group key (checked), so no inbox changes; once every member has replaced its old
/// share, a share that leaked before is useless.
///
/// Errors: as [`run`]; `share` is not this member's or not this committee's.
pub async fn refresh(
    cfg: &Config,
    key: &NodeKey,
    share: &KeyShare,
    timeout: Duration,
) -> Result<DkgResult> {
    run_with(cfg, key, timeout, Some(share)).await
}

async fn run_with(
    cfg: &Config,
    key: &NodeKey,
    timeout: Duration,
    refresh: Option<&KeyShare>,
) -> Result<DkgResult> {
    let committee = Committee::from_config(&cfg.committee)?;
    let me = committee
        .index_of(&key.public())
        .ok_or_else(|| anyhow!("this node's key is not in config field `committee.members`"))?;
    let n = committee.len();
    let (_, t) = sigil_crypto::keys::thresholds(n);
    let epoch = cfg.committee.epoch;
    let mut swarm = crate::p2p::build(key, &committee)?;
    swarm.listen_on(cfg.node.listen.parse()?)?;
    let (mut dkg, first) = match refresh {
        None => Dkg::start(me, t, n, &mut rand_core::OsRng)?,
        Some(share) => {
            if share.member != me || share.n != n || share.t != t || share.epoch != epoch {
                bail!(
                    "the stored key share is member {} of {} (t = {}, epoch {}), config says member {me} of {n} (t = {t}, epoch {epoch})",
                    share.member,
                    share.n,
                    share.t,
                    share.epoch
                );
            }
            Dkg::start_refresh(
                me,
                share.key_package.clone(),
                share.public_key_package.clone(),
                &mut rand_core::OsRng,
            )?
        }
    };
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
    let mut output: Option<DkgOutput> = None;
    // Every member's confirmation, ours included once we have it.
    let mut confirms: BTreeMap<u16, Confirmation> = BTreeMap::new();
    let mut recheck = false;
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
            if std::mem::take(&mut recheck) {
                check(n, me, &confirms)?;
            }
            let all_confirmed = confirms.len() == usize::from(n);
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
                                        let mine = confirmation(&out);
                                        let env = seal(pb::body::Kind::DkgConfirm(confirm_to_pb(epoch, &mine)));
                                        for to in (1..=n).filter(|i| *i != me) {
                                            outbox.push(Outbox { to, env: env.clone(), acked: false, inflight: None, next: Instant::now() });
                                        }
                                        tracing::info!(group_key = %hex::encode(out.group_key.compressed()), "DKG complete; confirming");
                                        confirms.insert(me, mine);
                                        recheck = true;
                                        output = Some(*out);
                                    }
                                match h.confirm {
                                    Some((from, c)) if confirms.get(&from).is_some_and(|prev| *prev != c) => {
                                        let e = format!("member {from} sent two different DKG confirmations");
                                        fatal = Some(anyhow!(e.clone()));
                                        (false, e)
                                    }
                                    Some((from, c)) => {
                                        confirms.insert(from, c);
                                        recheck = true;
                                        (true, String::new())
                                    }
                                    None => (true, String::new()),
                                }
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

/// This member's confirmation of its DKG output.
fn confirmation(out: &DkgOutput) -> Confirmation {
    Confirmation {
        group_key: out.group_key.compressed().to_vec(),
        transcript: out.transcript.clone(),
    }
}

/// Whether two confirmations report the same result (group key and both digests).
fn same_result(a: &Confirmation, b: &Confirmation) -> bool {
    a.group_key == b.group_key
        && a.transcript.round1_digest == b.transcript.round1_digest
        && a.transcript.verifying_shares_digest == b.transcript.verifying_shares_digest
}

/// Fails when the confirmations so far (ours, `me`, among them) disagree, naming the culprit
/// ([`sigil_crypto::dkg::check_confirmations`]). The full comparison, O(n²) hashes, runs only
/// on a disagreement or once all n are in; otherwise each arrival is one comparison.
///
/// Errors: the [`sigil_crypto::dkg::ConfirmationError`], as "DKG failed: ...".
fn check(n: u16, me: u16, confirms: &BTreeMap<u16, Confirmation>) -> Result<()> {
    let Some(ours) = confirms.get(&me) else {
        return Ok(());
    };
    let disagree = confirms.values().any(|c| !same_result(c, ours));
    if disagree || confirms.len() == usize::from(n) {
        sigil_crypto::dkg::check_confirmations(n, me, confirms)
            .map_err(|e| anyhow!("DKG failed: {e}"))?;
    }
    if disagree {
        // check_confirmations finds every disagreement with `me`; this is a backstop.
        bail!("DKG failed: members' confirmations disagree");
    }
    Ok(())
}

/// The wire form of a confirmation (see `DkgConfirm` in `sigil.proto`).
fn confirm_to_pb(epoch: u64, c: &Confirmation) -> pb::DkgConfirm {
    pb::DkgConfirm {
        epoch,
        group_key: c.group_key.clone(),
        round1_digest: c.transcript.round1_digest.to_vec(),
        verifying_shares_digest: c.transcript.verifying_shares_digest.to_vec(),
        round1_packages: c.transcript.round1.iter().map(|h| h.to_vec()).collect(),
    }
}

#[derive(Default)]
struct Handled {
    outgoing: Vec<Outgoing>,
    done: Option<Box<DkgOutput>>,
    confirm: Option<(u16, Confirmation)>,
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
        Some(pb::body::Kind::DkgConfirm(c)) if c.epoch == epoch => {
            if from == dkg.me() {
                return Err(HandleError::Retry("confirmation from ourselves".into()));
            }
            let c = sigil_engine::app::confirmation_from_wire(c, committee.len()).map_err(|e| {
                HandleError::Fatal(format!("member {from}: malformed DKG confirmation: {e}"))
            })?;
            Ok(Handled {
                confirm: Some((from, c)),
                ..Default::default()
            })
        }
        _ => Err(HandleError::Retry("unexpected message or epoch".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn honest(seed: u64) -> BTreeMap<u16, Confirmation> {
        let out =
            sigil_crypto::dkg::run_local(3, 4, &mut ChaCha20Rng::seed_from_u64(seed)).unwrap();
        out.iter().map(|(i, o)| (*i, confirmation(o))).collect()
    }

    #[test]
    fn dkg_confirmation_round_trips_and_malformed_fields_are_named() {
        let c = honest(1).remove(&2).unwrap();
        let wire = confirm_to_pb(7, &c);
        assert_eq!(wire.epoch, 7);
        assert_eq!(wire.round1_packages.len(), 4);
        // Through the protobuf encoding, as peers see it.
        let decoded = pb::DkgConfirm::decode(wire.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            sigil_engine::app::confirmation_from_wire(decoded, 4).unwrap(),
            c
        );
        let bad = |f: &dyn Fn(&mut pb::DkgConfirm)| {
            let mut w = wire.clone();
            f(&mut w);
            sigil_engine::app::confirmation_from_wire(w, 4).unwrap_err()
        };
        assert!(
            bad(&|w| {
                w.group_key.pop();
            })
            .contains("group_key")
        );
        assert!(bad(&|w| w.round1_digest.clear()).contains("round1_digest"));
        assert!(bad(&|w| w.verifying_shares_digest.push(0)).contains("verifying_shares_digest"));
        assert!(bad(&|w| w.round1_packages[3].clear()).contains("round1_packages"));
        // A confirmation written before the echo fields existed (group key only).
        assert!(bad(&|w| w.round1_packages.clear()).contains("0 round-1 package hashes"));
    }

    #[test]
    fn dkg_check_accepts_agreement_and_names_an_equivocator() {
        let all = honest(2);
        check(4, 1, &all).unwrap();
        let partial: BTreeMap<_, _> = all.clone().into_iter().take(3).collect();
        check(4, 1, &partial).unwrap();
        // Before our own output, nothing to compare with.
        let without_us: BTreeMap<_, _> = all.clone().into_iter().skip(1).collect();
        check(4, 1, &without_us).unwrap();

        // Member 3 holds a different round-1 package from member 4 than members 1 and 2.
        let mut forked = all.clone();
        let t = &mut forked.get_mut(&3).unwrap().transcript;
        t.round1[3] = [0xee; 32];
        t.round1_digest = sigil_crypto::dkg::round1_digest(&t.round1);
        let err = check(4, 1, &forked).unwrap_err().to_string();
        assert_eq!(
            err,
            "DKG failed: member 4 sent different round-1 packages to members 1 and 3 (equivocation)"
        );
        // Seen as soon as member 3's confirmation arrives, without waiting for all n.
        let early: BTreeMap<_, _> = [(1, forked[&1].clone()), (3, forked[&3].clone())].into();
        assert!(check(4, 1, &early).is_err());

        // Same transcript, different group key: the member is named.
        let mut key = all.clone();
        key.get_mut(&2).unwrap().group_key[5] ^= 1;
        let err = check(4, 1, &key).unwrap_err().to_string();
        assert!(
            err.contains("member 2 derived a different group key"),
            "{err}"
        );
    }
}
