//! # sigil-proto
//!
//! Wire messages of the Sigil peer-to-peer protocol (consensus votes and proposals,
//! observation cursors, signing traffic, DKG packages, heartbeats, catch-up sync, and the
//! consensus write-ahead log) as protobuf definitions in `proto/sigil.proto`, compiled at
//! build time by protox (pure Rust, no `protoc`) and prost-build. Field units and sizes are
//! documented in the `.proto` file.

#![forbid(unsafe_code)]
#![allow(missing_docs)] // generated code; the .proto file is the documentation
#![allow(clippy::doc_lazy_continuation)]

/// Version of the peer-to-peer protocol, carried in libp2p protocol ids (`/sigil/<v>/…`).
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest envelope a node accepts from the network (bytes). A block of 10,000 messages is
/// a few hundred bytes (it names nonce ranges), so this bounds floods, not real traffic.
pub const MAX_ENVELOPE_BYTES: usize = 256 * 1024;

/// Largest catch-up response (bytes).
pub const MAX_SYNC_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

include!(concat!(env!("OUT_DIR"), "/sigil.v1.rs"));
