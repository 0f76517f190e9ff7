//! One test per review finding, each reproducing the attack against whole members (the
//! engine the binary runs) in the deterministic simulator, named by fault model.

use sigil_testnet::membersim::{
    Adversary, Report, STATE_BOUND, Scenario, WAL_BOUND, replay_command, run,
};

fn clean(sc: Scenario) -> Report {
    let r = run(sc.clone());
    assert!(
        r.violation.is_none(),
        "{}\n  replay: {}",
        r.violation.unwrap_or_default(),
        replay_command(&sc)
    );
    assert!(
        r.stalled.is_none(),
        "{}\n  replay: {}",
        r.stalled.unwrap_or_default(),
        replay_command(&sc)
    );
    // The share audit ran on real records: every honest signer's shares, its own and the
    // ones it saw in group signatures.
    assert!(r.share_records > 0, "no share records audited");
    r
}

/// Finding 1: a member answers catch-up with its own signed proposal of a forged block and
/// zero (or only its own) precommits, claims far-ahead heights to trigger the requests, and
/// proposes the forged block whenever it is the proposer. No honest member decides it or
/// signs for it, and every real message is still attested.
#[test]
fn forged_catchup_certificate_is_never_signed() {
    for seed in 0..12 {
        for byz in 1..=4 {
            clean(Scenario::new(
                4,
                seed,
                Some((byz, Adversary::ForgedCatchup)),
            ));
        }
    }
}

/// Finding 2: the coordinator of far-future attempts (up to `u32::MAX`) floods signing
/// requests; sessions move one attempt per share timeout and every height is attested.
#[test]
fn attempt_bumps_do_not_stall_signing() {
    for seed in 0..12 {
        for byz in 1..=4 {
            clean(Scenario::new(
                4,
                seed,
                Some((byz, Adversary::AttemptBumper)),
            ));
        }
    }
}

/// Finding 3: an honest member crashes right after its first decision, before the
/// attestation, and restarts; it still ends with an attestation for every decided height.
#[test]
fn restart_between_decision_and_attestation_recovers() {
    for seed in 0..16 {
        for m in 1..=4 {
            let mut sc = Scenario::new(4, seed, None);
            sc.crash_after_decide = Some(m);
            clean(sc);
        }
    }
    // And with a Byzantine member besides.
    for seed in 0..8 {
        let mut sc = Scenario::new(4, seed, Some((4, Adversary::BadShares)));
        sc.crash_after_decide = Some(1);
        clean(sc);
    }
}

/// Finding 5: proposals and votes at far-future rounds and heights and made-up heartbeat
/// heights leave every honest member's state and WAL bounded.
#[test]
fn far_future_messages_stay_bounded() {
    for seed in 0..8 {
        let mut sc = Scenario::new(4, seed, Some((2, Adversary::FarFuture)));
        sc.messages = 20;
        let r = clean(sc);
        assert!(r.peak_state <= STATE_BOUND && r.peak_wal <= WAL_BOUND);
    }
}

#[test]
fn same_seed_same_trace() {
    for a in Adversary::ALL {
        let x = run(Scenario::new(4, 3, Some((2, a))));
        let y = run(Scenario::new(4, 3, Some((2, a))));
        assert_eq!(x.trace_hash, y.trace_hash, "{a:?} is not deterministic");
        assert_eq!(x.events, y.events);
        let z = run(Scenario::new(4, 4, Some((2, a))));
        assert_ne!(x.trace_hash, z.trace_hash, "{a:?}: seeds should differ");
    }
}

/// A liveness gap the first sweeps found: a member prevotes one value to half the
/// committee and another to the rest, so one correct member locks on a prevote quorum the
/// others never see, and the height timed out round after round (seed 49 with the double
/// voter in seat 2 stalled). Correct members now relay what they accept (gossipsub) and
/// count an equivocator's second vote toward its own value, so all see the same quorum.
#[test]
fn double_voter_cannot_hide_a_prevote_quorum() {
    clean(Scenario::new(4, 49, Some((2, Adversary::DoubleVoter))));
    for seed in 0..12 {
        for byz in 1..=4 {
            clean(Scenario::new(4, seed, Some((byz, Adversary::DoubleVoter))));
        }
    }
}

/// A liveness gap the first sweeps found: after a crash-restart between decision and
/// attestation the restarted member trails the others by a fixed number of signing
/// attempts, and neither side accepted the other's requests (seed 1021 stalled). Members
/// ahead now answer a trailing coordinator's request once per attempt.
#[test]
fn a_member_that_decided_late_still_signs() {
    for seed in [
        1_021, 1_000, 1_001, 1_002, 1_003, 1_004, 1_005, 1_006, 1_007,
    ] {
        let mut sc = Scenario::new(4, seed, None);
        sc.crash_after_decide = Some((seed % 4) as u16 + 1);
        clean(sc);
    }
}

/// A liveness gap the sweep found (seed 1051): the precommit of the one member that decided
/// a height reached nobody (loss, the relaying member down), the others stayed locked at that
/// height, and catch-up — which starts only when f + 1 members claim to be ahead — never
/// began. A member now re-publishes the certificate of the height it decided last while a
/// peer's heartbeat says it is still there.
#[test]
fn a_lone_decider_brings_the_others_along() {
    let mut sc = Scenario::new(4, 1_051, None);
    sc.crash_after_decide = Some(4);
    clean(sc);
}

/// Found by the 9,900-schedule sweep (seed 706): the lone decider had nothing new to propose,
/// so its machine stayed at the decided height and the certificate was never re-published;
/// the others, with two precommits and a silent fourth member, never time out. The
/// re-publication now keys on the highest decided height.
#[test]
fn a_lone_decider_with_nothing_to_propose_still_helps() {
    clean(Scenario::new(4, 706, Some((3, Adversary::Silent))));
}

/// Committee epochs: a Byzantine member's operator "approves" a committee of its own and it
/// proposes that rotation whenever it proposes. It is never decided, whether the honest
/// operators approved nothing or another committee; when they did, theirs is decided
/// exactly once by every honest member (also across an honest crash-restart), and every
/// message is still attested.
#[test]
fn a_rogue_rotation_is_never_decided() {
    for seed in 0..8 {
        for byz in 1..=4 {
            for rotation in [false, true] {
                let mut sc = Scenario::new(4, seed, Some((byz, Adversary::RogueRotation)));
                sc.rotation = rotation;
                if seed % 2 == 1 {
                    sc.crash_after_decide = Some(byz % 4 + 1);
                }
                clean(sc);
            }
        }
    }
}

/// Found by the 100,000-schedule sweep (seed 29361): a block prevoted by all honest members
/// named a nonce commitment that a signing retry of the previous height consumed a moment
/// later. Validity must not change over time: two members locked on the block and the third,
/// which then found it invalid, would disagree for ever.
#[test]
fn a_block_whose_nonce_a_retry_consumed_is_still_decided() {
    let mut sc = Scenario::new(4, 29361, Some((2, Adversary::RogueRotation)));
    sc.crash_after_decide = Some(3);
    sc.rotation = true;
    clean(sc);
}
