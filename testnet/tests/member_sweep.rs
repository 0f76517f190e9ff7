//! Seed sweep of whole-member schedules (runs in scripts/test.sh): every adversary in every
//! seat at n = 4, crash-restarts of honest members, and n = 7 — at least 2,000 schedules.
//! A failing schedule prints the command that replays it. Longer sweeps:
//! `sigil-sim member-sweep --seeds N`.

use sigil_testnet::membersim::{Adversary, Scenario, liveness_owed, replay_command, run};

/// Safety must hold in every schedule; liveness wherever [`liveness_owed`] says so (stalls in
/// the known gaps are printed, not hidden).
fn sweep(scenarios: Vec<Scenario>) -> usize {
    let mut failures = Vec::new();
    let mut known = 0;
    let count = scenarios.len();
    for sc in scenarios {
        let r = run(sc.clone());
        if let Some(v) = r.violation {
            failures.push(format!("{v}\n  replay: {}", replay_command(&sc)));
        } else if let Some(s) = r.stalled {
            if liveness_owed(&sc) {
                failures.push(format!("{s}\n  replay: {}", replay_command(&sc)));
            } else {
                known += 1;
                println!("known liveness gap: {}", replay_command(&sc));
            }
        }
    }
    println!("{count} schedules, {known} stalls in known liveness gaps");
    assert!(
        failures.is_empty(),
        "{} failing schedules:\n{}",
        failures.len(),
        failures.join("\n")
    );
    count
}

fn adversaries(n: u16, seeds: std::ops::Range<u64>) -> Vec<Scenario> {
    let mut out = Vec::new();
    for seed in seeds {
        for a in Adversary::ALL {
            let byz = (seed % u64::from(n)) as u16 + 1;
            let mut sc = Scenario::new(n, seed, Some((byz, a)));
            if seed.is_multiple_of(3) {
                sc.crash_after_decide = Some(byz % n + 1);
            }
            out.push(sc);
        }
    }
    out
}

#[test]
fn n4_every_adversary_a() {
    assert_eq!(sweep(adversaries(4, 0..60)), 540);
}

#[test]
fn n4_every_adversary_b() {
    assert_eq!(sweep(adversaries(4, 60..120)), 540);
}

#[test]
fn n4_every_adversary_c() {
    assert_eq!(sweep(adversaries(4, 120..180)), 540);
}

#[test]
fn n4_crash_restart_without_adversary() {
    let scs: Vec<Scenario> = (0..300)
        .map(|seed| {
            let mut sc = Scenario::new(4, 1_000 + seed, None);
            sc.crash_after_decide = Some((seed % 4) as u16 + 1);
            sc
        })
        .collect();
    assert_eq!(sweep(scs), 300);
}

#[test]
fn n7_every_adversary() {
    assert_eq!(sweep(adversaries(7, 0..12)), 108);
}
