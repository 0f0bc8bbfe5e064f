import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { newestKernel } from "./initrd.ts";
import { DEFAULT_MODULES, DEFAULT_PROFILE, DIRECTORY_OMISSIONS, moduleName, modinfoValues, NIC_MODULES, NETWORK_USR_MODULES, parseBuiltin, omitFromProfile, parseModulesDep, PROFILES, selectModules, ModuleSelectionError } from "./modules.ts";

const DEP = `kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko
kernel/drivers/md/dm-bufio.ko:
kernel/drivers/md/dm-mod.ko:
kernel/drivers/scsi/sd_mod.ko.xz: kernel/drivers/scsi/scsi_common.ko.xz
kernel/drivers/scsi/scsi_common.ko.xz:
kernel/drivers/scsi/virtio_scsi.ko.zst:
kernel/drivers/net/e1000.ko:
`;
const SOFTDEP = `softdep ext4 pre: crypto-crc32c
softdep dm_verity post: missing-optional
`;
const ALIAS = `alias crypto-crc32c crc32c_intel
alias crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
`;

describe("module selection", () => {
  const index = parseModulesDep(DEP, SOFTDEP, ALIAS);

  test("names normalise dashes and compression suffixes", () => {
    expect(moduleName("kernel/drivers/md/dm-verity.ko.xz")).toBe("dm_verity");
    expect(moduleName("kernel/drivers/scsi/virtio_scsi.ko.zst")).toBe("virtio_scsi");
  });

  test("hard dependencies and soft dependencies through aliases are closed over", () => {
    const sel = selectModules(index, ["ext4"], new Set());
    expect(sel).toEqual(["crc16", "crc32c_generic", "crc32c_intel", "ext4", "jbd2", "mbcache"]);
  });

  test("directories select every module below them; optional soft deps that do not exist are skipped", () => {
    expect(selectModules(index, ["drivers/scsi/", "dm-verity"], new Set())).toEqual(["dm_bufio", "dm_mod", "dm_verity", "scsi_common", "sd_mod", "virtio_scsi"]);
  });

  test("omissions apply to directory entries only; a named module or a dependency still ships", () => {
    expect(selectModules(index, ["drivers/scsi/"], new Set(), ["virtio-scsi", "scsi_common"])).toEqual(["scsi_common", "sd_mod"]);
    expect(selectModules(index, ["drivers/scsi/", "virtio_scsi"], new Set(), ["virtio_scsi"])).toEqual(["scsi_common", "sd_mod", "virtio_scsi"]);
  });

  test("profiles: disk is netboot without the NIC drivers; every omission is a plain module name", () => {
    expect(PROFILES.netboot.filter((m) => !PROFILES.disk.includes(m))).toEqual([...NIC_MODULES, ...NETWORK_USR_MODULES]);
    expect(DEFAULT_MODULES).toEqual(PROFILES[DEFAULT_PROFILE]);
    for (const m of DIRECTORY_OMISSIONS) expect(m).toMatch(/^[a-z0-9_]+$/);
  });

  test("--omit-modules drops the profile's own entries it names, by module name or by the directory entry as listed", () => {
    const profile = ["drivers/usb/host/", "sd_mod", "dm-verity", "ext4"];
    expect(omitFromProfile(profile, ["sd-mod", "dm_verity.ko", "drivers/usb/host/"])).toEqual(["ext4"]);
    // A directory is matched as written; a module name never matches a directory entry.
    expect(omitFromProfile(profile, ["drivers/usb/", "host"])).toEqual(profile);
    expect(omitFromProfile(profile, [])).toEqual(profile);
  });

  test("an alias can be requested by name", () => {
    expect(selectModules(index, ["crc32c"], new Set())).toEqual(["crc32c_intel"]);
  });

  test("built-in modules are not an error, unknown ones are", () => {
    expect(selectModules(index, ["loop"], parseBuiltin("kernel/drivers/block/loop.ko\n"))).toEqual([]);
    expect(() => selectModules(index, ["nosuchmod", "ext4"], new Set())).toThrow(ModuleSelectionError);
    expect(() => selectModules(index, ["nosuchmod"], new Set())).toThrow("kernel module(s) not found in modules.dep and not built in: nosuchmod");
  });

  test("a directory the kernel lacks is skipped, not an error", () => {
    expect(selectModules(index, ["drivers/nothing/"], new Set())).toEqual([]);
  });

  test("modinfo values", () => {
    const info = new TextEncoder().encode("license=GPL\0firmware=a.bin\0firmware=b/c.fw\0alias=x\0");
    expect(modinfoValues(info, "firmware")).toEqual(["a.bin", "b/c.fw"]);
  });
});

// The drivers behind the controllers of qemu-tests/storage.test.ts, on the
// host's Debian kernel (the one the scenarios boot): the disk profile must
// ship each of them, whatever directory entry or omission selects them.
describe("the storage-controller matrix's drivers", () => {
  const MATRIX_DRIVERS = [
    "virtio_blk", "virtio_scsi", "nvme", "ahci", "ata_piix", "xhci_pci", "usb_storage", "uas",
    "sdhci_pci", "mmc_block", "mptsas", "scsi_transport_sas", "megaraid_sas", "vmw_pvscsi", "sym53c8xx", "sd_mod",
  ];

  test("are in the disk profile (and so in netboot), none of them omitted", () => {
    const root = "/lib/modules";
    const dir = path.join(root, newestKernel(root));
    const read = (f: string) => fs.readFileSync(path.join(dir, f), "utf8");
    const index = parseModulesDep(read("modules.dep"), read("modules.softdep"), read("modules.alias"));
    const selected = new Set(selectModules(index, PROFILES.disk, parseBuiltin(read("modules.builtin")), DIRECTORY_OMISSIONS));
    expect(MATRIX_DRIVERS.filter((m) => !selected.has(m))).toEqual([]);
    expect(MATRIX_DRIVERS.filter((m) => DIRECTORY_OMISSIONS.includes(m))).toEqual([]);
  });
});
