//! Pure gas and chunk planning: the gas a message and a delivery transaction need, how
//! messages are split into transactions, and which messages of a batch a chain relays.

use crate::api::{BatchView, MessageView};
use alloy_primitives::Address;
use sigil_crypto::Message;
use std::ops::Range;

/// `SigilInbox.CALL_RESERVE`: gas the inbox keeps, beyond EIP-150's 1/64, for the work
/// around a recipient call (contracts/V2.md §6).
pub const CALL_RESERVE: u64 = 30_000;
/// Per-message gas besides the recipient's own: leaf, id and bitmap hashing, the bitmap
/// write (22,100 for a fresh word), the event, a Failed message's kept leaf (22,100), loop
/// work. Generous: unused gas is refunded.
const MESSAGE_OVERHEAD: u64 = 50_000;
/// Calldata gas per byte at the EIP-7623 floor (10 per token, 4 tokens per non-zero byte).
const CALLDATA_BYTE_GAS: u64 = 40;
/// ABI bytes of one message besides its payload: nine head words, the tuple offset, the
/// payload length, and a word of padding.
const MESSAGE_ABI_BYTES: u64 = 12 * 32;
/// Per-transaction base: 21,000 intrinsic, the selector and array heads, the root lookup
/// (cold, 2,100), the multiproof set-up.
const TX_BASE_GAS: u64 = 100_000;
/// One proof hash or flag of calldata at the floor, plus its hashing.
const PROOF_WORD_GAS: u64 = 32 * CALLDATA_BYTE_GAS + 100;

/// The gas `SigilInbox` requires left right before it calls the recipient of a message with
/// `gas_limit`: `gasLimit + gasLimit/63 + 1 + CALL_RESERVE` (otherwise the transaction reverts
/// `InsufficientGas`).
pub fn call_headroom(gas_limit: u32) -> u64 {
    let g = u64::from(gas_limit);
    g + g / 63 + 1 + CALL_RESERVE
}

/// The gas budget of one message in a delivery transaction: its [`call_headroom`], a fixed
/// overhead for the inbox's own work, and its calldata at the EIP-7623 floor.
pub fn message_gas(m: &Message) -> u64 {
    call_headroom(m.gas_limit)
        + MESSAGE_OVERHEAD
        + CALLDATA_BYTE_GAS * (MESSAGE_ABI_BYTES + m.payload.len() as u64)
}

/// The explicit gas limit of a transaction delivering (or retrying) `messages` with
/// `proof_words` proof hashes and flags: a base plus every message's [`message_gas`]. At
/// each recipient call at least that message's [`call_headroom`] is left, because every
/// earlier message consumed at most its gas limit plus its overhead.
pub fn delivery_gas<'a>(
    messages: impl IntoIterator<Item = &'a Message>,
    proof_words: usize,
) -> u64 {
    TX_BASE_GAS
        + messages.into_iter().map(message_gas).sum::<u64>()
        + PROOF_WORD_GAS * proof_words as u64
}

/// Splits messages with gas budgets `gas` (in order) into consecutive chunks of at most
/// `max_count` messages whose `TX_BASE_GAS + sum(gas)` stays within `cap`; a message over
/// the cap on its own gets a chunk of its own.
pub fn plan_chunks(gas: &[u64], max_count: usize, cap: u64) -> Vec<Range<usize>> {
    let max_count = max_count.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    let mut sum = TX_BASE_GAS;
    for (i, g) in gas.iter().enumerate() {
        if i > start && (i - start >= max_count || sum.saturating_add(*g) > cap) {
            out.push(start..i);
            start = i;
            sum = TX_BASE_GAS;
        }
        sum = sum.saturating_add(*g);
    }
    if start < gas.len() {
        out.push(start..gas.len());
    }
    out
}

/// The messages of `b` for destination `chain_id`: those naming `inbox` (to relay) and
/// those naming another inbox (never sent: only the inbox a message names may deliver it).
pub fn select(
    b: &BatchView,
    chain_id: u64,
    inbox: Address,
) -> (Vec<&MessageView>, Vec<&MessageView>) {
    b.messages
        .iter()
        .filter(|m| m.message.dest_chain_id == chain_id)
        .partition(|m| m.message.dest_inbox == inbox)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{B256, Bytes};

    fn msg(gas_limit: u32, payload: usize) -> Message {
        Message {
            source_chain_id: 1,
            source_gateway: Address::repeat_byte(1),
            nonce: 0,
            sender: Address::repeat_byte(2),
            dest_chain_id: 2,
            dest_inbox: Address::repeat_byte(3),
            recipient: Address::repeat_byte(4),
            gas_limit,
            payload: Bytes::from(vec![7u8; payload]),
        }
    }

    #[test]
    fn headroom_is_the_inbox_rule() {
        // gasLimit + gasLimit/63 + 1 + CALL_RESERVE, as SigilInbox._callRecipient checks.
        assert_eq!(call_headroom(200_000), 200_000 + 3_174 + 1 + 30_000);
        assert_eq!(call_headroom(5_000_000), 5_000_000 + 79_365 + 1 + 30_000);
        let m = msg(200_000, 32);
        assert!(message_gas(&m) > call_headroom(200_000) + 16 * (32 + 32 * 9));
        assert_eq!(
            delivery_gas([&m, &m], 3),
            TX_BASE_GAS + 2 * message_gas(&m) + 3 * PROOF_WORD_GAS
        );
    }

    #[test]
    fn chunks_respect_count_and_gas_cap() {
        let g = message_gas(&msg(200_000, 32));
        // By count.
        assert_eq!(plan_chunks(&[g; 5], 2, u64::MAX), vec![0..2, 2..4, 4..5]);
        // By gas: three fit under the cap, the fourth starts a new chunk.
        let cap = TX_BASE_GAS + 3 * g;
        assert_eq!(plan_chunks(&[g; 7], 64, cap), vec![0..3, 3..6, 6..7]);
        // A message over the cap alone still gets a chunk of its own.
        let big = message_gas(&msg(5_000_000, 32));
        assert_eq!(
            plan_chunks(&[g, big, g], 64, TX_BASE_GAS + big - 1),
            vec![0..1, 1..2, 2..3]
        );
        assert!(plan_chunks(&[], 64, cap).is_empty());
        // Every chunk's budget stays under the cap (when each message fits alone).
        let mixed: Vec<u64> = (0..100u32)
            .map(|i| message_gas(&msg(10_000 + (i % 9) * 400_000, (i as usize) * 37 % 3000)))
            .collect();
        let cap = 25_000_000;
        let chunks = plan_chunks(&mixed, 64, cap);
        assert_eq!(chunks.iter().map(|r| r.len()).sum::<usize>(), 100);
        for r in chunks {
            assert!(r.len() <= 64);
            assert!(TX_BASE_GAS + mixed[r].iter().sum::<u64>() <= cap);
        }
    }

    #[test]
    fn select_keeps_only_the_configured_inbox() {
        let mut views = Vec::new();
        for (i, (chain, inbox)) in [(2u64, 3u8), (2, 9), (5, 3), (2, 3)].iter().enumerate() {
            let mut m = msg(200_000, 1);
            m.nonce = i as u64;
            m.dest_chain_id = *chain;
            m.dest_inbox = Address::repeat_byte(*inbox);
            views.push(MessageView {
                id: m.id(),
                leaf: m.leaf(),
                message: m,
            });
        }
        let b = BatchView {
            epoch: 1,
            height: 1,
            root: B256::ZERO,
            count: 4,
            signature: None,
            messages: views,
            time_ms: 0,
            handover: None,
        };
        let (mine, foreign) = select(&b, 2, Address::repeat_byte(3));
        assert_eq!(
            mine.iter().map(|m| m.message.nonce).collect::<Vec<_>>(),
            [0, 3]
        );
        assert_eq!(
            foreign.iter().map(|m| m.message.nonce).collect::<Vec<_>>(),
            [1]
        );
    }
}
