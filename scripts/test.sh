#!/usr/bin/env bash
# The whole test suite: installs prerequisites, builds the initrd, runs the
# unit tests and the QEMU scenarios. Usage: npm test [-- bun-test-filter...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
BUN=node_modules/.bin/bun
node_modules/.bin/tsc --noEmit -p .
$BUN build.ts --compress zstd --compress-level 3
echo "== unit tests"
$BUN test lib "$@"
echo "== QEMU scenarios"
$BUN test --timeout 600000 qemu-tests "$@"
