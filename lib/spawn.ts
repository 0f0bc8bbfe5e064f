// The one place external programs are started: absolute paths and argv
// arrays only (no shell), each run traced with its exit status under
// rd.debug, and a clean environment so nothing from the kernel command line
// leaks into a tool's behaviour.
import { log } from "./log.ts";

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export const TOOL_ENV: Record<string, string> = {
  PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
  // Without udev in the initrd, libdevmapper must create /dev/mapper nodes
  // itself and must not wait for udev to confirm them (it would hang).
  DM_DISABLE_UDEV: "1",
  LANG: "C",
};

/** Children Bun spawned: Bun reaps them itself, the orphan reaper must not. */
export const spawnedPids = new Set<number>();

export async function run(argv: string[], opts: { what?: string; stdin?: Uint8Array } = {}): Promise<RunResult> {
  if (!argv[0]?.startsWith("/")) throw new Error(`internal: refusing to run ${argv[0]} without an absolute path`);
  const t0 = performance.now();
  const proc = Bun.spawn(argv, {
    env: TOOL_ENV,
    stdin: opts.stdin ?? "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  spawnedPids.add(proc.pid);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  spawnedPids.delete(proc.pid);
  log.debug(`ran ${argv.map(quote).join(" ")} -> exit ${code} in ${(performance.now() - t0).toFixed(0)} ms${stderr.trim() ? `; stderr: ${stderr.trim()}` : ""}`);
  return { code, stdout, stderr };
}

/** Runs a tool whose failure is fatal for the step: throws with its stderr. */
export async function runChecked(argv: string[], what: string): Promise<RunResult> {
  const r = await run(argv, { what });
  if (r.code !== 0) {
    throw new Error(`${what} failed: ${argv.map(quote).join(" ")} exited ${r.code}${r.stderr.trim() ? `: ${r.stderr.trim()}` : ""}`);
  }
  return r;
}

function quote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`;
}

/** Runs a program on the console (stdin/stdout/stderr inherited) and waits for it. */
export async function runOnConsole(argv: string[], env: Record<string, string>): Promise<number> {
  if (!argv[0]?.startsWith("/")) throw new Error(`internal: refusing to run ${argv[0]} without an absolute path`);
  const proc = Bun.spawn(argv, { env, stdin: "inherit", stdout: "inherit", stderr: "inherit" });
  spawnedPids.add(proc.pid);
  const code = await proc.exited;
  spawnedPids.delete(proc.pid);
  log.debug(`ran ${argv.map(quote).join(" ")} -> exit ${code}`);
  return code;
}
