//! The devnet's report: what was sent, attested, delivered; latencies; per-node figures.

use super::{Audit, ProcFigures, RotationReport};
use alloy::primitives::B256;

/// The outcome.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Messages sent (good and poison).
    pub sent: usize,
    /// Poison messages sent (to the gas burner).
    pub poison: usize,
    /// Messages seen in attested batches.
    pub attested: usize,
    /// Good messages delivered (once).
    pub delivered: usize,
    /// Poison messages Failed and retryable on their inbox (`statusOf` = Failed).
    pub failed: usize,
    /// Good message ids never delivered.
    pub missing: Vec<B256>,
    /// Poison message ids that are not Failed on their inbox (delivered or never processed).
    pub not_failed: Vec<B256>,
    /// Ids delivered more than once.
    pub duplicates: Vec<B256>,
    /// Finality → attestation latency percentiles (ms): p50, p95, p99.
    pub attest_ms: [u64; 3],
    /// Finality → delivery latency percentiles (ms).
    pub deliver_ms: [u64; 3],
    /// Attestation → delivery gap percentiles (ms): per message, its delivery moment minus
    /// its attestation moment (the relayer's share of the latency).
    pub gap_ms: [u64; 3],
    /// Attested messages per second: first send to last attestation.
    pub attested_throughput: f64,
    /// The relayer process's CPU time and peak memory (`None`: not readable).
    pub relayer: Option<ProcFigures>,
    /// The two anvil chains' CPU time and peak memory (A, B): the EVMs executing the load
    /// and the deliveries share the machine with the nodes.
    pub chains: [Option<ProcFigures>; 2],
    /// This devnet process (load generator and trackers).
    pub sender: Option<ProcFigures>,
    /// Members SIGKILLed by `--churn` (each restarted at the next churn step).
    pub churn_kills: u32,
    /// Reorgs below finality done by `--reorgs` (each orphaned one message).
    pub reorgs: u32,
    /// Orphaned messages seen in an attested batch (must be 0).
    pub orphans_attested: usize,
    /// Orphaned messages a receiver got (must be 0).
    pub orphans_delivered: usize,
    /// Delivered messages per second, first send to last delivery.
    pub throughput: f64,
    /// Relayer gas per delivered message (submitBatch + deliver, averaged).
    pub gas_per_message: f64,
    /// Heights decided.
    pub heights: u64,
    /// Wall time (s).
    pub seconds: f64,
    /// Per node: member, decided height, attested height, peers, state.
    pub nodes: Vec<NodeFigures>,
    /// The committee rotation, when one was asked for (`--rotate-at`).
    pub rotation: Option<RotationReport>,
    /// The auditor's verdict, read from the chains and the stopped members' stores
    /// (`None` with `--keep-running`).
    pub audit: Option<Audit>,
    /// `--garbage`: what was sent at the nodes' ports and their memory.
    pub garbage: Option<super::garbage::GarbageReport>,
    /// `--deep-reorg`: the committee's answer to a reorg deeper than finality.
    pub deep_reorg: Option<super::deep::DeepReorgReport>,
    /// An integrator's `sigil verify --rpc --inbox` of one delivered message, and of the
    /// same file with a forged payload.
    pub verify: Option<super::verify::VerifyReport>,
    /// `--monitor`: the dashboard's queries against a real Prometheus, and the alerts.
    pub monitor: Option<super::monitor::MonitorReport>,
    /// `--pause-check`: the emergency stop through `sigil admin`.
    pub pause_check: Option<super::pause::PauseReport>,
}

/// One node's figures at the end.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeFigures {
    /// Member index.
    pub member: u16,
    /// `running`, `killed`, `restarted`.
    pub state: String,
    /// Decided height.
    pub decided: u64,
    /// Attested height.
    pub attested: u64,
    /// The node process's CPU time and peak memory at the end (the current process: a
    /// restarted node's since its restart; `None` for a killed one).
    pub process: Option<ProcFigures>,
    /// Connected peers.
    pub peers: usize,
    /// Signing culprits counted.
    pub culprits: u64,
    /// Consensus timeouts.
    pub timeouts: u64,
}

impl Report {
    /// Whether the run passed: every good message delivered exactly once, every poison
    /// message Failed (not delivered, not missing), and an asked-for rotation completed
    /// (the new committee in epoch 2, both inboxes on the new key), and no message a reorg
    /// orphaned was attested or delivered.
    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }

    /// The checks that failed, named (empty: the run passed).
    pub fn failures(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        if self.orphans_attested > 0 || self.orphans_delivered > 0 {
            f.push("an orphaned message was attested or delivered");
        }
        if !self.audit.as_ref().is_none_or(|a| a.passed()) {
            f.push("the auditor found a violation");
        }
        if !self.verify.as_ref().is_none_or(|v| v.passed()) {
            f.push("`sigil verify --rpc --inbox` did not accept the genuine attestation and refuse a forged one");
        }
        if !self.pause_check.as_ref().is_none_or(|p| p.passed()) {
            f.push("--pause-check: the paused chain was attested, the other chain stalled, or the resume did not release it");
        }
        if !self.monitor.as_ref().is_none_or(|m| m.passed()) {
            f.push(
                "--monitor: a dashboard query returned no data or an expected alert did not fire",
            );
        }
        if !self.garbage.as_ref().is_none_or(|g| g.passed()) {
            f.push("under --garbage an API answered 5xx");
        }
        if !self.deep_reorg.as_ref().is_none_or(|d| d.passed()) {
            f.push("the deep reorg was not answered by a halt, an alarm and no conflicting attestation on every member");
        }
        if !self.rotation.as_ref().is_none_or(|r| r.done() && r.pruned) {
            f.push("the committee rotation did not complete");
        }
        if !self.missing.is_empty()
            || !self.duplicates.is_empty()
            || self.delivered + self.poison != self.sent
        {
            f.push("some messages were not delivered exactly once");
        }
        if !self.not_failed.is_empty() || self.failed != self.poison {
            f.push("some poison messages are not Failed");
        }
        f
    }
}

/// p50, p95 and p99 of `v` (nearest rank); zeros when empty.
pub(super) fn percentiles(mut v: Vec<u64>) -> [u64; 3] {
    if v.is_empty() {
        return [0; 3];
    }
    v.sort_unstable();
    let at = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    [at(0.50), at(0.95), at(0.99)]
}

/// Prints the report table.
pub fn print_report(r: &Report) {
    println!("\n=== devnet report ===");
    println!("sent        {:>8}", r.sent);
    println!("attested    {:>8}", r.attested);
    println!("delivered   {:>8}", r.delivered);
    println!("poison      {:>8}", r.poison);
    println!(
        "failed      {:>8}   (poison messages Failed and retryable on their inbox)",
        r.failed
    );
    println!("missing     {:>8}", r.missing.len());
    println!("duplicates  {:>8}", r.duplicates.len());
    println!("heights     {:>8}", r.heights);
    println!();
    println!("latency from source finality (ms)   p50      p95      p99");
    println!(
        "  to attestation               {:>8} {:>8} {:>8}",
        r.attest_ms[0], r.attest_ms[1], r.attest_ms[2]
    );
    println!(
        "  to delivery                  {:>8} {:>8} {:>8}",
        r.deliver_ms[0], r.deliver_ms[1], r.deliver_ms[2]
    );
    println!(
        "attestation to delivery        {:>8} {:>8} {:>8}",
        r.gap_ms[0], r.gap_ms[1], r.gap_ms[2]
    );
    println!();
    println!(
        "throughput           {:>10.1} msgs/s delivered (first send to last delivery)",
        r.throughput
    );
    println!(
        "                     {:>10.1} msgs/s attested (first send to last attestation)",
        r.attested_throughput
    );
    println!(
        "gas per message      {:>10.0} (relayer submitBatch + deliver, all chains)",
        r.gas_per_message
    );
    println!("wall time            {:>10.1} s", r.seconds);
    if r.churn_kills > 0 {
        println!(
            "churn                {:>10} members killed (SIGKILL) and restarted",
            r.churn_kills
        );
    }
    if r.reorgs > 0 {
        println!(
            "reorgs               {:>10} below finality, one orphaned message each: {} attested, {} delivered (must be 0)",
            r.reorgs, r.orphans_attested, r.orphans_delivered
        );
    }
    println!();
    let cpu = |p: &Option<ProcFigures>| {
        p.map_or(("-".to_string(), "-".to_string()), |p| {
            (
                format!("{:.1}", p.cpu_seconds),
                format!("{:.0}", p.peak_rss_mib),
            )
        })
    };
    println!(
        "node  state       decided  attested  peers  culprits  timeouts   CPU s  peak RSS MiB"
    );
    for n in &r.nodes {
        let (c, m) = cpu(&n.process);
        println!(
            "{:>4}  {:<10} {:>8} {:>9} {:>6} {:>9} {:>9} {:>7} {:>13}",
            n.member, n.state, n.decided, n.attested, n.peers, n.culprits, n.timeouts, c, m
        );
    }
    let (c, m) = cpu(&r.relayer);
    println!("relayer {:>65} {:>13}", c, m);
    for (name, p) in [
        ("anvil A", &r.chains[0]),
        ("anvil B", &r.chains[1]),
        ("devnet", &r.sender),
    ] {
        let (c, m) = cpu(p);
        println!("{name:<7} {c:>65} {m:>13}");
    }
    if let Some(rot) = &r.rotation {
        println!();
        println!(
            "rotation: approved after {} messages; joined {:?}, left {:?}",
            rot.approved_after_messages, rot.joined, rot.left
        );
        let s = |v: Option<f64>| v.map_or("NOT DONE".to_string(), |v| format!("{v:.1} s"));
        println!("  new committee in epoch 2  {}", s(rot.new_key_after_s));
        println!("  both inboxes rotated      {}", s(rot.inboxes_after_s));
        println!(
            "  messages attested         epoch 1: {}   epoch 2: {}",
            rot.messages_per_epoch[0], rot.messages_per_epoch[1]
        );
        println!(
            "  old key share pruned      {}",
            if rot.pruned { "yes (node 1)" } else { "NO" }
        );
    }
    // The first ten of each list (all of them are in report.json).
    for (what, ids) in [
        ("MISSING  ", &r.missing),
        ("DUPLICATE", &r.duplicates),
        ("POISON NOT FAILED", &r.not_failed),
    ] {
        for id in ids.iter().take(10) {
            println!("{what} {id}");
        }
        if ids.len() > 10 {
            println!("{what} ... {} more in report.json", ids.len() - 10);
        }
    }
    if let Some(d) = &r.deep_reorg {
        super::deep::print(d);
    }
    if let Some(p) = &r.pause_check {
        super::pause::print(p);
    }
    if let Some(m) = &r.monitor {
        super::monitor::print(m);
    }
    if let Some(v) = &r.verify {
        super::verify::print(v);
    }
    if let Some(g) = &r.garbage {
        super::garbage::print(g);
    }
    if let Some(a) = &r.audit {
        super::audit::print(a);
    }
}
