#!/usr/bin/env bash
# Boots the demo: installs prerequisites, builds the initrd and a demo disk,
# boots QEMU and shows the boot reaching the full initrd.
# Extra kernel parameters can follow: npm run demo -- rd.debug
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
node_modules/.bin/bun build.ts --no-config
exec node_modules/.bin/bun qemu-tests/demo.ts "$@"
