#!/usr/bin/env node
// The installed `bunboot` command: runs cli/bunboot.ts with the Bun runtime
// this package depends on, so that it works where bun itself is not on the
// PATH (a global npm install puts only this file there). Signals a shell or
// a script sends to this process go on to the command, and the exit status
// is the command's, or 128 + the number of the signal that ended it.
import { spawn } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

/**
 * The Bun executable: the bun package's bin/bun.exe, which its install
 * script fills in; with scripts disabled (npm --ignore-scripts, common in
 * image builds) that is a placeholder, and the runtime is in the platform
 * package itself.
 */
function findBun() {
  const candidates = [];
  try {
    const pkg = require.resolve("bun/package.json");
    candidates.push(path.join(path.dirname(pkg), "bin/bun.exe"));
    const fromBun = createRequire(pkg);
    const arch = { x64: "x64", arm64: "aarch64" }[process.arch];
    for (const suffix of ["", "-musl"]) {
      try {
        candidates.push(path.join(path.dirname(fromBun.resolve(`@oven/bun-linux-${arch}${suffix}/package.json`)), "bin/bun"));
      } catch {
        // not installed for this platform
      }
    }
  } catch {
    // the bun package itself is missing: said below
  }
  // A real runtime is tens of MiB; the placeholder a few hundred bytes.
  return candidates.find((c) => {
    try {
      return fs.statSync(c).size > 1 << 20;
    } catch {
      return false;
    }
  });
}

const bun = findBun();
if (!bun) {
  console.error(`bunboot: no Bun runtime found for ${process.platform}-${process.arch} in this package's dependencies (npm install bunboot installs bun and its platform package)`);
  process.exit(1);
}
// --no-env-file and a config of our own: a .env or bunfig.toml in the
// user's directory must not change what the command does.
const child = spawn(bun, ["--no-env-file", `--config=${path.join(here, "bunfig.toml")}`, path.join(here, "../cli/bunboot.ts"), ...process.argv.slice(2)], { stdio: "inherit" });
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(sig, () => child.kill(sig));
child.on("error", (e) => {
  console.error(`bunboot: cannot run ${bun}: ${e.message}`);
  process.exit(1);
});
child.on("exit", (code, signal) => process.exit(code ?? 128 + (os.constants.signals[signal] ?? 1)));
