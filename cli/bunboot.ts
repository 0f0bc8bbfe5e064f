#!/usr/bin/env bun
// bunboot's host-side commands (run on a booted system or a build host, not
// as PID 1). Each subcommand lives in its own file under cli/ and exports
// `run(argv): Promise<number>` (the exit status) and a one-line `summary`.
import { messageOf } from "../lib/errors.ts";

type Command = { summary: string; run(argv: string[]): Promise<number> };

const COMMANDS: Record<string, () => Promise<Command>> = {
  // Subcommands register here, one line each.
  build: () => import("./build.ts"),
  kexec: () => import("./kexec.ts"),
  fetch: () => import("./fetch.ts"),
  "stream-hash": () => import("./stream-hash.ts"),
  timeline: () => import("./timeline.ts"),
};

/** Exit statuses of every command (bunboot(8) lists them from here). */
export const EXIT_CODES: ReadonlyArray<readonly [number, string]> = [
  [0, "success"],
  [1, "the command failed (the message says why)"],
  [2, "usage error: an unknown command or option, a missing or malformed value, or a build that cannot be made as asked (a missing module, tool or file)"],
  [3, "kexec --no-fallback: kexec is not possible here, nothing was changed"],
  [130, "fetch: interrupted (SIGINT or SIGTERM); the partial output was removed"],
];

export function commandNames(): string[] {
  return Object.keys(COMMANDS).sort();
}

export async function commandSummaries(): Promise<Array<[string, string]>> {
  return Promise.all(commandNames().map(async (c) => [c, (await COMMANDS[c]!()).summary] as [string, string]));
}

function usage(): string {
  return `usage: bunboot <command> [options]   (bunboot <command> --help for its options)\ncommands:\n${commandNames()
    .map((c) => `  ${c}`)
    .join("\n")}\nexit status:\n${EXIT_CODES.map(([n, what]) => `  ${String(n).padEnd(4)}${what}`).join("\n")}`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h") {
    console.log(usage());
    return name ? 0 : 2;
  }
  const load = COMMANDS[name];
  if (!load) {
    console.error(`bunboot: unknown command "${name}"\n${usage()}`);
    return 2;
  }
  const cmd = await load();
  try {
    return await cmd.run(rest);
  } catch (e) {
    // Operators get the message, not a stack trace.
    console.error(`bunboot ${name}: ${messageOf(e)}`);
    return 1;
  }
}

if (import.meta.main) process.exit(await main(process.argv.slice(2)));
