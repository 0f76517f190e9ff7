// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {FrostVerifier} from "./FrostVerifier.sol";
import {ISigilReceiver} from "./ISigilReceiver.sol";

/// @title SigilInbox
/// @notice Destination-chain end of Sigil. A relayer submits a batch root with the committee's
///         single FROST signature (`submitBatch`), then delivers each message of the batch with
///         its Merkle proof (`deliver`, or `deliverBatch` with a multiproof).
/// @dev Formats (DESIGN.md "On-chain formats"):
///      - messageId = keccak256(abi.encode(sourceChainId, sourceGateway, nonce))
///      - leaf = keccak256(bytes.concat(keccak256(abi.encode(sourceChainId, sourceGateway, nonce,
///        sender, destChainId, recipient, keccak256(payload))))), OpenZeppelin StandardMerkleTree
///        convention (sorted-pair inner nodes), so `MerkleProof` accepts the nodes' proofs.
///      - batch digest: EIP-712 with domain {name: "Sigil", version: "1"} (no chainId: one
///        attestation serves every destination) over Batch(uint64 epoch,uint64 height,bytes32 root).
contract SigilInbox {
    /// @notice One cross-chain message, exactly as the source gateway emitted it.
    struct Message {
        uint64 sourceChainId;
        address sourceGateway;
        uint64 nonce;
        address sender;
        uint64 destChainId;
        address recipient;
        bytes payload;
    }

    /// @notice Delivery state of a message id.
    enum Status {
        None,
        Delivered,
        Failed
    }

    /// @notice A committee group key and the time (unix seconds) after which it stops being
    ///         accepted; `validUntil == type(uint64).max` for the current epoch.
    struct EpochKey {
        uint256 x;
        uint8 parity;
        uint64 validUntil;
    }

    /// @notice A submitted batch root: its epoch, consensus height and submission time (unix seconds).
    struct BatchRecord {
        uint64 epoch;
        uint64 height;
        uint64 submittedAt;
    }

    /// @notice EIP-712 type hash of the batch struct.
    bytes32 public constant BATCH_TYPEHASH = keccak256("Batch(uint64 epoch,uint64 height,bytes32 root)");
    /// @notice EIP-712 type hash of a key rotation.
    bytes32 public constant KEY_ROTATION_TYPEHASH =
        keccak256("KeyRotation(uint64 newEpoch,uint256 keyX,uint8 keyParity)");
    /// @notice EIP-712 domain separator for {name: "Sigil", version: "1"}.
    bytes32 public immutable DOMAIN_SEPARATOR;

    /// @notice May call `initialize` once to register the first group key (after DKG).
    address public immutable admin;
    /// @notice Seconds a rotated-out key stays valid for `submitBatch`.
    uint64 public immutable gracePeriod;

    /// @notice The newest epoch; 0 until `initialize`.
    uint64 public currentEpoch;

    mapping(uint64 epoch => EpochKey) internal _keys;
    mapping(bytes32 root => BatchRecord) internal _batches;
    mapping(bytes32 messageId => Status) internal _status;
    mapping(bytes32 messageId => bytes32 leaf) internal _failedLeaf;

    /// @notice A group key was registered for `epoch`.
    event GroupKeySet(uint64 indexed epoch, uint256 keyX, uint8 keyParity);
    /// @notice The committee rotated from `oldEpoch` to `newEpoch`; the old key expires at `oldKeyValidUntil`.
    event KeyRotated(uint64 indexed oldEpoch, uint64 indexed newEpoch, uint256 keyX, uint8 keyParity, uint64 oldKeyValidUntil);
    /// @notice A batch root was accepted.
    event BatchSubmitted(bytes32 indexed root, uint64 indexed epoch, uint64 indexed height);
    /// @notice A message reached its recipient.
    event MessageDelivered(bytes32 indexed messageId, uint64 indexed sourceChainId, address indexed recipient);
    /// @notice The recipient reverted; the message is kept and can be retried.
    event MessageFailed(bytes32 indexed messageId, uint64 indexed sourceChainId, address indexed recipient);

    /// @notice Caller is not the admin.
    error NotAdmin(address caller);
    /// @notice `initialize` was already called.
    error AlreadyInitialized();
    /// @notice No key is registered for this epoch.
    error UnknownEpoch(uint64 epoch);
    /// @notice The epoch's key was rotated out and its grace period ended at `validUntil`.
    error EpochExpired(uint64 epoch, uint64 validUntil);
    /// @notice A new epoch must be greater than the current one.
    error EpochNotIncreasing(uint64 epoch, uint64 current);
    /// @notice The key is not a point on secp256k1 with 0 < x < n.
    error InvalidKey();
    /// @notice The FROST signature does not verify under the epoch's key.
    error InvalidSignature();
    /// @notice This root was already submitted.
    error BatchAlreadySubmitted(bytes32 root);
    /// @notice The proof leads to a root that was never submitted.
    error UnknownRoot(bytes32 root);
    /// @notice The message is for another chain.
    error WrongDestination(uint64 destChainId);
    /// @notice The message was already delivered, or already failed (use `retry`).
    error AlreadyProcessed(bytes32 messageId, Status status);
    /// @notice `retry` was called for a message that is not in the Failed state, or with other content.
    error NotRetryable(bytes32 messageId);
    /// @notice The recipient reverted during `retry`.
    error RecipientFailed(bytes32 messageId);
    /// @notice The call to the recipient ran out of the gas it was given; send more gas.
    error InsufficientGas();
    /// @notice `deliverBatch` needs at least one message.
    error EmptyBatch();

    /// @param admin_ Account allowed to register the first group key.
    /// @param gracePeriod_ Seconds a rotated-out key keeps being accepted.
    constructor(address admin_, uint64 gracePeriod_) {
        admin = admin_;
        gracePeriod = gracePeriod_;
        DOMAIN_SEPARATOR = keccak256(
            abi.encode(keccak256("EIP712Domain(string name,string version)"), keccak256("Sigil"), keccak256("1"))
        );
    }

    // ---------------------------------------------------------------- keys

    /// @notice Registers the first group key (output of the committee's DKG). Admin only, once.
    /// @param epoch The committee epoch (> 0).
    /// @param keyX, keyY Affine coordinates of the group key; x must be < n.
    function initialize(uint64 epoch, uint256 keyX, uint256 keyY) external {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        if (currentEpoch != 0) revert AlreadyInitialized();
        if (epoch == 0) revert EpochNotIncreasing(epoch, 0);
        uint8 parity = _checkKey(keyX, keyY);
        _keys[epoch] = EpochKey(keyX, parity, type(uint64).max);
        currentEpoch = epoch;
        emit GroupKeySet(epoch, keyX, parity);
    }

    /// @notice Moves to a new committee key, authorised by a FROST signature of the current key
    ///         over the EIP-712 `KeyRotation(newEpoch, keyX, keyParity)`. The current key stays
    ///         valid for `gracePeriod` seconds; an epoch is never accepted twice.
    function rotateKey(uint64 newEpoch, uint256 keyX, uint256 keyY, FrostVerifier.Signature calldata sig) external {
        uint64 oldEpoch = currentEpoch;
        if (oldEpoch == 0) revert UnknownEpoch(0);
        if (newEpoch <= oldEpoch) revert EpochNotIncreasing(newEpoch, oldEpoch);
        uint8 parity = _checkKey(keyX, keyY);
        bytes32 digest = rotationDigest(newEpoch, keyX, parity);
        if (!FrostVerifier.verifyDigest(_activeKey(oldEpoch), sig, digest)) revert InvalidSignature();
        uint64 until = uint64(block.timestamp) + gracePeriod;
        _keys[oldEpoch].validUntil = until;
        _keys[newEpoch] = EpochKey(keyX, parity, type(uint64).max);
        currentEpoch = newEpoch;
        emit GroupKeySet(newEpoch, keyX, parity);
        emit KeyRotated(oldEpoch, newEpoch, keyX, parity, until);
    }

    // ---------------------------------------------------------------- batches

    /// @notice Accepts a batch root signed by the committee key of `epoch`.
    /// @dev Reverts UnknownEpoch, EpochExpired, BatchAlreadySubmitted or InvalidSignature.
    function submitBatch(uint64 epoch, uint64 height, bytes32 root, FrostVerifier.Signature calldata sig) external {
        if (_batches[root].submittedAt != 0) revert BatchAlreadySubmitted(root);
        if (!FrostVerifier.verifyDigest(_activeKey(epoch), sig, batchDigest(epoch, height, root))) {
            revert InvalidSignature();
        }
        _batches[root] = BatchRecord(epoch, height, uint64(block.timestamp));
        emit BatchSubmitted(root, epoch, height);
    }

    // ---------------------------------------------------------------- delivery

    /// @notice Delivers one message of a submitted batch, proven by an OpenZeppelin Merkle proof.
    /// @dev Reverts UnknownRoot, WrongDestination, AlreadyProcessed or InsufficientGas. A reverting
    ///      recipient does not revert this call: the message is marked Failed and stays retryable.
    function deliver(Message calldata message, bytes32[] calldata proof) external {
        bytes32 leaf = leafOf(message);
        bytes32 root = MerkleProof.processProofCalldata(proof, leaf);
        if (_batches[root].submittedAt == 0) revert UnknownRoot(root);
        bytes32 id = messageIdOf(message);
        Status s = _status[id];
        if (s != Status.None) revert AlreadyProcessed(id, s);
        _deliver(message, id, leaf);
    }

    /// @notice Delivers several messages of one submitted batch with a single multiproof
    ///         (`proof`, `proofFlags` as produced by OpenZeppelin's `getMultiProof`, leaves in
    ///         the order that multiproof lists them). Already-processed messages are skipped.
    function deliverBatch(Message[] calldata messages, bytes32[] calldata proof, bool[] calldata proofFlags)
        external
    {
        uint256 count = messages.length;
        if (count == 0) revert EmptyBatch();
        bytes32[] memory leaves = new bytes32[](count);
        for (uint256 i = 0; i < count; ++i) {
            leaves[i] = leafOf(messages[i]);
        }
        bytes32 root = MerkleProof.processMultiProofCalldata(proof, proofFlags, leaves);
        if (_batches[root].submittedAt == 0) revert UnknownRoot(root);
        for (uint256 i = 0; i < count; ++i) {
            bytes32 id = messageIdOf(messages[i]);
            if (_status[id] != Status.None) continue;
            _deliver(messages[i], id, leaves[i]);
        }
    }

    /// @notice Retries a message whose recipient reverted before. Anyone may call it.
    /// @dev Reverts NotRetryable unless the message is Failed with identical content, and
    ///      RecipientFailed (leaving it Failed) if the recipient reverts again.
    function retry(Message calldata message) external {
        bytes32 id = messageIdOf(message);
        bytes32 leaf = leafOf(message);
        if (_status[id] != Status.Failed || _failedLeaf[id] != leaf) revert NotRetryable(id);
        _status[id] = Status.Delivered;
        delete _failedLeaf[id];
        if (!_callRecipient(message)) revert RecipientFailed(id);
        emit MessageDelivered(id, message.sourceChainId, message.recipient);
    }

    // ---------------------------------------------------------------- views

    /// @notice The EIP-712 digest the committee signs for a batch.
    function batchDigest(uint64 epoch, uint64 height, bytes32 root) public view returns (bytes32) {
        return MessageHashUtils.toTypedDataHash(DOMAIN_SEPARATOR, keccak256(abi.encode(BATCH_TYPEHASH, epoch, height, root)));
    }

    /// @notice The EIP-712 digest the current key signs to rotate to (`newEpoch`, key).
    function rotationDigest(uint64 newEpoch, uint256 keyX, uint8 keyParity) public view returns (bytes32) {
        return MessageHashUtils.toTypedDataHash(
            DOMAIN_SEPARATOR, keccak256(abi.encode(KEY_ROTATION_TYPEHASH, newEpoch, keyX, keyParity))
        );
    }

    /// @notice messageId = keccak256(abi.encode(sourceChainId, sourceGateway, nonce)).
    function messageIdOf(Message calldata m) public pure returns (bytes32) {
        return keccak256(abi.encode(m.sourceChainId, m.sourceGateway, m.nonce));
    }

    /// @notice The double-hashed Merkle leaf of a message (see contract docs).
    function leafOf(Message calldata m) public pure returns (bytes32) {
        return keccak256(
            bytes.concat(
                keccak256(
                    abi.encode(
                        m.sourceChainId, m.sourceGateway, m.nonce, m.sender, m.destChainId, m.recipient, keccak256(m.payload)
                    )
                )
            )
        );
    }

    /// @notice The key registered for `epoch` (x = 0 when none).
    function keyOf(uint64 epoch) external view returns (EpochKey memory) {
        return _keys[epoch];
    }

    /// @notice The record of a submitted root (submittedAt = 0 when unknown).
    function batchOf(bytes32 root) external view returns (BatchRecord memory) {
        return _batches[root];
    }

    /// @notice Delivery status of a message id.
    function statusOf(bytes32 messageId) external view returns (Status) {
        return _status[messageId];
    }

    // ---------------------------------------------------------------- internals

    function _activeKey(uint64 epoch) internal view returns (FrostVerifier.PublicKey memory key) {
        EpochKey storage k = _keys[epoch];
        uint256 x = k.x;
        if (x == 0) revert UnknownEpoch(epoch);
        uint64 until = k.validUntil;
        // A grace period is hours long; a proposer's few seconds of timestamp skew do not matter.
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp > until) revert EpochExpired(epoch, until);
        key = FrostVerifier.PublicKey(x, k.parity);
    }

    function _checkKey(uint256 x, uint256 y) internal pure returns (uint8 parity) {
        if (x == 0 || x >= FrostVerifier.N || !FrostVerifier.isOnCurve(x, y)) revert InvalidKey();
        // casting to 'uint8' is safe because `y & 1` is 0 or 1.
        // forge-lint: disable-next-line(unsafe-typecast)
        parity = uint8(y & 1);
    }

    function _deliver(Message calldata message, bytes32 id, bytes32 leaf) internal {
        if (message.destChainId != block.chainid) revert WrongDestination(message.destChainId);
        _status[id] = Status.Delivered;
        if (_callRecipient(message)) {
            emit MessageDelivered(id, message.sourceChainId, message.recipient);
        } else {
            _status[id] = Status.Failed;
            _failedLeaf[id] = leaf;
            emit MessageFailed(id, message.sourceChainId, message.recipient);
        }
    }

    /// @dev Calls the recipient without copying its return data. A recipient without code
    ///      counts as failed. If the call failed because it was starved of gas (EIP-150 63/64
    ///      rule), the whole transaction reverts so a relayer cannot force a failure.
    function _callRecipient(Message calldata message) internal returns (bool ok) {
        address to = message.recipient;
        if (to.code.length == 0) return false;
        bytes memory data =
            abi.encodeCall(ISigilReceiver.receiveMessage, (message.sourceChainId, message.sender, message.payload));
        uint256 before = gasleft();
        assembly ("memory-safe") {
            ok := call(gas(), to, 0, add(data, 32), mload(data), 0, 0)
        }
        if (!ok && gasleft() <= before / 64) revert InsufficientGas();
    }
}
