//! `sigil start --join`: a node outside the current committee joins the next one
//! (committee epochs).
//!
//! Its config lists the *current* committee (keys and addresses, `committee.epoch` = the
//! current epoch) and its operator's approval file names the next committee (this node's
//! key among them, as `sigil epoch approve --add` writes it). Before the node runs its
//! engine, this phase, on the node's own listen address:
//! 1. dials the current members (they admit this key once their committee decided the
//!    rotation naming it);
//! 2. runs its part of the next committee's DKG ([`crate::dkg::DkgSession`], packages
//!    re-sent until the members' sessions, started when the rotation is decided, take
//!    them), and writes the share and key commit of the new epoch;
//! 3. offers the key commit to every current member (self-certifying: any outgoing member
//!    can propose it) and asks them, in turn, for the hand-over blocks;
//! 4. checks them ([`sigil_engine::epochs::verify_handover`]: certificates of the current
//!    committee, the key commit against the approved rotation and its own DKG result) and
//!    stores them ([`sigil_engine::epochs::install_handover`]).
//!
//! Then `sigil start` continues as usual: the store is in the new epoch, whose engine
//! starts after the hand-over with the carried gateway nonces.

use crate::config::Config;
use crate::dkg::{DkgSession, Progress};
use crate::identity::{Committee, NodeKey};
use crate::p2p::{BehaviourEvent, Redial, Wire};
use crate::store::Store;
use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use prost::Message as _;
use sigil_proto as pb;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the key commit is offered and the hand-over asked for.
const ASK_EVERY: Duration = Duration::from_secs(1);

/// What an outbound request of the join phase was.
enum Pending {
    Dkg(u64),
    KeyCommit,
    Handover,
    Peers,
}

/// Runs the join phase (see the module docs) until the store holds the hand-over into the
/// approved committee's epoch, or `shutdown` flips. Returns at once when the store is already
/// past the configured epoch.
///
/// Errors: no approval file, an approval that is refused or does not name this node, DKG
/// failures are retried (logged), storage and p2p set-up failures.
pub async fn run(
    cfg: &Config,
    home: &Path,
    key: &NodeKey,
    pass: &[u8],
    store: &mut Store,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let genesis = cfg.committee.epoch;
    if sigil_engine::epochs::resume_epoch(store, genesis)?.epoch > genesis {
        return Ok(());
    }
    let path = home.join(crate::epoch::APPROVAL_FILE);
    let approval = crate::epoch::Approval::read(&path)?.ok_or_else(|| {
        anyhow!(
            "--join needs the approved next committee in {} (`sigil epoch approve`)",
            path.display()
        )
    })?;
    let rotation = approval.to_rotation(&path, genesis, &crate::epoch::inboxes(cfg))?;
    let current = Committee::from_config(&cfg.committee)?;
    let next = crate::node::committee_of(&rotation)?;
    let Some(me_next) = next.index_of(&key.public()) else {
        bail!(
            "{}: the approved next committee does not name this node's key",
            path.display()
        );
    };
    let mut peers: Vec<_> = (1..=current.len())
        .filter_map(|i| current.key(i).copied())
        .collect();
    for i in 1..=next.len() {
        if let Some(k) = next.key(i)
            && !peers.contains(k)
        {
            peers.push(*k);
        }
    }
    let everyone = Committee::new(peers)?;
    let mut swarm = crate::p2p::build(key, &everyone)?;
    crate::p2p::listen(&mut swarm, &cfg.node)?;
    tracing::info!(
        epoch = rotation.epoch,
        members = rotation.members.len(),
        "joining the next committee: DKG, then the hand-over"
    );
    // A key commit from an earlier run is reused when it fits this approval and its share
    // is on disk (as a candidate: the key the committee decides is installed at the end).
    let mut done: Option<pb::KeyCommit> =
        std::fs::read(crate::node::key_commit_path(home, rotation.epoch))
            .ok()
            .and_then(|b| pb::KeyCommit::decode(b.as_slice()).ok())
            .filter(|kc| sigil_engine::app::check_key_commit(kc, &rotation).is_ok())
            .filter(|kc| {
                crate::keyfiles::candidate_share_path(home, rotation.epoch, &kc.group_key).exists()
            });
    let mut session: Option<DkgSession> = None;
    let mut pending: HashMap<OutboundRequestId, Pending> = HashMap::new();
    let mut redial: HashMap<u16, Redial> = HashMap::new();
    let mut next_ask = Instant::now();
    let mut asked = 0usize;
    let mut retry_dkg = Instant::now();
    let mut next_peers = Instant::now();
    let mut asked_peers = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() { bail!("stopped while joining"); }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                for (i, m) in cfg.committee.members.iter().enumerate() {
                    let idx = i as u16 + 1;
                    let Some(peer) = current.peer(idx) else { continue };
                    if swarm.is_connected(&peer) { continue; }
                    let r = redial.entry(idx).or_default();
                    if r.next > now { continue; }
                    r.dialed();
                    if let Ok(addr) = m.address.parse::<libp2p::Multiaddr>() {
                        let _ = swarm.dial(libp2p::swarm::dial_opts::DialOpts::peer_id(peer).addresses(vec![addr]).build());
                    }
                }
                // The other joiners' addresses, from the members they connected to.
                if now >= next_peers {
                    next_peers = now + ASK_EVERY;
                    asked_peers += 1;
                    let i = (asked_peers % usize::from(current.len().max(1))) as u16 + 1;
                    if let Some(peer) = current.peer(i).filter(|p| swarm.is_connected(p)) {
                        let req = pb::Request { kind: Some(pb::request::Kind::Peers(pb::PeersRequest {})) }.encode_to_vec();
                        let id = swarm.behaviour_mut().rr.send_request(&peer, Wire(req));
                        pending.insert(id, Pending::Peers);
                    }
                }
                if done.is_none() && session.is_none() && now >= retry_dkg {
                    session = Some(DkgSession::start(key, next.clone(), rotation.epoch, None)?);
                }
                if let Some(s) = session.as_mut() {
                    let connected: BTreeSet<u16> = (1..=next.len())
                        .filter(|i| next.peer(*i).is_some_and(|p| swarm.is_connected(&p)))
                        .collect();
                    for (to, slot, request) in s.due(now, &connected) {
                        if let Some(peer) = next.peer(to) {
                            let id = swarm.behaviour_mut().rr.send_request(&peer, Wire(request));
                            pending.insert(id, Pending::Dkg(slot));
                        }
                    }
                    match s.progress() {
                        Progress::Running => {}
                        Progress::Derived(result) => {
                            // On disk before our confirmation leaves.
                            crate::keyfiles::write_candidate_share(home, &result.share, &result.group_key, pass)?;
                            s.confirm();
                        }
                        Progress::Failed(e) => {
                            tracing::warn!(error = %e, "the next committee's DKG failed; starting again");
                            session = None;
                            retry_dkg = now + Duration::from_secs(5);
                        }
                        Progress::Done(result, commit) => {
                            std::fs::write(crate::node::key_commit_path(home, rotation.epoch), commit.encode_to_vec())
                                .context("writing the key commit")?;
                            tracing::info!(group_key = %hex::encode(result.group_key.compressed()), "new key ready; asking for the hand-over");
                            done = Some(commit);
                            session = None;
                        }
                    }
                }
                if let Some(commit) = &done && now >= next_ask {
                    next_ask = now + ASK_EVERY;
                    let offer = pb::Request { kind: Some(pb::request::Kind::KeyCommit(commit.clone())) }.encode_to_vec();
                    for i in 1..=current.len() {
                        if let Some(peer) = current.peer(i).filter(|p| swarm.is_connected(p)) {
                            let id = swarm.behaviour_mut().rr.send_request(&peer, Wire(offer.clone()));
                            pending.insert(id, Pending::KeyCommit);
                        }
                    }
                    asked += 1;
                    let i = (asked % usize::from(current.len().max(1))) as u16 + 1;
                    if let Some(peer) = current.peer(i).filter(|p| swarm.is_connected(p)) {
                        let req = sigil_engine::epochs::handover_request(rotation.epoch).encode_to_vec();
                        let id = swarm.behaviour_mut().rr.send_request(&peer, Wire(req));
                        pending.insert(id, Pending::Handover);
                    }
                }
            }
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::Behaviour(BehaviourEvent::Rr(request_response::Event::Message { peer, message, .. })) => match message {
                    request_response::Message::Request { request, channel, .. } => {
                        let ack = match session.as_mut() {
                            Some(s) if next.index_of_peer(&peer).is_some() => s.on_request(peer, &request.0),
                            _ => pb::Response { kind: Some(pb::response::Kind::Ack(pb::Ack { ok: false, error: "joining: no DKG in progress".into() })) },
                        };
                        let _ = swarm.behaviour_mut().rr.send_response(channel, Wire(ack.encode_to_vec()));
                    }
                    request_response::Message::Response { request_id, response } => match pending.remove(&request_id) {
                        Some(Pending::Dkg(slot)) => {
                            if let Some(s) = session.as_mut() { s.on_response(slot, &response.0); }
                        }
                        Some(Pending::Handover) => {
                            if done.is_none() { continue; }
                            let blocks = match sigil_engine::epochs::served_blocks(&response.0) {
                                Ok(b) if !b.is_empty() => b,
                                _ => continue,
                            };
                            // The decided key may come from any of our DKG runs: checked
                            // against the one whose share we hold for the key it names.
                            let Some(named) = first_key_commit(&blocks) else { continue };
                            if !crate::keyfiles::candidate_share_path(home, rotation.epoch, &named).exists() {
                                tracing::warn!("hand-over names a key this node holds no share of");
                                continue;
                            }
                            match sigil_engine::epochs::verify_handover(&blocks, current.engine(), &rotation, &named) {
                                Ok(h) => {
                                    if crate::keyfiles::install_candidate_share(home, pass, rotation.epoch, &named)?.is_none() {
                                        bail!("the share of the decided key could not be installed");
                                    }
                                    sigil_engine::epochs::install_handover(store, &h)?;
                                    tracing::info!(epoch = rotation.epoch, after_height = h.end(), "hand-over checked and stored; starting as a member");
                                    return Ok(());
                                }
                                Err(e) => tracing::warn!(error = %e, "hand-over refused"),
                            }
                        }
                        Some(Pending::Peers) => {
                            let Ok(pb::Response { kind: Some(pb::response::Kind::Peers(list)) }) = pb::Response::decode(response.0.as_slice()) else { continue };
                            for p in list.peers.iter().take(64) {
                                let Ok(id) = libp2p::PeerId::from_bytes(&p.peer_id) else { continue };
                                // Only the next committee's other joiners, never ourselves.
                                if next.index_of_peer(&id).is_none() || current.index_of_peer(&id).is_some() || swarm.is_connected(&id) || Some(id) == next.peer(me_next) {
                                    continue;
                                }
                                let addrs: Vec<libp2p::Multiaddr> = p.addresses.iter().take(8).filter_map(|a| a.parse().ok()).collect();
                                if !addrs.is_empty() {
                                    let _ = swarm.dial(libp2p::swarm::dial_opts::DialOpts::peer_id(id).addresses(addrs).build());
                                }
                            }
                        }
                        Some(Pending::KeyCommit) | None => {}
                    },
                },
                SwarmEvent::Behaviour(BehaviourEvent::Rr(request_response::Event::OutboundFailure { request_id, .. })) => {
                    if let Some(Pending::Dkg(slot)) = pending.remove(&request_id)
                        && let Some(s) = session.as_mut()
                    {
                        s.on_failure(slot);
                    }
                }
                _ => {}
            }
        }
    }
}

/// The group key the first served block's key commit names (unchecked: only to pick which
/// of this node's candidate shares to check the hand-over against).
fn first_key_commit(blocks: &[pb::CommittedBlock]) -> Option<Vec<u8>> {
    let env = blocks.first()?.proposal.as_ref()?;
    match pb::Body::decode(env.body.as_slice()).ok()?.kind? {
        pb::body::Kind::Proposal(p) => Some(p.block?.key_commit?.group_key),
        _ => None,
    }
}
