// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

/// @title Tally
/// @notice Sample contract for relayq's deployments: a counter whose
/// constructor takes arguments (a start and a label) and can revert, so a
/// deployment with constructor arguments, and one whose constructor
/// reverts, can both be tested.
contract Tally {
    uint256 public count;
    string public label;
    address public deployer;

    error TooLarge(uint256 given, uint256 max);

    uint256 public constant MAX_START = 1000;

    /// @notice Starts the count at start; reverts with TooLarge if start >
    /// MAX_START, and with Error("empty label") if label_ is empty.
    constructor(uint256 start, string memory label_) payable {
        if (start > MAX_START) revert TooLarge(start, MAX_START);
        require(bytes(label_).length > 0, "empty label");
        count = start;
        label = label_;
        deployer = msg.sender;
    }

    /// @notice Adds one to count.
    function increment() external {
        count += 1;
    }
}
