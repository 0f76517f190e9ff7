// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {SigilReceiverBase} from "../SigilReceiverBase.sol";

/// @title RecordingReceiver
/// @notice Example recipient that records every message the inbox delivers; used by tests and
///         the devnet to count deliveries and detect duplicates. It trusts every
///         (sourceChainId, sender): a real application would check them in `_onSigilMessage`.
contract RecordingReceiver is SigilReceiverBase {
    /// @notice Number of messages received.
    uint256 public count;
    /// @notice How many times each payload hash was received (a value above 1 is a duplicate).
    mapping(bytes32 => uint256) public timesReceived;
    /// @notice When true, `receiveMessage` reverts (to exercise the inbox's failed/retry path).
    bool public rejecting;

    /// @notice Emitted per received message.
    event Received(uint64 indexed sourceChainId, address indexed sender, bytes32 indexed payloadHash, bytes payload);

    /// @notice `rejecting` is set.
    error Rejecting();

    /// @param inbox_ The inbox whose deliveries are accepted.
    constructor(address inbox_) SigilReceiverBase(inbox_) {}

    /// @notice Turns the failure mode on or off.
    function setRejecting(bool value) external {
        rejecting = value;
    }

    function _onSigilMessage(uint64 sourceChainId, address sender, bytes calldata payload) internal override {
        if (rejecting) revert Rejecting();
        bytes32 h = keccak256(payload);
        count += 1;
        timesReceived[h] += 1;
        emit Received(sourceChainId, sender, h, payload);
    }
}
