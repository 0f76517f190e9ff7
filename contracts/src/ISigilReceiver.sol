// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ISigilReceiver
/// @notice Implemented by contracts that receive messages from a `SigilInbox`. Most recipients
///         should inherit `SigilReceiverBase`, which does the inbox check.
interface ISigilReceiver {
    /// @notice Called by the inbox once per delivered message (and again on each `retry` of a
    ///         Failed one), with exactly the gas limit the sender chose in `sendMessage`.
    /// @dev Implementations MUST check `msg.sender` is the inbox they trust, and `sender` /
    ///      `sourceChainId` against the counterparts they expect. A revert, or running out of
    ///      the gas limit, marks the message Failed in the inbox; anyone can then retry it with
    ///      `SigilInbox.retry` at any later time.
    /// @param sourceChainId EIP-155 chain id of the chain the message was sent from.
    /// @param sender The account that called `SigilGateway.sendMessage` on that chain.
    /// @param payload The application bytes, unchanged.
    function receiveMessage(uint64 sourceChainId, address sender, bytes calldata payload) external;
}
