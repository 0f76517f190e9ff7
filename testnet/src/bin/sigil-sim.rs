//! `sigil-sim`: run, sweep and benchmark the deterministic cluster simulator.
//!
//! - `sigil-sim run --model lossy --nodes 4 --seed 7 --trace` replays one schedule.
//! - `sigil-sim sweep --seeds 10000` runs every fault model over many seeds and prints the
//!   exact replay command of any failing seed.
//! - `sigil-sim bench` prints the committee-size table of BENCHMARKS.md.
//! - `sigil-sim member --seed 7 --adversary forged-catchup --byzantine 2` replays one
//!   whole-member schedule (the engine the binary runs); `sigil-sim member-sweep --seeds
//!   12000` sweeps every adversary in every seat (108,000 schedules at n = 4).

use clap::{Parser, Subcommand};
use sigil_testnet::membersim::{self as member, Adversary};
use sigil_testnet::sim::{FaultModel, Scenario, replay_command, run};
use std::time::Instant;

#[derive(Parser)]
#[command(name = "sigil-sim", about = "Deterministic Sigil cluster simulator")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one schedule.
    Run {
        /// Fault model (none, lossy, partition, crash-restart, double-voter,
        /// equivocating-proposer, silent, invalid-proposer, replayer).
        #[arg(long, default_value = "none")]
        model: String,
        /// Committee size.
        #[arg(long, default_value_t = 4)]
        nodes: u16,
        /// RNG seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Heights to decide.
        #[arg(long, default_value_t = 3)]
        heights: u64,
        /// Print the event trace.
        #[arg(long)]
        trace: bool,
    },
    /// Run every fault model over `seeds` seeds.
    Sweep {
        /// Seeds per model.
        #[arg(long, default_value_t = 1000)]
        seeds: u64,
        /// Committee size.
        #[arg(long, default_value_t = 4)]
        nodes: u16,
        /// Heights per schedule.
        #[arg(long, default_value_t = 3)]
        heights: u64,
        /// First seed.
        #[arg(long, default_value_t = 0)]
        start: u64,
    },
    /// Run one whole-member schedule.
    Member {
        /// Committee size.
        #[arg(long, default_value_t = 4)]
        nodes: u16,
        /// RNG seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Adversary: forged-catchup, attempt-bumper, far-future, double-voter,
        /// equivocating-proposer, invalid-proposer, bad-shares, silent, replayer,
        /// rogue-rotation.
        #[arg(long)]
        adversary: Option<String>,
        /// The Byzantine member (1-based).
        #[arg(long, default_value_t = 1)]
        byzantine: u16,
        /// Crash this honest member right after its first decision, restart it later.
        #[arg(long)]
        crash_after_decide: Option<u16>,
        /// Every honest operator approves the same next committee; it must be decided.
        #[arg(long)]
        rotation: bool,
        /// Carry out a committee change end to end: grow (n → n + 1), shrink (n → n − 1)
        /// or replace (n → n disjoint nodes).
        #[arg(long)]
        switch: Option<String>,
        /// Crash this honest node mid-hand-over (an outgoing member at the key commit or a
        /// key-rotation block, a joiner at its first block) and restart it later.
        #[arg(long)]
        crash_in_handover: Option<u16>,
        /// Messages the source chain emits.
        #[arg(long, default_value_t = 12)]
        messages: u64,
        /// Print every member's events to stderr.
        #[arg(long)]
        trace: bool,
    },
    /// Sweep whole-member schedules: every adversary in every seat, every third seed with a
    /// crash-restart of an honest member.
    MemberSweep {
        /// Seeds (each runs every adversary once).
        #[arg(long, default_value_t = 1000)]
        seeds: u64,
        /// Committee size.
        #[arg(long, default_value_t = 4)]
        nodes: u16,
        /// First seed.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Instead of adversaries: one honest member crashes after its first decision and
        /// restarts (member `seed mod n + 1`).
        #[arg(long)]
        crash_only: bool,
        /// Instead: committee changes carried out end to end (grow, shrink, replace), every
        /// adversary in an outgoing seat and a crash mid-hand-over
        /// (`membersim::sweep::switch_scenarios`); shrink needs --nodes 5 or more.
        #[arg(long, conflicts_with = "crash_only")]
        switch: Option<String>,
        /// Threads to spread the schedules over.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
    },
    /// Committee-size scaling table.
    Bench {
        /// Heights per run.
        #[arg(long, default_value_t = 5)]
        heights: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Member {
            nodes,
            seed,
            adversary,
            byzantine,
            crash_after_decide,
            rotation,
            switch,
            crash_in_handover,
            messages,
            trace,
        } => {
            let adv = match adversary {
                Some(name) => Some((
                    byzantine,
                    Adversary::from_name(&name)
                        .ok_or_else(|| anyhow::anyhow!("unknown --adversary {name}"))?,
                )),
                None => None,
            };
            let mut sc = member::Scenario::new(nodes, seed, adv);
            sc.crash_after_decide = crash_after_decide;
            sc.rotation = rotation;
            sc.switch = match switch {
                Some(name) => Some(
                    member::Switch::from_name(&name)
                        .ok_or_else(|| anyhow::anyhow!("unknown --switch {name}"))?,
                ),
                None => None,
            };
            sc.crash_in_handover = crash_in_handover;
            sc.messages = messages;
            sc.trace = trace;
            let t = Instant::now();
            let r = member::run(sc);
            println!(
                "n {nodes} seed {seed}: {} events in {:.1?}, decided {}, {} attestations, done at {:?} ms, peak state {} / WAL {}, trace {:016x}",
                r.events,
                t.elapsed(),
                r.decided,
                r.attestations,
                r.done_ms,
                r.peak_state,
                r.peak_wal,
                r.trace_hash
            );
            if let Some(end) = r.epoch_end {
                println!(
                    "epoch 1 ended at height {end}; the new committee decided and attested {} messages after it",
                    r.new_epoch_messages
                );
            }
            if let Some(v) = r.violation {
                anyhow::bail!("violation: {v}");
            }
            if let Some(s) = r.stalled {
                anyhow::bail!("{s}");
            }
        }
        Cmd::MemberSweep {
            seeds,
            nodes,
            start,
            crash_only,
            switch,
            jobs,
        } => {
            let scs = match switch {
                Some(name) => member::sweep::switch_scenarios(
                    member::Switch::from_name(&name)
                        .ok_or_else(|| anyhow::anyhow!("unknown --switch {name}"))?,
                    nodes,
                    start..start + seeds,
                ),
                None => member::sweep::scenarios(nodes, start..start + seeds, crash_only),
            };
            let t = Instant::now();
            let total = scs.len();
            let s = member::sweep::sweep(scs, jobs, &|done| {
                println!("{done}/{total} schedules, {:.1?}", t.elapsed());
            });
            for f in &s.failures {
                println!("{f}");
            }
            println!(
                "{} whole-member schedules (n = {nodes}, seeds {start}..{}), {} failing (safety or liveness), {:.1} s on {jobs} threads, {:.1} schedules/s, slowest done at {} virtual ms, peak driver state {} entries, peak WAL {} records",
                s.schedules,
                start + seeds,
                s.failures.len(),
                s.seconds,
                s.rate(),
                s.slowest_ms,
                s.peak_state,
                s.peak_wal
            );
            if !s.failures.is_empty() {
                anyhow::bail!("{} failing schedules", s.failures.len());
            }
        }
        Cmd::Run {
            model,
            nodes,
            seed,
            heights,
            trace,
        } => {
            let m = FaultModel::parse(&model)
                .ok_or_else(|| anyhow::anyhow!("unknown --model {model}"))?;
            let mut sc = Scenario::new(m, nodes, seed, heights);
            sc.keep_trace = trace;
            let r = run(sc)?;
            for line in &r.trace {
                println!("{line}");
            }
            println!(
                "model {} n {nodes} seed {seed}: {} events, {} messages, all decided at {:?} ms, trace {:016x}",
                m.name(),
                r.events,
                r.messages,
                r.all_decided_ms,
                r.trace_hash
            );
            if let Some(v) = r.violation {
                anyhow::bail!("violation: {v:?}");
            }
        }
        Cmd::Sweep {
            seeds,
            nodes,
            heights,
            start,
        } => {
            let mut failures = 0;
            for m in FaultModel::ALL {
                let t = Instant::now();
                let mut worst = 0;
                for seed in start..start + seeds {
                    let r = run(Scenario::new(m, nodes, seed, heights))?;
                    worst = worst.max(r.all_decided_ms.unwrap_or(u64::MAX));
                    if let Some(v) = r.violation {
                        failures += 1;
                        println!(
                            "FAIL {v:?}\n  replay: {}",
                            replay_command(m, nodes, seed, heights)
                        );
                    }
                }
                println!(
                    "{:<22} {seeds} seeds in {:.1?}, slowest all-decided {worst} ms",
                    m.name(),
                    t.elapsed()
                );
            }
            if failures > 0 {
                anyhow::bail!("{failures} failing schedules");
            }
        }
        Cmd::Bench { heights } => {
            println!(
                "| n | faults | wall ms / height | CPU ms / height | messages / height | virtual ms / height |"
            );
            println!("|---|---|---|---|---|---|");
            for n in [4u16, 7, 19, 50, 100] {
                for (label, crashed) in [("none", false), ("f crashed", true)] {
                    let mut sc = Scenario::new(FaultModel::None, n, 1, heights);
                    if crashed {
                        let f = n.saturating_sub(1) / 3;
                        sc.down = (0..f).map(|i| n - 1 - i).collect();
                    }
                    sc.liveness_bound_ms = 600_000;
                    // Repeat the (deterministic) run until 300 ms of wall time accumulate, so
                    // the lazily updated CPU counter is meaningful.
                    let cpu0 = cpu_ns();
                    let t = Instant::now();
                    let mut reps = 0u32;
                    let mut r;
                    loop {
                        r = run(sc.clone())?;
                        reps += 1;
                        if t.elapsed().as_millis() >= 300 {
                            break;
                        }
                    }
                    let per = f64::from(reps) * heights as f64;
                    let wall = t.elapsed().as_secs_f64() * 1e3 / per;
                    let cpu = (cpu_ns().saturating_sub(cpu0)) as f64 / 1e6 / per;
                    if let Some(v) = &r.violation {
                        anyhow::bail!("n {n} {label}: {v:?}");
                    }
                    println!(
                        "| {n} | {label} | {wall:.3} | {cpu:.3} | {} | {} |",
                        r.messages / heights,
                        r.all_decided_ms.unwrap_or(0) / heights
                    );
                }
            }
        }
    }
    Ok(())
}

/// CPU time of this thread (ns) from /proc/thread-self/schedstat; 0 where unavailable.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0)
}
