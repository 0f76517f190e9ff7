// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title SigilGateway
/// @notice Source-chain entry point. Applications call `sendMessage`; every Sigil node watches
///         `MessageSent` and, once the block is final, attests the message.
/// @dev Identifiers and leaves (fixed by DESIGN.md "On-chain formats"):
///      messageId = keccak256(abi.encode(sourceChainId, sourceGateway, nonce)).
contract SigilGateway {
    /// @notice Largest payload accepted, in bytes.
    uint256 public constant MAX_PAYLOAD_BYTES = 64 * 1024;

    /// @notice The nonce the next message will get; starts at 0 and increases by one per message.
    uint64 public nextNonce;

    /// @notice Emitted once per message, with every field a watcher needs to build the leaf.
    /// @param messageId keccak256(abi.encode(sourceChainId, address(this), nonce)).
    /// @param destChainId EIP-155 chain id of the destination chain.
    /// @param recipient The contract on the destination chain that receives the payload.
    /// @param nonce Per-gateway sequence number, gap-free from 0.
    /// @param sender The caller of `sendMessage`.
    /// @param sourceChainId This chain's id (block.chainid), repeated for self-contained logs.
    /// @param payload The application bytes.
    event MessageSent(
        bytes32 indexed messageId,
        uint64 indexed destChainId,
        address indexed recipient,
        uint64 nonce,
        address sender,
        uint64 sourceChainId,
        bytes payload
    );

    /// @notice The payload exceeds MAX_PAYLOAD_BYTES.
    error PayloadTooLarge(uint256 length, uint256 max);
    /// @notice The destination is this chain or zero.
    error InvalidDestination(uint64 destChainId);

    /// @notice Sends `payload` to `recipient` on chain `destChainId`.
    /// @return messageId The message's identifier (see contract docs).
    function sendMessage(uint64 destChainId, address recipient, bytes calldata payload)
        external
        returns (bytes32 messageId)
    {
        if (payload.length > MAX_PAYLOAD_BYTES) revert PayloadTooLarge(payload.length, MAX_PAYLOAD_BYTES);
        if (destChainId == 0 || destChainId == block.chainid) revert InvalidDestination(destChainId);
        uint64 nonce = nextNonce;
        unchecked {
            nextNonce = nonce + 1;
        }
        uint64 sourceChainId = uint64(block.chainid);
        messageId = keccak256(abi.encode(sourceChainId, address(this), nonce));
        emit MessageSent(messageId, destChainId, recipient, nonce, msg.sender, sourceChainId, payload);
    }
}
