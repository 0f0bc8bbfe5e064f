#!/usr/bin/env node
// The installed `bunboot` command: runs cli/bunboot.ts with the Bun runtime
// this package depends on, so that it works where bun itself is not on the
// PATH (a global npm install puts only this file there). Exits with the
// command's status, or 128 + the signal that ended it.
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
let bun;
try {
  const pkg = require.resolve("bun/package.json");
  bun = path.join(path.dirname(pkg), require(pkg).bin.bun);
} catch {
  console.error("bunboot: the bun package this command runs on is not installed (npm install bunboot installs it as a dependency)");
  process.exit(1);
}
const r = spawnSync(bun, [path.join(here, "../cli/bunboot.ts"), ...process.argv.slice(2)], { stdio: "inherit" });
if (r.error) {
  console.error(`bunboot: cannot run ${bun}: ${r.error.message}`);
  process.exit(1);
}
const signals = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };
process.exit(r.status ?? 128 + (signals[r.signal] ?? 1));
