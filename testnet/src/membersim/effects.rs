//! Carrying out a member's effects in the simulated world (gossip, requests, verdicts) and
//! checking what it decided, attested and sent.

use super::*;

impl Sim {
    /// Executes one member's effects (through its adversary filter when Byzantine).
    pub(super) fn effects(&mut self, m: Member, effects: Vec<Effect>) {
        let adv = self.adversary_of(m);
        let mut crash_after = false;
        for e in effects {
            match e {
                Effect::Publish { topic, envelope } => {
                    if self.sc.trace
                        && let Ok(pb::Body {
                            kind: Some(pb::body::Kind::Proposal(p)),
                        }) = pb::Body::decode(envelope.body.as_slice())
                    {
                        eprintln!("{:>7} m{m} proposes {}/{}", self.now, p.height, p.round);
                    }
                    if self.sc.trace
                        && let Ok(pb::Body {
                            kind: Some(pb::body::Kind::Vote(v)),
                        }) = pb::Body::decode(envelope.body.as_slice())
                    {
                        let id = v.value_id.first().copied();
                        eprintln!(
                            "{:>7} m{m} votes {} {}/{} {:?}",
                            self.now, v.kind, v.height, v.round, id
                        );
                    }
                    if self.honest(m) {
                        self.check_own(m, &envelope);
                    }
                    match adv {
                        Some(Adversary::Silent) => {}
                        Some(a) => self.byzantine_publish(m, a, topic, envelope),
                        None => self.gossip(m, envelope.encode_to_vec(), None),
                    }
                }
                Effect::Send { to, request } => {
                    // `to` is a member index of the sender's epoch.
                    let epoch = self.members.get(&m).map_or(EPOCH, |s| s.epoch);
                    let Some(to) = self.node_at(to, epoch) else {
                        continue;
                    };
                    self.next_req += 1;
                    let id = self.next_req;
                    self.requests.insert(id, m);
                    let lat = self.latency();
                    self.push(
                        lat,
                        Ev::Deliver {
                            to,
                            from: m,
                            p: Payload::Request {
                                id,
                                data: request.encode_to_vec(),
                            },
                        },
                    );
                }
                Effect::Respond { id, response } => {
                    let Some(to) = self.requests.remove(&id) else {
                        continue;
                    };
                    let response = match adv {
                        Some(Adversary::Silent) => continue,
                        Some(Adversary::ForgedCatchup) => self.forged_sync_response(m),
                        _ => response,
                    };
                    let lat = self.latency();
                    self.push(
                        lat,
                        Ev::Deliver {
                            to,
                            from: m,
                            p: Payload::Response(response.encode_to_vec()),
                        },
                    );
                }
                Effect::Verdict { id, verdict } => {
                    let Some(bytes) = self.relay.remove(&id) else {
                        continue;
                    };
                    if matches!(verdict, sigil_engine::Verdict::Accept) && adv.is_none() {
                        for to in 1..=self.nodes() {
                            if to == m || self.lost() {
                                continue;
                            }
                            let lat = self.latency();
                            self.push(
                                lat,
                                Ev::Deliver {
                                    to,
                                    from: m,
                                    p: Payload::Relayed(bytes.clone()),
                                },
                            );
                        }
                    }
                }
                Effect::Event(ev) => {
                    if self.sc.trace && !matches!(ev, sigil_engine::Event::TimeoutFired) {
                        eprintln!("{:>7} m{m} {ev:?}", self.now);
                    }
                }
                Effect::Decided { height, block, .. } => {
                    if self.sc.trace {
                        eprintln!(
                            "{:>7} m{m} decided {height} ({} messages)",
                            self.now, block.0.count
                        );
                    }
                    if self.honest(m) {
                        self.check_decided(m, height, &block.0);
                        self.check_contiguous(m, height, &block.0);
                        let in_handover = block.0.key_commit.is_some()
                            || block.0.handover.is_some()
                            || self.members[&m].epoch > EPOCH;
                        if self.sc.crash_in_handover == Some(m)
                            && in_handover
                            && !self.handover_crashed
                        {
                            // After this step's effects (every decision of the step is
                            // checked; its disk holds them all).
                            self.handover_crashed = true;
                            crash_after = true;
                        }
                        if block.0.rotation.is_some()
                            && self.incoming.is_some()
                            && !std::mem::replace(&mut self.dkg_scheduled, true)
                        {
                            self.push(epochs::DKG_MS, Ev::DkgDone);
                        }
                        if self.sc.crash_after_decide == Some(m) && !self.members[&m].crashed_once {
                            self.crash(m);
                            self.push(2_500, Ev::Restart(m));
                            return;
                        }
                    }
                }
                Effect::Attested { attestation, .. } => {
                    if self.sc.trace {
                        eprintln!("{:>7} m{m} attested {}", self.now, attestation.height);
                    }
                    if self.honest(m) {
                        self.check_attestation(m, &attestation);
                    }
                }
            }
        }
        if crash_after {
            if self.sc.trace {
                eprintln!("{:>7} node {m} crashes in the hand-over", self.now);
            }
            self.crash(m);
            self.push(2_500, Ev::Restart(m));
        }
    }
}
