// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice The Foundry cheatcodes these tests use (a subset of forge-std's Vm interface).
interface Vm {
    struct Wallet {
        address addr;
        uint256 publicKeyX;
        uint256 publicKeyY;
        uint256 privateKey;
    }

    function expectRevert() external;
    function expectRevert(bytes4 selector) external;
    function expectRevert(bytes calldata revertData) external;
    function readFile(string calldata path) external view returns (string memory);
    function parseJsonUint(string calldata json, string calldata key) external pure returns (uint256);
    function parseJsonBytes32(string calldata json, string calldata key) external pure returns (bytes32);
    function parseJsonBytes(string calldata json, string calldata key) external pure returns (bytes memory);
    function parseJsonAddress(string calldata json, string calldata key) external pure returns (address);
    function parseJsonBytes32Array(string calldata json, string calldata key) external pure returns (bytes32[] memory);
    function parseJsonBoolArray(string calldata json, string calldata key) external pure returns (bool[] memory);
    function parseJsonUintArray(string calldata json, string calldata key) external pure returns (uint256[] memory);
    function warp(uint256 timestamp) external;
    function etch(address target, bytes calldata code) external;
    function expectEmit() external;
    function recordLogs() external;
    function snapshotState() external returns (uint256);
    function revertToState(uint256 id) external returns (bool);
    function chainId(uint256 newChainId) external;
    function prank(address sender) external;
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
    function addr(uint256 privateKey) external pure returns (address);
    function toString(uint256 value) external pure returns (string memory);
    function toString(address value) external pure returns (string memory);
    function toString(bytes32 value) external pure returns (string memory);
    function toString(bytes calldata value) external pure returns (string memory);
    function createWallet(uint256 privateKey) external returns (Wallet memory wallet);
    function cool(address target) external;
    function keyExistsJson(string calldata json, string calldata key) external view returns (bool);
}

/// @notice console.log through Foundry's console address (a subset of forge-std's console).
library console {
    address private constant CONSOLE = 0x000000000000000000636F6e736F6c652e6c6f67;

    function log(string memory s) internal view {
        _send(abi.encodeWithSignature("log(string)", s));
    }

    function log(string memory s, uint256 v) internal view {
        _send(abi.encodeWithSignature("log(string,uint256)", s, v));
    }

    function _send(bytes memory payload) private view {
        (bool ok,) = CONSOLE.staticcall(payload);
        ok;
    }
}

/// @notice Minimal test base: the cheatcode handle and assertions that revert with context.
abstract contract Test {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    error AssertionFailed(string what);
    error NotEqualUint(string what, uint256 left, uint256 right);
    error NotEqualBytes32(string what, bytes32 left, bytes32 right);
    error NotLessOrEqual(string what, uint256 left, uint256 right);

    function assertTrue(bool cond, string memory what) internal pure {
        if (!cond) revert AssertionFailed(what);
    }

    function assertFalse(bool cond, string memory what) internal pure {
        if (cond) revert AssertionFailed(what);
    }

    function assertEq(uint256 a, uint256 b, string memory what) internal pure {
        if (a != b) revert NotEqualUint(what, a, b);
    }

    function assertEq(bytes32 a, bytes32 b, string memory what) internal pure {
        if (a != b) revert NotEqualBytes32(what, a, b);
    }

    function assertLe(uint256 a, uint256 b, string memory what) internal pure {
        if (a > b) revert NotLessOrEqual(what, a, b);
    }

    function assertEq(address a, address b, string memory what) internal pure {
        if (a != b) revert NotEqualUint(what, uint160(a), uint160(b));
    }
}
