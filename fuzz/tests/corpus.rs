//! The short fuzz pass of the test suite: every target replays its committed corpus and
//! runs a few hundred mutations of it (deterministic seed), and the oracles are shown to
//! bite: the recorded honest traffic makes member 1 catch up (so the "decides only what the
//! committee decided" check is exercised), and the runner reports a panicking input.

use sigil_fuzz::{Target, campaign, corpus_dir, read_corpus, targets};
use std::time::Duration;

/// Mutations per target on top of the corpus replay.
const MUTATIONS: u64 = 300;

fn corpus(t: &Target) -> Vec<Vec<u8>> {
    read_corpus(&corpus_dir(t.name))
        .unwrap()
        .into_iter()
        .map(|(_, d)| d)
        .collect()
}

#[test]
fn every_target_survives_its_corpus_and_mutations() {
    let mut names = Vec::new();
    for t in targets() {
        let c = corpus(&t);
        assert!(
            !c.is_empty(),
            "no committed corpus for {} (run `sigil-fuzz seed`)",
            t.name
        );
        let budget = c.len() as u64 + MUTATIONS;
        match campaign(&t, &c, 7, budget, Duration::from_secs(120)) {
            Ok(s) => {
                assert_eq!(s.replayed, c.len());
                names.push(t.name);
            }
            Err(crash) => panic!(
                "{}: {} on input {}",
                t.name,
                crash.message,
                hex::encode(&crash.input)
            ),
        }
    }
    for want in ["member", "dkg", "keystore", "config", "attestation", "api"] {
        assert!(names.contains(&want), "target {want} missing");
    }
}

#[test]
fn relayed_honest_traffic_makes_member_1_catch_up_on_the_honest_blocks() {
    let f = sigil_fuzz::member::fixture();
    assert!(
        f.honest.len() >= 2,
        "the honest committee decided {:?}",
        f.honest.keys()
    );
    let all = sigil_fuzz::member::encode(&f.recorded);
    let decided = sigil_fuzz::member::drive(&all);
    assert!(
        !decided.is_empty(),
        "member 1 decided nothing from {} recorded frames",
        f.recorded.len()
    );
}

#[test]
fn the_runner_reports_an_input_that_breaks_an_oracle() {
    fn fragile(data: &[u8]) {
        assert!(!data.windows(2).any(|w| w == b"!!"), "found it");
    }
    let t = Target {
        name: "fragile",
        run: fragile,
        seeds: Vec::new,
        max_len: 64,
        afl: false,
    };
    let crash = campaign(
        &t,
        &[b"a!b!c!".to_vec()],
        1,
        100_000,
        Duration::from_secs(30),
    )
    .expect_err("mutations find the double bang");
    assert!(crash.input.windows(2).any(|w| w == b"!!"));
    assert!(crash.message.contains("found it"));
}
