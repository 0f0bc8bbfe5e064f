// matchDevices() decides which block device a verity.usr=/mount.usr= names.
// Flatcar's script matched substrings (PARTNAME=USR hit USR-A and USR-B and
// produced a two-line device name); these tests pin exact matching, the case
// rules of each identity, and that every match is returned so the caller can
// refuse an ambiguous reference instead of guessing.
import { describe, expect, test } from "bun:test";
import { parseDeviceRef, type DeviceRef } from "./ref.ts";
import type { BlockDevice } from "./blockdevs.ts";
import { matchDevices, normaliseRef, refNeedsFsProbe } from "./match.ts";

const USR_A_UUID = "7130c94a-213a-4e5a-8e26-6cce9662f132";
const USR_B_UUID = "e03dd35c-7c2d-4a47-b3fe-27f15780a57c";
const FS_UUID = "2b9a1c1e-52d1-4cba-9f2e-0c6b1c6b8f5e";

/** A partition as listBlockDevices() reports it; only the identities a test needs. */
function part(name: string, ids: Partial<BlockDevice> = {}): BlockDevice {
  return { name, devPath: `/dev/${name}`, isPartition: true, disk: name.replace(/\d+$/, ""), sizeBytes: 1 << 30, ...ids };
}

function disk(name: string, ids: Partial<BlockDevice> = {}): BlockDevice {
  return { name, devPath: `/dev/${name}`, isPartition: false, sizeBytes: 8 << 30, ...ids };
}

// A Flatcar-like disk: USR-A/USR-B by GPT, ROOT and OEM with filesystems.
// USR-B carries no filesystem (never written), USR-A an ext4 /usr; vda9 is a
// second filesystem sharing a label and vdb a whole-disk filesystem.
const VDA = disk("vda");
const EFI = part("vda1", { partUuid: "0cb1a4a5-f0c4-4e3d-b7a5-7f6a1b0a0a01", partLabel: "EFI-SYSTEM", fs: { type: "vfat", uuid: "4c2b-1a9e", label: "EFI-SYSTEM" } });
const USR_A = part("vda3", { partUuid: USR_A_UUID, partLabel: "USR-A", fs: { type: "ext4", uuid: FS_UUID, label: "USR-A" } });
const USR_B = part("vda4", { partUuid: USR_B_UUID, partLabel: "USR-B", fs: null });
const OEM = part("vda6", { partUuid: "aa000000-0000-4000-8000-000000000006", partLabel: "OEM", fs: { type: "btrfs", uuid: "11111111-2222-4333-8444-555555555555", label: "OEM" } });
const ROOT = part("vda9", { partUuid: "aa000000-0000-4000-8000-000000000009", partLabel: "ROOT", fs: { type: "ext4", uuid: "99999999-8888-4777-8666-555555555555", label: "ROOT" } });
const VDB = disk("vdb", { fs: { type: "ext4", uuid: "abababab-0000-4000-8000-000000000000", label: "DATA" } });
const DEVICES = [VDA, EFI, USR_A, USR_B, OEM, ROOT, VDB];

const ref = (text: string): DeviceRef => parseDeviceRef("verity.usr", text);
const names = (found: BlockDevice[]) => found.map((d) => d.name);

describe("PARTLABEL=", () => {
  test("exact match", () => {
    expect(names(matchDevices(ref("PARTLABEL=USR-A"), DEVICES))).toEqual(["vda3"]);
    expect(names(matchDevices(ref("PARTLABEL=USR-B"), DEVICES))).toEqual(["vda4"]);
  });

  test("USR matches neither USR-A nor USR-B: no substrings, no prefixes", () => {
    expect(matchDevices(ref("PARTLABEL=USR"), DEVICES)).toEqual([]);
    expect(matchDevices(ref("PARTLABEL=SR-A"), DEVICES)).toEqual([]);
    expect(matchDevices(ref("PARTLABEL=USR-A "), DEVICES)).toEqual([]);
  });

  test("partition names are case-sensitive", () => {
    expect(matchDevices(ref("PARTLABEL=usr-a"), DEVICES)).toEqual([]);
  });

  test("a filesystem label is not a partition label", () => {
    const onlyFsLabel = part("vdc1", { fs: { type: "ext4", label: "USRFS" } });
    expect(matchDevices(ref("PARTLABEL=USRFS"), [onlyFsLabel])).toEqual([]);
  });

  test("devices without a partition label are skipped", () => {
    expect(matchDevices(ref("PARTLABEL=USR-A"), [VDA, VDB, part("vdc1")])).toEqual([]);
  });
});

describe("PARTUUID=", () => {
  test("matches in any case on either side", () => {
    const upperOnDevice = part("vdc3", { partUuid: USR_A_UUID.toUpperCase() });
    expect(names(matchDevices(ref(`PARTUUID=${USR_A_UUID.toUpperCase()}`), DEVICES))).toEqual(["vda3"]);
    expect(names(matchDevices(ref(`PARTUUID=${USR_A_UUID}`), [upperOnDevice]))).toEqual(["vdc3"]);
  });

  test("exact: a prefix of the UUID is not enough", () => {
    // A truncated UUID is refused by the parser; a hand-built ref shows the matcher is exact too.
    expect(matchDevices({ kind: "partuuid", value: USR_A_UUID.slice(0, 8) }, DEVICES)).toEqual([]);
  });

  test("MBR PARTUUID", () => {
    const mbr = part("sda2", { partUuid: "1234abcd-02" });
    expect(names(matchDevices(ref("PARTUUID=1234ABCD-02"), [mbr, part("sda1", { partUuid: "1234abcd-01" })]))).toEqual(["sda2"]);
  });

  test("an unknown PARTUUID matches nothing", () => {
    expect(matchDevices(ref("PARTUUID=00000000-0000-4000-8000-000000000000"), DEVICES)).toEqual([]);
  });
});

describe("UUID=", () => {
  test("filesystem UUID, in any case", () => {
    expect(names(matchDevices(ref(`UUID=${FS_UUID.toUpperCase()}`), DEVICES))).toEqual(["vda3"]);
    const upperOnDevice = part("vdc1", { fs: { type: "ext4", uuid: FS_UUID.toUpperCase() } });
    expect(names(matchDevices(ref(`UUID=${FS_UUID}`), [upperOnDevice]))).toEqual(["vdc1"]);
  });

  test("vfat-style short UUIDs", () => {
    expect(names(matchDevices(ref("UUID=4C2B-1A9E"), DEVICES))).toEqual(["vda1"]);
  });

  test("a filesystem on a whole disk matches", () => {
    expect(names(matchDevices(ref("UUID=abababab-0000-4000-8000-000000000000"), DEVICES))).toEqual(["vdb"]);
  });

  test("a partition UUID is not a filesystem UUID", () => {
    expect(matchDevices(ref(`UUID=${USR_B_UUID}`), DEVICES)).toEqual([]);
  });

  test("a verity hash area's UUID does not count: it is not a filesystem", () => {
    const hash = part("vdc1", { fs: { type: "DM_verity_hash", uuid: FS_UUID } });
    expect(matchDevices(ref(`UUID=${FS_UUID}`), [hash])).toEqual([]);
    // Next to the real filesystem only the filesystem is found, so the reference stays unambiguous.
    expect(names(matchDevices(ref(`UUID=${FS_UUID}`), [hash, USR_A]))).toEqual(["vda3"]);
  });

  test("unprobed (undefined) and unrecognised (null) filesystems are skipped", () => {
    expect(matchDevices(ref(`UUID=${FS_UUID}`), [part("vdc1"), part("vdc2", { fs: null })])).toEqual([]);
  });
});

describe("LABEL=", () => {
  test("exact filesystem label", () => {
    expect(names(matchDevices(ref("LABEL=ROOT"), DEVICES))).toEqual(["vda9"]);
    expect(names(matchDevices(ref("LABEL=DATA"), DEVICES))).toEqual(["vdb"]);
  });

  test("no substrings and case-sensitive", () => {
    expect(matchDevices(ref("LABEL=USR"), DEVICES)).toEqual([]);
    expect(matchDevices(ref("LABEL=root"), DEVICES)).toEqual([]);
    expect(matchDevices(ref("LABEL=ROO"), DEVICES)).toEqual([]);
  });

  test("a partition label is not a filesystem label", () => {
    // USR-B has PARTLABEL=USR-B but no filesystem.
    expect(matchDevices(ref("LABEL=USR-B"), DEVICES)).toEqual([]);
  });

  test("a verity hash area has no label, so nothing special is needed", () => {
    expect(matchDevices(ref("LABEL=USR-A"), [part("vdc1", { fs: { type: "DM_verity_hash", uuid: FS_UUID } })])).toEqual([]);
  });
});

describe("paths", () => {
  test("a /dev path matches the device node exactly", () => {
    expect(names(matchDevices(ref("/dev/vda3"), DEVICES))).toEqual(["vda3"]);
    expect(names(matchDevices(ref("/dev/vda"), DEVICES))).toEqual(["vda"]);
  });

  test("no prefix matching: /dev/vda3 is not /dev/vda3p1 and /dev/vd is nothing", () => {
    expect(matchDevices(ref("/dev/vd"), DEVICES)).toEqual([]);
    expect(matchDevices(ref("/dev/vda3"), [part("vda3p1")])).toEqual([]);
  });

  test("a path is matched against devPath, not the kernel name", () => {
    // Device-mapper: kernel name dm-0, node /dev/dm-0; /dev/mapper/usr is a
    // different path and is waited for as a node by the caller.
    const dm = disk("dm-0");
    expect(names(matchDevices(ref("/dev/dm-0"), [dm]))).toEqual(["dm-0"]);
    expect(matchDevices(ref("/dev/mapper/usr"), [dm])).toEqual([]);
  });
});

describe("/dev/disk/by-* paths", () => {
  test("normaliseRef reads each link as the identity it names", () => {
    expect(normaliseRef(ref(`/dev/disk/by-partuuid/${USR_A_UUID.toUpperCase()}`))).toEqual({ kind: "partuuid", value: USR_A_UUID });
    expect(normaliseRef(ref("/dev/disk/by-partlabel/USR-A"))).toEqual({ kind: "partlabel", value: "USR-A" });
    expect(normaliseRef(ref(`/dev/disk/by-uuid/${FS_UUID.toUpperCase()}`))).toEqual({ kind: "uuid", value: FS_UUID });
    expect(normaliseRef(ref("/dev/disk/by-label/ROOT"))).toEqual({ kind: "label", value: "ROOT" });
  });

  test("labels keep their case", () => {
    expect(normaliseRef(ref("/dev/disk/by-label/MixedCase"))).toEqual({ kind: "label", value: "MixedCase" });
    expect(normaliseRef(ref("/dev/disk/by-partlabel/usr-a"))).toEqual({ kind: "partlabel", value: "usr-a" });
  });

  test("udev's \\xHH escapes are undone, as users copy the names from ls /dev/disk/by-label", () => {
    expect(normaliseRef(ref("/dev/disk/by-label/My\\x20Disk"))).toEqual({ kind: "label", value: "My Disk" });
    expect(normaliseRef(ref("/dev/disk/by-partlabel/a\\x2fb"))).toEqual({ kind: "partlabel", value: "a/b" });
    // One pass: an escaped backslash followed by "x20" is the literal text \x20.
    expect(normaliseRef(ref("/dev/disk/by-label/a\\x5cx20"))).toEqual({ kind: "label", value: "a\\x20" });
    const spaced = part("vdc1", { fs: { type: "ext4", label: "My Disk" } });
    expect(names(matchDevices(ref("/dev/disk/by-label/My\\x20Disk"), [spaced]))).toEqual(["vdc1"]);
  });

  test("other paths and non-path refs are returned unchanged", () => {
    for (const text of ["/dev/vda3", "/dev/mapper/usr", "/dev/disk/by-id/virtio-usr", "/dev/disk/by-path/pci-0000:00:04.0-part3"]) {
      expect(normaliseRef(ref(text))).toEqual({ kind: "path", value: text });
    }
    const label = ref("LABEL=My\\x20Disk");
    expect(normaliseRef(label)).toBe(label);
    // LABEL= is taken as written: only udev's link names are escaped.
    expect(label.value).toBe("My\\x20Disk");
  });

  test("the prefix must be complete: /dev/disk/by-labelX/ROOT is a plain path", () => {
    expect(normaliseRef(ref("/dev/disk/by-labelX/ROOT"))).toEqual({ kind: "path", value: "/dev/disk/by-labelX/ROOT" });
  });

  test("matchDevices follows the translation", () => {
    expect(names(matchDevices(ref(`/dev/disk/by-partuuid/${USR_A_UUID}`), DEVICES))).toEqual(["vda3"]);
    expect(names(matchDevices(ref("/dev/disk/by-partlabel/USR-B"), DEVICES))).toEqual(["vda4"]);
    expect(names(matchDevices(ref(`/dev/disk/by-uuid/${FS_UUID}`), DEVICES))).toEqual(["vda3"]);
    expect(names(matchDevices(ref("/dev/disk/by-label/OEM"), DEVICES))).toEqual(["vda6"]);
    // Exact here too.
    expect(matchDevices(ref("/dev/disk/by-partlabel/USR"), DEVICES)).toEqual([]);
  });
});

describe("refNeedsFsProbe", () => {
  test("only filesystem identities need superblocks read", () => {
    expect(refNeedsFsProbe(ref(`UUID=${FS_UUID}`))).toBe(true);
    expect(refNeedsFsProbe(ref("LABEL=ROOT"))).toBe(true);
    expect(refNeedsFsProbe(ref(`PARTUUID=${USR_A_UUID}`))).toBe(false);
    expect(refNeedsFsProbe(ref("PARTLABEL=USR-A"))).toBe(false);
    expect(refNeedsFsProbe(ref("/dev/vda3"))).toBe(false);
  });

  test("by-uuid and by-label links need it, by-partuuid and by-partlabel do not", () => {
    expect(refNeedsFsProbe(ref(`/dev/disk/by-uuid/${FS_UUID}`))).toBe(true);
    expect(refNeedsFsProbe(ref("/dev/disk/by-label/ROOT"))).toBe(true);
    expect(refNeedsFsProbe(ref(`/dev/disk/by-partuuid/${USR_A_UUID}`))).toBe(false);
    expect(refNeedsFsProbe(ref("/dev/disk/by-partlabel/USR-A"))).toBe(false);
  });
});

describe("several matches", () => {
  test("all are returned, in the order listed, for the caller to refuse", () => {
    // Two disks written from the same image: same partition labels, UUIDs and filesystem labels.
    const clone = (d: BlockDevice) => ({ ...d, name: d.name.replace("vda", "vdb"), devPath: d.devPath.replace("vda", "vdb") });
    const devices = [...DEVICES.filter((d) => d !== VDB), clone(USR_A), clone(USR_B)];
    expect(names(matchDevices(ref("PARTLABEL=USR-A"), devices))).toEqual(["vda3", "vdb3"]);
    expect(names(matchDevices(ref(`PARTUUID=${USR_B_UUID}`), devices))).toEqual(["vda4", "vdb4"]);
    expect(names(matchDevices(ref(`UUID=${FS_UUID}`), devices))).toEqual(["vda3", "vdb3"]);
    expect(names(matchDevices(ref("LABEL=USR-A"), devices))).toEqual(["vda3", "vdb3"]);
  });

  test("the same objects come back, not copies", () => {
    expect(matchDevices(ref("PARTLABEL=USR-A"), DEVICES)[0]).toBe(USR_A);
  });

  test("no devices at all: nothing", () => {
    expect(matchDevices(ref("PARTLABEL=USR-A"), [])).toEqual([]);
  });
});
