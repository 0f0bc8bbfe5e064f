import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { DeviceManager, modaliasOfUevent } from "./manager.ts";

/** A /sys/bus tree: bus -> device -> files. */
function fakeSysfs(buses: Record<string, Record<string, Record<string, string>>>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "bunboot-sysfs-"));
  for (const [bus, devices] of Object.entries(buses)) {
    for (const [dev, files] of Object.entries(devices)) {
      const dir = path.join(root, "bus", bus, "devices", dev);
      fs.mkdirSync(dir, { recursive: true });
      for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
    }
  }
  return root;
}

function coldplugOf(root: string): { n: number; requested: string[] } {
  const requested: string[] = [];
  const n = new DeviceManager({ request: (names) => requested.push(...names) }, root).coldplug();
  return { n, requested };
}

describe("coldplug", () => {
  test("asks for the modalias of every device that has the file", () => {
    const root = fakeSysfs({
      pci: { "0000:00:01.0": { modalias: "pci:v00001000d00000054sv*\n", uevent: "DRIVER=mptsas\nMODALIAS=ignored-when-the-file-exists\n" } },
      scsi: { host0: { uevent: "DEVTYPE=scsi_host\n" }, "0:0:0:0": { modalias: "scsi:t-0x00\n" } },
    });
    const r = coldplugOf(root);
    expect(r.requested.sort()).toEqual(["pci:v00001000d00000054sv*", "scsi:t-0x00"]);
    expect(r.n).toBe(2);
  });

  test("an SD card, whose bus has no modalias file, is found by the MODALIAS in its uevent", () => {
    // As Linux's mmc bus shows a card: mmc_block is only named in the uevent.
    const root = fakeSysfs({
      mmc: { "mmc0:4567": { uevent: "MMC_TYPE=SD\nMMC_NAME=QEMU!\nMODALIAS=mmc:block\n", type: "SD\n" } },
      pci: { "0000:00:01.0": { modalias: "pci:v00001B36d00000007sv00001AF4sd00001100bc08sc05i01\n" } },
    });
    expect(coldplugOf(root).requested.sort()).toEqual(["mmc:block", "pci:v00001B36d00000007sv00001AF4sd00001100bc08sc05i01"]);
  });

  test("devices with neither (SCSI hosts, memory blocks) ask for nothing, and a missing /sys/bus is no error", () => {
    const root = fakeSysfs({ scsi: { host0: { uevent: "DEVTYPE=scsi_host\n" }, target0: {} }, memory: { memory0: { uevent: "" } } });
    expect(coldplugOf(root)).toEqual({ n: 0, requested: [] });
    expect(coldplugOf(path.join(root, "nowhere"))).toEqual({ n: 0, requested: [] });
  });

  test("modaliasOfUevent", () => {
    expect(modaliasOfUevent("MODALIAS=mmc:block\n")).toBe("mmc:block");
    expect(modaliasOfUevent("DEVTYPE=scsi_host\n")).toBeNull();
    expect(modaliasOfUevent(null)).toBeNull();
  });
});
