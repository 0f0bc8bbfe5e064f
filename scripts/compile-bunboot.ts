#!/usr/bin/env bun
// Compiles the host commands (cli/bunboot.ts: build, fetch, stream-hash,
// kexec, timeline) into one executable, by default dist/bunboot:
//   node_modules/.bin/bun scripts/compile-bunboot.ts [OUTFILE]
// A compiled bunboot carries no TypeScript sources, so its `build` takes an
// init compiled elsewhere (--init-binary); run from the npm package it
// compiles init/main.ts itself.
import path from "node:path";

const REPO = path.resolve(import.meta.dir, "..");

export async function compileBunboot(outfile: string): Promise<void> {
  const argv = [
    process.execPath,
    "build",
    "--compile",
    "--minify",
    // The tool runs in a user's directory: it must not pick up a .env or bunfig.toml there.
    "--no-compile-autoload-dotenv",
    "--no-compile-autoload-bunfig",
    "--external=cpu-features",
    "--external=*.node",
    `--outfile=${outfile}`,
    path.join(REPO, "cli/bunboot.ts"),
  ];
  const p = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe", env: { ...process.env, BUN_BE_BUN: "1" } });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`compiling cli/bunboot.ts failed:\n${out}${err}`);
}

if (import.meta.main) {
  const out = path.resolve(process.argv[2] ?? path.join(REPO, "dist/bunboot"));
  await compileBunboot(out);
  console.log(`compiled ${out}`);
}
