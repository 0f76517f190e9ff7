// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title SigilGateway
/// @notice Source-chain entry point. Applications call `sendMessage`; every Sigil node watches
///         `MessageSent` and, once the block is final, attests the message.
/// @dev On-chain format v2 (contracts/V2.md):
///      messageId = keccak256(abi.encode(sourceChainId, sourceGateway, nonce)).
///      Each message names the destination inbox (`routes[destChainId]` at send time) and the
///      gas its recipient is called with there (`gasLimit`, within [MIN_GAS_LIMIT, MAX_GAS_LIMIT]).
contract SigilGateway {
    /// @notice Largest payload accepted, in bytes.
    uint256 public constant MAX_PAYLOAD_BYTES = 64 * 1024;
    /// @notice Gas limit of the 3-argument `sendMessage`.
    uint32 public constant DEFAULT_GAS_LIMIT = 200_000;
    /// @notice Smallest accepted gas limit.
    uint32 public constant MIN_GAS_LIMIT = 10_000;
    /// @notice Largest accepted gas limit.
    uint32 public constant MAX_GAS_LIMIT = 5_000_000;

    /// @notice May set routes.
    address public immutable admin;

    /// @notice The nonce the next message will get; starts at 0 and increases by one per message.
    uint64 public nextNonce;

    /// @notice The `SigilInbox` messages to `destChainId` are addressed to (zero: no route).
    mapping(uint64 destChainId => address inbox) public routes;

    /// @notice Emitted once per message, with every field a watcher needs to build the leaf.
    /// @param messageId keccak256(abi.encode(sourceChainId, address(this), nonce)).
    /// @param destChainId EIP-155 chain id of the destination chain.
    /// @param recipient The contract on the destination chain that receives the payload.
    /// @param nonce Per-gateway sequence number, gap-free from 0.
    /// @param sender The caller of `sendMessage`.
    /// @param sourceChainId This chain's id (block.chainid), repeated for self-contained logs.
    /// @param destInbox The inbox on `destChainId` that alone may deliver the message (the route at send time).
    /// @param gasLimit Gas the inbox gives the recipient's `receiveMessage`.
    /// @param payload The application bytes.
    event MessageSent(
        bytes32 indexed messageId,
        uint64 indexed destChainId,
        address indexed recipient,
        uint64 nonce,
        address sender,
        uint64 sourceChainId,
        address destInbox,
        uint32 gasLimit,
        bytes payload
    );

    /// @notice The route to `destChainId` was set to `inbox` (zero: removed).
    event RouteSet(uint64 indexed destChainId, address inbox);

    /// @notice The payload exceeds MAX_PAYLOAD_BYTES.
    error PayloadTooLarge(uint256 length, uint256 max);
    /// @notice The destination is this chain or zero.
    error InvalidDestination(uint64 destChainId);
    /// @notice No inbox is routed for `destChainId`.
    error NoRoute(uint64 destChainId);
    /// @notice The gas limit is outside [MIN_GAS_LIMIT, MAX_GAS_LIMIT].
    error GasLimitOutOfRange(uint32 gasLimit, uint32 min, uint32 max);
    /// @notice Caller is not the admin.
    error NotAdmin(address caller);

    /// @param admin_ Account allowed to set routes.
    constructor(address admin_) {
        admin = admin_;
    }

    /// @notice Routes messages for `destChainId` to `inbox`; the zero address removes the route.
    ///         Admin only. Messages already sent keep the inbox they named.
    function setRoute(uint64 destChainId, address inbox) external {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        if (destChainId == 0 || destChainId == block.chainid) revert InvalidDestination(destChainId);
        routes[destChainId] = inbox;
        emit RouteSet(destChainId, inbox);
    }

    /// @notice Sends `payload` to `recipient` on chain `destChainId`, whose `receiveMessage`
    ///         will be called with DEFAULT_GAS_LIMIT gas.
    /// @return messageId The message's identifier (see contract docs).
    function sendMessage(uint64 destChainId, address recipient, bytes calldata payload)
        external
        returns (bytes32 messageId)
    {
        return _send(destChainId, recipient, payload, DEFAULT_GAS_LIMIT);
    }

    /// @notice Sends `payload` to `recipient` on chain `destChainId`, whose `receiveMessage`
    ///         will be called with exactly `gasLimit` gas.
    /// @return messageId The message's identifier (see contract docs).
    function sendMessage(uint64 destChainId, address recipient, bytes calldata payload, uint32 gasLimit)
        external
        returns (bytes32 messageId)
    {
        return _send(destChainId, recipient, payload, gasLimit);
    }

    /// @notice Sends every payload of `payloads` to `recipient` on chain `destChainId` in one
    ///         transaction, in order, each with exactly `gasLimit` gas there: the same as
    ///         `payloads.length` calls of `sendMessage`, one `MessageSent` each, for the
    ///         calldata and base cost of one (load generation, fan-out applications).
    /// @dev Reverts as `sendMessage` does, naming the first offending payload's condition;
    ///      then nothing is sent. An empty `payloads` sends nothing and checks nothing.
    /// @return firstNonce The nonce of the first message (the others follow gap-free).
    function sendMessages(uint64 destChainId, address recipient, bytes[] calldata payloads, uint32 gasLimit)
        external
        returns (uint64 firstNonce)
    {
        firstNonce = nextNonce;
        for (uint256 i = 0; i < payloads.length; ++i) {
            _send(destChainId, recipient, payloads[i], gasLimit);
        }
    }

    function _send(uint64 destChainId, address recipient, bytes calldata payload, uint32 gasLimit)
        internal
        returns (bytes32 messageId)
    {
        if (payload.length > MAX_PAYLOAD_BYTES) revert PayloadTooLarge(payload.length, MAX_PAYLOAD_BYTES);
        if (destChainId == 0 || destChainId == block.chainid) revert InvalidDestination(destChainId);
        if (gasLimit < MIN_GAS_LIMIT || gasLimit > MAX_GAS_LIMIT) {
            revert GasLimitOutOfRange(gasLimit, MIN_GAS_LIMIT, MAX_GAS_LIMIT);
        }
        address destInbox = routes[destChainId];
        if (destInbox == address(0)) revert NoRoute(destChainId);
        uint64 nonce = nextNonce;
        unchecked {
            nextNonce = nonce + 1;
        }
        uint64 sourceChainId = uint64(block.chainid);
        messageId = keccak256(abi.encode(sourceChainId, address(this), nonce));
        emit MessageSent(
            messageId, destChainId, recipient, nonce, msg.sender, sourceChainId, destInbox, gasLimit, payload
        );
    }
}
