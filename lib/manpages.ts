// The man pages, made from the tables the code parses with: bunboot(8) from
// the commands, the builder's options (lib/initrd/options.ts) and the exit
// statuses; bunboot.cmdline(7) from the kernel parameters (lib/cmdline.ts
// PARAMS). Pure: text out. scripts/man.ts writes them to man/, and a test
// keeps the committed pages equal to what this renders, so they cannot drift.
import { paramDocs, PARAMS } from "./cmdline.ts";
import { BUILD_OPTIONS } from "./initrd/options.ts";

/** One example per parameter, as it would appear on a kernel command line. A missing one does not compile. */
export const PARAM_EXAMPLES: Record<keyof typeof PARAMS, string> = {
  "verity.usr": "verity.usr=PARTUUID=7130c94a-213a-4e5a-8e26-6cce9662f132, or verity.usr=nbd://10.0.2.2/usr",
  "verity.usrhash": "verity.usrhash=3f53f2eb92a3ff2655a4a5a5394a7247fb5a715b156acc0efd23e6fa119b2052",
  "mount.usr": "mount.usr=/dev/mapper/usr",
  "mount.usrfstype": "mount.usrfstype=btrfs",
  "mount.usrflags": "mount.usrflags=ro",
  "rd.earlytimeout": "rd.earlytimeout=60",
  "rd.earlyshell": "rd.earlyshell",
  "rd.break": "rd.break=pre-mount",
  "rd.earlytrace": "rd.earlytrace",
  "rd.debug": "rd.debug",
  "rd.emergency": "rd.emergency=reboot",
  "rd.emergency.timeout": "rd.emergency.timeout=0",
  "rd.shell": "rd.shell=0",
  "rd.driver.pre": "rd.driver.pre=nvme,virtio_blk",
  "rd.driver.blacklist": "rd.driver.blacklist=nouveau",
  "init": "init=/usr/lib/systemd/systemd",
  "rd.usr.url": "rd.usr.url=https://boot.example/usr.squashfs",
  "rd.usr.hash": "rd.usr.hash=sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
  "rd.usr.insecure": "rd.usr.insecure=1",
  "ip": "ip=10.0.2.20::10.0.2.2:255.255.255.0:node:eth0:none",
  "BOOTIF": "BOOTIF=01-52-54-00-12-34-56",
  "nameserver": "nameserver=10.0.2.3",
  "proxy": "proxy=http://proxy.example:3128",
  "rd.neednet": "rd.neednet=1",
  "console": "console=ttyS0,115200n8",
};

/** Text for roff: backslashes and leading dots or quotes cannot act as requests. */
function esc(text: string): string {
  return text.replaceAll("\\", "\\e").replace(/^[.']/gm, "\\&$&").replaceAll("-", "\\-");
}

/** Markdown's `code` as bold, the rest escaped. */
function md(text: string): string {
  return text
    .split(/(`[^`]*`)/)
    .map((part) => (part.startsWith("`") && part.endsWith("`") && part.length > 1 ? `\\fB${esc(part.slice(1, -1))}\\fR` : esc(part)))
    .join("");
}

function header(name: string, section: number, title: string): string[] {
  // Left-aligned, no hyphenation: URLs and hashes are long words that a
  // justified line cannot hold.
  return [`.TH ${name.toUpperCase()} ${section} "" "bunboot" "${title}"`, ".ad l", ".nh"];
}

export function renderBunbootMan(commands: ReadonlyArray<readonly [string, string]>, exitCodes: ReadonlyArray<readonly [number, string]>): string {
  const L = header("bunboot", 8, "System Administration");
  L.push(".SH NAME", "bunboot \\- build a minimal initrd for image-based Linux, and the host commands around it");
  L.push(".SH SYNOPSIS", ".B bunboot", ".I command", "[\\fIoptions\\fR]");
  L.push(
    ".SH DESCRIPTION",
    esc("bunboot is the first-stage init of a minimal initrd (it runs as PID 1, opens dm-verity on the A/B /usr partition, or takes /usr from the network, and switches root into the full initrd stored on /usr), and this command builds that initrd and runs on hosts around it. Each command prints its options with --help. The kernel command line the init reads is in bunboot.cmdline(7)."),
  );
  L.push(".SH COMMANDS");
  for (const [name, summary] of commands) L.push(".TP", `.B ${esc(name)}`, esc(summary));
  L.push(".SH BUILD OPTIONS", esc("bunboot build takes these options on the command line, and the same names without the dashes as keys of a TOML file (--config, or /etc/bunboot/bunboot.toml when it exists). Flags override the file; an unknown key or a value of the wrong type is an error naming the key and the file."));
  for (const o of BUILD_OPTIONS) {
    L.push(".TP", `.BR \\-\\-${esc(o.name)}${o.arg ? ` " ${esc(o.arg)}"` : ""}`, esc(o.help) + (o.flagOnly ? esc(" (command line only)") : ""));
  }
  L.push(
    ".SH CONFIGURATION FILE",
    esc("An example of /etc/bunboot/bunboot.toml:"),
    ".PP",
    ".nf",
    ".RS",
    esc('kernel-version = "6.1.0-57-amd64"'),
    esc('profile = "netboot"'),
    esc('add-modules = ["nvme"]'),
    esc('compress = "zstd"'),
    esc('usr-hashes = "/etc/bunboot/usr.hashes"'),
    esc("[[extra-files]]"),
    esc('source = "/etc/bunboot/motd"'),
    esc('dest = "/etc/motd"'),
    ".RE",
    ".fi",
  );
  L.push(".SH EXIT STATUS");
  for (const [n, what] of exitCodes) L.push(".TP", `.B ${n}`, esc(what));
  L.push(".SH FILES", ".TP", ".I /etc/bunboot/bunboot.toml", esc("options of bunboot build, read when it exists."));
  L.push(".SH SEE ALSO", ".BR bunboot.cmdline (7),", ".BR dracut (8),", ".BR kexec (8)");
  return L.join("\n") + "\n";
}

export function renderCmdlineMan(): string {
  const L = header("bunboot.cmdline", 7, "Miscellaneous");
  L.push(".SH NAME", "bunboot.cmdline \\- kernel command-line parameters of the bunboot first-stage init");
  L.push(
    ".SH DESCRIPTION",
    esc("The init reads /proc/cmdline, split as the kernel splits it. Keys match exactly; unknown keys belong to the kernel or to stage 2 and are ignored. Every invalid value is reported by name, all at once, before anything is touched. A bare flag is on; =0, no, off or false turn it off. For parameters given more than once, the last wins, except for lists."),
  );
  L.push(".SH PARAMETERS");
  const docs = paramDocs();
  Object.keys(PARAMS).forEach((name, i) => {
    const doc = docs[i]!;
    L.push(".TP", md(doc.names), md(doc.meaning), ".br", `Default: ${md(doc.default)}.`, ".br", `Example: \\fB${esc(PARAM_EXAMPLES[name as keyof typeof PARAMS])}\\fR`);
  });
  L.push(".SH SEE ALSO", ".BR bunboot (8),", ".BR bootparam (7),", ".BR dracut.cmdline (7)");
  return L.join("\n") + "\n";
}
