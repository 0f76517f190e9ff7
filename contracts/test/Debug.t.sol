// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {InboxBase} from "./utils/InboxBase.sol";
import {TestMerkle} from "./utils/TestSigner.sol";
import {SigilInbox} from "../src/SigilInbox.sol";
import {NoopReceiver} from "../src/examples/NoopReceiver.sol";

contract DebugGas is InboxBase {
    function setUp() public { setUpInbox(); }
    function go(uint256 n) internal {
        NoopReceiver noop = new NoopReceiver(address(inbox));
        SigilInbox.Message[] memory ms = new SigilInbox.Message[](n);
        for (uint256 i = 0; i < n; ++i) ms[i] = msgFor(inbox, address(noop), uint64(i), 200_000);
        submitBatchOf(inbox, k1, 1, ms);
        (bytes32[] memory p, bool[] memory f) = TestMerkle.fullMultiproof(n);
        bytes memory cd = abi.encodeCall(SigilInbox.deliverBatch, (ms, p, f));
        vm.cool(address(inbox));
        uint256 g = gasleft();
        (bool ok,) = address(inbox).call(cd);
        g -= gasleft();
        require(ok);
        emit log_gas(n, g, g / n);
    }
    event log_gas(uint256 n, uint256 g, uint256 perMsg);
    function test_16() public { go(16); }
    function test_64() public { go(64); }
    function test_256() public { go(256); }
}
