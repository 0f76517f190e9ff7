// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {SigilReceiverBase} from "../SigilReceiverBase.sol";

/// @title FixableReceiver
/// @notice Test recipient that reverts until `fix()` is called, then counts messages: a Failed
///         message becomes deliverable with `SigilInbox.retry` once the recipient is fixed.
contract FixableReceiver is SigilReceiverBase {
    /// @notice False until `fix()`.
    bool public isFixed;
    /// @notice Messages received since the fix.
    uint256 public count;
    /// @notice How many times each payload hash was received.
    mapping(bytes32 => uint256) public timesReceived;

    /// @notice Not fixed yet.
    error Broken();

    /// @param inbox_ The inbox whose deliveries are accepted.
    constructor(address inbox_) SigilReceiverBase(inbox_) {}

    /// @notice Makes later deliveries succeed.
    function fix() external {
        isFixed = true;
    }

    function _onSigilMessage(uint64, address, bytes calldata payload) internal override {
        if (!isFixed) revert Broken();
        count += 1;
        timesReceived[keccak256(payload)] += 1;
    }
}
