// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

/// @title Counter
/// @notice Sample contract for relayq's dev mode and tests. Each function
/// exercises one path of the relayer: a plain state change with an event,
/// a custom error, an Error(string) revert, a Panic, and complex ABI
/// encoding (bytes32, dynamic arrays, a tuple holding a string).
contract Counter {
    /// @notice A record stored by `store`.
    struct Entry {
        uint256 amount;
        string note;
    }

    uint256 public count;
    mapping(address => uint256) public callsBy;
    mapping(bytes32 => Entry) public entries;
    mapping(bytes32 => address[]) internal members;

    event Incremented(address indexed by, uint256 count);
    event Stored(bytes32 indexed key, address indexed by, address[] who, Entry entry);

    error TooLarge(uint256 given, uint256 max);

    uint256 public constant MAX_ADD = 1000;

    /// @notice Adds one to count and to the caller's call counter.
    function increment() external {
        count += 1;
        callsBy[msg.sender] += 1;
        emit Incremented(msg.sender, count);
    }

    /// @notice Adds n to count; reverts with TooLarge if n > MAX_ADD.
    function add(uint256 n) external {
        if (n > MAX_ADD) revert TooLarge(n, MAX_ADD);
        count += n;
    }

    /// @notice Always reverts with Error(reason).
    function fail(string calldata reason) external pure {
        revert(reason);
    }

    /// @notice Returns a / b; b == 0 reverts with Panic(0x12).
    function divide(uint256 a, uint256 b) external pure returns (uint256) {
        return a / b;
    }

    /// @notice Stores entry and the member list under key and emits Stored.
    function store(bytes32 key, address[] calldata who, Entry calldata entry) external {
        entries[key] = entry;
        members[key] = who;
        emit Stored(key, msg.sender, who, entry);
    }

    /// @notice Returns the member list stored under key.
    function membersOf(bytes32 key) external view returns (address[] memory) {
        return members[key];
    }
}
