//! Committee rotation in the devnet (`--rotate-at N --join J --leave L`): once N messages
//! are sent, every operator — the members' and the joiners' — approves the next committee
//! with `sigil epoch approve --member …` (the current members without the last L, plus J new
//! nodes), and the joiners start with `sigil start --join`. The committee decides the
//! rotation, runs the new key's DKG over its running swarm, decides the key commit and
//! signs the key rotation of both inboxes, which the relayer posts; the nodes switch to
//! epoch 2 while messages keep flowing both ways.

use super::{NodeProc, sigil, start_node_with};
use anyhow::{Result, bail};
use std::path::Path;
use std::time::Instant;

/// What the report shows about a rotation.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationReport {
    /// Messages sent when the operators approved the next committee.
    pub approved_after_messages: usize,
    /// Members that joined (devnet node numbers).
    pub joined: Vec<u16>,
    /// Members that left (devnet node numbers).
    pub left: Vec<u16>,
    /// Seconds from the approvals until every node of the new committee ran epoch 2
    /// (decision, DKG, key commit, key-rotation signatures, switch).
    pub new_key_after_s: Option<f64>,
    /// Seconds from the approvals until both inboxes accepted the new key (`rotateKey`
    /// posted by the relayer).
    pub inboxes_after_s: Option<f64>,
    /// Messages attested in epoch 1 and in epoch 2.
    pub messages_per_epoch: [u64; 2],
    /// Whether `sigil epoch prune --below 2` erased a staying member's epoch-1 share (and
    /// refused to erase the share it signs with).
    pub pruned: bool,
}

impl RotationReport {
    /// Whether the rotation completed (new committee in epoch 2, both inboxes rotated).
    pub fn done(&self) -> bool {
        self.new_key_after_s.is_some() && self.inboxes_after_s.is_some()
    }
}

/// After the rotation, the operator of a staying member (`home`, node running) erases the
/// old epoch's key share with `sigil epoch prune --below 2` (on a real network: once the
/// old epoch's grace period has ended on every inbox); `--below 3` must be refused (the
/// share it signs with). Returns whether both held.
/// Errors: the command could not run.
pub async fn prune_old_share(bin: &Path, home: &Path) -> Result<bool> {
    let erased = sigil(bin, home)
        .args(["epoch", "prune", "--below", "2"])
        .output()
        .await?;
    let refused = sigil(bin, home)
        .args(["epoch", "prune", "--below", "3"])
        .output()
        .await?;
    let old_gone = !sigil_node::keyfiles::key_share_path(home, 1).exists();
    let new_kept = sigil_node::keyfiles::key_share_path(home, 2).exists();
    Ok(erased.status.success() && !refused.status.success() && old_gone && new_kept)
}

/// A rotation in progress.
pub struct Rotation {
    pub(super) report: RotationReport,
    started: Option<Instant>,
    /// Node numbers of the next committee.
    next: Vec<u16>,
}

impl Rotation {
    /// The plan: the first `nodes` members, the last `leave` of them leaving, `join` nodes
    /// (numbered after them) joining.
    pub fn new(nodes: u16, join: u16, leave: u16) -> Self {
        let next: Vec<u16> = (1..=nodes - leave)
            .chain(nodes + 1..=nodes + join)
            .collect();
        Self {
            report: RotationReport {
                joined: (nodes + 1..=nodes + join).collect(),
                left: (nodes - leave + 1..=nodes).collect(),
                ..Default::default()
            },
            started: None,
            next,
        }
    }

    /// Whether the operators approved already.
    pub fn started(&self) -> bool {
        self.started.is_some()
    }

    /// The operators approve the next committee (`keys[i]` is node i + 1's node key) and the
    /// joiners start with `--join`.
    /// Errors: `sigil epoch approve` failing (its message), a joiner not starting.
    pub async fn begin(
        &mut self,
        bin: &Path,
        nodes: &mut [NodeProc],
        keys: &[String],
        sent: usize,
    ) -> Result<()> {
        let list: Vec<String> = self
            .next
            .iter()
            .map(|m| keys[usize::from(*m) - 1].clone())
            .collect();
        for n in nodes.iter() {
            let out = sigil(bin, &n.home)
                .args(["epoch", "approve", "--member", &list.join(",")])
                .output()
                .await?;
            if !out.status.success() {
                bail!(
                    "sigil epoch approve on node{}: {}",
                    n.member,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        for n in nodes.iter_mut() {
            if self.report.joined.contains(&n.member) {
                n.child = Some(start_node_with(bin, &n.home, &["--join"])?);
                n.state = "joining";
            }
        }
        self.started = Some(Instant::now());
        self.report.approved_after_messages = sent;
        println!(
            "\nrotation approved after {sent} messages: next committee = nodes {:?} (joining {:?}, leaving {:?})",
            self.next, self.report.joined, self.report.left
        );
        Ok(())
    }

    /// Records progress: `epochs[i]` is the epoch node i + 1 reports (0 if down), `inboxes`
    /// the inboxes' current epochs.
    pub fn observe(&mut self, nodes: &mut [NodeProc], epochs: &[u64], inboxes: &[u64]) {
        let Some(t) = self.started else { return };
        if self.report.new_key_after_s.is_none()
            && self
                .next
                .iter()
                .all(|m| epochs.get(usize::from(*m) - 1) == Some(&2))
        {
            let s = t.elapsed().as_secs_f64();
            self.report.new_key_after_s = Some(s);
            println!("\nthe new committee runs epoch 2 ({s:.1} s after the approvals)");
            for n in nodes.iter_mut() {
                if self.report.joined.contains(&n.member) {
                    n.state = "joined";
                } else if self.report.left.contains(&n.member) {
                    n.state = "left";
                }
            }
        }
        if self.report.inboxes_after_s.is_none()
            && !inboxes.is_empty()
            && inboxes.iter().all(|e| *e >= 2)
        {
            let s = t.elapsed().as_secs_f64();
            self.report.inboxes_after_s = Some(s);
            println!("\nboth inboxes rotated to the new key ({s:.1} s after the approvals)");
        }
    }
}
