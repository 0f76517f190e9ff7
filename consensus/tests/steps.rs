//! Table-driven step tests: each step feeds one input and states the exact outputs, with
//! the line of Algorithm 1 (arXiv:1807.04938) it exercises.

use sigil_consensus::{
    Consensus, Decision, Input, Output, Params, Proposal, Step, Timeout, TimeoutKind, ValidatorSet,
    Value, Vote, VoteKind,
};

#[derive(Debug, Clone, PartialEq, Eq)]
struct V(u32);
impl Value for V {
    type Id = u32;
    fn id(&self) -> u32 {
        self.0
    }
}

type C = Consensus<u8, V>;
type Out = Output<u8, V>;

struct TestStep {
    line: &'static str,
    input: Input<u8, V>,
    expect: Vec<Out>,
}

fn machine(me: u8) -> C {
    Consensus::new(
        Some(me),
        ValidatorSet::equal(0u8..4).unwrap(),
        Params::default(),
        1,
    )
}

fn run(c: &mut C, steps: Vec<TestStep>) {
    for (i, s) in steps.into_iter().enumerate() {
        let got = c.process(s.input);
        assert_eq!(got, s.expect, "step {i} ({})", s.line);
    }
}

fn pv(voter: u8, round: u32, value: Option<u32>) -> Vote<u8, u32> {
    Vote {
        kind: VoteKind::Prevote,
        height: 1,
        round,
        value,
        voter,
    }
}
fn pc(voter: u8, round: u32, value: Option<u32>) -> Vote<u8, u32> {
    Vote {
        kind: VoteKind::Precommit,
        height: 1,
        round,
        value,
        voter,
    }
}
fn prop(proposer: u8, round: u32, value: u32, valid_round: Option<u32>) -> Proposal<u8, V> {
    Proposal {
        height: 1,
        round,
        value: V(value),
        valid_round,
        proposer,
    }
}
fn timeout(kind: TimeoutKind, round: u32) -> Timeout {
    Timeout {
        kind,
        height: 1,
        round,
    }
}
fn sched(kind: TimeoutKind, round: u32) -> Out {
    Output::ScheduleTimeout {
        timeout: timeout(kind, round),
        after_ms: Params::default().duration_ms(kind, round),
    }
}

#[test]
fn happy_path_as_proposer() {
    // proposer(1, 0) = validator (1 + 0) mod 4 = 1.
    let mut c = machine(1);
    run(
        &mut c,
        vec![
            TestStep {
                line: "L10-L21 StartRound(0): proposer asks getValue(), schedules timeoutPropose",
                input: Input::StartHeight(1),
                expect: vec![
                    Output::RequestValue {
                        height: 1,
                        round: 0,
                    },
                    sched(TimeoutKind::Propose, 0),
                ],
            },
            TestStep {
                line: "L19 broadcast PROPOSAL; the application is asked valid(v)",
                input: Input::ProposeValue {
                    height: 1,
                    round: 0,
                    value: V(7),
                },
                expect: vec![
                    Output::Proposal(prop(1, 0, 7, None)),
                    Output::Validate { value: V(7) },
                ],
            },
            TestStep {
                line: "L22-L24 valid(v) and not locked: PREVOTE id(v)",
                input: Input::Validity {
                    value: 7,
                    valid: true,
                },
                expect: vec![Output::Vote(pv(1, 0, Some(7)))],
            },
            TestStep {
                line: "2 of 4 prevotes: no quorum",
                input: Input::Vote(pv(0, 0, Some(7))),
                expect: vec![],
            },
            TestStep {
                line: "L34 timeoutPrevote; L36-L41 lock and PRECOMMIT id(v)",
                input: Input::Vote(pv(2, 0, Some(7))),
                expect: vec![
                    sched(TimeoutKind::Prevote, 0),
                    Output::Vote(pc(1, 0, Some(7))),
                ],
            },
            TestStep {
                line: "2 of 4 precommits",
                input: Input::Vote(pc(0, 0, Some(7))),
                expect: vec![],
            },
            TestStep {
                line: "L49-L54 decide with the commit certificate",
                input: Input::Vote(pc(3, 0, Some(7))),
                expect: vec![Output::Decide(Decision {
                    height: 1,
                    round: 0,
                    value: V(7),
                    certificate: vec![pc(0, 0, Some(7)), pc(1, 0, Some(7)), pc(3, 0, Some(7))],
                })],
            },
            TestStep {
                line: "decided: later votes ignored",
                input: Input::Vote(pc(2, 0, Some(7))),
                expect: vec![],
            },
        ],
    );
    assert_eq!(c.step(), Step::Commit);
    assert_eq!(
        c.locked(),
        Some(&(0, V(7))),
        "L38-L39 lockedValue/lockedRound"
    );
    assert_eq!(c.valid(), Some(&(0, V(7))), "L42-L43 validValue/validRound");
    // Next height: proposer(2, 0) = 2, so validator 1 only schedules its propose timeout.
    assert_eq!(
        c.process(Input::StartHeight(2)),
        vec![Output::ScheduleTimeout {
            timeout: Timeout {
                kind: TimeoutKind::Propose,
                height: 2,
                round: 0
            },
            after_ms: 1000
        }]
    );
    assert_eq!(c.locked(), None, "lock resets at a new height (L54)");
}

#[test]
fn timeouts_move_to_the_next_round() {
    let mut c = machine(0);
    run(
        &mut c,
        vec![
            TestStep {
                line: "L21 non-proposer schedules timeoutPropose",
                input: Input::StartHeight(1),
                expect: vec![sched(TimeoutKind::Propose, 0)],
            },
            TestStep {
                line: "L57-L60 OnTimeoutPropose: PREVOTE nil",
                input: Input::Timeout(timeout(TimeoutKind::Propose, 0)),
                expect: vec![Output::Vote(pv(0, 0, None))],
            },
            TestStep {
                line: "stale timeout ignored (step != propose)",
                input: Input::Timeout(timeout(TimeoutKind::Propose, 0)),
                expect: vec![],
            },
            TestStep {
                line: "2 nil prevotes",
                input: Input::Vote(pv(2, 0, None)),
                expect: vec![],
            },
            TestStep {
                line: "L34 timeoutPrevote, L44-L46 2f+1 PREVOTE nil: PRECOMMIT nil",
                input: Input::Vote(pv(3, 0, None)),
                expect: vec![sched(TimeoutKind::Prevote, 0), Output::Vote(pc(0, 0, None))],
            },
            TestStep {
                line: "2 precommits",
                input: Input::Vote(pc(2, 0, None)),
                expect: vec![],
            },
            TestStep {
                line: "L47-L48 2f+1 PRECOMMIT *: timeoutPrecommit",
                input: Input::Vote(pc(3, 0, None)),
                expect: vec![sched(TimeoutKind::Precommit, 0)],
            },
            TestStep {
                line: "L65-L67 OnTimeoutPrecommit: StartRound(1); timeouts grow with the round",
                input: Input::Timeout(timeout(TimeoutKind::Precommit, 0)),
                expect: vec![sched(TimeoutKind::Propose, 1)],
            },
        ],
    );
    assert_eq!(c.round(), 1);
    assert_eq!(Params::default().duration_ms(TimeoutKind::Propose, 1), 1500);
}

#[test]
fn prevote_timeout_precommits_nil() {
    let mut c = machine(0);
    c.process(Input::StartHeight(1));
    c.process(Input::Timeout(timeout(TimeoutKind::Propose, 0)));
    c.process(Input::Vote(pv(1, 0, Some(5))));
    let out = c.process(Input::Vote(pv(2, 0, Some(6))));
    assert_eq!(
        out,
        vec![sched(TimeoutKind::Prevote, 0)],
        "L34: 2f+1 prevotes for different values"
    );
    assert_eq!(
        c.process(Input::Timeout(timeout(TimeoutKind::Prevote, 0))),
        vec![Output::Vote(pc(0, 0, None))],
        "L61-L64 OnTimeoutPrevote: PRECOMMIT nil"
    );
}

#[test]
fn invalid_or_late_validity() {
    let mut c = machine(0);
    c.process(Input::StartHeight(1));
    assert_eq!(
        c.process(Input::Proposal(prop(1, 0, 9, None))),
        vec![Output::Validate { value: V(9) }],
        "proposal held until valid(v) is known"
    );
    assert_eq!(c.step(), Step::Propose);
    assert_eq!(
        c.process(Input::Validity {
            value: 9,
            valid: false
        }),
        vec![Output::Vote(pv(0, 0, None))],
        "L26 invalid value: PREVOTE nil"
    );
}

#[test]
fn locked_validator_rejects_other_value_and_accepts_relock_after_valid_round() {
    let mut c = machine(0);
    c.process(Input::StartHeight(1));
    c.process(Input::Proposal(prop(1, 0, 7, None)));
    c.process(Input::Validity {
        value: 7,
        valid: true,
    });
    c.process(Input::Vote(pv(1, 0, Some(7))));
    let out = c.process(Input::Vote(pv(2, 0, Some(7))));
    assert!(
        out.contains(&Output::Vote(pc(0, 0, Some(7)))),
        "L40 locked on 7"
    );
    c.process(Input::Vote(pc(1, 0, None)));
    c.process(Input::Vote(pc(2, 0, None)));
    c.process(Input::Timeout(timeout(TimeoutKind::Precommit, 0)));
    assert_eq!(c.round(), 1);
    // Round 1 proposer is 2 and proposes a fresh value 8.
    c.process(Input::Validity {
        value: 8,
        valid: true,
    });
    assert_eq!(
        c.process(Input::Proposal(prop(2, 1, 8, None))),
        vec![Output::Vote(pv(0, 1, None))],
        "L23/L26 locked on 7: PREVOTE nil for 8"
    );
    // Round 2 (proposer 3) re-proposes 8 with validRound 1, where 8 got a prevote quorum.
    c.process(Input::Vote(pv(1, 1, Some(8))));
    c.process(Input::Vote(pv(2, 1, Some(8))));
    c.process(Input::Vote(pv(3, 1, Some(8))));
    assert_eq!(
        c.valid(),
        Some(&(1, V(8))),
        "L42-L43 validValue updated even when not precommitting"
    );
    c.process(Input::Vote(pc(1, 1, None)));
    c.process(Input::Vote(pc(2, 1, None)));
    c.process(Input::Vote(pc(3, 1, None)));
    c.process(Input::Timeout(timeout(TimeoutKind::Precommit, 1)));
    assert_eq!(c.round(), 2);
    assert_eq!(
        c.process(Input::Proposal(prop(3, 2, 8, Some(1)))),
        vec![Output::Vote(pv(0, 2, Some(8)))],
        "L28-L30 lockedRound 0 <= validRound 1: PREVOTE id(v)"
    );
}

#[test]
fn proposer_reproposes_valid_value() {
    // Validator 2 proposes in round 1 of height 1: with validValue set it proposes it (L15-L16).
    let mut c = machine(2);
    c.process(Input::StartHeight(1));
    c.process(Input::Proposal(prop(1, 0, 7, None)));
    c.process(Input::Validity {
        value: 7,
        valid: true,
    });
    c.process(Input::Vote(pv(0, 0, Some(7))));
    c.process(Input::Vote(pv(1, 0, Some(7))));
    c.process(Input::Vote(pc(0, 0, None)));
    c.process(Input::Vote(pc(1, 0, None)));
    let out = c.process(Input::Timeout(timeout(TimeoutKind::Precommit, 0)));
    assert_eq!(
        out.first(),
        Some(&Output::Proposal(prop(2, 1, 7, Some(0)))),
        "L15-L16 propose validValue with validRound"
    );
}

#[test]
fn round_skip_on_f_plus_one_higher_messages() {
    let mut c = machine(0);
    c.process(Input::StartHeight(1));
    assert_eq!(
        c.process(Input::Vote(pv(1, 3, None))),
        vec![],
        "1 of 4 is not f+1"
    );
    assert_eq!(
        c.process(Input::Vote(pc(2, 3, None))),
        vec![
            Output::RequestValue {
                height: 1,
                round: 3
            },
            sched(TimeoutKind::Propose, 3)
        ],
        "L55-L56 f+1 messages of round 3: StartRound(3); proposer(1, 3) = 0 = us"
    );
    assert_eq!(c.round(), 3);
}

#[test]
fn equivocation_is_reported() {
    let mut c = machine(0);
    c.process(Input::StartHeight(1));
    c.process(Input::Vote(pv(2, 0, Some(7))));
    assert_eq!(
        c.process(Input::Vote(pv(2, 0, Some(8)))),
        vec![Output::Equivocation {
            first: pv(2, 0, Some(7)),
            second: pv(2, 0, Some(8))
        }]
    );
}

/// The double voter's liveness attack: validator 3 sent us a nil prevote and validator 0 a
/// prevote for 7. Once validator 0 relays 3's prevote for 7, we count it (3's second vote,
/// toward its own value), see 2f+1 prevotes for 7, lock and precommit (L36) like validator 0
/// did, instead of timing out round after round.
#[test]
fn relayed_equivocating_prevote_completes_the_quorum() {
    let mut c = machine(2);
    c.process(Input::StartHeight(1));
    c.process(Input::Proposal(prop(1, 0, 7, None)));
    assert_eq!(
        c.process(Input::Validity {
            value: 7,
            valid: true
        }),
        vec![Output::Vote(pv(2, 0, Some(7)))]
    );
    c.process(Input::Vote(pv(1, 0, Some(7))));
    assert_eq!(
        c.process(Input::Vote(pv(3, 0, None))),
        vec![sched(TimeoutKind::Prevote, 0)],
        "L34: 2f+1 prevotes of any kind, no quorum for 7"
    );
    assert_eq!(
        c.process(Input::Vote(pv(3, 0, Some(7)))),
        vec![
            Output::Equivocation {
                first: pv(3, 0, None),
                second: pv(3, 0, Some(7))
            },
            Output::Vote(pc(2, 0, Some(7))),
        ],
        "evidence, and L36-L41: lock and PRECOMMIT id(v) on the relayed quorum"
    );
    assert_eq!(c.locked(), Some(&(0, V(7))));
}

#[test]
fn window_bounds_memory() {
    let mut c = Consensus::<u8, V>::new(
        Some(0),
        ValidatorSet::equal(0u8..4).unwrap(),
        Params {
            max_round_ahead: 2,
            future_height_buffer: 3,
            ..Params::default()
        },
        1,
    );
    c.process(Input::StartHeight(1));
    c.process(Input::Vote(pv(1, 3, None)));
    assert_eq!(
        c.dropped(),
        1,
        "round beyond round_p + max_round_ahead dropped"
    );
    c.process(Input::Proposal(prop(3, 0, 1, None)));
    assert_eq!(c.dropped(), 2, "proposal from a non-proposer dropped");
    c.process(Input::Vote(Vote {
        voter: 9,
        ..pv(1, 0, None)
    }));
    assert_eq!(c.dropped(), 3, "non-member vote dropped");
    for v in 0..3 {
        c.process(Input::Vote(Vote {
            height: 2,
            ..pv(v, 0, None)
        }));
    }
    c.process(Input::Vote(Vote {
        height: 2,
        ..pv(3, 0, None)
    }));
    assert_eq!(c.dropped(), 4, "next-height buffer is bounded");
    c.process(Input::Vote(Vote {
        height: 5,
        ..pv(1, 0, None)
    }));
    assert_eq!(
        c.dropped(),
        4,
        "far-future heights are not kept (host syncs instead)"
    );
}

#[test]
fn observer_never_votes() {
    let mut c = Consensus::<u8, V>::new(
        None,
        ValidatorSet::equal(0u8..4).unwrap(),
        Params::default(),
        1,
    );
    c.process(Input::StartHeight(1));
    let out = c.process(Input::Timeout(timeout(TimeoutKind::Propose, 0)));
    assert!(out.iter().all(|o| !matches!(o, Output::Vote(_))), "{out:?}");
    c.process(Input::Proposal(prop(1, 0, 7, None)));
    c.process(Input::Validity {
        value: 7,
        valid: true,
    });
    for v in [0, 1, 2] {
        c.process(Input::Vote(pc(v, 0, Some(7))));
    }
    assert_eq!(
        c.step(),
        Step::Commit,
        "an observer still decides from a certificate"
    );
}
