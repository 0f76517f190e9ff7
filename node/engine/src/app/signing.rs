//! Nonce commitments and signing sessions after a decision (RFC 9591 §5.1–5.3), with
//! ROAST-style retries.

use super::*;

/// A serialized FROST(secp256k1) signature share: one scalar, 32 bytes (RFC 9591 §4.1).
const SHARE_BYTES: usize = 32;

impl App {
    /// A member's published nonce commitments (replaces what we knew).
    pub fn on_commitments(&mut self, from: Member, list: &pb::NonceCommitments) {
        let mut map = BTreeMap::new();
        for c in list.commitments.iter().take(256) {
            if c.member != u32::from(from) || self.used.contains(&(from, c.nonce_id)) {
                continue;
            }
            match self.decode_commitment(from, c) {
                Some(sc) => {
                    map.insert(
                        c.nonce_id,
                        Held {
                            sc,
                            bytes: c.commitments.clone(),
                        },
                    );
                }
                None => self.stats.dropped += 1,
            }
        }
        self.commitments.insert(from, map);
    }

    /// Refills this member's nonce pool when it is below half, returning the full list of
    /// commitments to publish (always, so peers that missed one catch up).
    /// Errors: ledger storage failure.
    pub fn refresh_commitments(
        &mut self,
    ) -> Result<Option<pb::NonceCommitments>, sigil_crypto::NonceError> {
        let (Some(me), Some(signer)) = (self.p.me, self.signer.as_mut()) else {
            return Ok(None);
        };
        let have = signer.pool.available() as u32;
        if have < self.p.nonce_pool / 2 {
            signer.pool.refill(
                &signer.key,
                self.p.nonce_pool - have,
                signer.ledger.as_mut(),
                &mut self.rng,
            )?;
        }
        let known = self.commitments.get(&me);
        let mine: BTreeMap<u64, Held> = signer
            .pool
            .ids()
            .into_iter()
            .filter(|id| !self.used.contains(&(me, id.0)))
            .filter_map(|id| {
                let sc = signer.pool.commitments(id)?;
                // Encode each commitment once: the list is re-published every gossip period.
                let held = match known.and_then(|k| k.get(&id.0)) {
                    Some(h) if h.sc == sc => h.clone(),
                    _ => Held {
                        sc,
                        bytes: ser_commitments(&sc),
                    },
                };
                Some((id.0, held))
            })
            .collect();
        let list = pb::NonceCommitments {
            commitments: mine
                .iter()
                .map(|(id, h)| pb::Commitment {
                    member: u32::from(me),
                    nonce_id: *id,
                    commitments: h.bytes.clone(),
                })
                .collect(),
        };
        self.commitments.insert(me, mine);
        Ok(Some(list))
    }

    /// t commitments for a signing attempt coordinated by us: ours first, then the others
    /// least silent first (`silence`: attempts each stayed silent in), suspects (recent
    /// culprits, members reported offline) last, ties in the rotating order
    /// `(height + k) mod n + 1`; never a member in `exclude`. Each member's commitment is
    /// the one [`spread_pick`] chooses for (`height`, `attempt`) among those unused. `None`
    /// when fewer than t members have an unused commitment.
    pub(super) fn pick_signers(
        &self,
        height: Height,
        attempt: u32,
        exclude: &BTreeSet<Member>,
        silence: &BTreeMap<Member, u32>,
    ) -> Option<Vec<pb::Commitment>> {
        let n = self.p.n;
        let mut order: Vec<Member> = Vec::new();
        for k in 0..n {
            let m = ((height + u64::from(k)) % u64::from(n)) as Member + 1;
            if Some(m) != self.p.me && !order.contains(&m) {
                order.push(m);
            }
        }
        let suspect = |m: &Member| {
            self.suspects.get(m).is_some_and(|until| *until >= height)
                || self.online.as_ref().is_some_and(|on| !on.contains(m))
        };
        // Stable sort: the rotating order breaks ties.
        order.sort_by_key(|m| (suspect(m), silence.get(m).copied().unwrap_or(0)));
        let mut ranked: Vec<Member> = self.p.me.into_iter().collect();
        ranked.extend(order);
        let mut out = Vec::new();
        for m in ranked {
            if exclude.contains(&m) {
                continue;
            }
            let fresh: Vec<(&u64, &Held)> = self
                .commitments
                .get(&m)
                .map(|cs| {
                    cs.iter()
                        .filter(|(id, _)| !self.used.contains(&(m, **id)))
                        .collect()
                })
                .unwrap_or_default();
            let Some((id, h)) = spread_pick(&fresh, height, attempt) else {
                continue;
            };
            out.push(pb::Commitment {
                member: u32::from(m),
                nonce_id: *id,
                commitments: h.bytes.clone(),
            });
            if out.len() == usize::from(self.p.t) {
                out.sort_by_key(|c| c.member);
                return Some(out);
            }
        }
        None
    }

    /// A block was decided at `height`. Advances the pool, starts signing (attempt 0 with the
    /// block's signing set) unless `attestation` (from catch-up) is given.
    ///
    /// Also the restart path: the host calls it for every stored, decided-but-unattested
    /// height, so the session is rebuilt and this member verifies and aggregates the others'
    /// shares, answers retries and adopts gossiped attestations. Its own attempt-0 nonce did
    /// not survive the restart (the pool is memory-only), so it releases no attempt-0 share
    /// ([`Effect::SignRefused`]). A second call for a height that has a session does nothing.
    pub fn on_decided(
        &mut self,
        height: Height,
        block: &Block,
        attestation: Option<&pb::Attestation>,
        now_ms: u64,
    ) -> Vec<Effect> {
        let b = &block.0;
        if self.sessions.contains_key(&height) {
            return Vec::new();
        }
        let ids = self.leaves(&b.ranges).map(|(_, ids, _)| ids).ok();
        for r in &b.ranges {
            let next = self.next_nonce.entry(r.chain_id).or_insert(0);
            *next = (*next).max(r.to_nonce);
            let floor = *next;
            self.drop_observed_below(r.chain_id, floor);
        }
        for c in &b.signers {
            if let Ok(m) = u16::try_from(c.member) {
                self.mark_used(m, c.nonce_id);
            }
        }
        self.height = self.height.max(height.saturating_add(1));
        self.note_decided_rotation(height, b);
        self.note_decided_key_commit(height, b);
        // Before noting it: the digest names the inbox this height hands over.
        let handover = self.handover_digest(b);
        self.note_decided_handover(height, b);
        if attestation.is_some() {
            return Vec::new();
        }
        let Ok(root) = B256::try_from(b.root.as_slice()) else {
            self.stats.dropped += 1;
            return Vec::new();
        };
        let (digest, handover) = match handover {
            Some((d, h)) => (d, Some(h)),
            None if b.handover.is_some() => {
                // A decided key-rotation block we cannot form the digest of (no group key):
                // nothing to sign or verify.
                self.stats.dropped += 1;
                return Vec::new();
            }
            None => (sigil_crypto::batch_digest(self.p.epoch, height, root), None),
        };
        let mut s = Session {
            root,
            digest,
            handover,
            message_ids: ids.unwrap_or_default(),
            attempt: 0,
            started_ms: now_ms,
            package: None,
            signers: BTreeSet::new(),
            chains: b.ranges.iter().map(|r| r.chain_id).collect(),
            nonces: BTreeMap::new(),
            shares: BTreeMap::new(),
            culprits: BTreeSet::new(),
            blamed: BTreeSet::new(),
            silence: BTreeMap::new(),
            answered: BTreeSet::from([0]),
            answered_floor: 0,
            done: false,
            attestation: None,
            held: BTreeMap::new(),
        };
        let mut out = Vec::new();
        if let Ok(map) = self.commitments_of(&b.signers) {
            self.start_attempt(&mut s, height, 0, map, now_ms, &mut out);
        }
        self.sessions.insert(height, s);
        self.drain_early(height, &mut out);
        out
    }

    /// Whether a signing session exists for `height` (decided here, attested or not).
    pub fn has_session(&self, height: Height) -> bool {
        self.sessions.contains_key(&height)
    }

    /// The signing attempt `height` is at, if it has a session.
    pub fn attempt(&self, height: Height) -> Option<u32> {
        self.sessions.get(&height).map(|s| s.attempt)
    }

    /// Records a commitment as used (never offered or accepted again), keeping at most
    /// [`USED_PER_MEMBER`] ids per member.
    pub(super) fn mark_used(&mut self, m: Member, id: u64) {
        self.used.insert((m, id));
        if let Some(cs) = self.commitments.get_mut(&m) {
            cs.remove(&id);
        }
        let count = self.used.range((m, 0)..=(m, u64::MAX)).count();
        if count > USED_PER_MEMBER
            && let Some(first) = self.used.range((m, 0)..=(m, u64::MAX)).next().copied()
        {
            self.used.remove(&first);
        }
    }

    pub(super) fn commitments_of(
        &self,
        signers: &[pb::Commitment],
    ) -> Result<BTreeMap<Member, (u64, SigningCommitments)>, ()> {
        let mut map = BTreeMap::new();
        for c in signers {
            let m = u16::try_from(c.member).map_err(|_| ())?;
            let sc = self.decode_commitment(m, c).ok_or(())?;
            map.insert(m, (c.nonce_id, sc));
        }
        Ok(map)
    }

    /// Decodes `c` as member `m`'s commitment, reusing the decoded form held from its
    /// published list when the bytes are identical (the same bytes always decode to the same
    /// value, so this is only a cache). `None`: not a valid encoding.
    pub(super) fn decode_commitment(
        &self,
        m: Member,
        c: &pb::Commitment,
    ) -> Option<SigningCommitments> {
        if let Some(h) = self.commitments.get(&m).and_then(|cs| cs.get(&c.nonce_id))
            && h.bytes == c.commitments
        {
            return Some(h.sc);
        }
        SigningCommitments::deserialize(&c.commitments).ok()
    }

    pub(super) fn start_attempt(
        &mut self,
        s: &mut Session,
        height: Height,
        attempt: u32,
        map: BTreeMap<Member, (u64, SigningCommitments)>,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let by_member: BTreeMap<Member, SigningCommitments> =
            map.iter().map(|(m, (_, c))| (*m, *c)).collect();
        let Ok(package) = sigil_crypto::signing::signing_package(&by_member, s.digest) else {
            return;
        };
        s.attempt = attempt;
        s.started_ms = now_ms;
        s.signers = by_member.keys().copied().collect();
        s.nonces = map
            .iter()
            .map(|(m, (id, c))| (*m, (*id, commitment_hash(c))))
            .collect();
        s.shares.clear();
        s.blamed.clear();
        if let (Some(chain), Some(me)) = (self.first_paused(s.chains.iter().copied()), self.p.me)
            && map.contains_key(&me)
        {
            out.push(Effect::SignRefused {
                height,
                reason: format!("chain {chain} is paused by this member's operator"),
            });
        } else if let (Some(me), Some((nonce, sc))) =
            (self.p.me, self.p.me.and_then(|me| map.get(&me)))
            && let Some(share) = self.release_share(
                &package,
                (*nonce, commitment_hash(sc)),
                (height, attempt),
                s.digest,
                out,
            )
        {
            s.shares.insert(me, share);
        }
        s.package = Some(package);
        self.try_aggregate(s, height, out);
    }

    /// Signs `package` (over `digest`) with our nonce `nonce` = (id, commitment hash),
    /// consumed durably first by `sigil_crypto::signing::sign`, records the share
    /// ([`Effect::Shares`]) and broadcasts it for (`height`, `attempt`); a refusal (unknown
    /// or consumed nonce, storage) becomes [`Effect::SignRefused`].
    pub(super) fn release_share(
        &mut self,
        package: &SigningPackage,
        nonce: (u64, B256),
        (height, attempt): (Height, u32),
        digest: B256,
        out: &mut Vec<Effect>,
    ) -> Option<SignatureShare> {
        let me = self.p.me?;
        let epoch = self.p.epoch;
        let (nonce, commitment) = nonce;
        let signer = self.signer.as_mut()?;
        match sigil_crypto::signing::sign(
            &signer.key,
            package,
            NonceId(nonce),
            &mut signer.pool,
            signer.ledger.as_mut(),
        ) {
            Ok(share) => {
                self.stats.shares_sent += 1;
                let bytes = share.serialize();
                out.push(Effect::Shares(vec![crate::storage::ShareRecord {
                    epoch,
                    member: me,
                    nonce_id: nonce,
                    commitment,
                    height,
                    attempt,
                    digest,
                    share: bytes.as_slice().try_into().unwrap_or([0; 32]),
                    own: true,
                }]));
                out.push(Effect::Broadcast(pb::body::Kind::Share(
                    pb::SignatureShare {
                        height,
                        attempt,
                        share: bytes,
                    },
                )));
                Some(share)
            }
            Err(e) => {
                out.push(Effect::SignRefused {
                    height,
                    reason: e.to_string(),
                });
                None
            }
        }
    }

    pub(super) fn drain_early(&mut self, height: Height, out: &mut Vec<Effect>) {
        let keys: Vec<(Height, u32)> = self
            .early_shares
            .range((height, 0)..=(height, u32::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            let cur = self.sessions.get(&height).map(|s| s.attempt);
            if cur != Some(k.1) {
                continue;
            }
            if let Some(shares) = self.early_shares.remove(&k) {
                for (m, bytes) in shares {
                    out.extend(self.on_share(
                        m,
                        &pb::SignatureShare {
                            height,
                            attempt: k.1,
                            share: bytes,
                        },
                        0,
                    ));
                }
            }
        }
    }

    /// A signature share from member `from`.
    pub fn on_share(
        &mut self,
        from: Member,
        msg: &pb::SignatureShare,
        _now_ms: u64,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        if msg.share.len() != SHARE_BYTES {
            self.stats.dropped += 1;
            return out;
        }
        let Some(mut s) = self.sessions.remove(&msg.height) else {
            // Not decided here yet: keep a bounded number for a little while (attempt 0 or 1).
            if msg.height >= self.height
                && msg.height <= self.height.saturating_add(2)
                && msg.attempt <= 1
                && self.early_shares.len() < 64
            {
                self.early_shares
                    .entry((msg.height, msg.attempt))
                    .or_default()
                    .insert(from, msg.share.clone());
            } else {
                self.stats.dropped += 1;
            }
            return out;
        };
        if s.done || msg.attempt < s.attempt {
            self.sessions.insert(msg.height, s);
            return out;
        }
        if msg.attempt > s.attempt || s.package.is_none() {
            // Only the attempt in progress or the next one is worth holding.
            if msg.attempt <= s.attempt.saturating_add(1) && self.early_shares.len() < 64 {
                self.early_shares
                    .entry((msg.height, msg.attempt))
                    .or_default()
                    .insert(from, msg.share.clone());
            }
            self.sessions.insert(msg.height, s);
            return out;
        }
        if !s.signers.contains(&from) || s.shares.contains_key(&from) || s.blamed.contains(&from) {
            self.sessions.insert(msg.height, s);
            return out;
        }
        // Shares are checked together, not one by one: the aggregate is verified when the
        // last one arrives and only a failure verifies each share (RFC 9591 §5.3, cheater
        // detection), which spares t scalar multiplications per attempt. A share still
        // unchecked when the attempt times out is checked then (`blame_held_shares`), so a
        // bad share never counts as an answer. A culprit's later shares for the same attempt
        // are ignored.
        match SignatureShare::deserialize(&msg.share) {
            Ok(sh) => {
                s.shares.insert(from, sh);
                self.try_aggregate(&mut s, msg.height, &mut out);
            }
            Err(_) => self.convict(&mut s, msg.height, from, &mut out),
        }
        self.sessions.insert(msg.height, s);
        out
    }

    /// Records `member` as a culprit of the attempt in progress: it is avoided by
    /// coordinators for 16 heights and its shares for this attempt are dropped.
    fn convict(&mut self, s: &mut Session, height: Height, member: Member, out: &mut Vec<Effect>) {
        s.shares.remove(&member);
        s.blamed.insert(member);
        if s.culprits.insert(member) {
            self.stats.culprits += 1;
            self.suspects.insert(member, height + 16);
            out.push(Effect::Culprit {
                height,
                attempt: s.attempt,
                member,
            });
        }
    }

    /// Verifies each share held for the attempt in progress on its own (RFC 9591 §5.3
    /// `verify_signature_share`), convicting the senders of invalid ones. Called when an
    /// attempt times out without all its shares, so that a member that sent a bad share is
    /// treated as a culprit, not as one that answered.
    pub(super) fn blame_held_shares(
        &mut self,
        s: &mut Session,
        height: Height,
        out: &mut Vec<Effect>,
    ) {
        let (Some(pkg), Some(signer)) = (&s.package, &self.signer) else {
            return;
        };
        let bad: Vec<Member> = s
            .shares
            .iter()
            .filter(|(m, sh)| {
                sigil_crypto::signing::verify_share(pkg, **m, sh, &signer.public).is_err()
            })
            .map(|(m, _)| *m)
            .collect();
        for m in bad {
            self.convict(s, height, m, out);
        }
    }

    pub(super) fn try_aggregate(&mut self, s: &mut Session, height: Height, out: &mut Vec<Effect>) {
        if s.done || s.shares.len() < s.signers.len() {
            return;
        }
        let (Some(pkg), Some(signer), Some(gk)) = (&s.package, &self.signer, &self.group_key)
        else {
            return;
        };
        match sigil_crypto::signing::aggregate(pkg, &s.shares, &signer.public) {
            Ok(sig) => {
                if sigil_crypto::signing::verify(gk, s.digest, &sig).is_err() {
                    return;
                }
                let Ok(bytes) = sig.serialize() else { return };
                s.done = true;
                self.stats.attestations += 1;
                // Every share in it is now known good: recorded for the auditor (our own
                // was recorded when it left).
                let seen: Vec<crate::storage::ShareRecord> = s
                    .shares
                    .iter()
                    .filter(|(m, _)| Some(**m) != self.p.me)
                    .filter_map(|(m, sh)| {
                        let (nonce_id, commitment) = s.nonces.get(m).copied()?;
                        Some(crate::storage::ShareRecord {
                            epoch: self.p.epoch,
                            member: *m,
                            nonce_id,
                            commitment,
                            height,
                            attempt: s.attempt,
                            digest: s.digest,
                            share: sh.serialize().as_slice().try_into().ok()?,
                            own: false,
                        })
                    })
                    .collect();
                if !seen.is_empty() {
                    out.push(Effect::Shares(seen));
                }
                let a = pb::Attestation {
                    epoch: self.p.epoch,
                    height,
                    root: s.root.to_vec(),
                    signature: bytes,
                    message_ids: s.message_ids.iter().map(|i| i.to_vec()).collect(),
                    handover: s.handover.clone(),
                };
                // Members that missed shares finish from this one; kept to answer late
                // signing requests with it instead of a new share.
                let gossiped = pb::Attestation {
                    message_ids: Vec::new(),
                    ..a.clone()
                };
                s.attestation = Some(gossiped.clone());
                out.push(Effect::Broadcast(pb::body::Kind::Attestation(gossiped)));
                out.push(Effect::Attested(a));
            }
            Err(sigil_crypto::SigningError::InvalidShares { culprits }) => {
                for c in culprits {
                    self.convict(s, height, c, out);
                }
            }
            Err(_) => {}
        }
    }

    /// A group signature another member formed for a block we decided: adopted when it
    /// verifies under the group key over our own batch digest for that height.
    pub fn on_attestation(&mut self, a: &pb::Attestation) -> Vec<Effect> {
        let Some(s) = self.sessions.get_mut(&a.height) else {
            return Vec::new();
        };
        if s.done || a.epoch != self.p.epoch || a.root != s.root.as_slice() {
            return Vec::new();
        }
        let Some(gk) = &self.group_key else {
            return Vec::new();
        };
        let ok = frost::Signature::deserialize(&a.signature)
            .ok()
            .is_some_and(|sig| sigil_crypto::signing::verify(gk, s.digest, &sig).is_ok());
        if !ok {
            self.stats.dropped += 1;
            return Vec::new();
        }
        s.done = true;
        // The hand-over is ours, never the sender's.
        s.attestation = Some(pb::Attestation {
            message_ids: Vec::new(),
            handover: s.handover.clone(),
            ..a.clone()
        });
        self.stats.attestations += 1;
        vec![Effect::Attested(pb::Attestation {
            message_ids: s.message_ids.iter().map(|i| i.to_vec()).collect(),
            handover: s.handover.clone(),
            ..a.clone()
        })]
    }

    /// Heights decided but not yet attested.
    pub fn unattested(&self) -> Vec<Height> {
        self.sessions
            .iter()
            .filter(|(_, s)| !s.done)
            .map(|(h, _)| *h)
            .collect()
    }
}

/// Which of a member's unused commitments (ascending ids) a signing set for (`height`,
/// `attempt`) names: index `(height + 7 × attempt) mod len`, not always the first.
///
/// Coordinators of different heights pick at the same moment (retries of heights decided
/// together time out together; a proposer builds the next block meanwhile), each from its
/// own view of the same lists. Always taking the lowest id made them name the *same*
/// commitment of a member in two sets; the member signs in the first set to reach it and
/// must refuse the other (the nonce is spent), so both attempts could fail, again at each
/// retry. With 19 members and one down, heights 7–9 of a devnet run retried for 90 s this
/// way. With the height's factor 1, sets of the same attempt for heights less than `len`
/// apart (retries of heights decided together advance in step) name different
/// commitments of a member holding `len` unused, whatever `len` is; any unused commitment
/// is as valid as another (RFC 9591 §5.2: one nonce per share), so this only changes
/// liveness.
pub(super) fn spread_pick<'a>(
    fresh: &[(&'a u64, &'a Held)],
    height: Height,
    attempt: u32,
) -> Option<(&'a u64, &'a Held)> {
    if fresh.is_empty() {
        return None;
    }
    let k = height.wrapping_add(u64::from(attempt).wrapping_mul(7));
    let i = (k % fresh.len() as u64) as usize;
    fresh.get(i).copied()
}
