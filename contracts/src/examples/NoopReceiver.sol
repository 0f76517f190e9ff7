// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {SigilReceiverBase} from "../SigilReceiverBase.sol";

/// @title NoopReceiver
/// @notice Test and benchmark recipient: accepts every message from its inbox and does nothing
///         else (the gas table's "inbox cost only" receiver).
contract NoopReceiver is SigilReceiverBase {
    /// @param inbox_ The inbox whose deliveries are accepted.
    constructor(address inbox_) SigilReceiverBase(inbox_) {}

    function _onSigilMessage(uint64, address, bytes calldata) internal override {}
}
