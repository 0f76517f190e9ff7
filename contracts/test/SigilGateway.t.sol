// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {SigilGateway} from "../src/SigilGateway.sol";

contract SigilGatewayTest is Test {
    SigilGateway internal gw;
    address internal constant INBOX = address(0x1B0C);

    function setUp() public {
        gw = new SigilGateway(address(this));
        gw.setRoute(7, INBOX);
    }

    function test_send_assigns_sequential_nonces_and_ids() public {
        bytes32 expected = keccak256(abi.encode(uint64(block.chainid), address(gw), uint64(0)));
        vm.expectEmit();
        emit SigilGateway.MessageSent(
            expected, 7, address(0xAB), 0, address(this), uint64(block.chainid), INBOX, 200_000, hex"c0ffee"
        );
        bytes32 id0 = gw.sendMessage(7, address(0xAB), hex"c0ffee");
        assertEq(id0, expected, "id 0");
        bytes32 expected1 = keccak256(abi.encode(uint64(block.chainid), address(gw), uint64(1)));
        vm.expectEmit();
        emit SigilGateway.MessageSent(
            expected1, 7, address(0xAB), 1, address(this), uint64(block.chainid), INBOX, 10_000, hex""
        );
        bytes32 id1 = gw.sendMessage(7, address(0xAB), hex"", 10_000);
        assertEq(id1, expected1, "id 1");
        assertEq(gw.nextNonce(), 2, "next nonce");
    }

    function test_send_messages_is_many_sends_in_one() public {
        gw.sendMessage(7, address(0xAB), hex"01");
        bytes[] memory payloads = new bytes[](3);
        payloads[0] = hex"aa";
        payloads[1] = hex"";
        payloads[2] = hex"bbcc";
        for (uint64 i = 0; i < 3; ++i) {
            vm.expectEmit();
            emit SigilGateway.MessageSent(
                keccak256(abi.encode(uint64(block.chainid), address(gw), uint64(1 + i))),
                7,
                address(0xCD),
                1 + i,
                address(this),
                uint64(block.chainid),
                INBOX,
                50_000,
                payloads[i]
            );
        }
        uint64 first = gw.sendMessages(7, address(0xCD), payloads, 50_000);
        assertEq(first, 1, "first nonce");
        assertEq(gw.nextNonce(), 4, "next nonce");
        // One bad payload: nothing of the batch is sent.
        payloads[1] = new bytes(gw.MAX_PAYLOAD_BYTES() + 1);
        vm.expectRevert(
            abi.encodeWithSelector(SigilGateway.PayloadTooLarge.selector, gw.MAX_PAYLOAD_BYTES() + 1, gw.MAX_PAYLOAD_BYTES())
        );
        gw.sendMessages(7, address(0xCD), payloads, 50_000);
        vm.expectRevert(abi.encodeWithSelector(SigilGateway.GasLimitOutOfRange.selector, uint32(9_999), uint32(10_000), uint32(5_000_000)));
        gw.sendMessages(7, address(0xCD), payloads, 9_999);
        assertEq(gw.nextNonce(), 4, "unchanged");
        assertEq(gw.sendMessages(7, address(0xCD), new bytes[](0), 50_000), 4, "empty batch");
        assertEq(gw.nextNonce(), 4, "empty batch sends nothing");
    }

    function test_default_gas_limit_and_bounds() public {
        assertEq(gw.DEFAULT_GAS_LIMIT(), 200_000, "default");
        assertEq(gw.MIN_GAS_LIMIT(), 10_000, "min");
        assertEq(gw.MAX_GAS_LIMIT(), 5_000_000, "max");
        gw.sendMessage(7, address(1), hex"", 10_000);
        gw.sendMessage(7, address(1), hex"", 5_000_000);
        vm.expectRevert(abi.encodeWithSelector(SigilGateway.GasLimitOutOfRange.selector, uint32(9_999), uint32(10_000), uint32(5_000_000)));
        gw.sendMessage(7, address(1), hex"", 9_999);
        vm.expectRevert(
            abi.encodeWithSelector(SigilGateway.GasLimitOutOfRange.selector, uint32(5_000_001), uint32(10_000), uint32(5_000_000))
        );
        gw.sendMessage(7, address(1), hex"", 5_000_001);
        vm.expectRevert(abi.encodeWithSelector(SigilGateway.GasLimitOutOfRange.selector, uint32(0), uint32(10_000), uint32(5_000_000)));
        gw.sendMessage(7, address(1), hex"", 0);
        assertEq(gw.nextNonce(), 2, "only the two valid ones");
    }

    function test_routes_admin_only_and_removable() public {
        assertEq(gw.admin(), address(this), "admin");
        assertEq(gw.routes(7), INBOX, "route");
        vm.expectRevert(abi.encodeWithSelector(SigilGateway.NoRoute.selector, uint64(8)));
        gw.sendMessage(8, address(1), hex"");
        vm.prank(address(0xBAD));
        vm.expectRevert(abi.encodeWithSelector(SigilGateway.NotAdmin.selector, address(0xBAD)));
        gw.setRoute(8, INBOX);
        vm.expectEmit();
        emit SigilGateway.RouteSet(8, address(0x1B0D));
        gw.setRoute(8, address(0x1B0D));
        vm.expectEmit();
        emit SigilGateway.MessageSent(
            keccak256(abi.encode(uint64(block.chainid), address(gw), uint64(0))),
            8,
            address(1),
            0,
            address(this),
            uint64(block.chainid),
            address(0x1B0D),
            200_000,
            hex""
        );
        gw.sendMessage(8, address(1), hex"");
        vm.expectEmit();
        emit SigilGateway.RouteSet(8, address(0));
        gw.setRoute(8, address(0));
        vm.expectRevert(abi.encodeWithSelector(SigilGateway.NoRoute.selector, uint64(8)));
        gw.sendMessage(8, address(1), hex"");
        vm.expectRevert(abi.encodeWithSelector(SigilGateway.InvalidDestination.selector, uint64(block.chainid)));
        gw.setRoute(uint64(block.chainid), INBOX);
        vm.expectRevert(abi.encodeWithSelector(SigilGateway.InvalidDestination.selector, uint64(0)));
        gw.setRoute(0, INBOX);
    }

    function test_rejects_bad_destination_and_oversized_payload() public {
        vm.expectRevert(abi.encodeWithSelector(SigilGateway.InvalidDestination.selector, uint64(block.chainid)));
        gw.sendMessage(uint64(block.chainid), address(1), hex"");
        vm.expectRevert(abi.encodeWithSelector(SigilGateway.InvalidDestination.selector, uint64(0)));
        gw.sendMessage(0, address(1), hex"");
        bytes memory big = new bytes(64 * 1024 + 1);
        vm.expectRevert(abi.encodeWithSelector(SigilGateway.PayloadTooLarge.selector, big.length, 64 * 1024));
        gw.sendMessage(7, address(1), big);
    }
}
