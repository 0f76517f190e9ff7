//! Member churn (`--churn S`): every S seconds the member that is down is restarted and the
//! next one, round robin, is killed with SIGKILL — so exactly one member is down at a time
//! (the committee tolerates f ≥ 1), and every member is hit in turn.

use super::{NodeProc, start_node};
use anyhow::Result;
use std::path::Path;
use std::time::{Duration, Instant};

/// The churn schedule and what it did.
pub(super) struct Churn {
    every: Duration,
    last: Instant,
    /// The member down now (index into the node list).
    down: Option<usize>,
    /// The next member to kill (index into the node list).
    next: usize,
    /// Members of the committee: the first `members` nodes (joiners are never killed).
    members: usize,
    /// Kills so far.
    pub(super) kills: u32,
}

impl Churn {
    /// A churn every `every` among the first `members` nodes, starting `every` from now.
    pub(super) fn new(every: Duration, members: usize) -> Self {
        Self {
            every,
            last: Instant::now(),
            down: None,
            next: 0,
            members,
            kills: 0,
        }
    }

    /// When its time has come: restarts the member that is down, then kills the next one.
    /// Errors: a node failed to start.
    pub(super) async fn step(&mut self, bin: &Path, nodes: &mut [NodeProc]) -> Result<()> {
        if self.last.elapsed() < self.every || self.members == 0 {
            return Ok(());
        }
        self.last = Instant::now();
        if let Some(i) = self.down.take()
            && let Some(n) = nodes.get_mut(i)
        {
            n.child = Some(start_node(bin, &n.home)?);
            n.state = "restarted";
        }
        let i = self.next % self.members;
        self.next = i + 1;
        if let Some(n) = nodes.get_mut(i)
            && let Some(mut c) = n.child.take()
        {
            // tokio's start_kill sends SIGKILL: no clean shutdown, as in a crash.
            let _ = c.start_kill();
            let _ = c.wait().await;
            n.state = "killed";
            self.down = Some(i);
            self.kills += 1;
        }
        Ok(())
    }
}
