// `bunboot kexec`: reboot into the /usr slot GRUB would pick, without going through firmware.
import yargsParser from "yargs-parser";
import { kexec } from "../lib/kexec/load.ts";

export const summary = "reboot via kexec into the A/B /usr slot Flatcar's GRUB would choose";

const HELP = `usage: bunboot kexec [--dry-run] [--initrd FILE] [--no-fallback] [--load-only]
                     [--disk DEV] [--esp DIR] [--oem DIR]

Chooses the /usr slot from the GPT attributes as Flatcar's GRUB does (priority, tries, successful),
loads flatcar/vmlinuz-a|b from the ESP with GRUB's kernel command line (first boot, OEM oem_id and
linux_append, the verity hash from the kernel image), counts down the slot's tries in both GPT
copies and reboots into it. If kexec is unavailable (ENOSYS, EPERM, EBUSY, ENOEXEC, EKEYREJECTED)
it says why and reboots normally.

  --dry-run      print the plan (slot, kernel, command line, GPT change); write and load nothing
  --initrd FILE  load FILE as the initramfs (default: none, the kernel embeds it)
  --no-fallback  exit with status 3 instead of a normal reboot when kexec is unavailable
  --load-only    load and update the GPT but do not reboot (then: systemctl kexec)
  --disk DEV     the disk with the GPT (default: the disk of the booted /usr from /proc/cmdline);
                 an image file works with --esp and --oem
  --esp DIR      the ESP is mounted at DIR (default: found in the GPT and mounted read-only)
  --oem DIR      the OEM partition is mounted at DIR (default: partition labelled OEM, if any)`;

const FLAGS = ["dry-run", "initrd", "fallback", "load-only", "disk", "esp", "oem", "help", "h"];

export async function run(argv: string[]): Promise<number> {
  const a = yargsParser(argv, {
    boolean: ["dry-run", "fallback", "load-only", "help"],
    string: ["initrd", "disk", "esp", "oem"],
    alias: { help: "h" },
    default: { fallback: true },
    configuration: { "camel-case-expansion": false, "boolean-negation": true },
  });
  if (a.help) {
    console.log(HELP);
    return 0;
  }
  const unknown = Object.keys(a).filter((k) => k !== "_" && !FLAGS.includes(k));
  if (unknown.length > 0 || a._.length > 0) {
    console.error(`bunboot kexec: unknown ${unknown.length > 0 ? `option --${unknown[0]}` : `argument "${a._[0]}"`}\n${HELP}`);
    return 2;
  }
  for (const k of ["initrd", "disk", "esp", "oem"] as const) {
    const v = a[k] as unknown;
    if (v === undefined) continue;
    if (typeof v !== "string" || v === "") {
      console.error(`bunboot kexec: --${k} needs a path (given ${Array.isArray(v) ? "several times" : "without a value"})`);
      return 2;
    }
  }
  return kexec({
    dryRun: a["dry-run"] === true,
    fallback: a.fallback !== false,
    loadOnly: a["load-only"] === true,
    initrd: a.initrd as string | undefined,
    disk: a.disk as string | undefined,
    espDir: a.esp as string | undefined,
    oemDir: a.oem as string | undefined,
  });
}
