//! # sigil-proto
//!
//! Wire messages of the Sigil peer-to-peer protocol (consensus votes and proposals,
//! observation cursors, signing traffic, DKG packages, heartbeats) as protobuf definitions
//! under `proto/` with their prost types.
//!
//! Status: the message set arrives with the committee runtime (issue 4); this crate holds
//! only the protocol version until then.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// Version of the peer-to-peer protocol, carried in libp2p protocol ids (`/sigil/<v>/…`).
pub const PROTOCOL_VERSION: u32 = 1;
