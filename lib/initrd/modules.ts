// Kernel module selection for the initrd. Pure: it reads the text of
// modules.dep and modules.softdep and answers which module files to ship.

/**
 * Flatcar's minimal-initrd set: whatever finds and opens /usr (storage
 * controllers of clouds and bare metal, dm-verity, loop, the filesystems /usr
 * and the full initrd use) and whatever the emergency console needs (USB
 * keyboards, virtio console). Entries ending in "/" are directories under
 * kernel/, the others module names.
 */
export const DISK_MODULES: readonly string[] = [
  "drivers/ata/",
  "drivers/nvme/host/",
  "drivers/scsi/",
  "drivers/virtio/",
  "drivers/mmc/core/",
  "drivers/mmc/host/",
  "drivers/message/fusion/",
  "drivers/hv/",
  "drivers/usb/host/",
  "drivers/usb/storage/",
  "loop",
  "virtio_blk",
  "xen_blkfront",
  "nvme",
  "dm_mod",
  "dm_verity",
  "sd_mod",
  "sr_mod",
  "virtio_console",
  "hid_generic",
  "usbhid",
  "btrfs",
  "ext4",
  "squashfs",
  "overlay",
  "erofs",
  // The ESP (vfat with its default codepage and iocharset): the kexec reboot reads the kernels
  // and flatcar/first_boot from it, and stage 2 has no modules of its own to mount it.
  "vfat",
  "nls_cp437",
  "nls_ascii",
];

/**
 * NICs for diskless boots (rd.usr.url=): clouds' and common servers', plus
 * the Realtek 8139 (8139too, 8139cp for the C+ chips) and AMD PCnet
 * (pcnet32) that hypervisors still emulate by default (QEMU -device rtl8139
 * and pcnet, VirtualBox's PCnet-FAST III); qemu-tests/nics.test.ts boots
 * over each NIC model QEMU offers.
 */
export const NIC_MODULES: readonly string[] = ["virtio_net", "e1000", "e1000e", "igb", "ixgbe", "vmxnet3", "hv_netvsc", "ena", "8139too", "8139cp", "pcnet32"];

/**
 * The block sources of a diskless verity /usr (verity.usr=nbd:// and nfs://)
 * and of an NFS /usr: the NBD driver, and the NFSv4 client (its dependencies,
 * sunrpc, nfs, lockd and the rest, come with it). lib/netusr/attach.ts loads them.
 */
export const NETWORK_USR_MODULES: readonly string[] = ["nbd", "nfsv4"];

/**
 * Module sets by what the machine boots from. netboot (disks and the NICs
 * of a diskless boot) is the default: it boots every scenario of the test
 * suite. disk leaves the NIC drivers out, for images that never fetch /usr.
 */
export const PROFILES = {
  netboot: [...DISK_MODULES, ...NIC_MODULES, ...NETWORK_USR_MODULES],
  disk: DISK_MODULES,
} as const satisfies Record<string, readonly string[]>;
export type Profile = keyof typeof PROFILES;
export const DEFAULT_PROFILE: Profile = "netboot";
/** The default profile's list. */
export const DEFAULT_MODULES: readonly string[] = PROFILES[DEFAULT_PROFILE];

/**
 * Modules a directory entry above would select but that cannot help stage 1
 * find /usr: each works only with a userspace program this initrd does not
 * carry, or serves storage instead of reaching it. Leaving them out drops
 * their network-adapter and RDMA dependencies too (cxgb4, qed, cnic, ib_core,
 * target_core_mod: several MiB). Named explicitly (--add-modules), a module
 * still ships; a kept module that depends on one of these still pulls it in.
 */
export const DIRECTORY_OMISSIONS: readonly string[] = [
  // iSCSI initiators, software and offloaded: sessions are logged in by iscsid or iscsistart.
  "iscsi_tcp", "libiscsi_tcp", "bnx2i", "be2iscsi", "cxgb3i", "cxgb4i", "libcxgbi", "qedi",
  // FCoE whose interfaces fcoemon/fipvlan set up (fnic, qedf and csiostor do FIP themselves and stay).
  "fcoe", "bnx2fc",
  // NVMe over TCP and RDMA: controllers appear only after `nvme connect`.
  "nvme_tcp", "nvme_rdma",
  // SCSI target mode (qla2xxx exporting LUNs), not an initiator.
  "tcm_qla2xxx",
  // The kernel's SCSI test driver, and tape drives and media changers (no /usr lives there).
  "scsi_debug", "st", "ch",
  // SCSI cards on PCMCIA.
  "aha152x_cs", "sym53c500_cs", "qlogic_cs",
];

export interface ModuleIndex {
  /** module name (underscores) -> path relative to /lib/modules/<kver>/ */
  paths: Map<string, string>;
  /** module name -> names of modules it depends on */
  deps: Map<string, string[]>;
  /** module name -> soft dependencies (pre: and post:) */
  softdeps: Map<string, string[]>;
  /** exact (glob-free) alias -> module names, from modules.alias */
  aliases: Map<string, string[]>;
}

/** "kernel/fs/ext4/ext4.ko.xz" -> "ext4"; kmod treats "-" and "_" alike. */
export function moduleName(path: string): string {
  const base = path.slice(path.lastIndexOf("/") + 1);
  return base.replace(/\.ko(\.(xz|zst|gz))?$/, "").replace(/-/g, "_");
}

export function parseModulesDep(text: string, softdepText = "", aliasText = ""): ModuleIndex {
  const paths = new Map<string, string>();
  const deps = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const path = line.slice(0, colon).trim();
    const name = moduleName(path);
    paths.set(name, path);
    deps.set(name, line.slice(colon + 1).trim().split(/\s+/).filter(Boolean).map(moduleName));
  }
  const softdeps = new Map<string, string[]>();
  for (const line of softdepText.split("\n")) {
    const words = line.trim().split(/\s+/);
    if (words[0] !== "softdep" || !words[1]) continue;
    const name = words[1].replace(/-/g, "_");
    const list = softdeps.get(name) ?? [];
    for (const w of words.slice(2)) if (w !== "pre:" && w !== "post:") list.push(w);
    softdeps.set(name, list);
  }
  // Soft dependencies often name an alias ("crypto-crc32c"), which several
  // modules provide (crc32c_generic, crc32c_intel): all of them ship, and
  // the kernel picks at load time. Glob aliases are hardware matches, not
  // names anyone depends on.
  const aliases = new Map<string, string[]>();
  for (const line of aliasText.split("\n")) {
    const words = line.trim().split(/\s+/);
    if (words[0] !== "alias" || !words[1] || !words[2] || /[*?[]/.test(words[1])) continue;
    const list = aliases.get(words[1]) ?? [];
    list.push(words[2].replace(/-/g, "_"));
    aliases.set(words[1], list);
  }
  return { paths, deps, softdeps, aliases };
}

export class ModuleSelectionError extends Error {}

/**
 * Expands the requested entries (directories, names, or paths of .ko files
 * inside the tree) to module names, except the names in
 * `omitFromDirectories` under a directory entry, then adds every hard and soft
 * dependency. Names that are built into the kernel are fine and dropped.
 * Soft dependencies that do not exist are skipped (they are optional by
 * nature); a requested module that exists nowhere is an error.
 */
export function selectModules(index: ModuleIndex, requested: readonly string[], builtin: ReadonlySet<string>, omitFromDirectories: readonly string[] = []): string[] {
  const omit = new Set(omitFromDirectories.map((n) => n.replace(/-/g, "_")));
  const wanted = new Set<string>();
  const missing: string[] = [];
  for (const entry of requested) {
    if (entry.endsWith("/")) {
      const prefix = "kernel/" + entry;
      let any = false;
      for (const [name, path] of index.paths) {
        if (path.startsWith(prefix) && !omit.has(name)) {
          wanted.add(name);
          any = true;
        }
      }
      // A directory that this kernel does not have (no such hardware
      // support configured) is not an error for the default list.
      if (!any) continue;
    } else {
      const name = moduleName(entry);
      if (index.paths.has(name)) wanted.add(name);
      else if (index.aliases.has(entry)) for (const m of index.aliases.get(entry)!) wanted.add(m);
      else if (!builtin.has(name)) missing.push(entry);
    }
  }
  if (missing.length > 0) {
    throw new ModuleSelectionError(`kernel module(s) not found in modules.dep and not built in: ${missing.join(", ")}`);
  }
  const out = new Set<string>();
  const stack = [...wanted];
  while (stack.length > 0) {
    const name = stack.pop()!;
    if (out.has(name) || !index.paths.has(name)) continue;
    out.add(name);
    for (const d of index.deps.get(name) ?? []) stack.push(d);
    for (const d of index.softdeps.get(name) ?? []) {
      // kmod matches the dependency as written (an alias) or as a module name.
      stack.push(...(index.aliases.get(d) ?? []), d.replace(/-/g, "_"));
    }
  }
  return [...out].sort();
}

/**
 * The profile's entries less those the user omits (--omit-modules): a module
 * named in the profile, or one of its directory entries written as listed
 * ("drivers/usb/host/"). A kernel configured without some of the profile's
 * hardware (a kernel that embeds its initrd, say) omits those names instead
 * of failing the build; a module named in --add-modules is not filtered here.
 */
export function omitFromProfile(entries: readonly string[], omit: readonly string[]): string[] {
  const key = (e: string): string => (e.endsWith("/") ? e : moduleName(e));
  const omitted = new Set(omit.map(key));
  return entries.filter((e) => !omitted.has(key(e)));
}

/** Names of built-in modules from modules.builtin ("kernel/fs/ext4/ext4.ko" lines). */
export function parseBuiltin(text: string): Set<string> {
  return new Set(text.split("\n").filter(Boolean).map(moduleName));
}

/** The "firmware=" entries of a module's .modinfo section contents. */
export function modinfoValues(modinfo: Uint8Array, key: string): string[] {
  const out: string[] = [];
  for (const field of new TextDecoder().decode(modinfo).split("\0")) {
    if (field.startsWith(key + "=")) out.push(field.slice(key.length + 1));
  }
  return out;
}
