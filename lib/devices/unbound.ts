// While a device is awaited, the most useful hint is a controller that no
// driver took: either its module is not in this initrd, or it was
// blacklisted. Only buses and classes that can lead to a disk are reported,
// so the hint is not buried under host bridges and sensors.
import fs from "node:fs";
import { readSysValue } from "../fsutil.ts";

export interface UnboundDevice {
  bus: string;
  id: string;
  modalias: string;
}

// PCI classes: 0x01 mass storage, 0x0c03 USB, 0x0c04 Fibre Channel.
function storagePci(classHex: string): boolean {
  const c = parseInt(classHex, 16);
  return c >> 16 === 0x01 || c >> 8 === 0x0c03 || c >> 8 === 0x0c04;
}

export function findUnboundDevices(): UnboundDevice[] {
  const out: UnboundDevice[] = [];
  for (const bus of ["pci", "virtio", "scsi", "usb", "mmc", "nvme"]) {
    let ids: string[] = [];
    try {
      ids = fs.readdirSync(`/sys/bus/${bus}/devices`).sort();
    } catch {
      continue;
    }
    for (const id of ids) {
      const dir = `/sys/bus/${bus}/devices/${id}`;
      if (fs.existsSync(`${dir}/driver`)) continue;
      const modalias = readSysValue(`${dir}/modalias`);
      if (!modalias) continue;
      if (bus === "pci" && !storagePci(readSysValue(`${dir}/class`) ?? "0")) continue;
      // SCSI: only disks (type 0), CD-ROMs (5) and RBC (14) can hold /usr.
      if (bus === "scsi" && !["0", "5", "14"].includes(readSysValue(`${dir}/type`) ?? "")) continue;
      out.push({ bus, id, modalias });
    }
  }
  return out;
}

/** One line for the still-waiting message; pure. `modulesFor` resolves an alias in this initrd. */
export function describeUnbound(devices: UnboundDevice[], modulesFor: (alias: string) => string[], blacklist: readonly string[]): string | null {
  if (devices.length === 0) return null;
  const parts = devices.map((d) => {
    const mods = modulesFor(d.modalias);
    const verdict =
      mods.length === 0
        ? "no module for it in this initrd (add one with build.ts --add-modules)"
        : mods.map((m) => (blacklist.includes(m) || blacklist.includes(m.replace(/_/g, "-")) ? `${m} (blacklisted)` : m)).join(", ");
    return `${d.bus} ${d.id} [${d.modalias}]: ${verdict}`;
  });
  return `devices without a driver: ${parts.join("; ")}`;
}
