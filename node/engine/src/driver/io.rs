//! What goes into and comes out of a [`super::Driver`]: its configuration, inputs, effects,
//! counted events, gossip verdicts, status snapshot and construction errors.

use crate::app::Block;
use crate::storage::StorageError;
use crate::types::{ChainEvent, Member};
use sigil_consensus::{Height, Params, Round};
use sigil_proto as pb;

/// Timing and identity of one member. Durations in milliseconds.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// This member (1-based).
    pub me: Member,
    /// Consensus timeouts and windows.
    pub consensus: Params,
    /// How long a proposal naming messages not yet observed here may wait for them before
    /// this member prevotes nil (ms).
    pub observation_wait_ms: u64,
    /// Heartbeat period (ms).
    pub heartbeat_ms: u64,
    /// Cursor and nonce-commitment gossip period (ms).
    pub gossip_ms: u64,
    /// Re-publish period of own consensus messages of the current height (ms).
    pub rebroadcast_ms: u64,
    /// A catch-up request without answer is given up after this long (ms).
    pub sync_timeout_ms: u64,
    /// Catch up only one height behind when no progress was made for this long (ms).
    pub stall_ms: u64,
    /// Software version carried in heartbeats.
    pub version: String,
}

impl DriverConfig {
    /// Defaults for `me`: 1 s gossip, 2 s rebroadcast, 1 s heartbeat, 5 s sync timeout,
    /// 2 s stall, 3 s observation wait, default consensus params.
    pub fn new(me: Member) -> Self {
        Self {
            me,
            consensus: Params::default(),
            observation_wait_ms: 3_000,
            heartbeat_ms: 1_000,
            gossip_ms: 1_000,
            rebroadcast_ms: 2_000,
            sync_timeout_ms: 5_000,
            stall_ms: 2_000,
            version: String::new(),
        }
    }
}

/// Gossip topic of a published envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Proposals and votes.
    Consensus,
    /// Signature shares, signing requests, attestations.
    Signing,
    /// Observation cursors and nonce commitments.
    Observations,
    /// Heartbeats.
    Heartbeat,
}

/// What gossipsub should do with a message (validation result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Applied; forward it.
    Accept,
    /// Stale or duplicate; do not forward, do not penalise.
    Ignore,
    /// Malformed, forged or outside a window; penalise the sender. The reason is counted.
    Reject(&'static str),
}

/// An input from the world.
#[derive(Debug, Clone)]
pub enum Input {
    /// Gossiped bytes; answered by [`Effect::Verdict`] with the same `id`.
    Gossip {
        /// Host's correlation id.
        id: u64,
        /// The raw envelope bytes.
        data: Vec<u8>,
    },
    /// A point-to-point request from member `from` (authenticated by the transport);
    /// answered by [`Effect::Respond`] with the same `id`.
    Request {
        /// Host's correlation id.
        id: u64,
        /// Sending member.
        from: Member,
        /// Raw `pb::Request` bytes.
        data: Vec<u8>,
    },
    /// The answer to an [`Effect::Send`] to `from`.
    Response {
        /// The member that answered.
        from: Member,
        /// Raw `pb::Response` bytes.
        data: Vec<u8>,
    },
    /// An [`Effect::Send`] failed (no connection, timeout).
    RequestFailed,
    /// Observations at finality from a chain watcher (already stored by the host).
    Chain(ChainEvent),
    /// A member's connection came up.
    PeerUp(Member),
    /// A member's last connection closed.
    PeerDown(Member),
    /// Time passed (the host ticks every ~50 ms).
    Tick,
}

/// Something observable that the host logs and counts (metrics events).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A peer message was dropped; `reason` is a short static label.
    Rejected(&'static str),
    /// Two different signed votes of one member for one height/round/step.
    Equivocation {
        /// The member.
        voter: Member,
        /// Height.
        height: Height,
        /// Round.
        round: Round,
    },
    /// A consensus timeout fired.
    TimeoutFired,
    /// A proposal failed validation (this member prevotes nil).
    ProposalInvalid {
        /// Height.
        height: Height,
        /// Why.
        reason: String,
    },
    /// A decided height's signing attempt timed out; a new attempt began.
    SigningRetry {
        /// Height.
        height: Height,
        /// The new attempt.
        attempt: u32,
        /// Members excluded (non-responders and culprits).
        excluded: Vec<Member>,
    },
    /// A member sent an invalid signature share.
    Culprit {
        /// Height.
        height: Height,
        /// Attempt.
        attempt: u32,
        /// The member.
        member: Member,
    },
    /// This member could not release a share (e.g. its nonce did not survive a restart).
    SignRefused {
        /// Height.
        height: Height,
        /// Why.
        reason: String,
    },
    /// A catch-up block was applied.
    CaughtUp {
        /// Height.
        height: Height,
    },
    /// A catch-up request was sent.
    SyncRequested {
        /// First height asked for.
        from_height: Height,
        /// The member asked.
        member: Member,
    },
    /// A durable write or read failed; the input that needed it was not processed.
    Storage(StorageError),
    /// The nonce pool could not be refilled.
    NoncePool(String),
    /// A proposal or vote was refused because this member already sent a different one for
    /// that height/round/step (only after a WAL loss).
    RefusedSecondVote {
        /// Height.
        height: Height,
        /// Round.
        round: Round,
    },
    /// Two different signature shares of one member under one nonce (its secret signing
    /// share is exposed: RFC 9591 §5.1 nonces are single-use). Both are kept in the store.
    NonceReuse {
        /// The member.
        member: Member,
        /// The committee epoch.
        epoch: u64,
        /// The nonce id named twice.
        nonce_id: u64,
        /// The heights of the two shares (first recorded, then this one).
        heights: (Height, Height),
    },
}

/// Something the host must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Gossip this envelope on `topic`.
    Publish {
        /// Topic.
        topic: Topic,
        /// Signed envelope.
        envelope: pb::Envelope,
    },
    /// Send a request to member `to`; its answer comes back as [`Input::Response`].
    Send {
        /// Recipient.
        to: Member,
        /// The request.
        request: pb::Request,
    },
    /// Answer the [`Input::Request`] with this `id`.
    Respond {
        /// Correlation id.
        id: u64,
        /// The answer.
        response: pb::Response,
    },
    /// The gossip validation result of [`Input::Gossip`] `id`.
    Verdict {
        /// Correlation id.
        id: u64,
        /// The result.
        verdict: Verdict,
    },
    /// A block was decided and stored at `height`.
    Decided {
        /// Height.
        height: Height,
        /// Round.
        round: Round,
        /// The block (its `count` is the number of messages).
        block: Block,
        /// Whether it was decided through a catch-up certificate.
        caught_up: bool,
    },
    /// A decided block now has a verified group signature (stored).
    Attested {
        /// The attestation, with message ids in leaf order.
        attestation: pb::Attestation,
        /// ms from local decision to attestation, when the decision was seen by this process.
        after_ms: Option<u64>,
    },
    /// Log and count.
    Event(Event),
}

/// A snapshot of the member's progress for status APIs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverStatus {
    /// Consensus height in progress.
    pub height: Height,
    /// Round in progress.
    pub round: Round,
    /// Highest decided (stored) height.
    pub decided: Height,
    /// Highest attested height.
    pub attested: Height,
    /// Decided heights still without an attestation (within [`super::ATTESTATION_HORIZON`]).
    pub unattested: Vec<Height>,
    /// Members connected (not counting this one).
    pub online: Vec<Member>,
}

/// Why a driver could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The committee is empty or has more than `u16::MAX` members.
    #[error("committee: {0}")]
    Committee(#[from] sigil_consensus::ValidatorSetError),
    /// `me` is not in 1..=n.
    #[error("member {me} is not in a committee of {n}")]
    NotAMember {
        /// The configured member.
        me: Member,
        /// Committee size.
        n: u16,
    },
    /// Reading the store (last height, WAL, blocks) failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}
