//! The Byzantine behaviours: each rewrites or adds to its member's real output, signing with
//! its own node key, so every lie arrives through the real wire format.

use super::{Adversary, EPOCH, Sim};
use prost::Message as _;
use rand_core::RngCore;
use sigil_engine::{Member, Topic};
use sigil_proto as pb;
use std::collections::BTreeSet;

impl Sim {
    fn half(&mut self, m: Member) -> BTreeSet<Member> {
        (1..=self.sc.n)
            .filter(|x| *x != m && x.is_multiple_of(2))
            .collect()
    }

    fn other_half(&mut self, m: Member) -> BTreeSet<Member> {
        (1..=self.sc.n).filter(|x| *x != m && x % 2 == 1).collect()
    }

    /// The forged block B* of `height`: empty ranges and a made-up root, the same bytes
    /// every time, so the certificate and the proposal name one value.
    fn forged_block(&mut self, height: u64) -> pb::Block {
        let mut root = vec![0xb5; 32];
        root[..8].copy_from_slice(&height.to_be_bytes());
        pb::Block {
            height,
            epoch: EPOCH,
            ranges: Vec::new(),
            root,
            count: 0,
            signers: Vec::new(),
            time_ms: 0,
            rotation: None,
            key_commit: None,
            handover: None,
            carry: Vec::new(),
        }
    }

    pub(super) fn byzantine_publish(
        &mut self,
        m: Member,
        a: Adversary,
        _topic: Topic,
        env: pb::Envelope,
    ) {
        let body = pb::Body::decode(env.body.as_slice()).ok();
        let kind = body.and_then(|b| b.kind);
        match (a, kind) {
            (Adversary::DoubleVoter, Some(pb::body::Kind::Vote(v))) if v.kind == 1 => {
                let mut other = v.clone();
                let mut id = vec![0u8; 32];
                self.rng.fill_bytes(&mut id);
                other.value_id = id;
                let a_half = self.half(m);
                let b_half = self.other_half(m);
                self.gossip(m, env.encode_to_vec(), Some(&a_half));
                let forged = self.seal(m, pb::body::Kind::Vote(other));
                self.gossip(m, forged.encode_to_vec(), Some(&b_half));
            }
            (Adversary::EquivocatingProposer, Some(pb::body::Kind::Proposal(p))) => {
                let mut other = p.clone();
                if let Some(b) = other.block.as_mut() {
                    b.time_ms = b.time_ms.wrapping_add(1);
                }
                let a_half = self.half(m);
                let b_half = self.other_half(m);
                self.gossip(m, env.encode_to_vec(), Some(&a_half));
                let forged = self.seal(m, pb::body::Kind::Proposal(other));
                self.gossip(m, forged.encode_to_vec(), Some(&b_half));
            }
            (Adversary::InvalidProposer, Some(pb::body::Kind::Proposal(mut p))) => {
                if let Some(b) = p.block.as_mut() {
                    b.root[0] ^= 0xff;
                }
                let forged = self.seal(m, pb::body::Kind::Proposal(p));
                self.gossip(m, forged.encode_to_vec(), None);
            }
            (Adversary::ForgedCatchup, Some(pb::body::Kind::Vote(mut v)))
                if self.proposes(m, v.height, v.round) =>
            {
                // Vote for B* in the rounds where it proposes B*.
                let forged = self.forged_block(v.height);
                v.value_id = sigil_consensus::Value::id(&sigil_engine::app::Block(forged)).to_vec();
                let env = self.seal(m, pb::body::Kind::Vote(v));
                self.gossip(m, env.encode_to_vec(), None);
            }
            (Adversary::ForgedCatchup, Some(pb::body::Kind::Proposal(mut p))) => {
                // The worst moment: the forged certificate of B* lands just before the
                // proposal of B*, so a member that believed the certificate would prevote it.
                let resp = self.forged_sync_response(m);
                for to in 1..=self.sc.n {
                    if to != m {
                        self.push(
                            1,
                            super::Ev::Deliver {
                                to,
                                from: m,
                                p: super::Payload::Response(resp.encode_to_vec()),
                            },
                        );
                    }
                }
                p.block = Some(self.forged_block(p.height));
                let forged = self.seal(m, pb::body::Kind::Proposal(p));
                self.gossip(m, forged.encode_to_vec(), None);
            }
            (Adversary::BadShares, Some(pb::body::Kind::Share(mut s))) => {
                if let Some(b) = s.share.last_mut() {
                    *b ^= 0x55;
                }
                let forged = self.seal(m, pb::body::Kind::Share(s));
                self.gossip(m, forged.encode_to_vec(), None);
            }
            _ => self.gossip(m, env.encode_to_vec(), None),
        }
    }

    fn proposes(&self, m: Member, height: u64, round: u32) -> bool {
        sigil_consensus::ValidatorSet::equal(1..=self.sc.n)
            .is_ok_and(|vs| *vs.proposer(height, round) == m)
    }

    /// Extra traffic a Byzantine member sends every tick.
    pub(super) fn byzantine_tick(&mut self, m: Member, a: Adversary) {
        let Some(st) = self.members[&m].driver.as_ref().map(|d| d.status()) else {
            return;
        };
        match a {
            Adversary::ForgedCatchup => {
                // Claim to be far ahead so that everyone asks us for blocks.
                let hb = pb::Heartbeat {
                    height: st.height + 1_000,
                    round: 0,
                    version: "byzantine".into(),
                    heads: Vec::new(),
                    time_ms: self.now,
                    attested_height: st.height + 1_000,
                    decided_height: st.height + 999,
                    // A lone faulty member announcing the chain paused must stop nothing.
                    paused_chains: vec![super::CHAIN],
                };
                let env = self.seal(m, pb::body::Kind::Heartbeat(hb));
                self.gossip(m, env.encode_to_vec(), None);
                // And push the forged certificate as if answering a request.
                if self.rng.next_u32().is_multiple_of(4) {
                    let resp = self.forged_sync_response(m);
                    for to in 1..=self.sc.n {
                        if to != m {
                            self.push(
                                10,
                                super::Ev::Deliver {
                                    to,
                                    from: m,
                                    p: super::Payload::Response(resp.encode_to_vec()),
                                },
                            );
                        }
                    }
                }
            }
            Adversary::AttemptBumper => {
                let n = u64::from(self.sc.n);
                for h in st.decided.saturating_sub(2).max(1)..=st.decided + 1 {
                    // Attempts this member coordinates: (h + a) mod n + 1 == m.
                    let base = (u64::from(m) + n - 1 + n - h % n) % n;
                    let near = u32::try_from(base).unwrap_or(0);
                    let top = u32::MAX - ((u32::MAX as u64 + n - base) % n) as u32;
                    let step = u32::try_from(n).unwrap_or(4);
                    for attempt in [near, near + step, top] {
                        if attempt == 0 {
                            continue;
                        }
                        let signers = self.fake_commitments();
                        let req = pb::SignRequest {
                            height: h,
                            attempt,
                            signers,
                        };
                        let env = self.seal(m, pb::body::Kind::SignRequest(req));
                        self.gossip(m, env.encode_to_vec(), None);
                    }
                    // Attempts it coordinates that the others may have passed, naming real,
                    // unused commitments of honest members: each is answered at most once per
                    // attempt, so this burns a bounded number of honest nonces.
                    if let Some(signers) = self.harvested_commitments(m) {
                        for k in 0..8u32 {
                            let attempt = near.saturating_add(k.saturating_mul(step));
                            if attempt == 0 {
                                continue;
                            }
                            let req = pb::SignRequest {
                                height: h,
                                attempt,
                                signers: signers.clone(),
                            };
                            let env = self.seal(m, pb::body::Kind::SignRequest(req));
                            self.gossip(m, env.encode_to_vec(), None);
                        }
                    }
                }
            }
            Adversary::FarFuture => {
                let mut votes = Vec::new();
                for (h, r) in [
                    (st.height, st.round + 1_000_000),
                    (st.height + 1, 5_000),
                    (st.height + 2, 0),
                    (st.height + 1_000, 0),
                    (st.height, u32::MAX),
                ] {
                    let mut id = vec![0u8; 32];
                    self.rng.fill_bytes(&mut id);
                    votes.push(pb::body::Kind::Vote(pb::Vote {
                        kind: 1 + self.rng.next_u32() % 2,
                        height: h,
                        round: r,
                        value_id: id,
                    }));
                    votes.push(pb::body::Kind::Proposal(pb::Proposal {
                        height: h,
                        round: r,
                        block: Some(self.forged_block(h)),
                        valid_round: -1,
                    }));
                }
                // Distinct votes in the current round window, a fresh one every tick.
                let mut id = vec![0u8; 32];
                self.rng.fill_bytes(&mut id);
                votes.push(pb::body::Kind::Vote(pb::Vote {
                    kind: 2,
                    height: st.height,
                    round: st.round + self.rng.next_u32() % 16,
                    value_id: id,
                }));
                votes.push(pb::body::Kind::Heartbeat(pb::Heartbeat {
                    height: st.height + 1 + u64::from(self.rng.next_u32()),
                    round: 0,
                    version: "byzantine".into(),
                    heads: Vec::new(),
                    time_ms: self.now,
                    attested_height: u64::MAX,
                    decided_height: u64::MAX,
                    paused_chains: vec![super::CHAIN, u64::MAX],
                }));
                for kind in votes {
                    let env = self.seal(m, kind);
                    self.gossip(m, env.encode_to_vec(), None);
                }
            }
            _ => {}
        }
    }

    /// t commitments, well-formed points, for members 1..=t, with ids no one issued.
    /// t real commitments (one per member, honest members first) that member `m` received
    /// in gossip, if it has that many.
    fn harvested_commitments(&self, m: Member) -> Option<Vec<pb::Commitment>> {
        let (_, t) = sigil_crypto::keys::thresholds(self.sc.n);
        let mut out: Vec<pb::Commitment> = self
            .harvest
            .iter()
            .filter(|(owner, _)| **owner != m)
            .filter_map(|(_, list)| list.last().cloned())
            .take(usize::from(t))
            .collect();
        if out.len() < usize::from(t) {
            return None;
        }
        out.sort_by_key(|c| c.member);
        Some(out)
    }

    fn fake_commitments(&mut self) -> Vec<pb::Commitment> {
        const DISTINCT: usize = 8;
        let (_, t) = sigil_crypto::keys::thresholds(self.sc.n);
        if self.fakes.len() < DISTINCT {
            let kp = self.keys.key_packages[&1].clone();
            let list = (1..=t)
                .map(|member| {
                    let (_, c) = frost_secp256k1::round1::commit(kp.signing_share(), &mut self.rng);
                    pb::Commitment {
                        member: u32::from(member),
                        nonce_id: 0,
                        commitments: c.serialize().unwrap_or_default(),
                    }
                })
                .collect();
            self.fakes.push(list);
        }
        let pick = self.rng.next_u32() as usize % self.fakes.len();
        let mut list = self.fakes[pick].clone();
        for c in &mut list {
            c.nonce_id = 1_000_000 + u64::from(self.rng.next_u32());
        }
        list
    }

    /// A catch-up answer holding this member's own signed proposal of a forged block for the
    /// next few heights, with no precommits (or only its own).
    pub(super) fn forged_sync_response(&mut self, m: Member) -> pb::Response {
        let decided = self
            .members
            .values()
            .filter_map(|s| s.driver.as_ref().map(|d| d.status().decided))
            .min()
            .unwrap_or(0);
        let mut blocks = Vec::new();
        for h in decided + 1..decided + 3 {
            let block = self.forged_block(h);
            // A round this member proposes in, so the proposer check passes.
            let round = (0..u32::from(self.sc.n))
                .find(|r| self.proposes(m, h, *r))
                .unwrap_or(0);
            let proposal = pb::Proposal {
                height: h,
                round,
                block: Some(block.clone()),
                valid_round: -1,
            };
            let penv = self.seal(m, pb::body::Kind::Proposal(proposal));
            let id = sigil_consensus::Value::id(&sigil_engine::app::Block(block));
            let own = self.seal(
                m,
                pb::body::Kind::Vote(pb::Vote {
                    kind: 2,
                    height: h,
                    round,
                    value_id: id.to_vec(),
                }),
            );
            let precommits = if self.rng.next_u32().is_multiple_of(2) {
                Vec::new()
            } else {
                vec![own.clone(), own.clone(), own]
            };
            blocks.push(pb::CommittedBlock {
                proposal: Some(penv),
                precommits,
                attestation: None,
            });
        }
        pb::Response {
            kind: Some(pb::response::Kind::Sync(pb::SyncResponse { blocks })),
        }
    }
}
