// findDisklessHosts() on a fake sysfs laid out in a temporary directory the
// way the kernel lays out the real one (class links, bus device names,
// driver symlinks), and the one line the wait prints from it.
import { afterEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describeDisklessHosts, findDisklessHosts, type DisklessHost } from "./diskless-hosts.ts";

let root = "";
afterEach(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
  root = "";
});

/** SCSI devices by H:C:T:L: a disk with its block device (true), one sd_mod has not taken (false), or a CD-ROM drive with sr0. */
type ScsiDevice = boolean | "cdrom";

function sysfs(layout: { scsiHosts?: Record<string, string>; scsiDevices?: Record<string, ScsiDevice>; nvme?: Record<string, string[]>; mmc?: Record<string, string[]> }): string {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "sysfs-"));
  const mk = (p: string, text?: string) => {
    const full = path.join(root, p);
    if (text === undefined) fs.mkdirSync(full, { recursive: true });
    else {
      fs.mkdirSync(path.dirname(full), { recursive: true });
      fs.writeFileSync(full, text);
    }
  };
  const driver = (deviceDir: string, name: string) => {
    mk(`bus/pci/drivers/${name}`);
    mk(deviceDir);
    fs.symlinkSync(path.join(root, `bus/pci/drivers/${name}`), path.join(root, deviceDir, "driver"));
  };
  for (const [host, procName] of Object.entries(layout.scsiHosts ?? {})) mk(`class/scsi_host/${host}/proc_name`, `${procName}\n`);
  mk("bus/scsi/devices");
  // host0 itself and target0:0:0 also live in bus/scsi/devices; only H:C:T:L names are SCSI devices.
  for (const host of Object.keys(layout.scsiHosts ?? {})) mk(`bus/scsi/devices/${host}`);
  for (const [hctl, kind] of Object.entries(layout.scsiDevices ?? {})) {
    mk(`bus/scsi/devices/target${hctl.split(":").slice(0, 3).join(":")}`);
    mk(`bus/scsi/devices/${hctl}/type`, kind === "cdrom" ? "5\n" : "0\n");
    if (kind === true) mk(`bus/scsi/devices/${hctl}/block/sd${hctl.split(":")[0]}`);
    if (kind === "cdrom") mk(`bus/scsi/devices/${hctl}/block/sr${hctl.split(":")[0]}`);
  }
  for (const [ctrl, entries] of Object.entries(layout.nvme ?? {})) {
    driver(`class/nvme/${ctrl}/device`, "nvme");
    for (const e of entries) mk(`class/nvme/${ctrl}/${e}`);
  }
  for (const [host, entries] of Object.entries(layout.mmc ?? {})) {
    driver(`class/mmc_host/${host}/device`, "sdhci-pci");
    for (const e of entries) mk(`class/mmc_host/${host}/${e}`);
  }
  return root;
}

describe("controllers with a driver but no disk", () => {
  test("the mptsas case: a SAS host with nothing on its bus", () => {
    const hosts = findDisklessHosts(sysfs({ scsiHosts: { host0: "mptsas" } }));
    expect(hosts).toEqual([{ kind: "scsi", name: "host0", driver: "mptsas", devices: 0 }]);
    expect(describeDisklessHosts(hosts)).toBe("controllers with a driver but no disk: SCSI host0 (mptsas): no SCSI device found on its bus");
  });

  test("a SCSI device that is no disk yet (a CD-ROM, or sd_mod not bound) is counted", () => {
    const hosts = findDisklessHosts(sysfs({ scsiHosts: { host0: "megaraid_sas" }, scsiDevices: { "0:2:0:0": false, "0:2:1:0": false } }));
    expect(hosts).toEqual([{ kind: "scsi", name: "host0", driver: "megaraid_sas", devices: 2 }]);
    expect(describeDisklessHosts(hosts)).toContain("SCSI host0 (megaraid_sas): 2 SCSI devices, none a disk");
  });

  test("a CD-ROM drive is no disk: on the missing disk's AHCI controller it neither hides the empty ports nor passes for one", () => {
    const hosts = findDisklessHosts(sysfs({ scsiHosts: { host0: "ahci", host1: "ahci", host2: "ahci" }, scsiDevices: { "1:0:0:0": "cdrom" } }));
    expect(hosts.map((h) => [h.name, h.devices])).toEqual([["host0", 0], ["host1", 1], ["host2", 0]]);
    expect(describeDisklessHosts(hosts)).toBe("controllers with a driver but no disk: SCSI host0 host1 host2 (ahci): 1 SCSI device, none a disk");
  });

  test("the empty ports of a controller whose driver has a disk elsewhere are normal, and not reported", () => {
    const sys = sysfs({
      scsiHosts: { host0: "ahci", host1: "ahci", host2: "ahci", host3: "usb-storage", host10: "virtio_scsi" },
      scsiDevices: { "1:0:0:0": true, "10:0:0:0": true },
    });
    expect(findDisklessHosts(sys)).toEqual([{ kind: "scsi", name: "host3", driver: "usb-storage", devices: 0 }]);
  });

  test("hosts of one driver are grouped, in numeric order", () => {
    const hosts = findDisklessHosts(sysfs({ scsiHosts: { host10: "ahci", host2: "ahci", host1: "ata_piix" } }));
    expect(describeDisklessHosts(hosts)).toBe(
      "controllers with a driver but no disk: SCSI host1 (ata_piix): no SCSI device found on its bus; SCSI host2 host10 (ahci): no SCSI device found on its bus",
    );
  });

  test("NVMe controllers without a namespace and MMC hosts without a card", () => {
    const sys = sysfs({ nvme: { nvme0: [], nvme1: ["nvme1n1"], nvme2: ["nvme2c2n1"] }, mmc: { mmc0: [] } });
    const hosts = findDisklessHosts(sys);
    expect(hosts).toEqual<DisklessHost[]>([
      { kind: "nvme", name: "nvme0", driver: "nvme", devices: 0 },
      { kind: "mmc", name: "mmc0", driver: "sdhci-pci", devices: 0 },
    ]);
  });

  test("an MMC card in one slot clears the driver's empty slots; an NVMe namespace does not clear another controller", () => {
    expect(findDisklessHosts(sysfs({ mmc: { mmc0: [], mmc1: ["mmc1:0001"] } }))).toEqual([]);
    fs.rmSync(root, { recursive: true, force: true });
    expect(findDisklessHosts(sysfs({ nvme: { nvme0: [], nvme1: ["nvme1n1"] } })).map((h) => h.name)).toEqual(["nvme0"]);
  });

  test("nothing to say on a machine without these classes (virtio-blk only), or when every host has a disk", () => {
    expect(findDisklessHosts(path.join(os.tmpdir(), "no-such-sysfs"))).toEqual([]);
    expect(describeDisklessHosts([])).toBeNull();
    expect(findDisklessHosts(sysfs({ scsiHosts: { host0: "virtio_scsi" }, scsiDevices: { "0:0:0:0": true } }))).toEqual([]);
  });

  test("the NVMe and MMC wording", () => {
    expect(
      describeDisklessHosts([
        { kind: "nvme", name: "nvme0", driver: "nvme", devices: 0 },
        { kind: "mmc", name: "mmc0", driver: "sdhci-pci", devices: 0 },
      ]),
    ).toBe("controllers with a driver but no disk: NVMe nvme0 (nvme): no namespace; MMC mmc0 (sdhci-pci): no card");
  });
});
