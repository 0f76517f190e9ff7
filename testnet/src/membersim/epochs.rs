//! Committee changes carried out end to end in the simulator (committee epochs): the
//! rotation is decided, the incoming committee's DKG result (a real FROST DKG among the
//! incoming nodes) reaches the outgoing members as a self-certifying key commit, the
//! outgoing committee signs one key rotation per inbox, every node switches at the epoch's
//! end through the engine's own functions (`Driver::epoch_over`, `epochs::resume_epoch`),
//! joiners start from the hand-over blocks they fetch and check (`epochs::verify_handover`),
//! and leavers stop.
//!
//! Nodes are numbered 1..=n for the genesis committee (node = member index there, so
//! schedules without a switch are unchanged) and n + 1.. for joiners; a node's member
//! index in a later epoch is its position in that epoch's committee.
//!
//! Extra invariants: on every node, the decided ranges continue each other across the
//! boundary (every message in exactly one block); every attestation verifies under the key
//! of its block's epoch (the old key for the hand-over heights, over the inbox's rotation
//! digest; the new key after), and no height after the epoch's end carries the old epoch.

use super::*;
use sigil_engine::epochs;

/// A committee change a schedule carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// n → n + 1: every member stays, one node joins.
    Grow,
    /// n → n − 1: the last member leaves.
    Shrink,
    /// n → n disjoint nodes: every member leaves, n nodes join.
    Replace,
}

impl Switch {
    /// Every change, for sweeps.
    pub const ALL: [Switch; 3] = [Switch::Grow, Switch::Shrink, Switch::Replace];

    /// Command-line name.
    pub fn name(&self) -> &'static str {
        match self {
            Switch::Grow => "grow",
            Switch::Shrink => "shrink",
            Switch::Replace => "replace",
        }
    }

    /// From its command-line name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.name() == s)
    }

    /// The incoming committee's nodes, in member order, for a genesis committee of `n`.
    pub fn incoming(&self, n: u16) -> Vec<Member> {
        match self {
            Switch::Grow => (1..=n + 1).collect(),
            Switch::Shrink => (1..n).collect(),
            Switch::Replace => (n + 1..=2 * n).collect(),
        }
    }

    /// Nodes in the schedule (genesis members and joiners).
    pub fn nodes(&self, n: u16) -> u16 {
        self.incoming(n).into_iter().max().unwrap_or(n).max(n)
    }
}

/// The destination inbox the rotation is signed for.
pub(super) fn inbox() -> pb::Inbox {
    pb::Inbox {
        chain_id: 2,
        address: Address::repeat_byte(0x5b).to_vec(),
    }
}

/// The incoming committee: its nodes, the rotation naming their keys, a real DKG among
/// them and the key commit of their signed confirmations.
pub(super) struct Incoming {
    pub(super) nodes: Vec<Member>,
    pub(super) rotation: pb::Rotation,
    pub(super) commit: pb::KeyCommit,
    pub(super) outputs: BTreeMap<u16, sigil_crypto::dkg::DkgOutput>,
    pub(super) committee: Committee,
}

/// Builds the incoming committee of `switch` from the nodes' keys (`keys[i]` is node i + 1).
pub(super) fn incoming(switch: Switch, n: u16, keys: &[SigningKey]) -> Result<Incoming, String> {
    let nodes = switch.incoming(n);
    let size = nodes.len() as u16;
    let (_, t) = sigil_crypto::keys::thresholds(size);
    let node_key = |m: Member| keys[usize::from(m) - 1].clone();
    let rotation = pb::Rotation {
        epoch: EPOCH + 1,
        members: nodes
            .iter()
            .map(|m| {
                node_key(*m)
                    .verifying_key()
                    .to_encoded_point(true)
                    .as_bytes()
                    .to_vec()
            })
            .collect(),
        threshold: u32::from(t),
        inboxes: vec![inbox()],
    };
    let mut rng = ChaCha20Rng::seed_from_u64(0x0d6c_0002);
    let outputs = sigil_crypto::dkg::run_local(t, size, &mut rng)
        .map_err(|e| format!("incoming DKG: {e}"))?;
    let confirmations = (1..=size)
        .map(|i| {
            let o = &outputs[&i];
            let c = pb::DkgConfirm {
                epoch: EPOCH + 1,
                group_key: o.group_key.compressed().to_vec(),
                round1_digest: o.transcript.round1_digest.to_vec(),
                verifying_shares_digest: o.transcript.verifying_shares_digest.to_vec(),
                round1_packages: o.transcript.round1.iter().map(|h| h.to_vec()).collect(),
            };
            sigil_engine::envelope::seal(
                &node_key(nodes[usize::from(i) - 1]),
                i,
                &pb::Body {
                    kind: Some(pb::body::Kind::DkgConfirm(c)),
                },
            )
        })
        .collect();
    let commit = pb::KeyCommit {
        epoch: EPOCH + 1,
        group_key: outputs[&1].group_key.compressed().to_vec(),
        confirmations,
    };
    let committee = Committee::new(
        nodes
            .iter()
            .map(|m| *node_key(*m).verifying_key())
            .collect(),
    );
    Ok(Incoming {
        nodes,
        rotation,
        commit,
        outputs,
        committee,
    })
}

/// When the incoming nodes' DKG finishes, after the rotation is first decided (ms).
pub(super) const DKG_MS: u64 = 1_500;
/// A joiner asks for the hand-over (and offers its key commit) this often (ms).
const JOIN_RETRY_MS: u64 = 1_000;

impl Sim {
    /// The nodes of `epoch`'s committee, in member order.
    pub(super) fn committee_nodes(&self, epoch: u64) -> Vec<Member> {
        match (&self.incoming, epoch) {
            (Some(inc), e) if e == EPOCH + 1 => inc.nodes.clone(),
            _ => (1..=self.sc.n).collect(),
        }
    }

    /// Node `node`'s member index in `epoch`'s committee.
    pub(super) fn index_in(&self, node: Member, epoch: u64) -> Option<Member> {
        self.committee_nodes(epoch)
            .iter()
            .position(|x| *x == node)
            .and_then(|i| Member::try_from(i + 1).ok())
    }

    /// The node holding member index `index` of `epoch`'s committee.
    pub(super) fn node_at(&self, index: Member, epoch: u64) -> Option<Member> {
        self.committee_nodes(epoch)
            .get(usize::from(index).checked_sub(1)?)
            .copied()
    }

    /// The member index node `node` speaks as now (its current epoch), or `None` (a joiner,
    /// a node that left).
    pub(super) fn speaks_as(&self, node: Member) -> Option<Member> {
        let sm = self.members.get(&node)?;
        sm.driver.as_ref()?;
        self.index_in(node, sm.epoch)
    }

    /// How node `to` names node `from` (its index in `to`'s current epoch; 0 = outsider).
    pub(super) fn seen_as(&self, to: Member, from: Member) -> Member {
        let epoch = self.members.get(&to).map_or(EPOCH, |s| s.epoch);
        self.index_in(from, epoch).unwrap_or(0)
    }

    /// After a node's driver handled something: when its epoch is over, it switches (staying
    /// or joining member: the next epoch's driver over the same disk) or stops (leaver).
    pub(super) fn maybe_switch(&mut self, m: Member) {
        let over = self
            .members
            .get(&m)
            .and_then(|s| s.driver.as_ref())
            .and_then(|d| d.epoch_over());
        let Some(end) = over else { return };
        if self.incoming.is_none() {
            return;
        }
        let epoch = self.members.get(&m).map_or(EPOCH, |s| s.epoch);
        if self.index_in(m, epoch + 1).is_none() {
            // A member that leaves keeps its outgoing driver as an archive: it decides
            // nothing more and serves its blocks (the hand-over, to joiners).
            if self.switch_end.is_none() {
                self.switch_end = Some(end);
            }
            return;
        }
        if let Some(prev) = self.switch_end
            && prev != end
        {
            self.violate(format!(
                "node {m} ended the epoch at {end}, another node at {prev}"
            ));
        }
        self.switch_end = Some(end);
        if self.sc.trace {
            eprintln!("{:>7} node {m} epoch over at {end}", self.now);
        }
        let Some(sm) = self.members.get_mut(&m) else {
            return;
        };
        let Some(d) = sm.driver.take() else { return };
        sm.disk = Some(d.into_storage());
        // Through the same path as a restart: the disk says which epoch it is in.
        self.start(m);
    }

    /// The incoming nodes' DKG has finished: each offers the key commit to its own driver (if
    /// it runs one) and sends it to every outgoing member; joiners start asking for the
    /// hand-over.
    pub(super) fn dkg_done(&mut self) {
        let Some(inc) = &self.incoming else { return };
        let commit = inc.commit.clone();
        let nodes = inc.nodes.clone();
        self.dkg_finished = true;
        for m in nodes {
            if !self.honest(m) {
                continue;
            }
            if let Some(d) = self.members.get_mut(&m).and_then(|s| s.driver.as_mut())
                && let Err(e) = d.offer_key_commit(commit.clone())
                && self.sc.trace
            {
                eprintln!("{:>7} node {m}: own key commit refused: {e}", self.now);
            }
            self.push(0, Ev::Join(m));
        }
    }

    /// A joiner's periodic step: offer the key commit to every outgoing member and ask one of
    /// them (round robin) for the hand-over; an incoming node already running stops here.
    pub(super) fn join_step(&mut self, m: Member) {
        let Some(sm) = self.members.get(&m) else {
            return;
        };
        if !sm.joining {
            // A member of the outgoing committee: its own driver has the key commit; still
            // send it to the others (one of them may have taken no part in the DKG).
            if sm.epoch > EPOCH || sm.driver.is_none() {
                return;
            }
        }
        let Some(inc) = &self.incoming else { return };
        let commit = inc.commit.clone();
        let outgoing = self.committee_nodes(EPOCH);
        for to in &outgoing {
            if *to == m {
                continue;
            }
            let data = pb::Request {
                kind: Some(pb::request::Kind::KeyCommit(commit.clone())),
            }
            .encode_to_vec();
            self.send_request(m, *to, data);
        }
        if self.members[&m].joining {
            self.join_asks += 1;
            let to = outgoing[(self.join_asks as usize + usize::from(m)) % outgoing.len()];
            let data = epochs::handover_request(EPOCH + 1).encode_to_vec();
            self.send_request(m, to, data);
        }
        self.push(JOIN_RETRY_MS, Ev::Join(m));
    }

    /// A response to a joiner (no driver yet): the hand-over blocks, checked and installed.
    pub(super) fn joiner_response(&mut self, m: Member, data: &[u8]) {
        let Some(inc) = &self.incoming else { return };
        let Ok(blocks) = epochs::served_blocks(data) else {
            return;
        };
        if blocks.is_empty() {
            return;
        }
        let outgoing = self.committee.clone();
        let Some(pos) = inc.nodes.iter().position(|x| *x == m) else {
            return;
        };
        let group_key = inc.outputs[&(pos as u16 + 1)]
            .group_key
            .compressed()
            .to_vec();
        let checked = epochs::verify_handover(&blocks, &outgoing, &inc.rotation, &group_key);
        let h = match checked {
            Ok(h) => h,
            Err(e) => {
                if self.sc.trace {
                    eprintln!("{:>7} node {m}: hand-over refused: {e}", self.now);
                }
                return;
            }
        };
        let Some(sm) = self.members.get_mut(&m) else {
            return;
        };
        let Some(disk) = sm.disk.as_mut() else { return };
        if let Err(e) = epochs::install_handover(disk, &h) {
            self.violate(format!("node {m}: installing the hand-over: {e}"));
            return;
        }
        let carry = h
            .carry
            .iter()
            .find(|(c, _)| *c == CHAIN)
            .map_or(0, |(_, n)| *n);
        self.frontier.insert(m, carry);
        sm.joining = false;
        self.start(m);
    }

    /// Sends a request from node `from` to node `to` (a joiner's, outside any driver).
    fn send_request(&mut self, from: Member, to: Member, data: Vec<u8>) {
        self.next_req += 1;
        let id = self.next_req;
        self.requests.insert(id, from);
        let lat = self.latency();
        self.push(
            lat,
            Ev::Deliver {
                to,
                from,
                p: Payload::Request { id, data },
            },
        );
    }

    /// Every message in exactly one block: node `m`'s decided ranges continue each other.
    pub(super) fn check_contiguous(&mut self, m: Member, height: u64, b: &pb::Block) {
        for r in &b.ranges {
            if let Some(next) = self.frontier.get(&m).copied()
                && r.from_nonce != next
            {
                self.violate(format!(
                    "node {m} decided nonces {}..{} at height {height} but its blocks ended at {next}",
                    r.from_nonce, r.to_nonce
                ));
            }
            self.frontier.insert(m, r.to_nonce);
        }
        if let Some(end) = self.switch_end
            && height > end
            && b.epoch == EPOCH
        {
            self.violate(format!(
                "node {m} decided height {height} of the old epoch after its end at {end}"
            ));
        }
    }

    /// The group key of `epoch` (the dealt genesis key, or the incoming committee's).
    pub(super) fn key_of(&self, epoch: u64) -> Option<sigil_crypto::GroupKey> {
        if epoch == EPOCH {
            return Some(self.keys.group_key);
        }
        let inc = self.incoming.as_ref()?;
        (epoch == EPOCH + 1).then(|| inc.outputs[&1].group_key)
    }

    /// What an attestation must be signed over: the batch digest, or for a key-rotation
    /// height the inbox's rotation digest from the old key to the new one.
    pub(super) fn expected_digest(&self, a: &pb::Attestation, block: &pb::Block) -> Option<B256> {
        let root = B256::try_from(a.root.as_slice()).ok()?;
        let Some(inbox) = &block.handover else {
            return Some(sigil_crypto::batch_digest(a.epoch, a.height, root));
        };
        let old = self.key_of(block.epoch)?;
        let new = self.key_of(block.epoch + 1)?;
        Some(sigil_crypto::rotation_digest(
            inbox.chain_id,
            Address::try_from(inbox.address.as_slice()).ok()?,
            block.epoch,
            old.x(),
            old.parity(),
            block.epoch + 1,
            new.x(),
            new.parity(),
        ))
    }
}
