#!/usr/bin/env bash
# Installs the external programs relayq's tests start themselves:
#   - redis-server and redis-cli, from Debian (apt-get), for
#     internal/testenv.Redis, the replicas and sentinels (redis-server
#     --sentinel) and clusters (redis-cli --cluster create);
#   - anvil, from the npm package @foundry-rs/anvil-linux-amd64 (the binary
#     ships inside the package), into <repo>/.tools, for internal/testenv.Anvil;
#   - chromium, from Debian (apt-get), for the UI's browser test
#     (internal/integration/ui_test.go drives it headless with chromedp).
# Idempotent and quiet when everything is already present; works from any cwd.
set -euo pipefail

ANVIL_VERSION=1.7.1
ANVIL_PKG=@foundry-rs/anvil-linux-amd64

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
ANVIL_DIR="$TOOLS/node_modules/$ANVIL_PKG"
ANVIL_BIN="$ANVIL_DIR/bin/anvil"

sudo_if_needed() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	else
		sudo "$@"
	fi
}

if ! command -v redis-server >/dev/null 2>&1; then
	echo "install-test-deps: installing redis-server (apt-get)" >&2
	sudo_if_needed apt-get update -qq
	sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
	# Debian's package starts a system service on :6379; tests start their
	# own servers on free ports and do not need it.
	command -v redis-server >/dev/null 2>&1 || { echo "install-test-deps: redis-server still missing" >&2; exit 1; }
fi

# redis-cli comes with redis-server (Debian's redis-tools); install it if a
# redis-server from elsewhere came without it.
if ! command -v redis-cli >/dev/null 2>&1; then
	echo "install-test-deps: installing redis-tools (apt-get) for redis-cli" >&2
	sudo_if_needed apt-get update -qq
	sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-tools >/dev/null
fi

if ! command -v chromium >/dev/null 2>&1; then
	echo "install-test-deps: installing chromium (apt-get) for the UI's browser test" >&2
	sudo_if_needed apt-get update -qq
	sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
	command -v chromium >/dev/null 2>&1 || { echo "install-test-deps: chromium still missing" >&2; exit 1; }
fi

installed_version() {
	[ -f "$ANVIL_DIR/package.json" ] || return 0
	sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$ANVIL_DIR/package.json" | head -n1
}

if [ ! -x "$ANVIL_BIN" ] || [ "$(installed_version)" != "$ANVIL_VERSION" ]; then
	echo "install-test-deps: installing $ANVIL_PKG@$ANVIL_VERSION into $TOOLS (npm)" >&2
	mkdir -p "$TOOLS"
	npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error "$ANVIL_PKG@$ANVIL_VERSION" >/dev/null
	echo "install-test-deps: anvil $ANVIL_VERSION at $ANVIL_BIN"
fi

# Cheap checks that both programs actually run (a truncated download or a
# wrong architecture shows up here, not as a confusing test failure).
redis-server --version >/dev/null || { echo "install-test-deps: redis-server does not run" >&2; exit 1; }
redis-cli --version >/dev/null || { echo "install-test-deps: redis-cli does not run" >&2; exit 1; }
"$ANVIL_BIN" --version >/dev/null || { echo "install-test-deps: $ANVIL_BIN does not run" >&2; exit 1; }
chromium --headless --no-sandbox --disable-gpu --version >/dev/null 2>&1 || { echo "install-test-deps: chromium does not run" >&2; exit 1; }
