// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ISigilReceiver
/// @notice Implemented by contracts that receive messages from a `SigilInbox`.
interface ISigilReceiver {
    /// @notice Called by the inbox once per delivered message.
    /// @dev Implementations MUST check `msg.sender` is the inbox they trust, and `sender` /
    ///      `sourceChainId` against the counterparts they expect. A revert marks the message
    ///      failed in the inbox; it stays retryable with `SigilInbox.retry`.
    /// @param sourceChainId EIP-155 chain id of the chain the message was sent from.
    /// @param sender The account that called `SigilGateway.sendMessage` on that chain.
    /// @param payload The application bytes, unchanged.
    function receiveMessage(uint64 sourceChainId, address sender, bytes calldata payload) external;
}
