//! Signing retries (ROAST-style, RFC 9591 signing per attempt): who coordinates each
//! attempt, which signing requests a member answers, and the share timeout that advances
//! attempts one at a time.

use super::*;

impl App {
    /// The member coordinating retry `attempt` of `height`: `(height + attempt) mod n + 1`.
    pub fn coordinator(&self, height: Height, attempt: u32) -> Member {
        let n = u64::from(self.p.n.max(1));
        Member::try_from(height.wrapping_add(u64::from(attempt)) % n).map_or(1, |m| m + 1)
    }

    /// A signing request (retry) from `from`.
    ///
    /// Accepted only from the coordinator of `req.attempt`, and only once per attempt:
    /// - the current attempt (when it has no package yet) is applied;
    /// - the next one is held and applied when this member's own share timeout moves it there
    ///   (one attempt per `share_timeout_ms`), so no member can bump attempts forward, clear
    ///   collected shares, or make an attempt number overflow;
    /// - an attempt this member has already passed is answered with a share (it does not
    ///   disturb the attempt in progress). Members advance one attempt per local timeout
    ///   from the moment each decided, so one that decided late — by catch-up, or after a
    ///   restart between decision and attestation — trails the others by a fixed number of
    ///   attempts; when it coordinates, the members ahead answer it here, and the trailing
    ///   coordinator aggregates. A coordinator can thus draw at most one share per attempt it
    ///   owns up to the current one: the same nonce budget the protocol spends anyway.
    ///
    /// A done member answers with the attestation instead of signing again.
    pub fn on_sign_request(
        &mut self,
        from: Member,
        req: &pb::SignRequest,
        now_ms: u64,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        if req.attempt == 0 || from != self.coordinator(req.height, req.attempt) {
            self.stats.requests_refused += 1;
            return out;
        }
        let Some(mut s) = self.sessions.remove(&req.height) else {
            self.stats.requests_refused += 1;
            return out;
        };
        if s.done {
            // The requester has not got the signature: send it again instead of signing again.
            if let Some(a) = s.attestation.clone() {
                out.push(Effect::Broadcast(pb::body::Kind::Attestation(a)));
            }
            self.sessions.insert(req.height, s);
            return out;
        }
        if Some(req.attempt) == s.attempt.checked_add(1) {
            // Early: our share timeout has not fired yet. Hold it (one per attempt) until it
            // does.
            if !s.held.contains_key(&req.attempt) && self.request_well_formed(req) {
                s.held.insert(req.attempt, req.clone());
            } else {
                self.stats.requests_refused += 1;
            }
            self.sessions.insert(req.height, s);
            return out;
        }
        let fresh = req.attempt >= s.answered_floor && !s.answered.contains(&req.attempt);
        if req.attempt < s.attempt && fresh && self.request_well_formed(req) {
            self.answer_passed(&mut s, req, &mut out);
            self.sessions.insert(req.height, s);
            return out;
        }
        if req.attempt != s.attempt
            || s.package.is_some()
            || !fresh
            || !self.request_well_formed(req)
        {
            self.stats.requests_refused += 1;
            self.sessions.insert(req.height, s);
            return out;
        }
        self.apply_request(&mut s, req, now_ms, &mut out);
        self.sessions.insert(req.height, s);
        self.drain_early(req.height, &mut out);
        out
    }

    /// Remembers that attempt `attempt` of `s` was applied or answered (never again).
    fn note_answered(s: &mut Session, attempt: u32) {
        s.answered.insert(attempt);
        while s.answered.len() > ANSWERED_PER_SESSION {
            if let Some(a) = s.answered.pop_first() {
                s.answered_floor = s.answered_floor.max(a.saturating_add(1));
            }
        }
    }

    /// Releases our share for an attempt this member has already passed (see
    /// [`Self::on_sign_request`]); the attempt in progress keeps its package and shares.
    fn answer_passed(&mut self, s: &mut Session, req: &pb::SignRequest, out: &mut Vec<Effect>) {
        let Ok(map) = self.commitments_of(&req.signers) else {
            self.stats.requests_refused += 1;
            return;
        };
        Self::note_answered(s, req.attempt);
        for (m, (id, _)) in &map {
            self.mark_used(*m, *id);
        }
        let Some((nonce, sc)) = self.p.me.and_then(|me| map.get(&me)) else {
            return;
        };
        if self.first_paused(s.chains.iter().copied()).is_some() {
            return;
        }
        let nonce = (*nonce, commitment_hash(sc));
        let by_member: BTreeMap<Member, SigningCommitments> =
            map.iter().map(|(m, (_, c))| (*m, *c)).collect();
        let Ok(package) = sigil_crypto::signing::signing_package(&by_member, s.digest) else {
            return;
        };
        let _ = self.release_share(&package, nonce, (req.height, req.attempt), s.digest, out);
    }

    /// t distinct members, each commitment decodable, and ours (if named) not used before.
    ///
    /// Other members' commitments are not held to our `used` set: a commitment we saw named
    /// in a request its owner never received is still fresh at the owner (whose durable
    /// ledger is what refuses reuse), and a trailing coordinator may name it. Reuse of
    /// another member's commitment cannot expose our nonce: the binding factors (RFC 9591
    /// §4.4) differ per package, and we sign with our own nonce at most once.
    fn request_well_formed(&self, req: &pb::SignRequest) -> bool {
        if req.signers.len() != usize::from(self.p.t) {
            return false;
        }
        let mut members = BTreeSet::new();
        req.signers.iter().all(|c| {
            u16::try_from(c.member).is_ok_and(|m| {
                (1..=self.p.n).contains(&m)
                    && members.insert(m)
                    && (Some(m) != self.p.me || !self.used.contains(&(m, c.nonce_id)))
                    && self.decode_commitment(m, c).is_some()
            })
        })
    }

    fn apply_request(
        &mut self,
        s: &mut Session,
        req: &pb::SignRequest,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let Ok(map) = self.commitments_of(&req.signers) else {
            self.stats.requests_refused += 1;
            return;
        };
        Self::note_answered(s, req.attempt);
        for (m, (id, _)) in &map {
            self.mark_used(*m, *id);
        }
        self.start_attempt(s, req.height, req.attempt, map, now_ms, out);
    }

    /// How long attempt `attempt` waits for t valid shares (ms): `share_timeout_ms`, half
    /// as much again for each attempt after the first, at most 4 × (attempts 0, 1, 2 … wait
    /// 1, 1.5, 2 … 4 ×). Like Tendermint's growing round timeouts (paper, "timeout_delta"):
    /// when members are slow (a loaded machine, a large committee) a fixed timeout moves on
    /// before t shares can arrive, every time; a growing one lets the attempts catch up.
    /// Only this member's clock advances its attempts, so no peer can shorten or stretch it.
    pub fn share_timeout(&self, attempt: u32) -> u64 {
        self.p
            .share_timeout_ms
            .saturating_mul(u64::from(attempt.min(6)) + 2)
            / 2
    }

    /// Advances signing timers: an attempt without t valid shares after its
    /// [`Self::share_timeout`]
    /// moves to the next attempt (by one); its coordinator (if us) picks fresh commitments
    /// excluding culprits and non-responders, and a request held for that attempt is applied.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        let heights: Vec<Height> = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.done)
            .map(|(h, _)| *h)
            .collect();
        for h in heights {
            let Some(mut s) = self.sessions.remove(&h) else {
                continue;
            };
            let Some(attempt) = s.attempt.checked_add(1) else {
                self.sessions.insert(h, s);
                continue;
            };
            if now_ms.saturating_sub(s.started_ms) < self.share_timeout(s.attempt) {
                self.sessions.insert(h, s);
                continue;
            }
            if s.shares.len() < s.signers.len() {
                self.blame_held_shares(&mut s, h, &mut out);
            }
            let mut excluded: BTreeSet<Member> = s.culprits.clone();
            if s.package.is_some() {
                for m in s.signers.iter().filter(|m| !s.shares.contains_key(m)) {
                    *s.silence.entry(*m).or_insert(0) += 1;
                    excluded.insert(*m);
                }
            }
            self.stats.retries += 1;
            s.attempt = attempt;
            s.package = None;
            s.started_ms = now_ms;
            s.shares.clear();
            s.blamed.clear();
            out.push(Effect::Retry {
                height: h,
                attempt,
                excluded: excluded.iter().copied().collect(),
            });
            let held = s.held.remove(&attempt);
            s.held.retain(|a, _| *a > attempt);
            if self.p.me == Some(self.coordinator(h, attempt)) {
                // A coordinator whose operator paused a chain of this height will not sign
                // it: it leaves itself out instead of wasting the attempt.
                let mut skip = s.culprits.clone();
                if let Some(me) = self.p.me
                    && self.first_paused(s.chains.iter().copied()).is_some()
                {
                    skip.insert(me);
                }
                let pick = self.pick_signers(h, attempt, &skip, &s.silence);
                if let Some(signers) = pick {
                    let req = pb::SignRequest {
                        height: h,
                        attempt,
                        signers,
                    };
                    out.push(Effect::Broadcast(pb::body::Kind::SignRequest(req.clone())));
                    self.apply_request(&mut s, &req, now_ms, &mut out);
                }
            } else if let Some(req) = held {
                if self.request_well_formed(&req) {
                    self.apply_request(&mut s, &req, now_ms, &mut out);
                } else {
                    self.stats.requests_refused += 1;
                }
            }
            self.sessions.insert(h, s);
            self.drain_early(h, &mut out);
        }
        // Forget finished sessions far behind.
        let floor = self.height.saturating_sub(64);
        self.sessions.retain(|h, s| !s.done || *h >= floor);
        // Early shares are worth keeping only for an attempt not yet passed of an unfinished
        // session, or for a height not decided here yet: stale ones would fill the buffer.
        let sessions = &self.sessions;
        let height = self.height;
        self.early_shares.retain(|(h, a), _| match sessions.get(h) {
            Some(s) => !s.done && *a >= s.attempt,
            None => *h >= height,
        });
        out
    }
}
