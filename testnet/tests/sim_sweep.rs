//! Seed sweep of the deterministic simulator, per fault model (runs in scripts/test.sh):
//! 9 models x 120 seeds at n = 4 plus 9 x 12 at n = 7 = 1,188 schedules. Every schedule
//! checks agreement, validity and no honest equivocation after every event, and liveness
//! (all honest nodes decide every height within `Scenario::liveness_bound_ms`). A failing
//! seed prints the command that replays it. Longer sweeps: `sigil-sim sweep --seeds N`.

use sigil_testnet::sim::{FaultModel, Scenario, replay_command, run};

fn sweep(n: u16, seeds: u64, heights: u64) -> u64 {
    let mut count = 0;
    let mut failures = Vec::new();
    for model in FaultModel::ALL {
        for seed in 0..seeds {
            let r = run(Scenario::new(model, n, seed, heights)).unwrap();
            count += 1;
            assert!(
                r.all_decided_ms.is_some() || r.violation.is_some(),
                "run ended without verdict"
            );
            if let Some(v) = r.violation {
                failures.push(format!(
                    "{v:?}\n  replay: {}",
                    replay_command(model, n, seed, heights)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing schedules:\n{}",
        failures.len(),
        failures.join("\n")
    );
    count
}

#[test]
fn n4_all_fault_models() {
    assert_eq!(sweep(4, 120, 4), 9 * 120);
}

#[test]
fn n7_all_fault_models() {
    assert_eq!(sweep(7, 12, 3), 9 * 12);
}

#[test]
fn same_seed_same_trace() {
    for model in FaultModel::ALL {
        let a = run(Scenario::new(model, 4, 17, 3)).unwrap();
        let b = run(Scenario::new(model, 4, 17, 3)).unwrap();
        assert_eq!(a.trace_hash, b.trace_hash, "{model:?} is not deterministic");
        assert_eq!(a.events, b.events);
        let c = run(Scenario::new(model, 4, 18, 3)).unwrap();
        assert_ne!(
            a.trace_hash, c.trace_hash,
            "{model:?}: different seeds should differ"
        );
    }
}

#[test]
fn faults_are_exercised() {
    // The Byzantine models must actually produce evidence or extra rounds; otherwise the
    // sweep would pass vacuously.
    let evidence: u64 = (0..20)
        .map(|s| {
            run(Scenario::new(FaultModel::DoubleVoter, 4, s, 3))
                .unwrap()
                .evidence
        })
        .sum();
    assert!(evidence > 0, "double voters produce equivocation evidence");
    let base = run(Scenario::new(FaultModel::None, 4, 3, 3))
        .unwrap()
        .all_decided_ms
        .unwrap();
    let part = (0..20)
        .map(|s| {
            run(Scenario::new(FaultModel::Partition, 4, s, 3))
                .unwrap()
                .all_decided_ms
                .unwrap()
        })
        .max()
        .unwrap();
    assert!(
        part > base,
        "partitions delay decisions ({part} ms vs {base} ms)"
    );
}

#[test]
fn f_members_down_for_the_whole_run() {
    for n in [4u16, 7] {
        let mut sc = Scenario::new(FaultModel::None, n, 5, 3);
        sc.down = (0..(n - 1) / 3).collect();
        let r = run(sc).unwrap();
        assert_eq!(
            r.violation, None,
            "n {n}: the 2f+1 live members still decide"
        );
        assert!(r.all_decided_ms.is_some());
    }
    let mut sc = Scenario::new(FaultModel::None, 4, 5, 3);
    sc.down = [0, 1].into_iter().collect();
    let r = run(sc).unwrap();
    assert!(
        matches!(
            r.violation,
            Some(sigil_testnet::sim::Violation::Liveness { .. })
        ),
        "f+1 down: no quorum, liveness must fail"
    );
}
