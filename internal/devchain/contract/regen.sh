#!/usr/bin/env bash
# Regenerates Counter.abi.json and Counter.bin from Counter.sol with solc from
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
cp "$HERE/Counter.sol" .
npx solcjs --bin --abi --optimize -o out Counter.sol

# ABI pretty-printed for readable diffs; bytecode as bare hex (no 0x, no newline).
node -e 'const fs=require("fs");fs.writeFileSync(process.argv[2],JSON.stringify(JSON.parse(fs.readFileSync(process.argv[1],"utf8")),null,2)+"\n")' \
	out/Counter_sol_Counter.abi "$HERE/Counter.abi.json"
cp out/Counter_sol_Counter.bin "$HERE/Counter.bin"
echo "regenerated $HERE/Counter.abi.json and $HERE/Counter.bin with solc $SOLC_VERSION"
