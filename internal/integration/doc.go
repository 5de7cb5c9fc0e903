// Package integration holds relayq's integration and end-to-end tests: the
// API and the worker together against a real Redis (a redis-server each test
// starts) and a real chain (the simulated backend, or anvil).
package integration
