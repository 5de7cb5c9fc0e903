#!/usr/bin/env bash
# Regenerates <Name>.abi.json and <Name>.bin from <Name>.sol (Counter, Tally) with solc from
# npm (solcjs, pinned), in a scratch directory outside the repo, so a Go build
# never needs npm. Run from anywhere; commit the three files together.
set -euo pipefail

SOLC_VERSION=0.8.30
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRATCH="${SOLC_SCRATCH:-/tmp/solc}"

mkdir -p "$SCRATCH"
cd "$SCRATCH"
if [ "$(node -p 'try{require("solc/package.json").version}catch(e){""}' 2>/dev/null)" != "$SOLC_VERSION" ]; then
	[ -f package.json ] || npm init -y >/dev/null
	npm install --no-audit --no-fund "solc@$SOLC_VERSION" >/dev/null
fi

rm -rf out
for name in Counter Tally; do
	cp "$HERE/$name.sol" .
	npx solcjs --bin --abi --optimize -o out "$name.sol"
	# ABI pretty-printed for readable diffs; bytecode as bare hex (no 0x, no newline).
	node -e 'const fs=require("fs");fs.writeFileSync(process.argv[2],JSON.stringify(JSON.parse(fs.readFileSync(process.argv[1],"utf8")),null,2)+"\n")' \
		"out/${name}_sol_${name}.abi" "$HERE/$name.abi.json"
	cp "out/${name}_sol_${name}.bin" "$HERE/$name.bin"
	echo "regenerated $HERE/$name.abi.json and $HERE/$name.bin with solc $SOLC_VERSION"
done
