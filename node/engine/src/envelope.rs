//! Signed envelopes: every peer message is a protobuf `Body` signed by the sending member's
//! node key, `ECDSA-secp256k1(SHA-256(ENVELOPE_DOMAIN || body))` (RFC 6979, 64 bytes r || s).
//! [`Committee::open`] is the only way a peer's bytes become a [`pb::Body`]: size, decoding,
//! member index and signature are checked before anything else looks at them.

use crate::types::Member;
use k256::ecdsa::signature::{Signer, Verifier};
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use sigil_proto as pb;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Domain tag prefixed to every signed envelope body.
pub const ENVELOPE_DOMAIN: &[u8] = b"sigil/v1/envelope";

/// Why an envelope was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// More than [`sigil_proto::MAX_ENVELOPE_BYTES`] bytes.
    #[error("envelope over the size limit")]
    Oversized,
    /// Not a protobuf `Envelope`, or its body is not a `Body`.
    #[error("undecodable envelope")]
    Decode,
    /// The member index is outside 1..=n.
    #[error("member {0} is not in the committee")]
    UnknownMember(u32),
    /// The signature does not verify under the member's key.
    #[error("bad envelope signature from member {0}")]
    BadSignature(u32),
    /// The body carries no message.
    #[error("empty body")]
    EmptyBody,
}

impl EnvelopeError {
    /// A short static reason for rejection counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Oversized => "oversized",
            Self::Decode => "decode",
            Self::UnknownMember(_) => "unknown member",
            Self::BadSignature(_) => "signature",
            Self::EmptyBody => "empty body",
        }
    }
}

/// Most envelope signatures remembered as verified (32-byte hashes); the set is cleared when
/// full.
pub const VERIFIED_CACHE_ENTRIES: usize = 16_384;

/// The committee's node keys, member i (1-based) at position i − 1.
///
/// Remembers which (member, signature, body) triples verified — gossip repeats envelopes
/// (re-publishes, relays), and verifying an ECDSA signature is the largest cost of admitting
/// one. Clones share that memory (the simulator's members do; each node process has its
/// own). The cache only skips recomputing a deterministic check: a triple is remembered only
/// after it verified, under SHA-256 of all three.
#[derive(Debug, Clone)]
pub struct Committee {
    keys: Vec<VerifyingKey>,
    verified: Arc<Mutex<HashSet<[u8; 32]>>>,
}

impl Committee {
    /// From the ordered key list (at most `u16::MAX` members; longer lists are truncated).
    pub fn new(mut keys: Vec<VerifyingKey>) -> Self {
        keys.truncate(usize::from(u16::MAX));
        Self {
            keys,
            verified: Arc::default(),
        }
    }

    fn verify_cached(&self, member: Member, key: &VerifyingKey, env: &pb::Envelope) -> bool {
        let mut h = Sha256::new();
        h.update(member.to_be_bytes());
        h.update((env.signature.len() as u64).to_be_bytes());
        h.update(&env.signature);
        h.update(&env.body);
        let id: [u8; 32] = h.finalize().into();
        if self.verified.lock().is_ok_and(|set| set.contains(&id)) {
            return true;
        }
        let ok = Signature::from_slice(&env.signature)
            .is_ok_and(|sig| key.verify(&signed_bytes(&env.body), &sig).is_ok());
        if ok && let Ok(mut set) = self.verified.lock() {
            if set.len() >= VERIFIED_CACHE_ENTRIES {
                set.clear();
            }
            set.insert(id);
        }
        ok
    }

    /// Number of members n.
    pub fn len(&self) -> u16 {
        u16::try_from(self.keys.len()).unwrap_or(u16::MAX)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Index (1-based) of a key, if a member.
    pub fn index_of(&self, k: &VerifyingKey) -> Option<Member> {
        self.keys
            .iter()
            .position(|x| x == k)
            .and_then(|i| Member::try_from(i + 1).ok())
    }

    /// The key of member `m` (1-based).
    pub fn key(&self, m: Member) -> Option<&VerifyingKey> {
        self.keys.get(usize::from(m).checked_sub(1)?)
    }

    /// Checks an envelope's member index and signature and decodes its body.
    /// Errors: [`EnvelopeError::UnknownMember`], [`EnvelopeError::BadSignature`],
    /// [`EnvelopeError::Decode`] (body), [`EnvelopeError::EmptyBody`].
    pub fn open(&self, env: &pb::Envelope) -> Result<(Member, pb::Body), EnvelopeError> {
        let member = Member::try_from(env.member)
            .ok()
            .filter(|m| self.key(*m).is_some())
            .ok_or(EnvelopeError::UnknownMember(env.member))?;
        let key = self
            .key(member)
            .ok_or(EnvelopeError::UnknownMember(env.member))?;
        if !self.verify_cached(member, key, env) {
            return Err(EnvelopeError::BadSignature(env.member));
        }
        let body = pb::Body::decode(env.body.as_slice()).map_err(|_| EnvelopeError::Decode)?;
        if body.kind.is_none() {
            return Err(EnvelopeError::EmptyBody);
        }
        Ok((member, body))
    }

    /// Size-checks and decodes peer bytes, then [`Committee::open`]s them.
    /// Errors: [`EnvelopeError::Oversized`], [`EnvelopeError::Decode`] and those of `open`.
    pub fn open_bytes(
        &self,
        data: &[u8],
    ) -> Result<(pb::Envelope, Member, pb::Body), EnvelopeError> {
        if data.len() > sigil_proto::MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::Oversized);
        }
        let env = pb::Envelope::decode(data).map_err(|_| EnvelopeError::Decode)?;
        let (m, body) = self.open(&env)?;
        Ok((env, m, body))
    }
}

/// Signs `body` as member `member` with its node key.
pub fn seal(key: &SigningKey, member: Member, body: &pb::Body) -> pb::Envelope {
    seal_bytes(key, member, body.encode_to_vec())
}

/// Signs already-encoded body bytes as member `member` (any bytes: what a faulty member
/// can put under its own valid signature; the fuzz targets use it).
pub fn seal_bytes(key: &SigningKey, member: Member, body: Vec<u8>) -> pb::Envelope {
    let sig: Signature = key.sign(&signed_bytes(&body));
    pb::Envelope {
        member: u32::from(member),
        body,
        signature: sig.to_bytes().to_vec(),
    }
}

fn signed_bytes(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(ENVELOPE_DOMAIN.len() + body.len());
    m.extend_from_slice(ENVELOPE_DOMAIN);
    m.extend_from_slice(body);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committee() -> (Committee, Vec<SigningKey>) {
        let keys: Vec<SigningKey> = (1u8..=4)
            .map(|i| SigningKey::from_slice(&[i; 32]).unwrap())
            .collect();
        (
            Committee::new(keys.iter().map(|k| *k.verifying_key()).collect()),
            keys,
        )
    }

    fn body() -> pb::Body {
        pb::Body {
            kind: Some(pb::body::Kind::Heartbeat(pb::Heartbeat {
                height: 7,
                ..Default::default()
            })),
        }
    }

    /// The verified-signature memory never turns a bad envelope into a good one: after the
    /// genuine envelope is remembered, the same body under another signature or member, or
    /// another body under the same signature, is still refused — on the same committee and
    /// on a clone that shares the memory.
    #[test]
    fn remembered_signatures_never_admit_a_forgery() {
        let (c, keys) = committee();
        let env = seal(&keys[1], 2, &body());
        assert!(c.open(&env).is_ok());
        let twin = c.clone();
        assert!(twin.open(&env).is_ok(), "clone shares the memory");
        let mut other_member = env.clone();
        other_member.member = 3;
        assert_eq!(
            twin.open(&other_member).unwrap_err(),
            EnvelopeError::BadSignature(3)
        );
        let mut other_sig = env.clone();
        other_sig.signature = seal(&keys[2], 2, &body()).signature;
        assert_eq!(
            twin.open(&other_sig).unwrap_err(),
            EnvelopeError::BadSignature(2)
        );
        let mut other_body = env.clone();
        other_body.body = pb::Body {
            kind: Some(pb::body::Kind::Heartbeat(pb::Heartbeat {
                height: 8,
                ..Default::default()
            })),
        }
        .encode_to_vec();
        assert_eq!(
            c.open(&other_body).unwrap_err(),
            EnvelopeError::BadSignature(2)
        );
        // The memory is bounded: filling it past the bound clears it, and verification
        // still gives the same answers.
        for h in 0..(VERIFIED_CACHE_ENTRIES as u64 + 10) {
            let b = pb::Body {
                kind: Some(pb::body::Kind::Heartbeat(pb::Heartbeat {
                    height: h,
                    ..Default::default()
                })),
            };
            // Insert directly: signing 16k envelopes would make this test slow.
            let mut hasher = Sha256::new();
            hasher.update(b.encode_to_vec());
            let id: [u8; 32] = hasher.finalize().into();
            let mut set = c.verified.lock().unwrap();
            if set.len() >= VERIFIED_CACHE_ENTRIES {
                set.clear();
            }
            set.insert(id);
        }
        assert!(c.verified.lock().unwrap().len() <= VERIFIED_CACHE_ENTRIES);
        assert!(c.open(&env).is_ok());
        assert!(c.open(&other_sig).is_err());
    }
}
