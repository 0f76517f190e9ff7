//! Member churn (`--churn S`): every S seconds the next member, round robin, is killed with
//! SIGKILL and restarted S/2 later — so at most one member is down at a time and each one
//! has S/2 to catch up before the next is killed (the committee tolerates f ≥ 1).

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

    /// When its time has come: restarts the member that is down (S/2 after its kill), or
    /// kills the next one (S after the last kill). Errors: a node failed to start.
    pub(super) async fn step(&mut self, bin: &Path, nodes: &mut [NodeProc]) -> Result<()> {
        if self.members == 0 {
            return Ok(());
        }
        if let Some(i) = self.down {
            if self.last.elapsed() < self.every / 2 {
                return Ok(());
            }
            self.down = None;
            if let Some(n) = nodes.get_mut(i) {
                n.child = Some(start_node(bin, &n.home)?);
                n.state = "restarted";
            }
            return Ok(());
        }
        if self.last.elapsed() < self.every {
            return Ok(());
        }
        self.last = Instant::now();
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
