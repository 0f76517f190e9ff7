// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {SigilReceiverBase} from "../SigilReceiverBase.sol";

/// @title GasBurnerReceiver
/// @notice Test recipient that loops until it runs out of gas: every delivery uses the whole
///         gas limit and fails, so the message ends Failed (exercises the out-of-gas path).
contract GasBurnerReceiver is SigilReceiverBase {
    /// @param inbox_ The inbox whose deliveries are accepted.
    constructor(address inbox_) SigilReceiverBase(inbox_) {}

    function _onSigilMessage(uint64, address, bytes calldata) internal pure override {
        uint256 i;
        while (true) {
            unchecked {
                ++i;
            }
        }
    }
}
