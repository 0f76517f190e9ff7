// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ISigilReceiver} from "./ISigilReceiver.sol";

/// @title SigilReceiverBase
/// @notice Base for contracts that receive Sigil messages. It accepts calls only from the one
///         inbox given at construction and hands each message to `_onSigilMessage` with the
///         source chain id and the source-chain sender.
/// @dev What a recipient must check, and what it may rely on:
///      1. The caller is the inbox it trusts: done here (`onlyInbox`). Anyone can call
///         `receiveMessage` directly; only the inbox's calls carry attested messages.
///      2. The (sourceChainId, sender) pair is a counterpart it trusts: done by the
///         implementation in `_onSigilMessage`. The inbox proves a message was sent by `sender`
///         through the Sigil gateway of `sourceChainId`; it does not restrict who may send.
///      3. Its work fits the message's gas limit (chosen by the sender; the inbox calls with
///         exactly that much). A revert or an out-of-gas marks the message Failed, and ANYONE may
///         `retry` it later, at any time and in any order relative to other messages, as often as
///         it keeps failing. So a recipient must not rely on delivery order, on delivery time, or
///         on the identity of the relayer (`tx.origin`), and should re-validate conditions that
///         can change between a failure and a retry.
///      The inbox guarantees each message succeeds at most once (replay protection), never
///      forwards value, and only delivers messages that name this chain and that inbox.
abstract contract SigilReceiverBase is ISigilReceiver {
    /// @notice The inbox allowed to call `receiveMessage`.
    address public immutable inbox;

    /// @notice Caller is not the inbox.
    error NotInbox(address caller);

    /// @notice Reverts NotInbox unless the caller is `inbox`.
    modifier onlyInbox() {
        if (msg.sender != inbox) revert NotInbox(msg.sender);
        _;
    }

    /// @param inbox_ The `SigilInbox` whose deliveries are accepted.
    constructor(address inbox_) {
        inbox = inbox_;
    }

    /// @inheritdoc ISigilReceiver
    function receiveMessage(uint64 sourceChainId, address sender, bytes calldata payload) external onlyInbox {
        _onSigilMessage(sourceChainId, sender, payload);
    }

    /// @notice Handles one message delivered by the trusted inbox.
    /// @dev Implementations MUST check (`sourceChainId`, `sender`) against the counterparts they
    ///      trust (see the contract docs). Reverting marks the message Failed (retryable).
    /// @param sourceChainId EIP-155 chain id of the chain the message was sent from.
    /// @param sender The account that called `SigilGateway.sendMessage` on that chain.
    /// @param payload The application bytes, unchanged.
    function _onSigilMessage(uint64 sourceChainId, address sender, bytes calldata payload) internal virtual;
}
