// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "./Test.sol";
import {FrostVerifier} from "../../src/FrostVerifier.sol";
import {SigilInbox} from "../../src/SigilInbox.sol";
import {RecordingReceiver} from "../../src/examples/RecordingReceiver.sol";

/// @notice Reads test/fixtures/frost.json (written by the Rust test `sigil-crypto/tests/fixtures.rs`).
///         Format v2: the file gains top-level `destInbox` (where the tests place the inbox)
///         and `gasLimit` (every scenario message's gas limit); see contracts/V2.md.
abstract contract Fixtures is Test {
    string internal fx;
    SigilInbox internal inbox;
    address internal recipient;
    uint64 internal constant GRACE = 1 days;

    function loadFixtures() internal {
        fx = vm.readFile("test/fixtures/frost.json");
        recipient = vm.parseJsonAddress(fx, ".recipient");
    }

    /// The inbox address every fixture message names (format v2).
    function fixtureInbox() internal view returns (address) {
        return vm.parseJsonAddress(fx, ".destInbox");
    }

    /// Deploys an inbox (admin = this test) at the fixture's `destInbox` address (deploy, then
    /// etch the runtime code there: the constructor writes immutables only) and etches a
    /// RecordingReceiver bound to it at the fixture's recipient address.
    function deployInbox() internal {
        address at = fixtureInbox();
        SigilInbox deployed = new SigilInbox(address(this), GRACE);
        vm.etch(at, address(deployed).code);
        inbox = SigilInbox(at);
        RecordingReceiver r = new RecordingReceiver(at);
        vm.etch(recipient, address(r).code);
    }

    function receiver() internal view returns (RecordingReceiver) {
        return RecordingReceiver(recipient);
    }

    function key(string memory path) internal view returns (uint256 x, uint256 y) {
        x = vm.parseJsonUint(fx, string.concat(path, ".x"));
        y = vm.parseJsonUint(fx, string.concat(path, ".y"));
    }

    function sig(string memory path) internal view returns (FrostVerifier.Signature memory s) {
        s.rx = vm.parseJsonUint(fx, string.concat(path, ".rx"));
        s.ry = vm.parseJsonUint(fx, string.concat(path, ".ry"));
        s.z = vm.parseJsonUint(fx, string.concat(path, ".z"));
    }

    /// Message with nonce `n` as the Rust fixture generator builds it.
    function message(uint64 n) internal view returns (SigilInbox.Message memory m) {
        m.sourceChainId = uint64(vm.parseJsonUint(fx, ".sourceChainId"));
        m.sourceGateway = vm.parseJsonAddress(fx, ".sourceGateway");
        m.nonce = n;
        m.sender = vm.parseJsonAddress(fx, ".sender");
        m.destChainId = uint64(vm.parseJsonUint(fx, ".destChainId"));
        m.destInbox = fixtureInbox();
        m.recipient = recipient;
        m.gasLimit = uint32(vm.parseJsonUint(fx, ".gasLimit"));
        m.payload = abi.encode(uint256(n));
    }

    function submit(string memory b) internal {
        inbox.submitBatch(
            uint64(vm.parseJsonUint(fx, string.concat(b, ".epoch"))),
            uint64(vm.parseJsonUint(fx, string.concat(b, ".height"))),
            vm.parseJsonBytes32(fx, string.concat(b, ".root")),
            sig(string.concat(b, ".sig"))
        );
    }

    function first(string memory b) internal view returns (uint64) {
        return uint64(vm.parseJsonUint(fx, string.concat(b, ".first")));
    }

    function size(string memory b) internal view returns (uint256) {
        return vm.parseJsonUint(fx, string.concat(b, ".size"));
    }

    function proof(string memory b, uint256 i) internal view returns (bytes32[] memory) {
        return vm.parseJsonBytes32Array(fx, string.concat(b, ".proofs[", vm.toString(i), "]"));
    }

    /// Messages in multiproof order, with the multiproof.
    function multi(string memory b)
        internal
        view
        returns (SigilInbox.Message[] memory ms, bytes32[] memory p, bool[] memory flags)
    {
        uint256[] memory order = vm.parseJsonUintArray(fx, string.concat(b, ".multiOrder"));
        ms = new SigilInbox.Message[](order.length);
        for (uint256 i = 0; i < order.length; ++i) {
            ms[i] = message(uint64(order[i]));
        }
        p = vm.parseJsonBytes32Array(fx, string.concat(b, ".multiProof"));
        flags = vm.parseJsonBoolArray(fx, string.concat(b, ".multiFlags"));
    }
}
