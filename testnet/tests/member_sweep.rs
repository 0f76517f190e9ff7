//! Seed sweep of whole-member schedules (runs in scripts/test.sh): every adversary in every
//! seat at n = 4 with crash-restarts of honest members and (odd seeds) a committee rotation
//! every honest operator approved, crash-restarts alone, and n = 7 — 2,220 schedules. Safety and liveness are owed in every one; a failing schedule prints the
//! command that replays it. Longer sweeps: `sigil-sim member-sweep --seeds N --jobs 2`.

use sigil_testnet::membersim::sweep::{scenarios, sweep};

fn check(n: u16, seeds: std::ops::Range<u64>, crash_only: bool) -> usize {
    let s = sweep(scenarios(n, seeds, crash_only), 1, &|_| {});
    println!(
        "{} schedules, {:.1} schedules/s, peak state {}, peak WAL {}",
        s.schedules,
        s.rate(),
        s.peak_state,
        s.peak_wal
    );
    assert!(
        s.failures.is_empty(),
        "{} failing schedules:\n{}",
        s.failures.len(),
        s.failures.join("\n")
    );
    s.schedules
}

#[test]
fn n4_every_adversary_a() {
    assert_eq!(check(4, 0..60, false), 600);
}

#[test]
fn n4_every_adversary_b() {
    assert_eq!(check(4, 60..120, false), 600);
}

#[test]
fn n4_every_adversary_c() {
    assert_eq!(check(4, 120..180, false), 600);
}

#[test]
fn n4_crash_restart_without_adversary() {
    assert_eq!(check(4, 1_000..1_300, true), 300);
}

#[test]
fn n7_every_adversary() {
    assert_eq!(check(7, 0..12, false), 120);
}
