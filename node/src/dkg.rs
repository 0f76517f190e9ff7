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
    /// The slot of the request in flight.
    inflight: Option<u64>,
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
    let epoch = cfg.committee.epoch;
    let mut session = DkgSession::start(key, committee.clone(), epoch, refresh)?;
    let me = session.me();
    let mut swarm = crate::p2p::build(key, &committee)?;
    crate::p2p::listen(&mut swarm, &cfg.node)?;
    let mut slots: HashMap<OutboundRequestId, u64> = HashMap::new();
    let mut redial: HashMap<u16, Redial> = HashMap::new();
    let mut connected: BTreeSet<u16> = BTreeSet::new();
    let deadline = Instant::now() + timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        match session.progress() {
            Progress::Running => {}
            // `sigil dkg` writes the share once every member confirmed (the nodes are
            // stopped; a failed run is run again).
            Progress::Derived(_) => session.confirm(),
            Progress::Failed(e) => return Err(e),
            Progress::Done(result, _) => {
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
                return Ok(*result);
            }
        }
        if Instant::now() > deadline {
            let names: Vec<String> = session
                .missing()
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
                for (to, slot, request) in session.due(now, &connected) {
                    if let Some(peer) = committee.peer(to) {
                        let id = swarm.behaviour_mut().rr.send_request(&peer, Wire(request));
                        slots.insert(id, slot);
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
                        let ack = session.on_request(peer, &request.0);
                        let _ = swarm.behaviour_mut().rr.send_response(channel, Wire(ack.encode_to_vec()));
                    }
                    request_response::Message::Response { request_id, response } => {
                        if let Some(slot) = slots.remove(&request_id) {
                            session.on_response(slot, &response.0);
                        }
                    }
                },
                SwarmEvent::Behaviour(BehaviourEvent::Rr(request_response::Event::OutboundFailure { request_id, .. })) => {
                    if let Some(slot) = slots.remove(&request_id) {
                        session.on_failure(slot);
                    }
                }
                _ => {}
            }
        }
    }
}

/// How a [`DkgSession`] stands.
pub enum Progress {
    /// Packages or confirmations still to come or to be acknowledged.
    Running,
    /// This member derived its share (returned once): the caller stores it durably, then
    /// calls [`DkgSession::confirm`]. Until then this member's confirmation does not leave,
    /// so a key the others can decide always has this member's share on disk.
    Derived(Box<DkgResult>),
    /// Every member confirmed the same result and acknowledged ours: this member's share,
    /// and the key commit (every member's signed confirmation, in member order) that the
    /// outgoing committee decides for a rotation ([`sigil_engine::app::check_key_commit`]).
    Done(Box<DkgResult>, pb::KeyCommit),
    /// The DKG cannot succeed; the error names the member at fault.
    Failed(anyhow::Error),
}

/// One member's DKG (or share refresh) as a state machine without I/O: the caller moves
/// request bytes between it and the network (`sigil dkg` with its own swarm, or the running
/// node over its swarm for the next committee's key). Packages are sent point to point as
/// signed `Direct` envelopes and re-sent every 500 ms until acknowledged; confirmations echo
/// the transcript (see the module docs).
pub struct DkgSession {
    committee: Committee,
    key: NodeKey,
    epoch: u64,
    me: u16,
    n: u16,
    t: u16,
    dkg: Dkg,
    outbox: Vec<Outbox>,
    output: Option<DkgOutput>,
    /// Every member's confirmation, ours included once we have it.
    confirms: BTreeMap<u16, Confirmation>,
    /// The signed confirmation envelopes, ours included (the key commit's proof).
    confirm_envs: BTreeMap<u16, pb::Envelope>,
    recheck: bool,
    fatal: Option<String>,
    next_slot: u64,
    done: bool,
    /// The derived share was reported ([`Progress::Derived`]).
    derived_reported: bool,
    /// Our confirmation went out ([`DkgSession::confirm`]).
    confirmed: bool,
}

impl DkgSession {
    /// Starts this node's part of a DKG among `committee` (node keys in member order) for
    /// key `epoch`, or with `refresh` a refresh of that share (same group key).
    ///
    /// Errors: this node's key is not in `committee`; `refresh` is not this member's share of
    /// this committee and epoch; a FROST parameter error (fewer than 4 members).
    pub fn start(
        key: &NodeKey,
        committee: Committee,
        epoch: u64,
        refresh: Option<&KeyShare>,
    ) -> Result<Self> {
        let me = committee
            .index_of(&key.public())
            .ok_or_else(|| anyhow!("this node's key is not in the DKG's committee"))?;
        let n = committee.len();
        let (_, t) = sigil_crypto::keys::thresholds(n);
        let (dkg, first) = match refresh {
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
        let mut s = Self {
            committee,
            key: key.clone(),
            epoch,
            me,
            n,
            t,
            dkg,
            outbox: Vec::new(),
            output: None,
            confirms: BTreeMap::new(),
            confirm_envs: BTreeMap::new(),
            recheck: false,
            fatal: None,
            next_slot: 0,
            done: false,
            derived_reported: false,
            confirmed: false,
        };
        if let Outgoing::Broadcast(p) = first {
            let env = s.seal(pb::body::Kind::DkgRound1(pb::DkgRound1 {
                epoch,
                package: serde_json::to_vec(&p)?,
            }));
            s.send_all(env);
        }
        Ok(s)
    }

    /// This member's index in the DKG's committee.
    pub fn me(&self) -> u16 {
        self.me
    }

    /// The key epoch this DKG is for.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    fn seal(&self, kind: pb::body::Kind) -> pb::Envelope {
        self.key.seal(self.me, &pb::Body { kind: Some(kind) })
    }

    fn send_all(&mut self, env: pb::Envelope) {
        for to in (1..=self.n).filter(|i| *i != self.me) {
            self.outbox.push(Outbox {
                to,
                env: env.clone(),
                acked: false,
                inflight: None,
                next: Instant::now(),
            });
        }
    }

    /// A request from `peer` (a `Direct` envelope of this DKG): applied, and answered with
    /// the returned Ack (not ok: the sender retries later, or the DKG failed).
    pub fn on_request(&mut self, peer: libp2p::PeerId, data: &[u8]) -> pb::Response {
        let (ok, error) = match handle(&self.committee, &mut self.dkg, peer, data, self.epoch) {
            Ok(h) => {
                for o in h.outgoing {
                    if let Outgoing::Direct { to, package } = o {
                        match serde_json::to_vec(&package) {
                            Ok(package) => {
                                let env = self.seal(pb::body::Kind::DkgRound2(pb::DkgRound2 {
                                    epoch: self.epoch,
                                    package,
                                }));
                                self.outbox.push(Outbox {
                                    to,
                                    env,
                                    acked: false,
                                    inflight: None,
                                    next: Instant::now(),
                                });
                            }
                            Err(e) => self.fatal = Some(format!("encoding a package: {e}")),
                        }
                    }
                }
                if let Some(out) = h.done
                    && self.output.is_none()
                {
                    // Our confirmation waits until the caller stored the share (`confirm`).
                    tracing::info!(epoch = self.epoch, group_key = %hex::encode(out.group_key.compressed()), "DKG derived a share");
                    self.output = Some(*out);
                }
                match h.confirm {
                    Some((from, c, _))
                        if self.confirms.get(&from).is_some_and(|prev| *prev != c) =>
                    {
                        let e = format!("member {from} sent two different DKG confirmations");
                        self.fatal = Some(e.clone());
                        (false, e)
                    }
                    Some((from, c, env)) => {
                        self.confirms.insert(from, c);
                        self.confirm_envs.entry(from).or_insert(env);
                        self.recheck = true;
                        (true, String::new())
                    }
                    None => (true, String::new()),
                }
            }
            Err(HandleError::Retry(e)) => (false, e),
            Err(HandleError::Fatal(e)) => {
                self.fatal = Some(e.clone());
                (false, e)
            }
        };
        pb::Response {
            kind: Some(pb::response::Kind::Ack(pb::Ack { ok, error })),
        }
    }

    /// Requests due now to members in `connected`: (member, slot, request bytes). Report
    /// each outcome with [`Self::on_response`] or [`Self::on_failure`] and its slot.
    pub fn due(&mut self, now: Instant, connected: &BTreeSet<u16>) -> Vec<(u16, u64, Vec<u8>)> {
        let mut out = Vec::new();
        for o in self.outbox.iter_mut() {
            if o.acked || o.inflight.is_some() || o.next > now || !connected.contains(&o.to) {
                continue;
            }
            self.next_slot += 1;
            o.inflight = Some(self.next_slot);
            o.next = now + Duration::from_millis(500);
            let req = pb::Request {
                kind: Some(pb::request::Kind::Direct(o.env.clone())),
            };
            out.push((o.to, self.next_slot, req.encode_to_vec()));
        }
        out
    }

    /// Sends this member's confirmation of its derived result: call once the share from
    /// [`Progress::Derived`] is stored durably. A no-op before a result or after the first
    /// call.
    pub fn confirm(&mut self) {
        let Some(out) = &self.output else { return };
        if self.confirmed {
            return;
        }
        self.confirmed = true;
        let mine = confirmation(out);
        let env = self.seal(pb::body::Kind::DkgConfirm(confirm_to_pb(self.epoch, &mine)));
        self.send_all(env.clone());
        self.confirms.insert(self.me, mine);
        self.confirm_envs.insert(self.me, env);
        self.recheck = true;
    }

    /// The answer to the request sent in `slot`.
    pub fn on_response(&mut self, slot: u64, data: &[u8]) {
        let ok = pb::Response::decode(data)
            .ok()
            .and_then(|r| match r.kind {
                Some(pb::response::Kind::Ack(a)) => Some(a.ok),
                _ => None,
            })
            .unwrap_or(false);
        for o in self.outbox.iter_mut() {
            if o.inflight == Some(slot) {
                o.inflight = None;
                o.acked |= ok;
            }
        }
    }

    /// The request sent in `slot` failed (it is re-sent when due).
    pub fn on_failure(&mut self, slot: u64) {
        for o in self.outbox.iter_mut() {
            if o.inflight == Some(slot) {
                o.inflight = None;
            }
        }
    }

    /// Members whose packages, confirmations or acknowledgements are still missing (the
    /// round-1 laggards first, since round 2 cannot start without them).
    pub fn missing(&self) -> Vec<u16> {
        if self.output.is_none() {
            let r1 = self.dkg.missing_round1();
            return if r1.is_empty() {
                self.dkg.missing_round2()
            } else {
                r1
            };
        }
        let mut m: BTreeSet<u16> = (1..=self.n)
            .filter(|i| *i != self.me && !self.confirms.contains_key(i))
            .collect();
        m.extend(self.outbox.iter().filter(|o| !o.acked).map(|o| o.to));
        m.into_iter().collect()
    }

    /// Where the DKG stands. `Done` is returned once (then `Running` again).
    pub fn progress(&mut self) -> Progress {
        if let Some(e) = self.fatal.take() {
            return Progress::Failed(anyhow!(e));
        }
        let Some(out) = &self.output else {
            return Progress::Running;
        };
        if !self.derived_reported {
            self.derived_reported = true;
            return Progress::Derived(Box::new(DkgResult {
                share: KeyShare {
                    epoch: self.epoch,
                    member: self.me,
                    n: self.n,
                    t: self.t,
                    key_package: out.key_package.clone(),
                    public_key_package: out.public_key_package.clone(),
                },
                group_key: out.group_key,
            }));
        }
        if !self.confirmed {
            return Progress::Running;
        }
        if std::mem::take(&mut self.recheck)
            && let Err(e) = check(self.n, self.me, &self.confirms)
        {
            return Progress::Failed(e);
        }
        let all_confirmed = self.confirms.len() == usize::from(self.n);
        if self.done || !all_confirmed || !self.outbox.iter().all(|o| o.acked) {
            return Progress::Running;
        }
        self.done = true;
        let share = KeyShare {
            epoch: self.epoch,
            member: self.me,
            n: self.n,
            t: self.t,
            key_package: out.key_package.clone(),
            public_key_package: out.public_key_package.clone(),
        };
        let commit = pb::KeyCommit {
            epoch: self.epoch,
            group_key: out.group_key.compressed().to_vec(),
            confirmations: self.confirm_envs.values().cloned().collect(),
        };
        Progress::Done(
            Box::new(DkgResult {
                share,
                group_key: out.group_key,
            }),
            commit,
        )
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
    /// A member's confirmation with its signed envelope.
    confirm: Option<(u16, Confirmation, pb::Envelope)>,
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
    let sealed = env.clone();
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
                confirm: Some((from, c, sealed)),
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

    /// Sends every due request of `from` to its recipient and the answer back; returns the
    /// body kinds sent.
    fn pump(sessions: &mut [DkgSession], keys: &[NodeKey], from: usize) -> Vec<&'static str> {
        let connected: BTreeSet<u16> = (1..=sessions.len() as u16).collect();
        let peer = crate::identity::peer_id(&keys[from].public()).unwrap();
        let mut kinds = Vec::new();
        for (to, slot, req) in sessions[from].due(Instant::now(), &connected) {
            let env = match pb::Request::decode(req.as_slice()).unwrap().kind {
                Some(pb::request::Kind::Direct(e)) => e,
                _ => unreachable!(),
            };
            kinds.push(match pb::Body::decode(env.body.as_slice()).unwrap().kind {
                Some(pb::body::Kind::DkgRound1(_)) => "round1",
                Some(pb::body::Kind::DkgRound2(_)) => "round2",
                Some(pb::body::Kind::DkgConfirm(_)) => "confirm",
                _ => "other",
            });
            let ack = sessions[usize::from(to) - 1].on_request(peer, &req);
            sessions[from].on_response(slot, &ack.encode_to_vec());
        }
        kinds
    }

    /// A member's confirmation leaves only after the caller stored its share
    /// ([`Progress::Derived`] then [`DkgSession::confirm`]): a key the others can decide
    /// always has every honest member's share on disk, even if a Byzantine member withholds
    /// its own confirmation and builds the key commit from the others'.
    #[test]
    fn a_confirmation_leaves_only_after_the_share_is_stored() {
        let keys: Vec<NodeKey> = (0..4).map(|_| NodeKey::generate()).collect();
        let committee = Committee::new(keys.iter().map(|k| k.public()).collect()).unwrap();
        let mut sessions: Vec<DkgSession> = keys
            .iter()
            .map(|k| DkgSession::start(k, committee.clone(), 2, None).unwrap())
            .collect();
        let mut derived = [false; 4];
        let mut done = 0;
        for _round in 0..50 {
            for i in 0..4 {
                let kinds = pump(&mut sessions, &keys, i);
                if !derived[i] {
                    assert!(
                        !kinds.contains(&"confirm"),
                        "member {} confirmed before storing its share",
                        i + 1
                    );
                }
                match sessions[i].progress() {
                    Progress::Derived(result) => {
                        assert_eq!(result.share.member, i as u16 + 1);
                        derived[i] = true;
                        // (the node writes the candidate share here)
                        sessions[i].confirm();
                    }
                    Progress::Done(result, commit) => {
                        assert_eq!(commit.confirmations.len(), 4);
                        assert_eq!(commit.group_key, result.group_key.compressed().to_vec());
                        done += 1;
                    }
                    Progress::Failed(e) => panic!("{e}"),
                    Progress::Running => {}
                }
                // The re-send period is 500 ms: let it pass in the test's clock.
                for o in sessions[i].outbox.iter_mut() {
                    o.next = Instant::now();
                }
            }
            if done == 4 {
                break;
            }
        }
        assert_eq!(done, 4, "every member finished");
    }
}
