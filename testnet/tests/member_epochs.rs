//! Committee changes end to end in the whole-member simulator (committee epochs): 4 → 5,
//! 5 → 4 and 4 → a disjoint 4, each with every adversary in an outgoing seat and an honest
//! node crashing in the middle of the hand-over. Every schedule must keep every safety
//! invariant (agreement, truthful blocks and shares, every message in exactly one block
//! across the boundary, attestations only under the key of their epoch, the old key's last
//! signatures over each inbox's rotation digest) and finish: every message decided and
//! attested, the new committee running in the new epoch.

use sigil_testnet::membersim::{self as member, Switch};

fn run_all(switch: Switch, n: u16) {
    let mut failures = Vec::new();
    let mut runs = 0;
    for sc in member::sweep::switch_scenarios(switch, n, 0..2) {
        let cmd = member::replay_command(&sc);
        let r = member::run(sc);
        runs += 1;
        if let Some(v) = r.violation.or(r.stalled) {
            failures.push(format!("{cmd}: {v}"));
            continue;
        }
        if r.epoch_end.is_none() || r.new_epoch_messages == 0 {
            failures.push(format!(
                "{cmd}: the switch did not happen (end {:?}, {} messages after it)",
                r.epoch_end, r.new_epoch_messages
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn four_members_grow_to_five_with_adversaries_and_crashes() {
    run_all(Switch::Grow, 4);
}

#[test]
fn five_members_shrink_to_four_with_adversaries_and_crashes() {
    run_all(Switch::Shrink, 5);
}

#[test]
fn four_members_hand_over_to_a_disjoint_four_with_adversaries_and_crashes() {
    run_all(Switch::Replace, 4);
}
