#!/usr/bin/env bash
# The whole test suite: installs prerequisites, builds the initrd, runs the
# unit tests and the QEMU scenarios. Usage: npm test [-- bun-test-args...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
BUN=node_modules/.bin/bun
mkdir -p .cache
node_modules/.bin/tsc --noEmit -p .
# A fast compression level: the scenarios test the boot, not zstd -19.
$BUN build.ts --no-config --compress zstd --compress-level 3
# The same init in the flat layout (one archive the kernel unpacks whole;
# the default is the payload layout), for the scenarios that boot it.
$BUN build.ts --no-config --compress zstd --compress-level 3 --layout flat --init-binary dist/bunboot-init --out dist/initrd-flat.img
# The arm64 initrd, cross-built from the sysroot deps.sh prepared, for
# qemu-tests/arm64.test.ts (dist/initrd-arm64.img).
$BUN build.ts --no-config --arch arm64 --compress zstd --compress-level 3

status=0
echo "== unit tests"
$BUN test ./lib ./bench ./tests "$@" 2>&1 | tee .cache/unit.out || status=1
echo "== QEMU scenarios"
$BUN test --timeout 900000 ./qemu-tests "$@" 2>&1 | tee .cache/qemu.out || status=1

# One summary line in the plain 'N passed, N failed' form CI reads.
# (grep finds no line for a count of zero: that is no error, and must not end the script under set -e.)
count() { { grep -hE "^ *[0-9]+ $1$" .cache/unit.out .cache/qemu.out || true; } | awk '{ n += $1 } END { print n + 0 }'; }
# Tests skip themselves where a system file they compare against is missing
# (the arm64 sysroot, kernel headers, a C compiler, readelf, GNU cpio) or,
# for one free-space check, when not run as root. deps.sh installs all of
# them, so as root (CI) a skip means a prerequisite went missing: it fails
# the run instead of passing quietly with less tested. Run as another user,
# the skips are listed.
skipped=$(count skip)
if [ "$skipped" -gt 0 ] && [ $# -eq 0 ]; then
  grep -h "^(skip)" .cache/unit.out .cache/qemu.out | sort -u
  if [ "$(id -u)" = 0 ]; then
    echo "tests: $skipped skipped (above), which npm test as root does not allow: a prerequisite is missing"
    status=1
  else
    echo "tests: $skipped skipped (above); as root they would run"
  fi
fi
echo "tests: $(count pass) passed, $(count fail) failed"
exit $status
