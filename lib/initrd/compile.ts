// Compiling the init (init/main.ts) into one executable with Bun's own
// compiler, as the initrd ships it.
import fs from "node:fs";
import path from "node:path";
import { BuildError } from "./tree.ts";

const REPO = path.resolve(import.meta.dir, "../..");

/**
 * Compiles the init; returns the path of the executable. `bytecode` also
 * stores the bundle precompiled (bench/compile-flags.ts measures what that
 * costs in bytes and saves at startup).
 */
export async function compileInit(outfile: string, target = "bun-linux-x64", opts: { bytecode?: boolean; executablePath?: string } = {}): Promise<string> {
  const entry = path.join(REPO, "init/main.ts");
  // A compiled bunboot carries no sources: it builds with an init compiled elsewhere.
  if (!fs.existsSync(entry)) throw new BuildError(`${entry} is missing: this bunboot has no init sources to compile (a compiled executable?); pass --init-binary, or run bunboot from its package`);
  fs.mkdirSync(path.dirname(outfile), { recursive: true });
  if (opts.executablePath !== undefined && !fs.existsSync(opts.executablePath)) throw new BuildError(`the Bun runtime for ${target} is missing: ${opts.executablePath}`);
  const argv = [
    process.execPath,
    "build",
    "--compile",
    `--target=${target}`,
    // Another architecture's runtime, from its npm package: without it Bun
    // would download the runtime, which a build machine may not reach. The
    // bundle and its bytecode are the same for every target (JSC's bytecode
    // is architecture-independent), only the runtime they are appended to
    // differs.
    ...(opts.executablePath !== undefined ? [`--compile-executable-path=${opts.executablePath}`] : []),
    // A compiled app would read .env and bunfig.toml from the cwd (/) at boot.
    "--no-compile-autoload-dotenv",
    "--no-compile-autoload-bunfig",
    // ssh2's optional native addons do not load in Bun (it falls back to pure
    // JS); leave them out of the bundle instead of failing on them.
    "--external=cpu-features",
    "--external=*.node",
    "--minify",
    ...((opts.bytecode ?? true) ? ["--bytecode"] : []),
    `--outfile=${outfile}`,
    entry,
  ];
  const proc = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe", env: { ...process.env, BUN_BE_BUN: "1" } });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new BuildError(`compiling init/main.ts failed:\n${out}${err}`);
  return outfile;
}
