//! Typed alloy bindings of the Sigil contracts (`contracts/src`, on-chain format v2,
//! contracts/V2.md), shared by the chain watcher, the relayer, and the devnet orchestrator.
//!
//! `SigilGateway.sendMessage` is overloaded; alloy's `sol!` names overloads by declaration
//! order, so `sendMessage_0` is the three-argument form (gas limit `DEFAULT_GAS_LIMIT`) and
//! `sendMessage_1` the one with an explicit `gasLimit` (the same goes for the call structs,
//! `sendMessage_0Call` / `sendMessage_1Call`).
// The generated bindings take every field of the v2 `Message` as an argument.
#![allow(clippy::too_many_arguments)]

alloy::sol! {
    /// `SigilGateway` (contracts/src/SigilGateway.sol).
    #[sol(rpc)]
    #[derive(Debug)]
    contract SigilGateway {
        event MessageSent(bytes32 indexed messageId, uint64 indexed destChainId, address indexed recipient, uint64 nonce, address sender, uint64 sourceChainId, address destInbox, uint32 gasLimit, bytes payload);
        event RouteSet(uint64 indexed destChainId, address inbox);
        error PayloadTooLarge(uint256 length, uint256 max);
        error InvalidDestination(uint64 destChainId);
        error NoRoute(uint64 destChainId);
        error GasLimitOutOfRange(uint32 gasLimit, uint32 min, uint32 max);
        error NotAdmin(address caller);
        /// Overload 0 (`sendMessage_0`): the recipient gets `DEFAULT_GAS_LIMIT` gas.
        function sendMessage(uint64 destChainId, address recipient, bytes calldata payload) external returns (bytes32 messageId);
        /// Overload 1 (`sendMessage_1`): the recipient gets exactly `gasLimit` gas.
        function sendMessage(uint64 destChainId, address recipient, bytes calldata payload, uint32 gasLimit) external returns (bytes32 messageId);
        /// Many payloads to one recipient in one transaction, one `MessageSent` each.
        function sendMessages(uint64 destChainId, address recipient, bytes[] calldata payloads, uint32 gasLimit) external returns (uint64 firstNonce);
        function setRoute(uint64 destChainId, address inbox) external;
        function routes(uint64 destChainId) external view returns (address);
        function admin() external view returns (address);
        function nextNonce() external view returns (uint64);
        function DEFAULT_GAS_LIMIT() external view returns (uint32);
        function MIN_GAS_LIMIT() external view returns (uint32);
        function MAX_GAS_LIMIT() external view returns (uint32);
    }

    /// `SigilInbox` (contracts/src/SigilInbox.sol). `statusOf` answers 0 (None), 1 (Delivered)
    /// or 2 (Failed: the recipient reverted or ran out of its gas limit; `retry` it).
    #[sol(rpc)]
    #[derive(Debug)]
    contract SigilInbox {
        struct Message { uint64 sourceChainId; address sourceGateway; uint64 nonce; address sender; uint64 destChainId; address destInbox; address recipient; uint32 gasLimit; bytes payload; }
        struct Signature { uint256 rx; uint256 ry; uint256 z; }
        struct BatchRecord { uint64 epoch; uint64 height; uint64 submittedAt; }
        struct EpochKey { uint256 x; uint8 parity; uint64 validUntil; }
        event BatchSubmitted(bytes32 indexed root, uint64 indexed epoch, uint64 indexed height);
        event MessageDelivered(bytes32 indexed messageId, uint64 indexed sourceChainId, address indexed recipient);
        event MessageFailed(bytes32 indexed messageId, uint64 indexed sourceChainId, address indexed recipient);
        event KeyRotated(uint64 indexed oldEpoch, uint64 indexed newEpoch, uint256 keyX, uint8 keyParity, uint64 oldKeyValidUntil);
        error NotAdmin(address caller);
        error AlreadyInitialized();
        error GracePeriodTooLong(uint64 gracePeriod, uint64 max);
        error UnknownEpoch(uint64 epoch);
        error EpochExpired(uint64 epoch, uint64 validUntil);
        error EpochNotIncreasing(uint64 epoch, uint64 current);
        error InvalidKey();
        error InvalidSignature();
        error BatchAlreadySubmitted(bytes32 root);
        error UnknownRoot(bytes32 root);
        error WrongInbox(uint64 destChainId, address destInbox);
        error AlreadyProcessed(bytes32 messageId, uint8 status);
        error NotRetryable(bytes32 messageId);
        error RecipientFailed(bytes32 messageId);
        error InsufficientGas();
        error EmptyBatch();
        error InvalidMultiproof();
        function initialize(uint64 epoch, uint256 keyX, uint256 keyY) external;
        function rotateKey(uint64 newEpoch, uint256 keyX, uint256 keyY, Signature calldata sig) external;
        function submitBatch(uint64 epoch, uint64 height, bytes32 root, Signature calldata sig) external;
        function deliver(Message calldata message, bytes32[] calldata proof) external;
        function deliverBatch(Message[] calldata messages, bytes32[] calldata proof, bool[] calldata proofFlags) external;
        function retry(Message calldata message) external;
        function statusOf(uint64 sourceChainId, address sourceGateway, uint64 nonce) external view returns (uint8);
        function processedWord(uint64 sourceChainId, address sourceGateway, uint64 wordIndex) external view returns (uint256);
        function failedLeafOf(bytes32 messageId) external view returns (bytes32);
        function batchOf(bytes32 root) external view returns (BatchRecord memory);
        function keyOf(uint64 epoch) external view returns (EpochKey memory);
        function currentEpoch() external view returns (uint64);
        function batchDigest(uint64 epoch, uint64 height, bytes32 root) external view returns (bytes32);
        function rotationDigest(uint64 oldEpoch, uint256 oldKeyX, uint8 oldKeyParity, uint64 newEpoch, uint256 newKeyX, uint8 newKeyParity) external view returns (bytes32);
        function rotationDomainSeparator() external view returns (bytes32);
        function BATCH_DOMAIN_SEPARATOR() external view returns (bytes32);
        function leafOf(Message calldata m) external pure returns (bytes32);
        function messageIdOf(Message calldata m) external pure returns (bytes32);
    }

    /// `RecordingReceiver` (contracts/src/examples/RecordingReceiver.sol).
    #[sol(rpc)]
    #[derive(Debug)]
    contract RecordingReceiver {
        function count() external view returns (uint256);
        function timesReceived(bytes32 payloadHash) external view returns (uint256);
        function setRejecting(bool value) external;
    }

    /// `FixableReceiver` (contracts/src/examples/FixableReceiver.sol): reverts until `fix()`.
    #[sol(rpc)]
    #[derive(Debug)]
    contract FixableReceiver {
        function fix() external;
        function count() external view returns (uint256);
        function timesReceived(bytes32 payloadHash) external view returns (uint256);
    }
}

/// `SigilInbox.statusOf`: not processed.
pub const STATUS_NONE: u8 = 0;
/// `SigilInbox.statusOf`: the recipient accepted the message.
pub const STATUS_DELIVERED: u8 = 1;
/// `SigilInbox.statusOf`: the recipient reverted or ran out of its gas limit; retryable.
pub const STATUS_FAILED: u8 = 2;

impl From<&sigil_crypto::Message> for SigilInbox::Message {
    fn from(m: &sigil_crypto::Message) -> Self {
        Self {
            sourceChainId: m.source_chain_id,
            sourceGateway: m.source_gateway,
            nonce: m.nonce,
            sender: m.sender,
            destChainId: m.dest_chain_id,
            destInbox: m.dest_inbox,
            recipient: m.recipient,
            gasLimit: m.gas_limit,
            payload: m.payload.clone(),
        }
    }
}
