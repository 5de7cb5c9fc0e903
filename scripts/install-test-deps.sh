#!/usr/bin/env bash
# Installs the external programs relayq's tests start themselves:
#   - redis-server and redis-cli, from Debian (apt-get), for
#     internal/testenv.Redis, the replicas and sentinels (redis-server
#     --sentinel) and clusters (redis-cli --cluster create);
#   - anvil, from the npm package @foundry-rs/anvil-linux-amd64 (the binary
#     ships inside the package), into <repo>/.tools, for internal/testenv.Anvil;
#   - local-kms (github.com/nsmithuk/local-kms, an AWS KMS implementation),
#     with go install into <repo>/.tools/bin, for internal/testenv.StartLocalKMS.
#   - chromium, from Debian (apt-get), for the UI's browser test
#     (internal/integration/ui_test.go drives it headless with chromedp).
#   - postgresql, from Debian (apt-get), for internal/testenv.StartPostgres
#     (initdb and postgres under /usr/lib/postgresql/<version>/bin; the
#     tests start their own server, never the system one).
# Idempotent and quiet when everything is already present; works from any cwd.
set -euo pipefail

ANVIL_VERSION=1.7.1
ANVIL_PKG=@foundry-rs/anvil-linux-amd64

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
ANVIL_DIR="$TOOLS/node_modules/$ANVIL_PKG"
ANVIL_BIN="$ANVIL_DIR/bin/anvil"

LOCAL_KMS_MODULE=github.com/nsmithuk/local-kms
LOCAL_KMS_VERSION=v0.0.0-20260228092603-2a5e92d09ab6
LOCAL_KMS_BIN="$TOOLS/bin/local-kms"

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

pg_bin() {
	ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1
}

if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
	echo "install-test-deps: installing postgresql (apt-get) for the archive's tests" >&2
	sudo_if_needed apt-get update -qq
	sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
	[ -x "$(pg_bin)/initdb" ] || { echo "install-test-deps: postgresql still missing" >&2; exit 1; }
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

# local-kms has no version flag: go version -m reads the module version
# the binary was built from.
local_kms_version() {
	[ -x "$LOCAL_KMS_BIN" ] || return 0
	go version -m "$LOCAL_KMS_BIN" 2>/dev/null | awk '$1 == "mod" { print $3 }'
}

if [ ! -x "$LOCAL_KMS_BIN" ] || [ "$(local_kms_version)" != "$LOCAL_KMS_VERSION" ]; then
	echo "install-test-deps: installing $LOCAL_KMS_MODULE@$LOCAL_KMS_VERSION into $TOOLS/bin (go install)" >&2
	mkdir -p "$TOOLS/bin"
	# Its own module, outside this repo's go.mod.
	(cd "$TOOLS" && GOBIN="$TOOLS/bin" GOFLAGS=-mod=mod go install "$LOCAL_KMS_MODULE@$LOCAL_KMS_VERSION")
	echo "install-test-deps: local-kms at $LOCAL_KMS_BIN"
fi

# Cheap checks that the programs actually run (a truncated download or a
# wrong architecture shows up here, not as a confusing test failure).
redis-server --version >/dev/null || { echo "install-test-deps: redis-server does not run" >&2; exit 1; }
redis-cli --version >/dev/null || { echo "install-test-deps: redis-cli does not run" >&2; exit 1; }
"$ANVIL_BIN" --version >/dev/null || { echo "install-test-deps: $ANVIL_BIN does not run" >&2; exit 1; }
[ "$(local_kms_version)" = "$LOCAL_KMS_VERSION" ] || { echo "install-test-deps: $LOCAL_KMS_BIN is not $LOCAL_KMS_VERSION" >&2; exit 1; }
"$(pg_bin)/postgres" --version >/dev/null || { echo "install-test-deps: postgres does not run" >&2; exit 1; }
chromium --headless --no-sandbox --disable-gpu --version >/dev/null 2>&1 || { echo "install-test-deps: chromium does not run" >&2; exit 1; }
