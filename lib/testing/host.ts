// Helpers the unit tests share to make and inspect real images with the
// system's tools (sfdisk, sgdisk, mkfs.*, veritysetup). Test-only.
import fs from "node:fs";
export { readAt } from "../devices/blockdevs.ts";

// sbin tools are not on every user's PATH.
const TOOL_ENV = { ...process.env, PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` };

/** Runs a tool that must succeed; its stdout. */
export function run(cmd: string[], stdin?: string): string {
  const p = Bun.spawnSync(cmd, { stdin: stdin === undefined ? "ignore" : Buffer.from(stdin), stdout: "pipe", stderr: "pipe", env: TOOL_ENV });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed (${p.exitCode}): ${p.stderr.toString()}${p.stdout.toString()}`);
  return p.stdout.toString();
}

/** Runs a checking tool whatever its exit code; its stdout and stderr together. */
export function tool(cmd: string[]): string {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", env: TOOL_ENV });
  return p.stdout.toString() + p.stderr.toString();
}

export function writeAt(path: string, offset: number, data: Uint8Array): void {
  const fd = fs.openSync(path, "r+");
  try {
    fs.writeSync(fd, data, 0, data.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

export function fileSize(path: string): number {
  return fs.statSync(path).size;
}
