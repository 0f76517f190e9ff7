//! Seed sweeps of whole-member schedules: which schedules a sweep runs, and a runner that
//! spreads them over threads (each schedule is deterministic on its own, so the verdicts
//! do not depend on the thread count).

use super::{Adversary, Report, Scenario, Switch, replay_command, run};
use sigil_engine::Member;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The schedules of seeds `seeds` at committee size `n`.
///
/// With `crash_only`, one schedule per seed: no adversary, member `seed mod n + 1` crashes
/// right after its first decision and restarts. Otherwise every [`Adversary`] per seed in
/// seat `seed mod n + 1`, on every third seed the next member (honest) also crashes
/// right after its first decision and restarts 2.5 s later, and on every odd seed the honest
/// operators approve a committee rotation that must be decided exactly once.
pub fn scenarios(n: u16, seeds: Range<u64>, crash_only: bool) -> Vec<Scenario> {
    let mut out = Vec::new();
    for seed in seeds {
        let seat = (seed % u64::from(n)) as Member + 1;
        if crash_only {
            let mut sc = Scenario::new(n, seed, None);
            sc.crash_after_decide = Some(seat);
            out.push(sc);
            continue;
        }
        for a in Adversary::ALL {
            let mut sc = Scenario::new(n, seed, Some((seat, a)));
            if seed.is_multiple_of(3) {
                sc.crash_after_decide = Some(seat % n + 1);
            }
            // Every odd seed the honest operators approve a rotation, which must be decided.
            sc.rotation = seed % 2 == 1;
            out.push(sc);
        }
    }
    out
}

/// Committee-change schedules of seeds `seeds` from a genesis committee of `n`: every
/// adversary but the rogue rotation (whose own approval differs from the honest one; the
/// plain sweep covers it) in outgoing seat `seed mod n + 1`, each with `switch` carried out
/// end to end, 20 messages, and another honest node crashing mid-hand-over (a joiner on odd
/// seeds where there is one, else the next outgoing member).
pub fn switch_scenarios(switch: Switch, n: u16, seeds: Range<u64>) -> Vec<Scenario> {
    let mut out = Vec::new();
    for seed in seeds {
        let seat = (seed % u64::from(n)) as Member + 1;
        let joiner = switch.incoming(n).into_iter().find(|m| *m > n);
        for a in Adversary::ALL {
            if a == Adversary::RogueRotation {
                continue;
            }
            let mut sc = Scenario::new(n, seed, Some((seat, a)));
            sc.switch = Some(switch);
            sc.messages = 20;
            sc.crash_in_handover = match (seed % 2, joiner) {
                (1, Some(j)) => Some(j),
                _ => Some(seat % n + 1),
            };
            out.push(sc);
        }
    }
    out
}

/// What a sweep found.
#[derive(Debug, Default)]
pub struct Summary {
    /// Schedules run.
    pub schedules: usize,
    /// One line per failing schedule (safety violation or liveness stall), with the command
    /// that replays it.
    pub failures: Vec<String>,
    /// Wall time of the sweep (s).
    pub seconds: f64,
    /// Latest virtual time at which a schedule finished (ms).
    pub slowest_ms: u64,
    /// Largest driver state (entries) and WAL (records) seen on an honest member.
    pub peak_state: usize,
    /// Largest WAL seen on an honest member (records).
    pub peak_wal: usize,
}

impl Summary {
    /// Schedules per wall-clock second.
    pub fn rate(&self) -> f64 {
        self.schedules as f64 / self.seconds.max(1e-9)
    }
}

/// Runs `scenarios` on `jobs` threads (at least one). Safety and liveness are owed in every
/// schedule; `progress` is called with the count done every 1,000 schedules.
pub fn sweep(scenarios: Vec<Scenario>, jobs: usize, progress: &(dyn Fn(usize) + Sync)) -> Summary {
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let summary = Mutex::new(Summary {
        schedules: scenarios.len(),
        ..Summary::default()
    });
    let work = |sc: &Scenario| {
        let r: Report = run(sc.clone());
        let fail = match (&r.violation, &r.stalled) {
            (Some(v), _) => Some(format!("FAIL {v}\n  replay: {}", replay_command(sc))),
            (None, Some(s)) => Some(format!("STALL {s}\n  replay: {}", replay_command(sc))),
            _ => None,
        };
        if let Ok(mut s) = summary.lock() {
            s.peak_state = s.peak_state.max(r.peak_state);
            s.peak_wal = s.peak_wal.max(r.peak_wal);
            s.slowest_ms = s.slowest_ms.max(r.done_ms.unwrap_or(0));
            s.failures.extend(fail);
        }
        let d = done.fetch_add(1, Ordering::Relaxed) + 1;
        if d.is_multiple_of(1000) {
            progress(d);
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(sc) = scenarios.get(i) else { break };
                    work(sc);
                }
            });
        }
    });
    let mut s = summary.into_inner().unwrap_or_else(|e| e.into_inner());
    s.seconds = started.elapsed().as_secs_f64();
    s
}
