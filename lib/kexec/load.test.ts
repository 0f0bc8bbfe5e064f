// `bunboot kexec --dry-run` on the host against an image file, with the ESP and OEM given as
// directories: the whole plan without root, kexec or a VM. Also the CLI's handling of bad input.
// Needs: fdisk (sfdisk), gdisk (sgdisk).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { FLATCAR_USR_TYPE_GUID } from "../devices/gpt.ts";
import { USR_A_PARTUUID } from "./plan.ts";

const REPO = resolve(import.meta.dir, "../..");
const USR_B = "e03dd35c-7c2d-4a47-b3fe-27f15780a57c";
const HASH_B = "b".repeat(64);
let dir = "";
let img = "";
let esp = "";
let oem = "";

function sh(cmd: string[], stdin?: string): string {
  const p = Bun.spawnSync(cmd, { stdin: stdin === undefined ? "ignore" : Buffer.from(stdin), stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed (${p.exitCode}): ${p.stderr.toString()}`);
  return p.stdout.toString();
}

function bunboot(...args: string[]): { code: number; out: string; err: string } {
  const p = Bun.spawnSync([process.execPath, join(REPO, "cli/bunboot.ts"), "kexec", ...args], { stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode ?? -1, out: p.stdout.toString(), err: p.stderr.toString() };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "bunboot-kexec-cli-"));
  img = join(dir, "disk.img");
  writeFileSync(img, "");
  sh(["truncate", "-s", "64M", img]);
  sh(
    ["sfdisk", "-q", img],
    `label: gpt
start=2048, size=4096, type=c12a7328-f81f-11d2-ba4b-00a0c93ec93b, name="EFI-SYSTEM"
start=8192, size=32768, type=${FLATCAR_USR_TYPE_GUID}, uuid=${USR_A_PARTUUID}, name="USR-A"
start=40960, size=32768, type=${FLATCAR_USR_TYPE_GUID}, uuid=${USR_B}, name="USR-B"
`,
  );
  sh(["sgdisk", "--attributes=2:set:48", "--attributes=2:set:56", "--attributes=3:set:49", "--attributes=3:set:52", img]);
  esp = join(dir, "esp");
  mkdirSync(join(esp, "flatcar"), { recursive: true });
  const k = new Uint8Array(4096);
  k.set(new TextEncoder().encode(HASH_B), 64);
  writeFileSync(join(esp, "flatcar/vmlinuz-b"), k);
  writeFileSync(join(esp, "flatcar/first_boot"), "");
  oem = join(dir, "oem");
  mkdirSync(oem);
  writeFileSync(join(oem, "grub.cfg"), 'set oem_id="qemu"\nset linux_append="flatcar.autologin"\nif true; then\n  set linux_console="console=hvc0"\nfi\n');
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("bunboot kexec --dry-run on an image", () => {
  test("prints slot, kernel, command line and the GPT change, and writes nothing", () => {
    const before = readFileSync(img);
    const r = bunboot("--dry-run", "--disk", img, "--esp", esp, "--oem", oem);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain("plan (dry run: nothing is written or loaded):");
    expect(r.out).toContain(`slot:       USR-B (partition 3, PARTUUID ${USR_B}): priority=2 tries=1 successful=0`);
    expect(r.out).toContain(`kernel:     flatcar/vmlinuz-b on the ESP (${esp}/flatcar/vmlinuz-b)`);
    expect(r.out).toContain(
      `cmdline:    mount.usr=/dev/mapper/usr verity.usr=PARTUUID=${USR_B} rootflags=rw mount.usrflags=ro consoleblank=0 root=LABEL=ROOT console=ttyS0,115200n8 console=tty0 flatcar.first_boot=detected flatcar.oem.id=qemu flatcar.autologin verity.usrhash=${HASH_B}`,
    );
    expect(r.out).toContain("GPT change: USR-B tries 1 -> 0, written to the backup GPT, then the primary");
    expect(r.out).toMatch(/warning: +.*grub\.cfg line 4: "set linux_console=console=hvc0" is inside a conditional/);
    expect(readFileSync(img).equals(before)).toBe(true);
  });

  test("a missing kernel is named", () => {
    const r = bunboot("--dry-run", "--disk", img, "--esp", join(dir, "oem"), "--oem", oem);
    expect(r.code).toBe(1);
    expect(r.err).toBe(`bunboot kexec: the kernel for USR-B is missing: ${oem}/flatcar/vmlinuz-b\n`);
  });

  test("bad input: clear errors, no stack traces", () => {
    const cases: Array<[string[], RegExp]> = [
      [["--bogus"], /unknown option --bogus/],
      [["extra"], /unknown argument "extra"/],
      [["--initrd"], /--initrd needs a path/],
      [["--dry-run", "--disk", join(dir, "nope.img")], /--disk .*nope\.img: ENOENT/],
      [["--dry-run", "--disk", esp], /--disk .*esp is neither a block device nor an image file/],
      [["--dry-run", "--disk", join(esp, "flatcar/first_boot"), "--esp", esp], /disk of 0 bytes is too small for a GPT|cannot tell the size/],
      [["--dry-run", "--disk", img, "--esp", esp, "--initrd", join(dir, "no-initrd")], /--initrd .*no-initrd: no such file/],
    ];
    for (const [args, re] of cases) {
      const r = bunboot(...args);
      expect(r.code).not.toBe(0);
      expect(r.err).toMatch(re);
      expect(r.err).not.toMatch(/\n\s+at /);
    }
  });

  test("--help", () => {
    const r = bunboot("--help");
    expect(r.code).toBe(0);
    expect(r.out).toContain("--no-fallback");
  });
});
