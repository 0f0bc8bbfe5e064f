// waitForDevice() with a fake device manager and a fake sysfs: which device
// a DeviceRef resolves to, and above all that an ambiguous reference is an
// error even when the second match shows up a moment after the first
// (a second disk on a slower controller, a USB stick with a copy of the
// image): the wait keeps listening for a short settle window before it
// answers. The windows are shortened here so that the suite stays fast.
import { describe, expect, spyOn, test } from "bun:test";
import { log } from "../log.ts";
import { parseDeviceRef } from "./ref.ts";
import type { BlockDevice } from "./blockdevs.ts";
import { shapeOf, waitForDevice, type DeviceEvents, type WaitOptions } from "./wait.ts";
import { BootError } from "../errors.ts";

const USR_A = "7130c94a-213a-4e5a-8e26-6cce9662f132";

function part(name: string, ids: Partial<BlockDevice> = {}): BlockDevice {
  return { name, devPath: `/dev/${name}`, isPartition: true, disk: name.replace(/\d+$/, ""), sizeBytes: 1 << 30, ...ids };
}

/** The block devices "in sysfs", with a uevent for every change, as the kernel and DeviceManager would deliver. */
class FakeSystem implements DeviceEvents {
  devices: BlockDevice[] = [];
  /** Devices whose /dev node devtmpfs has not created yet. */
  noNode = new Set<string>();
  coldplugs = 0;
  private waiters: Array<() => void> = [];

  coldplug(): number {
    this.coldplugs++;
    return 0;
  }

  nextEvent(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.waiters.push(done);
    });
  }

  /** A uevent that is not about a block device (a NIC, a module's driver binding). */
  event(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  plug(dev: BlockDevice, withNode = true): void {
    this.devices = [...this.devices, dev];
    if (!withNode) this.noNode.add(dev.devPath);
    this.event();
  }

  options(settleQuietMs: number, settleMaxMs: number): WaitOptions {
    return {
      settleQuietMs,
      settleMaxMs,
      listDevices: () => this.devices,
      isBlockDevice: (path) => this.devices.some((d) => d.devPath === path) && !this.noNode.has(path),
    };
  }
}

const PARTUUID_REF = parseDeviceRef("verity.usr", `PARTUUID=${USR_A}`);
const VDA3 = part("vda3", { partUuid: USR_A, partLabel: "USR-A" });
const SDA3 = part("sda3", { partUuid: USR_A, partLabel: "USR-A" });

async function rejection(p: Promise<unknown>): Promise<BootError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(BootError);
    return e as BootError;
  }
  throw new Error("expected a BootError");
}

describe("waitForDevice: duplicates that appear late", () => {
  // Regression: the first single match used to be returned at once, so a
  // second disk with the same PARTUUID 50 ms later was never noticed.
  test("a second match 50 ms after the first is the 'several devices match' error, not a silent pick", async () => {
    const sys = new FakeSystem();
    sys.devices = [VDA3];
    setTimeout(() => sys.plug(SDA3), 50);
    const e = await rejection(waitForDevice("verity.usr", PARTUUID_REF, 10, sys, undefined, sys.options(300, 1000)));
    expect(e.param).toBe("verity.usr");
    expect(e.message).toContain(`verity.usr=PARTUUID=${USR_A} matches 2 devices, expected exactly one`);
    expect(e.message).toContain("/dev/vda3");
    expect(e.message).toContain("/dev/sda3");
  });

  test("also by LABEL= (filesystem probing) and PARTLABEL=", async () => {
    for (const [text, a, b] of [
      ["LABEL=USR", part("vda3", { fs: { type: "ext4", label: "USR" } }), part("sdb1", { fs: { type: "ext4", label: "USR" } })],
      ["PARTLABEL=USR-A", VDA3, SDA3],
    ] as const) {
      const sys = new FakeSystem();
      sys.devices = [a];
      setTimeout(() => sys.plug(b), 30);
      const e = await rejection(waitForDevice("mount.usr", parseDeviceRef("mount.usr", text), 10, sys, undefined, sys.options(200, 800)));
      expect(e.message).toContain("matches 2 devices");
    }
  });

  test("a late duplicate whose /dev node is not there yet still counts", async () => {
    const sys = new FakeSystem();
    sys.devices = [VDA3];
    setTimeout(() => sys.plug(SDA3, false), 30);
    const e = await rejection(waitForDevice("verity.usr", PARTUUID_REF, 10, sys, undefined, sys.options(200, 800)));
    expect(e.message).toContain("matches 2 devices");
  });

  test("a duplicate while other devices keep the window open is still caught", async () => {
    const sys = new FakeSystem();
    sys.devices = [VDA3];
    setTimeout(() => sys.plug(part("vdb1")), 60);
    setTimeout(() => sys.plug(part("vdc1")), 120);
    setTimeout(() => sys.plug(SDA3), 180);
    const e = await rejection(waitForDevice("verity.usr", PARTUUID_REF, 10, sys, undefined, sys.options(100, 1000)));
    expect(e.message).toContain("matches 2 devices");
  });

  test("in the background: the match is answered at once, the late duplicate rejects the settle promise", async () => {
    const sys = new FakeSystem();
    sys.devices = [VDA3];
    setTimeout(() => sys.plug(SDA3), 50);
    let settled: Promise<void> | null = null;
    const t0 = performance.now();
    const found = await waitForDevice("verity.usr", PARTUUID_REF, 10, sys, undefined, { ...sys.options(300, 1000), settleInBackground: (p) => (settled = p) });
    expect(found).toBe("/dev/vda3");
    expect(performance.now() - t0).toBeLessThan(40);
    const e = await rejection(settled!);
    expect(e.message).toContain("matches 2 devices");
  });

  test("in the background with no duplicate, the settle promise resolves", async () => {
    const sys = new FakeSystem();
    sys.devices = [VDA3];
    let settled: Promise<void> | null = null;
    expect(await waitForDevice("verity.usr", PARTUUID_REF, 10, sys, undefined, { ...sys.options(50, 500), settleInBackground: (p) => (settled = p) })).toBe("/dev/vda3");
    await settled!;
  });

  test("both present at the first look: the error comes at once", async () => {
    const sys = new FakeSystem();
    sys.devices = [VDA3, SDA3];
    const t0 = performance.now();
    const e = await rejection(waitForDevice("verity.usr", PARTUUID_REF, 10, sys, undefined, sys.options(500, 2000)));
    expect(e.message).toContain("matches 2 devices");
    expect(performance.now() - t0).toBeLessThan(200);
  });
});

describe("waitForDevice: the settle window", () => {
  test("a unique match is returned once no block device appeared for settleQuietMs", async () => {
    const sys = new FakeSystem();
    sys.devices = [part("vda1"), VDA3];
    const t0 = performance.now();
    expect(await waitForDevice("verity.usr", PARTUUID_REF, 10, sys, undefined, sys.options(120, 1000))).toBe("/dev/vda3");
    const ms = performance.now() - t0;
    expect(ms).toBeGreaterThanOrEqual(110);
    expect(ms).toBeLessThan(600);
  });

  test("a new unrelated block device restarts the quiet period", async () => {
    const sys = new FakeSystem();
    sys.devices = [VDA3];
    setTimeout(() => sys.plug(part("vdb1")), 80);
    const t0 = performance.now();
    expect(await waitForDevice("verity.usr", PARTUUID_REF, 10, sys, undefined, sys.options(120, 1000))).toBe("/dev/vda3");
    expect(performance.now() - t0).toBeGreaterThanOrEqual(190);
  });

  test("uevents that change no block device do not extend the window", async () => {
    const sys = new FakeSystem();
    sys.devices = [VDA3];
    const timer = setInterval(() => sys.event(), 20);
    try {
      const t0 = performance.now();
      expect(await waitForDevice("verity.usr", PARTUUID_REF, 10, sys, undefined, sys.options(120, 1000))).toBe("/dev/vda3");
      expect(performance.now() - t0).toBeLessThan(500);
    } finally {
      clearInterval(timer);
    }
  });

  test("devices that keep appearing cannot hold the boot longer than settleMaxMs", async () => {
    const sys = new FakeSystem();
    sys.devices = [VDA3];
    let n = 0;
    const timer = setInterval(() => sys.plug(part(`sdx${n++}`)), 30);
    try {
      const t0 = performance.now();
      expect(await waitForDevice("verity.usr", PARTUUID_REF, 10, sys, undefined, sys.options(100, 300))).toBe("/dev/vda3");
      const ms = performance.now() - t0;
      expect(ms).toBeGreaterThanOrEqual(290);
      expect(ms).toBeLessThan(800);
    } finally {
      clearInterval(timer);
    }
  });

  test("settleMaxMs 0 turns the window off (the old behaviour)", async () => {
    const sys = new FakeSystem();
    sys.devices = [VDA3];
    const t0 = performance.now();
    expect(await waitForDevice("verity.usr", PARTUUID_REF, 10, sys, undefined, sys.options(1000, 0))).toBe("/dev/vda3");
    expect(performance.now() - t0).toBeLessThan(100);
  });

  test("a /dev/ path names one device by itself: no window", async () => {
    const sys = new FakeSystem();
    sys.devices = [VDA3];
    const t0 = performance.now();
    const p = waitForDevice("mount.usr", parseDeviceRef("mount.usr", "/dev/vda3"), 10, sys, undefined, sys.options(1000, 3000));
    expect(await p).toBe("/dev/vda3");
    expect(performance.now() - t0).toBeLessThan(100);
  });

  test("the matching device vanishes during the window: the wait goes on and finds the one that stays", async () => {
    const sys = new FakeSystem();
    sys.devices = [VDA3];
    setTimeout(() => {
      sys.devices = [];
      sys.event();
    }, 30);
    setTimeout(() => sys.plug(SDA3), 80);
    expect(await waitForDevice("verity.usr", PARTUUID_REF, 10, sys, undefined, sys.options(100, 1000))).toBe("/dev/sda3");
  });

  test("the device appears while waiting: found, then settled", async () => {
    const sys = new FakeSystem();
    setTimeout(() => sys.plug(VDA3), 40);
    const t0 = performance.now();
    expect(await waitForDevice("verity.usr", PARTUUID_REF, 10, sys, undefined, sys.options(100, 1000))).toBe("/dev/vda3");
    expect(performance.now() - t0).toBeGreaterThanOrEqual(130);
  });
});

describe("waitForDevice: messages", () => {
  // Found by the superblock property test: labels and LUKS UUIDs are bytes
  // from the disk, and the device lists in these messages showed them raw.
  test("identities read from disks are escaped in the device lists", async () => {
    const sys = new FakeSystem();
    const evil = "USR\x1b[2J\r";
    sys.devices = [part("vda3", { fs: { type: "ext4", label: evil } }), part("vdb3", { fs: { type: "ext4", label: evil } })];
    const dup = await rejection(waitForDevice("mount.usr", parseDeviceRef("mount.usr", `LABEL=${evil}`), 10, sys, undefined, sys.options(50, 200)));
    expect(dup.message).toContain("LABEL=USR\\x1b[2J\\x0d");
    expect(dup.message).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);

    const lost = await rejection(waitForDevice("mount.usr", parseDeviceRef("mount.usr", "LABEL=none"), 0.05, sys, undefined, sys.options(50, 200)));
    expect(lost.message).toContain("timed out");
    expect(lost.message).toContain("LABEL=USR\\x1b[2J\\x0d");
    expect(lost.message).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
  });
});

describe("waitForDevice: the timeout's device list", () => {
  test("the payload image's loop device does not hide that no disk appeared", async () => {
    const sys = new FakeSystem();
    sys.devices = [{ name: "loop0", devPath: "/dev/loop0", isPartition: false, disk: "loop0", sizeBytes: 66 << 20, fs: { type: "squashfs" } } as BlockDevice];
    const e = await rejection(waitForDevice("verity.usr", PARTUUID_REF, 0.05, sys, undefined, sys.options(50, 200)));
    expect(e.message).toContain("Block devices seen:\n  none: no disk driver found a disk\n  besides the boot's own: loop0");
    sys.devices = [...sys.devices, part("vdb1")];
    const e2 = await rejection(waitForDevice("verity.usr", PARTUUID_REF, 0.05, sys, undefined, sys.options(50, 200)));
    expect(e2.message).not.toContain("none: no disk driver");
    expect(e2.message).toContain("besides the boot's own: loop0");
  });
});

describe("the settle window's notion of a change", () => {
  test("devices the boot makes itself (verity mapping, loop devices, RAM disks) do not keep the window open", () => {
    const disks = [part("vda"), part("vda3")];
    expect(shapeOf([...disks, part("dm-0"), part("loop0"), part("loop12"), part("ram0"), part("zram0")])).toBe(shapeOf(disks));
    expect(shapeOf([...disks, part("sda")])).not.toBe(shapeOf(disks));
  });

  test("a background settle is not held open by the boot's own loop and dm devices", async () => {
    const sys = new FakeSystem();
    sys.devices = [VDA3];
    for (const [ms, name] of [[20, "dm-0"], [60, "loop0"], [100, "loop1"]] as const) setTimeout(() => sys.plug(part(name)), ms);
    let settled: Promise<void> | null = null;
    const t0 = performance.now();
    await waitForDevice("verity.usr", PARTUUID_REF, 10, sys, undefined, { ...sys.options(150, 2000), settleInBackground: (p) => (settled = p) });
    await settled!;
    // Quiet since the first look: the window ends after settleQuietMs, not after the last loop device.
    expect(performance.now() - t0).toBeLessThan(240);
  });
});

describe("waitForDevice: the still-waiting report", () => {
  // Issue 12: an operator must tell "no driver", "a driver but no disk" and
  // "a disk, but not the one named" apart from the console alone.
  test("lists the block devices with their identities, again only when they change, and the hint lines", async () => {
    const sys = new FakeSystem();
    sys.devices = [part("sda1", { partUuid: "0a0a0a0a-0000-4000-8000-000000000001", partLabel: "EFI-SYSTEM" })];
    const lines: string[] = [];
    let probes = 0;
    const spy = spyOn(log, "info").mockImplementation((t: string) => void lines.push(t));
    try {
      setTimeout(() => sys.plug(part("sdb1", { fs: { type: "ext4", uuid: "1234", label: "DATA" } })), 130);
      const hint = async () => "devices without a driver: pci 0000:00:05.0 [pci:v1000]: mptsas\ncontrollers with a driver but no disk: SCSI host2 (mptsas): no SCSI device found on its bus";
      const opts = sys.options(50, 200);
      const list = opts.listDevices!;
      // Superblock reads only when the set changed: at the first report and when sdb1 came.
      opts.listDevices = (probeFs) => {
        if (probeFs) probes++;
        return list(probeFs);
      };
      await rejection(waitForDevice("verity.usr", PARTUUID_REF, 0.3, sys, hint, { ...opts, stillWaitingMs: 50 }));
    } finally {
      spy.mockRestore();
    }
    const reports = lines.filter((l) => l.startsWith("still waiting for verity.usr=PARTUUID="));
    expect(reports.length).toBeGreaterThanOrEqual(3);
    expect(reports[0]).toMatch(/^still waiting for verity\.usr=PARTUUID=\S+ \(0 s\)\n  devices without a driver: pci 0000:00:05\.0 \[pci:v1000\]: mptsas\n  controllers with a driver but no disk: SCSI host2 \(mptsas\): no SCSI device found on its bus\n  block devices:\n    \/dev\/sda1 \(1024 MiB\) PARTUUID=0a0a0a0a-0000-4000-8000-000000000001 PARTLABEL=EFI-SYSTEM$/);
    // Unchanged: counted, not listed again.
    expect(reports[1]).toEndWith("  block devices: the same 1 as at 0 s");
    // The new disk shows up with its filesystem identity.
    const changed = reports.find((r) => r.includes("/dev/sdb1"));
    expect(changed).toContain("    /dev/sdb1 (1024 MiB) UUID=1234 LABEL=DATA TYPE=ext4");
    expect(changed).toContain("    /dev/sda1 (1024 MiB) PARTUUID=");
    // Two reports that list, plus the timeout's own list.
    expect(probes).toBe(3);
  });

  test("says when no block device has appeared yet, and leaves the boot's own loop device out", async () => {
    const sys = new FakeSystem();
    sys.devices = [part("loop0")];
    const lines: string[] = [];
    const spy = spyOn(log, "info").mockImplementation((t: string) => void lines.push(t));
    try {
      await rejection(waitForDevice("verity.usr", PARTUUID_REF, 0.15, sys, undefined, { ...sys.options(50, 200), stillWaitingMs: 40 }));
    } finally {
      spy.mockRestore();
    }
    const reports = lines.filter((l) => l.startsWith("still waiting"));
    expect(reports[0]).toEndWith("\n  block devices: none yet");
    expect(reports[1]).toEndWith("\n  block devices: still none");
    expect(reports.join("\n")).not.toContain("loop0");
  });
});

describe("waitForDevice: the hint is escaped", () => {
  test("driver and host names quoted from sysfs reach the console escaped, in the reports and the timeout", async () => {
    const sys = new FakeSystem();
    const lines: string[] = [];
    const spy = spyOn(log, "info").mockImplementation((t: string) => void lines.push(t));
    let e: BootError;
    try {
      const hint = async () => "controllers with a driver but no disk: SCSI host0 (evil\x1b[2J): no SCSI device found on its bus";
      e = await rejection(waitForDevice("verity.usr", PARTUUID_REF, 0.12, sys, hint, { ...sys.options(50, 200), stillWaitingMs: 40 }));
    } finally {
      spy.mockRestore();
    }
    const text = [...lines, e.message].join("\n");
    expect(text).toContain("(evil\\x1b[2J)");
    expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
  });
});
