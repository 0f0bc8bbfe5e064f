// Matching a DeviceRef against the devices present. Pure. Matching is exact
// (Flatcar's script matched substrings, so "USR" hit both USR-A and USR-B).
import type { DeviceRef } from "./ref.ts";
import type { BlockDevice } from "./blockdevs.ts";

// Paths udev would create; without udev in the initrd they never appear,
// so they are read as the identity they name.
const BY_LINKS: Array<[string, DeviceRef["kind"]]> = [
  ["/dev/disk/by-partuuid/", "partuuid"],
  ["/dev/disk/by-partlabel/", "partlabel"],
  ["/dev/disk/by-uuid/", "uuid"],
  ["/dev/disk/by-label/", "label"],
];

// udev writes the names in these links with unsafe bytes as \xHH (a label
// "My Disk" is by-label/My\x20Disk, a '/' is \x2f, a '\' is \x5c); users
// copy them from `ls /dev/disk/by-label`, so undo that to get the identity
// blkid reports. One pass, ASCII only: \x5cx20 stays the literal text \x20,
// and bytes >= 0x80 (invalid UTF-8 udev escaped) cannot be rebuilt here.
function udevUnescape(name: string): string {
  return name.replace(/\\x([0-7][0-9a-fA-F])/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

export function normaliseRef(ref: DeviceRef): DeviceRef {
  if (ref.kind !== "path") return ref;
  for (const [prefix, kind] of BY_LINKS) {
    if (ref.value.startsWith(prefix)) {
      const v = udevUnescape(ref.value.slice(prefix.length));
      return { kind, value: kind === "partuuid" || kind === "uuid" ? v.toLowerCase() : v } as DeviceRef;
    }
  }
  return ref;
}

export function refNeedsFsProbe(ref: DeviceRef): boolean {
  const r = normaliseRef(ref);
  return r.kind === "uuid" || r.kind === "label";
}

export function matchDevices(ref: DeviceRef, devices: BlockDevice[]): BlockDevice[] {
  const r = normaliseRef(ref);
  switch (r.kind) {
    case "partuuid":
      return devices.filter((d) => d.partUuid?.toLowerCase() === r.value);
    case "partlabel":
      return devices.filter((d) => d.partLabel === r.value);
    case "uuid":
      // A verity hash area also carries a UUID; only filesystems count.
      return devices.filter((d) => d.fs?.uuid?.toLowerCase() === r.value && d.fs.type !== "DM_verity_hash");
    case "label":
      return devices.filter((d) => d.fs?.label === r.value);
    case "path":
      return devices.filter((d) => d.devPath === r.value);
  }
}
