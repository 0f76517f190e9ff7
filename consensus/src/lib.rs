//! # sigil-consensus
//!
//! Tendermint BFT (Buchman, Kwon, Milosevic 2018, Algorithm 1) as a pure state machine:
//! `process(&mut self, input) -> Vec<Output>`, no clock, randomness, I/O or async.
//!
//! Status: implemented by issue 3; this crate only fixes the fault model today.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// Largest number of faulty members `f` a committee of `n` tolerates: floor((n - 1) / 3).
pub fn max_faulty(n: usize) -> usize {
    n.saturating_sub(1) / 3
}

/// Votes needed for a quorum: 2f + 1 (by count; weights come later).
pub fn quorum(n: usize) -> usize {
    2 * max_faulty(n) + 1
}

#[cfg(test)]
mod tests {
    #[test]
    fn quorum_sizes() {
        assert_eq!(super::quorum(4), 3);
        assert_eq!(super::quorum(7), 5);
        assert_eq!(super::quorum(19), 13);
        assert_eq!(super::max_faulty(1), 0);
    }
}
