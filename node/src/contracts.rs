//! Typed alloy bindings of the Sigil contracts (`contracts/src`), shared by the chain
//! watcher, the relayer, and the devnet orchestrator.

alloy::sol! {
    /// `SigilGateway` (contracts/src/SigilGateway.sol).
    #[sol(rpc)]
    #[derive(Debug)]
    contract SigilGateway {
        event MessageSent(bytes32 indexed messageId, uint64 indexed destChainId, address indexed recipient, uint64 nonce, address sender, uint64 sourceChainId, bytes payload);
        function sendMessage(uint64 destChainId, address recipient, bytes calldata payload) external returns (bytes32 messageId);
        function nextNonce() external view returns (uint64);
    }

    /// `SigilInbox` (contracts/src/SigilInbox.sol).
    #[sol(rpc)]
    #[derive(Debug)]
    contract SigilInbox {
        struct Message { uint64 sourceChainId; address sourceGateway; uint64 nonce; address sender; uint64 destChainId; address recipient; bytes payload; }
        struct Signature { uint256 rx; uint256 ry; uint256 z; }
        struct BatchRecord { uint64 epoch; uint64 height; uint64 submittedAt; }
        event BatchSubmitted(bytes32 indexed root, uint64 indexed epoch, uint64 indexed height);
        event MessageDelivered(bytes32 indexed messageId, uint64 indexed sourceChainId, address indexed recipient);
        event MessageFailed(bytes32 indexed messageId, uint64 indexed sourceChainId, address indexed recipient);
        function initialize(uint64 epoch, uint256 keyX, uint256 keyY) external;
        function submitBatch(uint64 epoch, uint64 height, bytes32 root, Signature calldata sig) external;
        function deliver(Message calldata message, bytes32[] calldata proof) external;
        function deliverBatch(Message[] calldata messages, bytes32[] calldata proof, bool[] calldata proofFlags) external;
        function statusOf(bytes32 messageId) external view returns (uint8);
        function batchOf(bytes32 root) external view returns (BatchRecord memory);
        function currentEpoch() external view returns (uint64);
    }

    /// `RecordingReceiver` (contracts/src/examples/RecordingReceiver.sol).
    #[sol(rpc)]
    #[derive(Debug)]
    contract RecordingReceiver {
        function count() external view returns (uint256);
        function timesReceived(bytes32 payloadHash) external view returns (uint256);
    }
}

impl From<&sigil_crypto::Message> for SigilInbox::Message {
    fn from(m: &sigil_crypto::Message) -> Self {
        Self {
            sourceChainId: m.source_chain_id,
            sourceGateway: m.source_gateway,
            nonce: m.nonce,
            sender: m.sender,
            destChainId: m.dest_chain_id,
            recipient: m.recipient,
            payload: m.payload.clone(),
        }
    }
}
