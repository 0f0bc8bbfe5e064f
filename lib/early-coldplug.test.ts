import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import { awaitEarlyColdplug, EARLY_COLDPLUG_ENV } from "./early-coldplug.ts";
import { parseProcStat } from "./proc-stat.ts";

describe("parseProcStat", () => {
  test("state and parent, with a command name holding spaces and parentheses", () => {
    expect(parseProcStat("42 (sh) S 1 42 42 0 -1")).toEqual({ state: "S", ppid: 1 });
    expect(parseProcStat("43 (a) b) (c) Z 7 1 1")).toEqual({ state: "Z", ppid: 7 });
  });
  test("malformed lines are null, never a guess", () => {
    for (const bad of ["", "42 sh S 1", "42 (sh)", "42 (sh) SS 1", "42 (sh) S x"]) expect(parseProcStat(bad)).toBeNull();
  });
});

describe("awaitEarlyColdplug", () => {
  test("no variable: nothing to wait for", async () => {
    expect(await awaitEarlyColdplug({})).toBe("none");
  });

  test("a value that is not a PID (it may come from the command line) is ignored and removed", async () => {
    for (const v of ["", "0", "-1", "12x", "1".repeat(12), "$(reboot)"]) {
      const env: Record<string, string> = { [EARLY_COLDPLUG_ENV]: v };
      expect(await awaitEarlyColdplug(env)).toBe("none");
      expect(env[EARLY_COLDPLUG_ENV]).toBeUndefined();
    }
  });

  test("a process that is not our child is not waited for", async () => {
    // PID 1 of the test host is nobody's child here.
    expect(await awaitEarlyColdplug({ [EARLY_COLDPLUG_ENV]: "1" }, 5_000, process.pid)).toBe("done");
  });

  test("waits for the job to end", async () => {
    const job = Bun.spawn(["sleep", "0.3"]);
    const t0 = performance.now();
    expect(await awaitEarlyColdplug({ [EARLY_COLDPLUG_ENV]: String(job.pid) }, 10_000, process.pid)).toBe("done");
    expect(performance.now() - t0).toBeGreaterThan(200);
  });

  test("a job that hangs is killed with everything it started", async () => {
    const job = Bun.spawn(["/bin/sh", "-c", "sleep 60 & sleep 60; wait"]);
    await Bun.sleep(100);
    const children = Bun.spawnSync(["pgrep", "-P", String(job.pid)]).stdout.toString().trim().split("\n").filter(Boolean).map(Number);
    expect(children.length).toBe(2);
    expect(await awaitEarlyColdplug({ [EARLY_COLDPLUG_ENV]: String(job.pid) }, 300, process.pid)).toBe("killed");
    expect(await job.exited).not.toBe(0);
    await Bun.sleep(100);
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
      } catch {
        return false;
      }
    };
    expect(children.filter(alive)).toEqual([]);
  });
});
