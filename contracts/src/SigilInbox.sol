// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {FrostVerifier} from "./FrostVerifier.sol";
import {ISigilReceiver} from "./ISigilReceiver.sol";

/// @title SigilInbox
/// @notice Destination-chain end of Sigil. A relayer submits a batch root with the committee's
///         single FROST signature (`submitBatch`), then delivers each message of the batch with
///         its Merkle proof (`deliver`, or `deliverBatch` with a multiproof). Each recipient is
///         called with exactly the gas limit its sender chose; a recipient that reverts or runs
///         out of that gas leaves its message Failed, and anyone may `retry` it later.
/// @dev On-chain format v2 (contracts/V2.md has the full specification):
///      - messageId = keccak256(abi.encode(sourceChainId, sourceGateway, nonce))
///      - leaf = keccak256(bytes.concat(keccak256(abi.encode(sourceChainId, sourceGateway, nonce,
///        sender, destChainId, destInbox, recipient, gasLimit, keccak256(payload))))),
///        OpenZeppelin StandardMerkleTree convention (sorted-pair inner nodes).
///      - batch digest: EIP-712, domain {name: "Sigil", version: "2"} (no chainId, no verifying
///        contract: one attestation serves every destination) over
///        Batch(uint64 epoch,uint64 height,bytes32 root). A message names its inbox
///        (destChainId, destInbox), so a batch is only useful to the inbox each message names.
///      - rotation digest: EIP-712, domain {name: "Sigil", version: "2", chainId: block.chainid,
///        verifyingContract: this inbox} over KeyRotation(uint64 oldEpoch,uint256 oldKeyX,
///        uint8 oldKeyParity,uint64 newEpoch,uint256 newKeyX,uint8 newKeyParity).
///      - replay protection: one bit per (sourceChainId, sourceGateway, nonce) in 256-bit words
///        keyed by keccak256(abi.encode(sourceChainId, sourceGateway, nonce >> 8)), bit nonce & 255,
///        set once the message is processed (Delivered or Failed); a Failed message also keeps
///        its leaf under its messageId until a retry succeeds.
contract SigilInbox {
    /// @notice One cross-chain message, exactly as the source gateway emitted it.
    struct Message {
        uint64 sourceChainId;
        address sourceGateway;
        uint64 nonce;
        address sender;
        uint64 destChainId;
        address destInbox;
        address recipient;
        uint32 gasLimit;
        bytes payload;
    }

    /// @notice Delivery state of a message: None (not processed), Delivered, or Failed
    ///         (the recipient reverted or ran out of its gas limit; retryable).
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
    bytes32 public constant KEY_ROTATION_TYPEHASH = keccak256(
        "KeyRotation(uint64 oldEpoch,uint256 oldKeyX,uint8 oldKeyParity,uint64 newEpoch,uint256 newKeyX,uint8 newKeyParity)"
    );
    /// @notice Longest accepted grace period (seconds): keeps `block.timestamp + gracePeriod`
    ///         far inside uint64.
    uint64 public constant MAX_GRACE_PERIOD = 365 days;
    /// @notice Gas kept back, beyond the 1/64 of EIP-150, for the work before the recipient
    ///         call (at most a cold account access, 2,600, plus a few opcodes) and after it
    ///         (marking a failure: a fresh 22,100 SSTORE of the leaf and a 4-topic event).
    ///         See `_callRecipient` and contracts/V2.md for the arithmetic.
    uint256 public constant CALL_RESERVE = 30_000;

    /// @dev Literal copies for inline assembly; a test checks each against the compiler's value.
    /// @dev ISigilReceiver.receiveMessage.selector, left-aligned.
    bytes32 internal constant RECEIVE_MESSAGE_SELECTOR =
        0x3bee62df00000000000000000000000000000000000000000000000000000000;
    /// @dev InsufficientGas.selector, left-aligned.
    bytes32 internal constant INSUFFICIENT_GAS_SELECTOR =
        0x1c26714c00000000000000000000000000000000000000000000000000000000;
    /// @dev MessageDelivered.selector.
    bytes32 internal constant MESSAGE_DELIVERED_TOPIC = 0xdd9126c7f1d025fea10a31314acd0bf4ec3cdc8695cf03d501e3ba849cc969b1;
    /// @dev MessageFailed.selector.
    bytes32 internal constant MESSAGE_FAILED_TOPIC = 0x0393061846873db8f618b9c48fa61f334124bf9769721e3e8d2b60b1f9441057;

    /// @notice EIP-712 domain separator of batch digests: {name: "Sigil", version: "2"}.
    bytes32 public immutable BATCH_DOMAIN_SEPARATOR;

    /// @notice May call `initialize` once to register the first group key (after DKG).
    address public immutable admin;
    /// @notice Seconds a rotated-out key stays valid for `submitBatch` (at most MAX_GRACE_PERIOD).
    uint64 public immutable gracePeriod;

    /// @notice The newest epoch; 0 until `initialize`.
    uint64 public currentEpoch;

    mapping(uint64 epoch => EpochKey) internal _keys;
    mapping(bytes32 root => BatchRecord) internal _batches;
    /// @dev keccak256(abi.encode(sourceChainId, sourceGateway, nonce >> 8)) => processed bits.
    mapping(bytes32 wordKey => uint256 bits) internal _processed;
    /// @dev messageId => leaf of a Failed message; zero once delivered (or never failed).
    mapping(bytes32 messageId => bytes32 leaf) internal _failedLeaf;

    /// @notice A group key was registered for `epoch`.
    event GroupKeySet(uint64 indexed epoch, uint256 keyX, uint8 keyParity);
    /// @notice The committee rotated from `oldEpoch` to `newEpoch`; the old key expires at `oldKeyValidUntil`.
    event KeyRotated(
        uint64 indexed oldEpoch, uint64 indexed newEpoch, uint256 keyX, uint8 keyParity, uint64 oldKeyValidUntil
    );
    /// @notice A batch root was accepted.
    event BatchSubmitted(bytes32 indexed root, uint64 indexed epoch, uint64 indexed height);
    /// @notice A message reached its recipient (first delivery or a successful retry).
    event MessageDelivered(bytes32 indexed messageId, uint64 indexed sourceChainId, address indexed recipient);
    /// @notice The recipient reverted or ran out of the message's gas limit (or has no code);
    ///         the message is Failed and can be retried by anyone.
    event MessageFailed(bytes32 indexed messageId, uint64 indexed sourceChainId, address indexed recipient);

    /// @notice Caller is not the admin.
    error NotAdmin(address caller);
    /// @notice `initialize` was already called.
    error AlreadyInitialized();
    /// @notice The constructor's grace period exceeds MAX_GRACE_PERIOD.
    error GracePeriodTooLong(uint64 gracePeriod, uint64 max);
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
    /// @notice The message names another chain or another inbox.
    error WrongInbox(uint64 destChainId, address destInbox);
    /// @notice The message was already delivered, or already failed (use `retry`).
    error AlreadyProcessed(bytes32 messageId, Status status);
    /// @notice `retry` was called for a message that is not in the Failed state, or with other content.
    error NotRetryable(bytes32 messageId);
    /// @notice The recipient reverted (or ran out of its gas limit) during `retry`.
    error RecipientFailed(bytes32 messageId);
    /// @notice The transaction has too little gas left to give the recipient its full gas
    ///         limit and finish; send more gas. Nothing was marked.
    error InsufficientGas();
    /// @notice `deliverBatch` needs at least one message.
    error EmptyBatch();
    /// @notice The multiproof does not fit its leaves (lengths, or a step reads a node not yet computed).
    error InvalidMultiproof();

    /// @param admin_ Account allowed to register the first group key.
    /// @param gracePeriod_ Seconds a rotated-out key keeps being accepted (<= MAX_GRACE_PERIOD).
    constructor(address admin_, uint64 gracePeriod_) {
        if (gracePeriod_ > MAX_GRACE_PERIOD) revert GracePeriodTooLong(gracePeriod_, MAX_GRACE_PERIOD);
        admin = admin_;
        gracePeriod = gracePeriod_;
        BATCH_DOMAIN_SEPARATOR = keccak256(
            abi.encode(keccak256("EIP712Domain(string name,string version)"), keccak256("Sigil"), keccak256("2"))
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
    ///         over `rotationDigest(currentEpoch, currentKey, newEpoch, newKey)`, which binds the
    ///         old epoch and key and this inbox (chain id and address). The current key stays
    ///         valid for `gracePeriod` seconds; an epoch is never accepted twice.
    function rotateKey(uint64 newEpoch, uint256 keyX, uint256 keyY, FrostVerifier.Signature calldata sig) external {
        uint64 oldEpoch = currentEpoch;
        if (oldEpoch == 0) revert UnknownEpoch(0);
        if (newEpoch <= oldEpoch) revert EpochNotIncreasing(newEpoch, oldEpoch);
        uint8 parity = _checkKey(keyX, keyY);
        (uint256 oldX, uint8 oldParity) = _activeKey(oldEpoch);
        bytes32 digest = rotationDigest(oldEpoch, oldX, oldParity, newEpoch, keyX, parity);
        if (!FrostVerifier.verifyDigest(oldX, oldParity, sig, digest)) revert InvalidSignature();
        // Cannot overflow: gracePeriod <= MAX_GRACE_PERIOD (1 year) and block.timestamp is far
        // below 2^64 - 1 year.
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
        (uint256 keyX, uint8 keyParity) = _activeKey(epoch);
        if (!FrostVerifier.verifyDigest(keyX, keyParity, sig, batchDigest(epoch, height, root))) {
            revert InvalidSignature();
        }
        _batches[root] = BatchRecord(epoch, height, uint64(block.timestamp));
        emit BatchSubmitted(root, epoch, height);
    }

    // ---------------------------------------------------------------- delivery

    /// @notice Delivers one message of a submitted batch, proven by an OpenZeppelin Merkle proof.
    /// @dev Reverts WrongInbox, UnknownRoot, AlreadyProcessed or InsufficientGas. A recipient that
    ///      reverts or runs out of the message's gas limit does not revert this call: the message
    ///      is marked Failed and stays retryable.
    function deliver(Message calldata message, bytes32[] calldata proof) external {
        bytes32 leaf = _checkedLeaf(message);
        bytes32 root = MerkleProof.processProofCalldata(proof, leaf);
        if (_batches[root].submittedAt == 0) revert UnknownRoot(root);
        (bool fresh, bytes32 id) = _deliverOne(message, leaf);
        if (!fresh) revert AlreadyProcessed(id, _failedLeaf[id] == 0 ? Status.Delivered : Status.Failed);
    }

    /// @notice Delivers several messages of one submitted batch with a single multiproof
    ///         (`proof`, `proofFlags` as produced by OpenZeppelin's `getMultiProof`, leaves in
    ///         the order that multiproof lists them). Already-processed messages are skipped;
    ///         a failing recipient marks its message Failed and the rest are still delivered.
    /// @dev Reverts EmptyBatch, WrongInbox (any message), InvalidMultiproof, UnknownRoot or
    ///      InsufficientGas (the transaction cannot give some recipient its full gas limit).
    ///      The multiproof is processed as OpenZeppelin's `processMultiProof` does (a queue of
    ///      the leaves then the computed nodes), with one more check: a step may not read a node
    ///      that is not computed yet.
    function deliverBatch(Message[] calldata messages, bytes32[] calldata proof, bool[] calldata proofFlags)
        external
    {
        uint256 count = messages.length;
        if (count == 0) revert EmptyBatch();
        uint256 flagsLen = proofFlags.length;
        if (count + proof.length != flagsLen + 1) revert InvalidMultiproof();
        // The multiproof's queue: the leaves, then the nodes it computes.
        bytes32[] memory queue = new bytes32[](count + flagsLen);
        _checkedLeaves(messages, queue);
        bytes32 root = _multiProofRoot(queue, count, proof, proofFlags);
        if (_batches[root].submittedAt == 0) revert UnknownRoot(root);
        _deliverAll(messages, queue);
    }

    /// @notice Retries a Failed message (its recipient reverted or ran out of gas before).
    ///         Anyone may call it. The recipient again gets exactly `message.gasLimit` gas.
    /// @dev Reverts NotRetryable unless the message is Failed with identical content,
    ///      InsufficientGas if the transaction cannot give the recipient its full gas limit,
    ///      and RecipientFailed (leaving it Failed) if the recipient fails again. Success marks
    ///      it Delivered.
    function retry(Message calldata message) external {
        bytes32 id = messageIdOf(message);
        bytes32 leaf = leafOf(message);
        if (leaf != _failedLeaf[id]) revert NotRetryable(id);
        delete _failedLeaf[id];
        if (!_callRecipient(message)) revert RecipientFailed(id);
        emit MessageDelivered(id, message.sourceChainId, message.recipient);
    }

    // ---------------------------------------------------------------- views

    /// @notice The EIP-712 digest the committee signs for a batch (domain without chain id).
    function batchDigest(uint64 epoch, uint64 height, bytes32 root) public view returns (bytes32 digest) {
        bytes32 domain = BATCH_DOMAIN_SEPARATOR;
        bytes32 typehash = BATCH_TYPEHASH;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, typehash)
            // Small types may carry dirty high bits on the stack: clean them.
            mstore(add(m, 0x20), and(epoch, 0xffffffffffffffff))
            mstore(add(m, 0x40), and(height, 0xffffffffffffffff))
            mstore(add(m, 0x60), root)
            let structHash := keccak256(m, 0x80)
            mstore(m, shl(240, 0x1901))
            mstore(add(m, 0x02), domain)
            mstore(add(m, 0x22), structHash)
            digest := keccak256(m, 0x42)
        }
    }

    /// @notice EIP-712 domain separator of rotation digests:
    ///         {name: "Sigil", version: "2", chainId: block.chainid, verifyingContract: this}.
    function rotationDomainSeparator() public view returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("Sigil"),
                keccak256("2"),
                block.chainid,
                address(this)
            )
        );
    }

    /// @notice The EIP-712 digest the key of `oldEpoch` signs to hand over to `newEpoch`'s key,
    ///         bound to this inbox (`rotationDomainSeparator`).
    function rotationDigest(
        uint64 oldEpoch,
        uint256 oldKeyX,
        uint8 oldKeyParity,
        uint64 newEpoch,
        uint256 newKeyX,
        uint8 newKeyParity
    ) public view returns (bytes32) {
        bytes32 structHash = keccak256(
            abi.encode(KEY_ROTATION_TYPEHASH, oldEpoch, oldKeyX, oldKeyParity, newEpoch, newKeyX, newKeyParity)
        );
        return keccak256(abi.encodePacked(hex"1901", rotationDomainSeparator(), structHash));
    }

    /// @notice messageId = keccak256(abi.encode(sourceChainId, sourceGateway, nonce)).
    function messageIdOf(Message calldata m) public pure returns (bytes32) {
        return keccak256(abi.encode(m.sourceChainId, m.sourceGateway, m.nonce));
    }

    /// @notice The double-hashed Merkle leaf of a message:
    ///         keccak256(bytes.concat(keccak256(abi.encode(sourceChainId, sourceGateway, nonce,
    ///         sender, destChainId, destInbox, recipient, gasLimit, keccak256(payload))))).
    /// @dev Hashes the message's eight static ABI words as they are in calldata (no per-field
    ///      decoding; a non-canonical encoding only yields a leaf no committee ever signed), in
    ///      scratch memory past the free pointer (nothing is allocated).
    function leafOf(Message calldata m) public pure returns (bytes32 leaf) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            let payload := add(m, calldataload(add(m, 0x100)))
            let len := calldataload(payload)
            calldatacopy(p, add(payload, 0x20), len)
            let payloadHash := keccak256(p, len)
            calldatacopy(p, m, 0x100)
            mstore(add(p, 0x100), payloadHash)
            mstore(0x00, keccak256(p, 0x120))
            leaf := keccak256(0x00, 0x20)
        }
    }

    /// @notice Delivery status of the message (sourceChainId, sourceGateway, nonce):
    ///         None until processed, then Delivered or Failed (Failed until a retry succeeds).
    /// @dev v2 takes the message's coordinates instead of its id: replay protection is a
    ///      bitmap keyed by (sourceChainId, sourceGateway, nonce >> 8).
    function statusOf(uint64 sourceChainId, address sourceGateway, uint64 nonce) external view returns (Status) {
        uint256 bits = _processed[_wordKey(sourceChainId, sourceGateway, nonce)];
        if ((bits >> (nonce & 255)) & 1 == 0) return Status.None;
        bytes32 id = keccak256(abi.encode(sourceChainId, sourceGateway, nonce));
        return _failedLeaf[id] == 0 ? Status.Delivered : Status.Failed;
    }

    /// @notice The processed bits of nonces [256 * wordIndex, 256 * wordIndex + 255] of one
    ///         source gateway (bit i for nonce 256 * wordIndex + i): one call answers 256 messages.
    function processedWord(uint64 sourceChainId, address sourceGateway, uint64 wordIndex)
        external
        view
        returns (uint256)
    {
        return _processed[keccak256(abi.encode(sourceChainId, sourceGateway, wordIndex))];
    }

    /// @notice The leaf kept for a Failed message (zero unless the message is Failed).
    function failedLeafOf(bytes32 messageId) external view returns (bytes32) {
        return _failedLeaf[messageId];
    }

    /// @notice The key registered for `epoch` (x = 0 when none).
    function keyOf(uint64 epoch) external view returns (EpochKey memory) {
        return _keys[epoch];
    }

    /// @notice The record of a submitted root (submittedAt = 0 when unknown).
    function batchOf(bytes32 root) external view returns (BatchRecord memory) {
        return _batches[root];
    }

    // ---------------------------------------------------------------- internals

    function _activeKey(uint64 epoch) internal view returns (uint256 x, uint8 parity) {
        EpochKey storage k = _keys[epoch];
        x = k.x;
        if (x == 0) revert UnknownEpoch(epoch);
        uint64 until = k.validUntil;
        // A grace period is hours long; a proposer's few seconds of timestamp skew do not matter.
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp > until) revert EpochExpired(epoch, until);
        parity = k.parity;
    }

    function _checkKey(uint256 x, uint256 y) internal pure returns (uint8 parity) {
        if (x == 0 || x >= FrostVerifier.N || !FrostVerifier.isOnCurve(x, y)) revert InvalidKey();
        // casting to 'uint8' is safe because `y & 1` is 0 or 1.
        // forge-lint: disable-next-line(unsafe-typecast)
        parity = uint8(y & 1);
    }

    /// @dev Reverts WrongInbox unless the message names this chain and this contract, then
    ///      returns its leaf. Every later read of the message's static words relies on this
    ///      leaf being proven against a signed root.
    function _checkedLeaf(Message calldata m) internal view returns (bytes32 leaf) {
        uint256 destChainId;
        uint256 destInbox;
        assembly ("memory-safe") {
            destChainId := calldataload(add(m, 0x80))
            destInbox := calldataload(add(m, 0xa0))
        }
        // Whole-word equality: a dirty encoding never matches.
        if (destChainId != block.chainid || destInbox != uint256(uint160(address(this)))) {
            // casting is for the error only: a clean word fits, a dirty one is refused anyway.
            // forge-lint: disable-next-line(unsafe-typecast)
            revert WrongInbox(uint64(destChainId), address(uint160(destInbox)));
        }
        assembly ("memory-safe") {
            // As `leafOf`.
            let p := mload(0x40)
            let payload := add(m, calldataload(add(m, 0x100)))
            let len := calldataload(payload)
            calldatacopy(p, add(payload, 0x20), len)
            let payloadHash := keccak256(p, len)
            calldatacopy(p, m, 0x100)
            mstore(add(p, 0x100), payloadHash)
            mstore(0x00, keccak256(p, 0x120))
            leaf := keccak256(0x00, 0x20)
        }
    }

    /// @dev `_checkedLeaf` of every message, written to queue[0..messages.length), in one loop.
    function _checkedLeaves(Message[] calldata messages, bytes32[] memory queue) internal view {
        bytes4 wrongInbox = WrongInbox.selector;
        assembly ("memory-safe") {
            let p := mload(0x40)
            let base := messages.offset
            let end := add(base, shl(5, messages.length))
            let out := add(queue, 0x20)
            for { let e := base } lt(e, end) { e := add(e, 0x20) } {
                let m := add(base, calldataload(e))
                let destChainId := calldataload(add(m, 0x80))
                let destInbox := calldataload(add(m, 0xa0))
                // Whole-word equality: a dirty encoding never matches.
                if iszero(and(eq(destChainId, chainid()), eq(destInbox, address()))) {
                    mstore(0x00, wrongInbox)
                    mstore(0x04, and(destChainId, 0xffffffffffffffff))
                    mstore(0x24, and(destInbox, 0xffffffffffffffffffffffffffffffffffffffff))
                    revert(0x00, 0x44)
                }
                // As `leafOf`.
                let payload := add(m, calldataload(add(m, 0x100)))
                let len := calldataload(payload)
                calldatacopy(p, add(payload, 0x20), len)
                let payloadHash := keccak256(p, len)
                calldatacopy(p, m, 0x100)
                mstore(add(p, 0x100), payloadHash)
                mstore(0x00, keccak256(p, 0x120))
                mstore(out, keccak256(0x00, 0x20))
                out := add(out, 0x20)
            }
        }
    }

    /// @dev OpenZeppelin's multiproof processing over one queue (leaves then computed nodes)
    ///      that may not be read past what is written. `queue` has `leavesLen` leaves and room
    ///      for `proofFlags.length` nodes; leavesLen + proof.length == proofFlags.length + 1 and
    ///      leavesLen >= 1 are checked by the caller.
    function _multiProofRoot(
        bytes32[] memory queue,
        uint256 leavesLen,
        bytes32[] calldata proof,
        bool[] calldata proofFlags
    ) internal pure returns (bytes32 root) {
        bool bad;
        assembly ("memory-safe") {
            let read := add(queue, 0x20)
            let write := add(read, shl(5, leavesLen))
            let proofPtr := proof.offset
            let flag := proofFlags.offset
            let flagsEnd := add(flag, shl(5, proofFlags.length))
            for {} lt(flag, flagsEnd) { flag := add(flag, 0x20) } {
                let a := mload(read)
                let b
                switch calldataload(flag)
                case 0 {
                    b := calldataload(proofPtr)
                    proofPtr := add(proofPtr, 0x20)
                    read := add(read, 0x20)
                }
                default {
                    b := mload(add(read, 0x20))
                    read := add(read, 0x40)
                }
                // Nothing may be read that is not written yet.
                bad := or(bad, gt(read, write))
                // Sorted pair: min first.
                let swap := mul(xor(a, b), gt(a, b))
                mstore(0x00, xor(a, swap))
                mstore(0x20, xor(b, swap))
                mstore(write, keccak256(0x00, 0x40))
                write := add(write, 0x20)
            }
            bad := or(bad, iszero(eq(proofPtr, add(proof.offset, shl(5, proof.length)))))
            root := mload(sub(write, 0x20))
        }
        if (bad) revert InvalidMultiproof();
    }

    function _wordKey(uint64 sourceChainId, address sourceGateway, uint64 nonce) internal pure returns (bytes32 key) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, and(sourceChainId, 0xffffffffffffffff))
            mstore(add(p, 0x20), and(sourceGateway, 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(add(p, 0x40), shr(8, and(nonce, 0xffffffffffffffff)))
            key := keccak256(p, 0x60)
        }
    }

    /// @dev Processes one proven message: if its bit is already set, returns fresh = false and
    ///      changes nothing; otherwise sets the bit, calls the recipient, and on failure keeps
    ///      the leaf for `retry`; emits MessageDelivered or MessageFailed. Reads the message's
    ///      static words raw (authenticated by the leaf, see `_checkedLeaf`).
    function _deliverOne(Message calldata m, bytes32 leaf) internal returns (bool fresh, bytes32 id) {
        uint256 processedSlot;
        assembly ("memory-safe") {
            processedSlot := _processed.slot
            let p := mload(0x40)
            calldatacopy(p, m, 0x60)
            id := keccak256(p, 0x60)
            let nonce := mload(add(p, 0x40))
            mstore(add(p, 0x40), shr(8, nonce))
            mstore(0x00, keccak256(p, 0x60))
            mstore(0x20, processedSlot)
            let slot := keccak256(0x00, 0x40)
            let bits := sload(slot)
            let bit := shl(and(nonce, 0xff), 1)
            fresh := iszero(and(bits, bit))
            if fresh { sstore(slot, or(bits, bit)) }
        }
        if (!fresh) return (false, id);
        bool ok = _callRecipient(m);
        if (!ok) _failedLeaf[id] = leaf;
        bytes32 topic0 = ok ? MessageDelivered.selector : MessageFailed.selector;
        assembly ("memory-safe") {
            log4(0, 0, topic0, id, calldataload(m), calldataload(add(m, 0xc0)))
        }
    }

    /// @dev `_deliverOne` for every message of a proven batch (leaves[i] is message i's leaf),
    ///      skipping processed ones, in one loop. The recipient call is `_callRecipient`'s,
    ///      inlined: same calldata, same starvation rule and reserve (see there).
    function _deliverAll(Message[] calldata messages, bytes32[] memory leaves) internal {
        assembly ("memory-safe") {
            let p := mload(0x40)
            let leaf := add(leaves, 0x20)
            for { let e := messages.offset } lt(e, add(messages.offset, shl(5, messages.length))) {
                e := add(e, 0x20)
                leaf := add(leaf, 0x20)
            } {
                let m := add(messages.offset, calldataload(e))
                // The processed bit, read from storage each time: a recipient may have
                // re-entered and delivered a later message of this batch.
                calldatacopy(p, m, 0x60)
                let id := keccak256(p, 0x60)
                let fresh
                {
                    let nonce := mload(add(p, 0x40))
                    mstore(add(p, 0x40), shr(8, nonce))
                    mstore(0x00, keccak256(p, 0x60))
                    mstore(0x20, _processed.slot)
                    let slot := keccak256(0x00, 0x40)
                    let bits := sload(slot)
                    let bit := shl(and(nonce, 0xff), 1)
                    fresh := iszero(and(bits, bit))
                    if fresh { sstore(slot, or(bits, bit)) }
                }
                if fresh {
                    let to := calldataload(add(m, 0xc0))
                    let ok := 0
                    if extcodesize(to) {
                        let gasLimit := calldataload(add(m, 0xe0))
                        let payload := add(m, calldataload(add(m, 0x100)))
                        let len := calldataload(payload)
                        mstore(p, RECEIVE_MESSAGE_SELECTOR)
                        mstore(add(p, 0x04), calldataload(m))
                        mstore(add(p, 0x24), calldataload(add(m, 0x60)))
                        mstore(add(p, 0x44), 0x60)
                        mstore(add(add(p, 0x84), and(len, not(31))), 0)
                        calldatacopy(add(p, 0x64), payload, add(len, 0x20))
                        if lt(gas(), add(add(add(gasLimit, div(gasLimit, 63)), 1), CALL_RESERVE)) {
                            mstore(0x00, INSUFFICIENT_GAS_SELECTOR)
                            revert(0x00, 0x04)
                        }
                        ok := call(gasLimit, to, 0, p, add(0x84, and(add(len, 31), not(31))), 0, 0)
                    }
                    switch ok
                    case 0 {
                        mstore(0x00, id)
                        mstore(0x20, _failedLeaf.slot)
                        sstore(keccak256(0x00, 0x40), mload(leaf))
                        log4(0, 0, MESSAGE_FAILED_TOPIC, id, calldataload(m), to)
                    }
                    default { log4(0, 0, MESSAGE_DELIVERED_TOPIC, id, calldataload(m), to) }
                }
            }
        }
    }

    /// @dev Calls `receiveMessage` on the recipient with exactly `message.gasLimit` gas and
    ///      without copying its return data; a recipient without code counts as failed.
    ///
    ///      Starvation rule: the CALL forwards min(gasLimit, a - floor(a / 64)) where a is the
    ///      gas left once the CALL's own cost is paid (EIP-150). So that the recipient always
    ///      gets its full gasLimit, and the failure bookkeeping afterwards always completes, the
    ///      call is made only when
    ///          gasleft() >= gasLimit + gasLimit / 63 + 1 + CALL_RESERVE
    ///      right before it; otherwise the whole transaction reverts InsufficientGas, so a relayer
    ///      cannot push a recipient into failure by sending too little gas. Between that check
    ///      and the CALL fewer than 100 gas of opcodes run, plus the CALL's access cost (100: the
    ///      recipient is warm after EXTCODESIZE; 2,600 if it were cold), and no memory expands
    ///      (arguments already written, no return data copied). So the gas available to the
    ///      CALL is a >= gasLimit + gasLimit / 63 + 1 + 27,300 >= ceil(gasLimit * 64 / 63), and
    ///      the recipient receives exactly gasLimit. After the call at least 27,300 + a / 64 gas
    ///      remains, more than the Failed bookkeeping needs (a fresh 22,100 SSTORE of the leaf,
    ///      a 1,875 four-topic log and a few hundred gas of opcodes).
    function _callRecipient(Message calldata message) internal returns (bool ok) {
        uint256 reserve = CALL_RESERVE;
        bytes4 selector = ISigilReceiver.receiveMessage.selector;
        bool enough = true;
        assembly ("memory-safe") {
            let to := calldataload(add(message, 0xc0))
            if extcodesize(to) {
                let gasLimit := calldataload(add(message, 0xe0))
                let payload := add(message, calldataload(add(message, 0x100)))
                let len := calldataload(payload)
                // receiveMessage(uint64 sourceChainId, address sender, bytes payload), in
                // scratch memory past the free pointer (reused for every message).
                let p := mload(0x40)
                mstore(p, selector)
                mstore(add(p, 0x04), calldataload(message))
                mstore(add(p, 0x24), calldataload(add(message, 0x60)))
                mstore(add(p, 0x44), 0x60)
                // Zero the last word first so the payload's padding is clean.
                mstore(add(add(p, 0x84), and(len, not(31))), 0)
                calldatacopy(add(p, 0x64), payload, add(len, 0x20))
                let size := add(0x84, and(add(len, 31), not(31)))
                enough := iszero(lt(gas(), add(add(add(gasLimit, div(gasLimit, 63)), 1), reserve)))
                if enough { ok := call(gasLimit, to, 0, p, size, 0, 0) }
            }
        }
        if (!enough) revert InsufficientGas();
    }
}
