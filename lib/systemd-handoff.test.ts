// The hand-off of the first stage's start time to a systemd stage 2: systemd
// reads `--deserialize <fd>` from the fd's current offset, so the memfd must
// sit at offset 0, survive execve (no O_CLOEXEC) and hold systemd's
// serialization format (manager keys, an empty line ends the section).
import { expect, test } from "bun:test";
import fs from "node:fs";
import { close, dualTimestampUsec, memfdWithData } from "./sys/index.ts";
import { isSystemd, systemdSerialization } from "./switch-root.ts";

test("memfdWithData: content readable from offset 0, not close-on-exec", () => {
  const text = systemdSerialization({ realtimeUsec: 1700000000123456n, monotonicUsec: 987654n });
  expect(text).toBe("initrd-timestamp=1700000000123456 987654\n\n");
  const fd = memfdWithData("test", new TextEncoder().encode(text));
  try {
    const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, "utf8");
    expect(info).toMatch(/^pos:\s+0$/m);
    // flags are octal; O_CLOEXEC is 02000000.
    const flags = parseInt(info.match(/^flags:\s+(\d+)$/m)![1]!, 8);
    expect(flags & 0o2000000).toBe(0);
    const buf = Buffer.alloc(100);
    const n = fs.readSync(fd, buf, 0, 100, null);
    expect(buf.subarray(0, n).toString()).toBe(text);
  } finally {
    close(fd);
  }
});

test("dualTimestampUsec: realtime near Date.now, monotonic below it", () => {
  const t = dualTimestampUsec();
  expect(Number(t.realtimeUsec / 1000n) - Date.now()).toBeLessThan(1000);
  expect(t.monotonicUsec).toBeGreaterThan(0n);
  expect(t.monotonicUsec).toBeLessThan(t.realtimeUsec);
});

test("isSystemd: dracut's /init link resolves to .../systemd; other inits are left alone", () => {
  expect(isSystemd("/usr/lib/systemd/systemd")).toBe(true);
  expect(isSystemd("/init")).toBe(false);
  expect(isSystemd("/sbin/init")).toBe(false);
  expect(isSystemd("/usr/lib/systemd/systemd-shutdown")).toBe(false);
});

test("execveKeepFds: the memfd survives the exec (Bun's process.execve closes it)", () => {
  const dir = fs.mkdtempSync("/tmp/bunboot-execve-");
  const script = `${dir}/exec.ts`;
  fs.writeFileSync(
    script,
    `import { execveKeepFds, memfdWithData } from ${JSON.stringify(import.meta.dir + "/sys/index.ts")};
const fd = memfdWithData("t", new TextEncoder().encode("initrd-timestamp=1 2\\n\\n"));
execveKeepFds("/bin/sh", ["/bin/sh", "-c", "echo fd=$0; cat <&$0", String(fd)], { PATH: "/bin" });
`,
  );
  const r = Bun.spawnSync([process.execPath, script], { stdout: "pipe", stderr: "pipe" });
  fs.rmSync(dir, { recursive: true, force: true });
  expect(r.stdout.toString()).toMatch(/^fd=\d+\ninitrd-timestamp=1 2\n/);
});
