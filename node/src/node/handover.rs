//! Committee epochs in the running node: the next committee's DKG over this node's swarm,
//! its key commit offered to the engine, and the switch to the next epoch's engine once the
//! outgoing one is over ([`sigil_engine::Driver::epoch_over`]).
//!
//! - When the engine has decided a rotation that names this node's key and no key commit is
//!   decided yet, the node runs its part of the incoming committee's DKG
//!   ([`crate::dkg::DkgSession`]) over the running swarm (`Direct` envelopes on the
//!   request-response protocol, routed here before the engine sees them). On success it
//!   writes the new epoch's key share (`keys/share-epoch-<e>.json`, encrypted) and the key
//!   commit (`keys/key-commit-epoch-<e>.pb`), and offers the key commit to the engine, which
//!   proposes it (the outgoing committee decides it, then signs one key rotation per inbox).
//!   A failed DKG is logged naming the member at fault and retried after
//!   [`DKG_RETRY`]; a DKG that never completes lets the rotation expire in the engine.
//! - When the engine's epoch is over, a member of the next committee builds the next
//!   epoch's engine over the same store (heights continue) with the new share; a member that
//!   leaves keeps the outgoing engine as an archive (it decides nothing more, serves its
//!   blocks) until its operator stops it. At start, [`sigil_engine::epochs::resume_epoch`]
//!   finds the epoch the store is in.
//!
//! Not built yet: joining members (a node outside the current committee), which need the
//! allow list widened to the decided rotation's keys and the hand-over fetched
//! (ARCHITECTURE.md, "Committee epochs").

use super::*;
use crate::dkg::{DkgSession, Progress};
use libp2p::request_response::OutboundRequestId;
use sigil_proto as pb;
use std::path::PathBuf;

/// A failed DKG for the next committee is started again after this long.
pub const DKG_RETRY: Duration = Duration::from_secs(30);

/// The committee a rotation names (node keys in member order).
/// Errors: a member that is not a compressed secp256k1 key.
pub fn committee_of(r: &pb::Rotation) -> anyhow::Result<Committee> {
    let keys = r
        .members
        .iter()
        .enumerate()
        .map(|(i, k)| {
            k256::ecdsa::VerifyingKey::from_sec1_bytes(k)
                .map_err(|_| anyhow::anyhow!("rotation member {} is not a key", i + 1))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Committee::new(keys)?)
}

/// Where the key commit of `epoch` is kept next to its share.
pub fn key_commit_path(home: &std::path::Path, epoch: u64) -> PathBuf {
    home.join("keys")
        .join(format!("key-commit-epoch-{epoch}.pb"))
}

/// An engine built for one epoch.
pub(super) struct Built {
    pub(super) engine: Driver<Store>,
    pub(super) startup: Vec<Effect>,
    pub(super) approval: Option<crate::epoch::ApprovalWatch>,
    pub(super) approval_error: Option<String>,
}

/// Builds member `me` of `committee` for key `epoch`: the application core with `share`,
/// the observations not yet decided and this node's cursors from `store`, the operator's
/// approval of the committee after `epoch` (read before the engine starts, so replayed
/// proposals are judged with it), and the engine restored from `store`.
///
/// Errors: storage, a key share whose group key the inbox cannot use, the engine's.
#[allow(clippy::too_many_arguments)]
pub(super) fn build_engine(
    cfg: &Config,
    key: &NodeKey,
    share: KeyShare,
    store: Store,
    committee: &Committee,
    me: u16,
    epoch: u64,
    approval: Option<PathBuf>,
    metrics: &Metrics,
) -> anyhow::Result<Built> {
    let n = committee.len();
    let (_, t) = sigil_crypto::keys::thresholds(n);
    let group_key = GroupKey::new(*share.public_key_package.verifying_key())?;
    let mut next_nonce = BTreeMap::new();
    for c in &cfg.chains {
        next_nonce.insert(c.chain_id, store.next_nonce(c.chain_id)?);
    }
    let ledger = RocksLedger::open(store.clone())?;
    let signer = Signer {
        key: share.key_package,
        public: share.public_key_package,
        pool: sigil_crypto::NoncePool::new(),
        ledger: Box::new(ledger),
    };
    let app_params = AppParams {
        me: Some(me),
        n,
        t,
        epoch,
        chains: cfg.chains.iter().map(|c| (c.chain_id, c.gateway)).collect(),
        max_messages: cfg.batch.max_messages,
        max_bytes: cfg.batch.max_bytes,
        nonce_pool: cfg.signing.nonce_pool,
        share_timeout_ms: u64::try_from(cfg.signing.share_timeout.as_millis()).unwrap_or(u64::MAX),
        rotation_expiry_heights: sigil_engine::app::DEFAULT_ROTATION_EXPIRY_HEIGHTS,
    };
    let mut app = App::new(
        app_params,
        Some(signer),
        Some(group_key),
        next_nonce.clone(),
        Box::new(rand_core::OsRng),
    );
    // Restore observations not yet decided, and our cursors.
    for c in &cfg.chains {
        let from = next_nonce.get(&c.chain_id).copied().unwrap_or(0);
        let obs = store.observations(c.chain_id, from..u64::MAX)?;
        let cursor = store.cursor(c.chain_id)?.map(|cur| cur.to_wire(c.chain_id));
        app.observe(obs, cursor);
    }
    let mut approval =
        approval.map(|p| crate::epoch::ApprovalWatch::new(p, epoch, crate::epoch::inboxes(cfg)));
    let mut approval_error = None;
    let first = approval.as_mut().and_then(|w| w.poll());
    if let Some(Err(e)) = first.map(|c| {
        c.map_err(|e| e.to_string())
            .and_then(|r| app.approve_rotation(r))
    }) {
        tracing::error!(error = %e, "approval file refused; nothing approved");
        metrics.epoch.approval_errors.inc();
        approval_error = Some(e);
    }
    let (engine, startup) = Driver::new(
        driver_config(cfg, me),
        committee.engine().clone(),
        key.signing_key().clone(),
        app,
        store,
        0,
    )?;
    Ok(Built {
        engine,
        startup,
        approval,
        approval_error,
    })
}

/// The key commit this node's DKG for the next epoch produced (its share is on disk as a
/// candidate, [`crate::keyfiles::candidate_share_path`]), for the rotation decided at
/// `rotation_height`.
pub(super) struct NextKey {
    commit: pb::KeyCommit,
    rotation_height: u64,
}

/// The node's committee-epoch state (see the module docs).
pub(super) struct EpochHost {
    key: NodeKey,
    store: Store,
    keystore: Option<(PathBuf, zeroize::Zeroizing<Vec<u8>>)>,
    approval_path: Option<PathBuf>,
    group_keys: Arc<RwLock<BTreeMap<u64, GroupKey>>>,
    /// The DKG in progress, its committee, when it started and the height of the rotation
    /// it is for.
    dkg: Option<(DkgSession, Committee, Instant, u64)>,
    /// Outbound DKG requests in flight → the session's slot.
    slots: HashMap<OutboundRequestId, u64>,
    /// No new DKG before this time (after a failure).
    retry_at: Option<Instant>,
    next: Option<NextKey>,
    /// The key commit offer the engine refused last (logged once).
    offer_error: Option<String>,
    /// This node is not in the next committee and its epoch is over: an archive now.
    left: bool,
    /// Peers of the decided rotation's committee that are not members now (joiners): they
    /// may connect and ask for the hand-over and DKG packages.
    guests: BTreeSet<PeerId>,
    /// The rotation (epoch, decided height) whose peers were admitted.
    admitted: Option<(u64, u64)>,
    /// The listen addresses guests announced (libp2p identify), at most 8 each.
    guest_addresses: BTreeMap<PeerId, Vec<String>>,
}

impl EpochHost {
    pub(super) fn new(
        key: NodeKey,
        store: Store,
        _epoch: u64,
        keystore: Option<(PathBuf, zeroize::Zeroizing<Vec<u8>>)>,
        approval_path: Option<PathBuf>,
        group_keys: Arc<RwLock<BTreeMap<u64, GroupKey>>>,
    ) -> Self {
        Self {
            key,
            store,
            keystore,
            approval_path,
            group_keys,
            dkg: None,
            slots: HashMap::new(),
            retry_at: None,
            next: None,
            offer_error: None,
            left: false,
            guests: BTreeSet::new(),
            admitted: None,
            guest_addresses: BTreeMap::new(),
        }
    }

    /// Records the listen addresses a guest announced (others are ignored).
    pub(super) fn identified(&mut self, peer: PeerId, addresses: &[libp2p::Multiaddr]) {
        if self.guests.contains(&peer) {
            let list = addresses.iter().take(8).map(|a| a.to_string()).collect();
            self.guest_addresses.insert(peer, list);
        }
    }

    /// A `PeersRequest` from a member or guest: the guests' announced addresses (at most 64).
    /// `None`: not a peers request.
    pub(super) fn peers_request(&self, data: &[u8]) -> Option<pb::Response> {
        let req = pb::Request::decode(data).ok()?;
        if !matches!(req.kind, Some(pb::request::Kind::Peers(_))) {
            return None;
        }
        let peers = self
            .guest_addresses
            .iter()
            .take(64)
            .map(|(p, a)| pb::PeerAddress {
                peer_id: p.to_bytes(),
                addresses: a.clone(),
            })
            .collect();
        Some(pb::Response {
            kind: Some(pb::response::Kind::Peers(pb::PeerAddresses { peers })),
        })
    }

    /// Whether this node left the committee (an archive now).
    pub(super) fn has_left(&self) -> bool {
        self.left
    }

    /// Whether `peer` belongs to the decided rotation's committee without being a member
    /// now (a joiner).
    pub(super) fn is_guest(&self, peer: &PeerId) -> bool {
        self.guests.contains(peer)
    }

    /// A request that belongs to the DKG in progress (a `Direct` envelope): its answer.
    /// `None`: not the DKG's (the engine's).
    pub(super) fn dkg_request(&mut self, peer: PeerId, data: &[u8]) -> Option<pb::Response> {
        // Before our DKG started, a joiner's early package gets a "retry later".
        let (session, committee, _, _) = self.dkg.as_mut()?;
        committee.index_of_peer(&peer)?;
        let req = pb::Request::decode(data).ok()?;
        if !matches!(req.kind, Some(pb::request::Kind::Direct(_))) {
            return None;
        }
        Some(session.on_request(peer, data))
    }

    /// The answer to a DKG request; `false`: not the DKG's.
    pub(super) fn dkg_response(&mut self, id: OutboundRequestId, data: &[u8]) -> bool {
        let Some(slot) = self.slots.remove(&id) else {
            return false;
        };
        if let Some((session, _, _, _)) = self.dkg.as_mut() {
            session.on_response(slot, data);
        }
        true
    }

    /// A DKG request failed; `false`: not the DKG's.
    pub(super) fn dkg_failure(&mut self, id: OutboundRequestId) -> bool {
        let Some(slot) = self.slots.remove(&id) else {
            return false;
        };
        if let Some((session, _, _, _)) = self.dkg.as_mut() {
            session.on_failure(slot);
        }
        true
    }

    /// The key commit of `epoch` this node's DKG wrote before a restart, when its share is
    /// on disk as a candidate.
    fn stored_next(&self, epoch: u64, rotation_height: u64) -> Option<NextKey> {
        let (home, _) = self.keystore.as_ref()?;
        let bytes = std::fs::read(key_commit_path(home, epoch)).ok()?;
        let commit = pb::KeyCommit::decode(bytes.as_slice()).ok()?;
        crate::keyfiles::candidate_share_path(home, epoch, &commit.group_key)
            .exists()
            .then_some(NextKey {
                commit,
                rotation_height,
            })
    }

    /// Stores a derived share as a candidate (before our confirmation leaves).
    fn persist_candidate(&self, result: &crate::dkg::DkgResult) -> anyhow::Result<()> {
        let Some((home, pass)) = self.keystore.as_ref() else {
            anyhow::bail!("no keystore: this node cannot keep a next epoch's share");
        };
        crate::keyfiles::write_candidate_share(home, &result.share, &result.group_key, pass)
    }

    /// Keeps the key commit to offer again after a restart.
    fn persist_commit(&self, commit: &pb::KeyCommit) -> anyhow::Result<()> {
        let Some((home, _)) = self.keystore.as_ref() else {
            return Ok(());
        };
        std::fs::write(key_commit_path(home, commit.epoch), commit.encode_to_vec())?;
        Ok(())
    }

    /// Installs the candidate share for the decided key of `epoch` (33-byte `group_key`) as
    /// the epoch's share and returns it.
    fn install(&self, epoch: u64, group_key: &[u8]) -> anyhow::Result<Option<KeyShare>> {
        let Some((home, pass)) = self.keystore.as_ref() else {
            return Ok(None);
        };
        crate::keyfiles::install_candidate_share(home, pass, epoch, group_key)
    }
}

impl Node {
    /// One step of the committee-epoch work, every tick: start or drive the next
    /// committee's DKG when a decided rotation names this node, and offer its key commit to
    /// the engine.
    pub(super) fn epoch_step(&mut self) {
        let now = Instant::now();
        self.admit_rotation_peers();
        let app = self.engine.app();
        let height = self.engine.status().height;
        let rotation = app
            .decided_rotation()
            .filter(|_| app.decided_key_commit().is_none() && !app.rotation_expired(height))
            .map(|(h, r)| (h, r.clone()));
        let Some((rh, r)) = rotation else {
            return;
        };
        // Work for another (expired) rotation is dropped.
        if self
            .epochs
            .next
            .as_ref()
            .is_some_and(|n| n.rotation_height != rh)
        {
            self.epochs.next = None;
        }
        if self.epochs.dkg.as_ref().is_some_and(|d| d.3 != rh) {
            self.epochs.dkg = None;
            self.epochs.slots.clear();
        }
        if self.epochs.next.is_none() && self.epochs.dkg.is_none() {
            let me = self.epochs.key.public();
            let committee = match committee_of(&r) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "decided rotation unusable");
                    return;
                }
            };
            if committee.index_of(&me).is_none() {
                return;
            }
            if let Some(kept) = self.epochs.stored_next(r.epoch, rh)
                && sigil_engine::app::check_key_commit(&kept.commit, &r).is_ok()
            {
                tracing::info!(epoch = r.epoch, "next committee's key share found on disk");
                self.epochs.next = Some(kept);
            } else if self.epochs.retry_at.is_none_or(|t| now >= t) {
                match DkgSession::start(&self.epochs.key, committee.clone(), r.epoch, None) {
                    Ok(s) => {
                        tracing::info!(
                            epoch = r.epoch,
                            members = r.members.len(),
                            "running the next committee's DKG"
                        );
                        self.epochs.dkg = Some((s, committee, now, rh));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the next committee's DKG");
                        self.epochs.retry_at = Some(now + DKG_RETRY);
                    }
                }
            }
        }
        self.drive_dkg(now);
        if let Some(next) = &self.epochs.next {
            match self.engine.offer_key_commit(next.commit.clone()) {
                Ok(()) => self.epochs.offer_error = None,
                Err(e) => {
                    if self.epochs.offer_error.as_deref() != Some(&e) {
                        tracing::warn!(error = %e, "the engine refused our key commit");
                        self.epochs.offer_error = Some(e);
                    }
                }
            }
        }
    }

    /// Once a rotation is decided, the next committee's members that are not members now
    /// (joiners) may connect: the allow list takes their peer ids, and they are served the
    /// DKG, key-commit and hand-over requests (never catch-up).
    fn admit_rotation_peers(&mut self) {
        let Some((h, r)) = self.engine.app().decided_rotation() else {
            return;
        };
        if self.epochs.admitted == Some((r.epoch, h)) {
            return;
        }
        let epoch = (r.epoch, h);
        let Ok(next) = committee_of(r) else {
            return;
        };
        for p in next.peers() {
            if self.committee.index_of_peer(p).is_none() {
                self.swarm.behaviour_mut().allow.allow_peer(*p);
                self.epochs.guests.insert(*p);
            }
        }
        self.epochs.admitted = Some(epoch);
    }

    /// Sends the DKG's due requests and takes its result.
    fn drive_dkg(&mut self, now: Instant) {
        let Some((session, committee, started, rh)) = self.epochs.dkg.as_mut() else {
            return;
        };
        let rotation_height = *rh;
        let connected: BTreeSet<u16> = (1..=committee.len())
            .filter(|i| {
                committee
                    .peer(*i)
                    .is_some_and(|p| self.swarm.is_connected(&p))
            })
            .collect();
        for (to, slot, request) in session.due(now, &connected) {
            if let Some(peer) = committee.peer(to) {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .rr
                    .send_request(&peer, Wire(request));
                self.epochs.slots.insert(id, slot);
            }
        }
        let epoch = session.epoch();
        match session.progress() {
            Progress::Running => {
                if started.elapsed() > Duration::from_secs(120) {
                    tracing::warn!(epoch, missing = ?session.missing(), "next committee's DKG still waiting; retrying");
                    self.epochs.dkg = None;
                    self.epochs.slots.clear();
                    self.epochs.retry_at = Some(now + DKG_RETRY);
                }
            }
            Progress::Failed(e) => {
                tracing::error!(epoch, error = %e, "next committee's DKG failed; retrying later");
                self.epochs.dkg = None;
                self.epochs.slots.clear();
                self.epochs.retry_at = Some(now + DKG_RETRY);
            }
            Progress::Done(result, commit) => {
                tracing::info!(epoch, group_key = %hex::encode(result.group_key.compressed()), "next committee's key ready; offering the key commit");
                if let Err(e) = self.epochs.persist_commit(&commit) {
                    tracing::error!(error = %e, "storing the key commit failed");
                }
                self.epochs.dkg = None;
                self.epochs.slots.clear();
                self.epochs.next = Some(NextKey {
                    commit,
                    rotation_height,
                });
            }
            Progress::Derived(result) => {
                // Stored before our confirmation leaves: a key the others can decide always
                // has our share on disk, whatever happens to this session afterwards.
                match self.epochs.persist_candidate(&result) {
                    Ok(()) => {
                        if let Some((session, ..)) = self.epochs.dkg.as_mut() {
                            session.confirm();
                        }
                    }
                    Err(e) => {
                        tracing::error!(epoch, error = %e, "storing the next epoch's key share failed; not confirming");
                        self.epochs.dkg = None;
                        self.epochs.slots.clear();
                        self.epochs.retry_at = Some(now + DKG_RETRY);
                    }
                }
            }
        }
    }

    /// After the engine handled something: when its epoch is over, a member of the next
    /// committee switches to the next epoch's engine (same store); a member that leaves
    /// keeps the outgoing engine as an archive.
    pub(super) fn maybe_switch(&mut self) {
        if self.epochs.left {
            return;
        }
        let Some(end) = self.engine.epoch_over() else {
            return;
        };
        let Some((_, r)) = self.engine.app().decided_rotation() else {
            return;
        };
        let r = r.clone();
        let committee = match committee_of(&r) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "decided rotation unusable");
                self.epochs.left = true;
                return;
            }
        };
        let Some(me) = committee.index_of(&self.epochs.key.public()) else {
            tracing::warn!(
                height = end,
                epoch = r.epoch,
                "this node left the committee: it decides nothing more and keeps serving its blocks; stop it once the new committee runs"
            );
            self.epochs.left = true;
            return;
        };
        // The share of exactly the decided key (a DKG may have run more than once).
        let Some((_, kc)) = self.engine.app().decided_key_commit() else {
            return;
        };
        let decided_key = kc.group_key.clone();
        let share = match self.epochs.install(r.epoch, &decided_key) {
            Ok(Some(s)) => s,
            Ok(None) => {
                tracing::error!(
                    epoch = r.epoch,
                    "the epoch is over but this node holds no share of the decided key"
                );
                self.epochs.left = true;
                return;
            }
            Err(e) => {
                tracing::error!(epoch = r.epoch, error = %e, "installing the next epoch's key share failed");
                self.epochs.left = true;
                return;
            }
        };
        let Ok(group_key) = GroupKey::new(*share.public_key_package.verifying_key()) else {
            self.epochs.left = true;
            return;
        };
        self.epochs.next = None;
        let built = match build_engine(
            &self.cfg,
            &self.epochs.key,
            share,
            self.epochs.store.clone(),
            &committee,
            me,
            r.epoch,
            self.epochs.approval_path.clone(),
            &self.metrics,
        ) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "building the next epoch's engine failed");
                self.epochs.left = true;
                return;
            }
        };
        if let Ok(mut k) = self.epochs.group_keys.write() {
            k.insert(r.epoch, group_key);
        }
        tracing::info!(
            epoch = r.epoch,
            member = me,
            committee = committee.len(),
            after_height = end,
            "switched to the next committee"
        );
        self.engine = built.engine;
        // The new epoch's engine starts unpaused: the operator's stop applies before any input.
        self.apply_paused();
        self.approval = built.approval;
        self.approval_error = built.approval_error;
        self.committee = committee;
        self.me = me;
        self.epochs.guests.clear();
        self.epochs.guest_addresses.clear();
        self.connected = self
            .swarm
            .connected_peers()
            .filter_map(|p| self.committee.index_of_peer(p))
            .collect();
        self.execute(built.startup);
        for m in self.connected.clone() {
            self.drive(Input::PeerUp(m));
        }
    }
}
