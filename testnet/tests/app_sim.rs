//! The simulator drives whole members (consensus + application core + FROST) with faults:
//! an invalid-share member is named and signatures still form, a double voter leaves
//! equivocation evidence, message loss; invariants per event (see `sigil_testnet::appsim`).

use sigil_testnet::appsim::{AppScenario, run};

fn base(seed: u64) -> AppScenario {
    AppScenario {
        n: 4,
        seed,
        heights: 3,
        per_block: 5,
        bad_share: None,
        double_voter: None,
        loss: 0.0,
    }
}

#[test]
fn invalid_shares_are_named_and_every_height_is_attested() {
    let mut named = 0;
    for seed in 0..12 {
        let sc = AppScenario {
            bad_share: Some(1 + (seed % 4) as u16),
            ..base(seed)
        };
        let r = run(sc.clone()).unwrap();
        assert_eq!(r.violation, None, "{sc:?}");
        assert_eq!(r.decided.len(), 3);
        if r.culprits.contains(&sc.bad_share.unwrap()) {
            named += 1;
        }
    }
    // The bad member is in the signing set of most heights; it must be caught every time it is.
    assert!(named >= 6, "culprit named in {named}/12 runs");
}

#[test]
fn a_double_voter_leaves_evidence_and_safety_holds() {
    let mut evidence = 0;
    for seed in 0..12 {
        let sc = AppScenario {
            double_voter: Some(1 + (seed % 4) as u16),
            ..base(100 + seed)
        };
        let r = run(sc.clone()).unwrap();
        assert_eq!(r.violation, None, "{sc:?}");
        evidence += r.evidence;
    }
    assert!(evidence > 0, "equivocation evidence recorded");
}

#[test]
fn lossy_links_still_decide_and_attest() {
    for seed in 0..12 {
        let sc = AppScenario {
            loss: 0.05,
            ..base(200 + seed)
        };
        let r = run(sc.clone()).unwrap();
        assert_eq!(r.violation, None, "{sc:?}");
    }
}

#[test]
fn same_seed_same_outcome() {
    let sc = AppScenario {
        bad_share: Some(2),
        loss: 0.05,
        ..base(7)
    };
    let a = run(sc.clone()).unwrap();
    let b = run(sc).unwrap();
    assert_eq!(
        (a.events, a.decided, a.attestations),
        (b.events, b.decided, b.attestations)
    );
}
