//! The invariants checked after every event (agreement, truthful decisions and shares,
//! attestations over the decided root, no honest double vote, bounded state) and the
//! committee rotations the schedules approve.

use super::*;

impl Sim {
    /// The root the chain's messages in `ranges` really have, or `None` if a range names
    /// messages the chain did not emit (or another chain/gateway).
    pub(super) fn true_root(&self, b: &pb::Block) -> Option<Vec<u8>> {
        let mut leaves = Vec::new();
        for r in &b.ranges {
            if r.chain_id != CHAIN || r.gateway != Address::repeat_byte(0x5a).as_slice() {
                return None;
            }
            for nonce in r.from_nonce..r.to_nonce {
                leaves.push(self.chain.get(usize::try_from(nonce).ok()?)?.message.leaf());
            }
        }
        Some(BatchTree::new(&leaves).ok()?.root().to_vec())
    }

    /// The block's root is what the chain emitted in its ranges (or, for a rotation alone,
    /// the zero root of an empty batch).
    pub(super) fn truthful_root(&self, b: &pb::Block) -> bool {
        if b.ranges.is_empty()
            && (b.rotation.is_some() || b.key_commit.is_some() || b.handover.is_some())
        {
            b.count == 0 && b.root == B256::ZERO.as_slice()
        } else {
            self.true_root(b).as_deref() == Some(b.root.as_slice())
        }
    }

    /// Worth an honest share: a truthful root and no rotation but the approved one.
    pub(super) fn truthful(&self, b: &pb::Block) -> bool {
        self.truthful_root(b)
            && b.rotation
                .as_ref()
                .is_none_or(|r| self.approved().as_ref() == Some(r))
    }

    pub(super) fn check_decided(&mut self, m: Member, height: u64, b: &pb::Block) {
        if let Some(r) = &b.rotation {
            if self.approved().as_ref() != Some(r) {
                self.violate(format!(
                    "member {m} decided at height {height} a rotation no honest operator approved"
                ));
            }
            if let Some(first) = self.rotations.insert(m, height)
                && first != height
            {
                self.violate(format!(
                    "member {m} decided a second rotation in one epoch (heights {first} and {height})"
                ));
            }
        }
        if !self.truthful_root(b) {
            self.violate(format!(
                "member {m} decided height {height} with a root the chain never emitted"
            ));
        }
        let id = sigil_consensus::Value::id(&sigil_engine::app::Block(b.clone()));
        for (other, map) in &self.decided {
            if let Some(x) = map.get(&height)
                && *x != id
            {
                let msg =
                    format!("agreement: members {m} and {other} decided differently at {height}");
                self.violate(msg);
                break;
            }
        }
        self.decided.entry(m).or_default().insert(height, id);
    }

    pub(super) fn check_attestation(&mut self, m: Member, a: &pb::Attestation) {
        self.report.attestations += 1;
        let block = self.members[&m]
            .driver
            .as_ref()
            .and_then(|d| d.storage().block(a.height).ok().flatten())
            .and_then(|cb| cb.proposal)
            .and_then(|env| pb::Body::decode(env.body.as_slice()).ok())
            .and_then(|b| match b.kind {
                Some(pb::body::Kind::Proposal(p)) => p.block,
                _ => None,
            });
        // Under the key of the block's epoch (never an expired one), over the digest the
        // block calls for (batch, or an inbox's key rotation).
        let ok = block.as_ref().is_some_and(|b| {
            let key = self.key_of(b.epoch);
            let digest = self.expected_digest(a, b);
            a.epoch == b.epoch
                && a.handover.is_some() == b.handover.is_some()
                && frost::Signature::deserialize(&a.signature).is_ok_and(|sig| {
                    key.zip(digest)
                        .is_some_and(|(k, d)| sigil_crypto::signing::verify(&k, d, &sig).is_ok())
                })
        });
        let decided_root = block.map(|b| b.root);
        if !ok || decided_root.as_deref() != Some(a.root.as_slice()) {
            self.violate(format!(
                "member {m}: attestation at height {} does not verify over its decided root",
                a.height
            ));
        }
    }

    /// Own votes never change across crashes; own shares only for truthful decided blocks.
    pub(super) fn check_own(&mut self, m: Member, env: &pb::Envelope) {
        if self.speaks_as(m).map(u32::from) != Some(env.member) {
            // Another member's envelope it repeats (a quorum's votes).
            return;
        }
        let Ok(body) = pb::Body::decode(env.body.as_slice()) else {
            return;
        };
        match body.kind {
            Some(pb::body::Kind::Vote(v)) => {
                let key = (m, v.height, v.round, v.kind);
                match self.votes.get(&key) {
                    Some(prev) if *prev != v.value_id => self.violate(format!(
                        "member {m} double-voted at height {} round {}",
                        v.height, v.round
                    )),
                    Some(_) => {}
                    None => {
                        self.votes.insert(key, v.value_id);
                    }
                }
            }
            Some(pb::body::Kind::Share(s)) => {
                let block = self.members[&m]
                    .driver
                    .as_ref()
                    .and_then(|d| d.storage().block(s.height).ok().flatten())
                    .and_then(|cb| cb.proposal)
                    .and_then(|env| pb::Body::decode(env.body.as_slice()).ok())
                    .and_then(|b| match b.kind {
                        Some(pb::body::Kind::Proposal(p)) => p.block,
                        _ => None,
                    });
                let truthful = block.as_ref().is_some_and(|b| self.truthful(b));
                if !truthful {
                    self.violate(format!(
                        "member {m} released a share for height {} whose block is not what the chain emitted",
                        s.height
                    ));
                }
                // Consume, record, then release: the share must already be in its store.
                let recorded = self.members[&m].driver.as_ref().is_some_and(|d| {
                    d.storage().share_records().any(|r| {
                        r.own
                            && r.height == s.height
                            && r.attempt == s.attempt
                            && r.share.as_slice() == s.share.as_slice()
                    })
                });
                if !recorded {
                    self.violate(format!(
                        "member {m} released a share for height {} attempt {} it had not recorded",
                        s.height, s.attempt
                    ));
                }
            }
            _ => {}
        }
    }

    /// The auditor's share checks ([`crate::devnet::audit::check_shares`]) over the honest
    /// members' stores: no honest signer made two shares under one nonce, and each of its
    /// shares others saw it had recorded with the nonce consumed. Byzantine signers' records
    /// are left out (only honest members' own records say who is honest in which epoch).
    pub(super) fn check_share_records(&mut self) {
        let disks: Vec<(&MemStorage, &SharedLedger)> = self
            .members
            .iter()
            .filter(|(m, _)| self.honest(**m))
            .filter_map(|(_, sm)| {
                let disk = sm
                    .driver
                    .as_ref()
                    .map(|d| d.storage())
                    .or(sm.disk.as_ref())?;
                Some((disk, &sm.ledger))
            })
            .collect();
        let honest: std::collections::HashSet<(u64, Member)> = disks
            .iter()
            .flat_map(|(d, _)| d.share_records().filter(|r| r.own))
            .map(|r| (r.epoch, r.member))
            .collect();
        let stores: Vec<_> = disks
            .iter()
            .map(|(d, ledger)| {
                let records: Vec<_> = d
                    .share_records()
                    .filter(|r| honest.contains(&(r.epoch, r.member)))
                    .cloned()
                    .collect();
                let consumed = records
                    .iter()
                    .filter(|r| {
                        r.own
                            && ledger.status(NonceId(r.nonce_id))
                                == sigil_crypto::nonce::NonceStatus::Consumed
                    })
                    .map(|r| r.nonce_id)
                    .collect();
                (records, consumed)
            })
            .collect();
        let (count, reuse, unrecorded) = crate::devnet::audit::check_shares(&stores);
        self.report.share_records = count;
        if let Some(v) = reuse.first().or(unrecorded.first()) {
            self.violate(format!("share audit: {v}"));
        }
    }

    pub(super) fn check_bounds(&mut self, m: Member) {
        let Some(d) = self.members.get(&m).and_then(|s| s.driver.as_ref()) else {
            return;
        };
        let state = d.held_entries();
        let wal = d.storage().wal_len();
        self.report.peak_state = self.report.peak_state.max(state);
        self.report.peak_wal = self.report.peak_wal.max(wal);
        if state > STATE_BOUND || wal > WAL_BOUND {
            self.violate(format!(
                "member {m} holds {state} driver entries and {wal} WAL records (bounds {STATE_BOUND}/{WAL_BOUND})"
            ));
        }
    }
}

/// The next committee every honest operator approves in a rotation schedule: n + 1 fixed
/// node keys (epoch [`EPOCH`] + 1).
pub fn approved_rotation(n: u16) -> pb::Rotation {
    rotation_of(n + 1, 0x0071_7a7e)
}

/// The committee a Byzantine member `m` "approves": its own key and made-up others.
pub(super) fn rogue_rotation(n: u16, m: Member) -> pb::Rotation {
    rotation_of(n, 0x0b00_0000 + u64::from(m))
}

fn rotation_of(size: u16, seed: u64) -> pb::Rotation {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let members = (0..size)
        .map(|_| {
            SigningKey::random(&mut rng)
                .verifying_key()
                .to_encoded_point(true)
                .as_bytes()
                .to_vec()
        })
        .collect();
    pb::Rotation {
        epoch: EPOCH + 1,
        members,
        threshold: u32::from(sigil_crypto::keys::thresholds(size).1),
        inboxes: vec![super::epochs::inbox()],
    }
}

/// The rotation a member's stored blocks decided, with its height, found by scanning them
/// (checked against what the engine restores from the disk's index).
pub(super) fn stored_rotation(disk: &MemStorage) -> Option<(u64, pb::Rotation)> {
    let last = disk.last_height().ok()?;
    (1..=last).find_map(|h| {
        let block = disk
            .block(h)
            .ok()
            .flatten()?
            .proposal
            .and_then(|env| pb::Body::decode(env.body.as_slice()).ok())
            .and_then(|b| match b.kind {
                Some(pb::body::Kind::Proposal(p)) => p.block,
                _ => None,
            })?;
        block.rotation.map(|r| (h, r))
    })
}
