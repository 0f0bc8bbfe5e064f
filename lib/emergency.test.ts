// The failure screen is all a user sees when the boot stops, often on a
// serial console with no other way in: it must name the step, show the whole
// message, name the parameter to fix and say how to debug. Only the pure
// formatter is tested; importing the module does not load libc (bun:ffi is
// opened lazily by lib/sys).
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseBootParams, splitCmdline } from "./cmdline.ts";
import { failureAction, formatFailure, readPasswordHash, wrongPasswordDelaySec } from "./emergency.ts";

const DEBUG_LINE =
  "to debug: add rd.debug or rd.earlytrace (log every step, command and uevent), rd.break=<pre-udev|pre-verity|pre-mount|pre-switch-root> or rd.earlyshell (shell at breakpoints); the boot log is in /run/bunboot/log (initrd build 3f9a0c1d2e4b)";

describe("formatFailure", () => {
  test("step, indented message, parameter and debug hints, in that order", () => {
    const text = formatFailure(
      { step: "wait-usr", message: "timed out after 300 s waiting for verity.usr=PARTLABEL=USR", param: "verity.usr" },
      "3f9a0c1d2e4b",
    );
    expect(text).toBe(
      [
        'boot failed in step "wait-usr":',
        "  timed out after 300 s waiting for verity.usr=PARTLABEL=USR",
        "parameter to check: verity.usr=",
        DEBUG_LINE,
      ].join("\n"),
    );
  });

  test("every line of a multi-line message is indented", () => {
    const message = "verity.usr=PARTLABEL=USR-A matches 2 devices, expected exactly one:\n  /dev/vda3 (1024 MiB)\n  /dev/vdb3 (1024 MiB)\nUse a unique PARTUUID= or UUID= instead.";
    const lines = formatFailure({ step: "wait-usr", message, param: "verity.usr" }, "3f9a0c1d2e4b").split("\n");
    expect(lines).toEqual([
      'boot failed in step "wait-usr":',
      "  verity.usr=PARTLABEL=USR-A matches 2 devices, expected exactly one:",
      "    /dev/vda3 (1024 MiB)",
      "    /dev/vdb3 (1024 MiB)",
      "  Use a unique PARTUUID= or UUID= instead.",
      "parameter to check: verity.usr=",
      DEBUG_LINE,
    ]);
  });

  test("no parameter line when the failure names none", () => {
    const text = formatFailure({ step: "full-initrd", message: "the full initrd /lib/flatcar/bootengine.img is missing" }, "3f9a0c1d2e4b");
    expect(text).toBe(['boot failed in step "full-initrd":', "  the full initrd /lib/flatcar/bootengine.img is missing", DEBUG_LINE].join("\n"));
    expect(text).not.toContain("parameter to check");
  });

  test("an empty parameter name counts as none (and does not compile)", () => {
    // @ts-expect-error "" is not a BootParam
    expect(formatFailure({ step: "plan", message: "x", param: "" }, "3f9a0c1d2e4b")).not.toContain("parameter to check");
  });

  test("the debug hints name rd.debug, rd.break with every breakpoint, rd.earlyshell, the log file and the build", () => {
    const text = formatFailure({ step: "verity", message: "root hash mismatch" }, "deadbeef0001");
    for (const hint of ["rd.debug", "rd.break=", "pre-udev", "pre-verity", "pre-mount", "pre-switch-root", "rd.earlyshell", "/run/bunboot/log", "initrd build deadbeef0001"]) {
      expect(text).toContain(hint);
    }
  });

  test("an unknown build (no config) still gives a complete text", () => {
    expect(formatFailure({ step: "unknown", message: "boom" }, "unknown")).toEndWith("(initrd build unknown)");
  });

  test("an empty message still gives an (empty) indented line, so the layout stays fixed", () => {
    expect(formatFailure({ step: "cmdline", message: "" }, "b").split("\n").slice(0, 2)).toEqual(['boot failed in step "cmdline":', "  "]);
  });

  test("a trailing newline in the message gives one empty indented line, not a lost one", () => {
    expect(formatFailure({ step: "s", message: "a\n" }, "b").split("\n").slice(0, 3)).toEqual(['boot failed in step "s":', "  a", "  "]);
  });
});

describe("failureAction", () => {
  const params = (line: string) => parseBootParams(splitCmdline(line)).params;

  test("the default is the prompt with a 60 s timeout, also without a command line", () => {
    expect(failureAction(null)).toEqual({ kind: "prompt", timeoutSec: 60 });
    expect(failureAction(params(""))).toEqual({ kind: "prompt", timeoutSec: 60 });
  });

  test("rd.emergency.timeout=0 keeps the prompt waiting (0 is 'forever', not 'at once')", () => {
    expect(failureAction(params("rd.emergency.timeout=0"))).toEqual({ kind: "prompt", timeoutSec: 0 });
  });

  test("rd.shell=0 wins over rd.emergency=shell and over the prompt", () => {
    expect(failureAction(params("rd.shell=0 rd.emergency=shell"))).toEqual({ kind: "wait-then-reboot", timeoutSec: 60 });
    expect(failureAction(params("rd.shell=0 rd.emergency.timeout=7"))).toEqual({ kind: "wait-then-reboot", timeoutSec: 7 });
  });

  test("power actions need no shell and win over rd.shell=0", () => {
    expect(failureAction(params("rd.emergency=poweroff rd.shell=0"))).toEqual({ kind: "power", action: "poweroff" });
    expect(failureAction(params("rd.emergency=halt"))).toEqual({ kind: "power", action: "halt" });
  });
});

describe("emergency password", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bunboot-emergency-"));

  test("no file: the console is trusted", () => {
    expect(readPasswordHash(path.join(dir, "absent"))).toBeNull();
  });

  test("an argon2id hash from Bun.password is read back as is", async () => {
    const hash = await Bun.password.hash("pw", { algorithm: "argon2id", memoryCost: 4096, timeCost: 1 });
    fs.writeFileSync(path.join(dir, "good"), hash + "\n");
    expect(readPasswordHash(path.join(dir, "good"))).toBe(hash);
  });

  test("a file that holds no usable hash locks the shell instead of opening it", async () => {
    for (const [name, text] of [
      ["empty", ""],
      ["plain", "hunter2\n"],
      ["bcrypt", await Bun.password.hash("pw", { algorithm: "bcrypt", cost: 4 })],
      ["truncated", (await Bun.password.hash("pw", { algorithm: "argon2id", memoryCost: 4096, timeCost: 1 })).slice(0, 40)],
    ] as const) {
      fs.writeFileSync(path.join(dir, name), text);
      expect(readPasswordHash(path.join(dir, name))).toBe("unreadable");
    }
    // A directory where the file should be cannot be read either.
    fs.mkdirSync(path.join(dir, "adir"));
    expect(readPasswordHash(path.join(dir, "adir"))).toBe("unreadable");
  });

  test("wrong answers wait 1, 2, 4 … seconds, at most a minute", () => {
    expect([0, 1, 2, 3, 4, 6, 7, 8, 100].map(wrongPasswordDelaySec)).toEqual([0, 1, 2, 4, 8, 32, 60, 60, 60]);
  });
});
