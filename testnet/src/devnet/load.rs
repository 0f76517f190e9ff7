//! Load generation: the messages of one burst grouped into gateway transactions, and each
//! message's payload.

use alloy::primitives::Bytes;

/// One message of the load plan: (forward A→B, index within its direction and kind,
/// poison).
pub(super) type Planned = (bool, u32, bool);

/// One gateway transaction of the load: `indices` of messages of one direction (`forward`:
/// A→B) and kind (`poison`).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct GatewayTx {
    pub(super) forward: bool,
    pub(super) poison: bool,
    pub(super) indices: Vec<u32>,
}

/// Groups one burst of the plan into gateway transactions of at most `per_tx` messages of
/// one direction and kind each, ordered by their first message. With `per_tx` 1 it is the
/// plan itself, one message per transaction.
pub(super) fn group(burst: &[Planned], per_tx: usize) -> Vec<GatewayTx> {
    let per_tx = per_tx.max(1);
    let mut out: Vec<GatewayTx> = Vec::new();
    // The open (not yet full) transaction of each (direction, kind), as an index into out.
    let mut open: [[Option<usize>; 2]; 2] = [[None; 2]; 2];
    for &(forward, i, poison) in burst {
        let slot = &mut open[usize::from(forward)][usize::from(poison)];
        match slot {
            Some(k) if out[*k].indices.len() < per_tx => out[*k].indices.push(i),
            _ => {
                *slot = Some(out.len());
                out.push(GatewayTx {
                    forward,
                    poison,
                    indices: vec![i],
                });
            }
        }
    }
    out
}

/// The payload of message `i` (unique per direction and kind: the devnet finds messages by
/// payload).
pub(super) fn payload(forward: bool, i: u32, poison: bool) -> Bytes {
    Bytes::from(
        format!(
            "devnet {} {}#{i}",
            if forward { "A->B" } else { "B->A" },
            if poison { "poison " } else { "" }
        )
        .into_bytes(),
    )
}

/// Gas limit of a `sendMessages` transaction of `n` short payloads: measured ~8,000 gas per
/// message (one `MessageSent` log, its id's hash, calldata) plus the base; set with room.
pub(super) fn send_messages_gas(n: usize) -> u64 {
    50_000 + 15_000 * n as u64
}

/// The most payloads one `sendMessages` transaction may carry under a block gas limit of
/// `block_gas` (at least 1).
pub(super) fn max_per_tx(block_gas: u64) -> usize {
    (block_gas.saturating_sub(50_000) / 15_000).max(1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_tx_keeps_the_plan() {
        let plan = [(true, 0, false), (false, 0, false), (true, 1, false)];
        let g = group(&plan, 1);
        assert_eq!(g.len(), 3);
        assert_eq!(
            g.iter()
                .map(|t| (t.forward, t.indices[0], t.poison))
                .collect::<Vec<_>>(),
            plan
        );
    }

    #[test]
    fn groups_by_direction_and_kind_up_to_the_cap() {
        let plan = [
            (true, 0, false),
            (true, 1, false),
            (false, 0, false),
            (true, 2, false),
            (true, 0, true),
            (true, 3, false),
        ];
        let g = group(&plan, 2);
        assert_eq!(
            g,
            vec![
                GatewayTx {
                    forward: true,
                    poison: false,
                    indices: vec![0, 1]
                },
                GatewayTx {
                    forward: false,
                    poison: false,
                    indices: vec![0]
                },
                GatewayTx {
                    forward: true,
                    poison: false,
                    indices: vec![2, 3]
                },
                GatewayTx {
                    forward: true,
                    poison: true,
                    indices: vec![0]
                },
            ]
        );
        // Every message exactly once.
        assert_eq!(g.iter().map(|t| t.indices.len()).sum::<usize>(), plan.len());
    }
}
