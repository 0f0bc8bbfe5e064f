// The pure parts of the kexec plan: kernel path, verity hash in the kernel image, OEM grub.cfg
// `set` lines, and the command line in GRUB's order.
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import {
  assembleCmdline,
  kernelFormatProblem,
  kernelImageFormat,
  verityHashReadLength,
  CMDLINE_MAX_WITH_NUL,
  defaultConsole,
  KexecPlanError,
  kernelPathForSlot,
  parseGrubCfg,
  USR_A_PARTUUID,
  verityHashFromKernel,
  type CmdlineInputs,
} from "./plan.ts";

const USR_B = "e03dd35c-7c2d-4a47-b3fe-27f15780a57c";
const HASH = "0123456789abcdef".repeat(4);

function kernel(at: number, text: string, size = 4096): Uint8Array {
  const k = new Uint8Array(size);
  k.set([0x4d, 0x5a]); // "MZ"
  k.set(new TextEncoder().encode(text), at);
  return k;
}

describe("kernel and verity hash", () => {
  test("USR-A boots vmlinuz-a, anything else vmlinuz-b", () => {
    expect(kernelPathForSlot(USR_A_PARTUUID)).toBe("flatcar/vmlinuz-a");
    expect(kernelPathForSlot(USR_A_PARTUUID.toUpperCase())).toBe("flatcar/vmlinuz-a");
    expect(kernelPathForSlot(USR_B)).toBe("flatcar/vmlinuz-b");
    expect(kernelPathForSlot("11111111-2222-3333-4444-555555555555")).toBe("flatcar/vmlinuz-b");
  });
  test("offset 64 on amd64, 512 on arm64", () => {
    expect(verityHashFromKernel(kernel(64, HASH), "x64")).toBe(HASH);
    expect(verityHashFromKernel(kernel(64, HASH), "arm64")).toBeNull();
    expect(verityHashFromKernel(kernel(512, HASH), "arm64")).toBe(HASH);
    expect(verityHashFromKernel(kernel(512, HASH), "x64")).toBeNull();
  });
  test("used only if all 64 bytes are hex digits", () => {
    expect(verityHashFromKernel(kernel(64, HASH.slice(0, 63) + "g"), "x64")).toBeNull();
    expect(verityHashFromKernel(kernel(64, HASH.slice(0, 63)), "x64")).toBeNull(); // 64th byte is NUL
    expect(verityHashFromKernel(kernel(64, "PE\0\0"), "x64")).toBeNull(); // a kernel without a hash
    expect(verityHashFromKernel(kernel(64, HASH.toUpperCase()), "x64")).toBe(HASH.toUpperCase()); // GRUB's isxdigit
    expect(verityHashFromKernel(kernel(64, HASH.slice(0, 36), 100), "x64")).toBeNull(); // file too short
  });
  test("unknown architecture is an error naming it", () => {
    expect(() => verityHashFromKernel(kernel(64, HASH), "riscv64")).toThrow(/riscv64/);
  });
});

describe("OEM grub.cfg set lines", () => {
  test("Flatcar's OEM files", () => {
    const r = parseGrubCfg('# Flatcar GRUB settings\n\nset oem_id="proxmoxve"\nset linux_append="flatcar.autologin"\n');
    expect(r.vars).toEqual({ oem_id: "proxmoxve", linux_append: "flatcar.autologin" });
    expect(r.warnings).toEqual([]);
  });
  test("quoting and variable expansion as GRUB does it", () => {
    const r = parseGrubCfg(
      [
        "set linux_append=\"$linux_append a=1\"",
        "set linux_append=\"${linux_append} b='x y'\" # trailing comment",
        "set oem_id='it''s' ",
        "set linux_console=console=ttyS1,115200n8",
        "set x=a\\ b",
        'set y="q\\"uote \\$HOME"',
        "set z=$undefined-tail",
        "  set indented=yes ; set second=2",
        "set empty",
        "set dollar=$",
      ].join("\n"),
      { linux_append: "flatcar.autologin" },
    );
    expect(r.vars.linux_append).toBe("flatcar.autologin a=1 b='x y'");
    expect(r.vars.oem_id).toBe("its");
    expect(r.vars.linux_console).toBe("console=ttyS1,115200n8");
    expect(r.vars.x).toBe("a b");
    expect(r.vars.y).toBe('q"uote $HOME');
    expect(r.vars.z).toBe("-tail");
    expect(r.vars.indented).toBe("yes");
    expect(r.vars.second).toBe("2");
    expect(r.vars.empty).toBe("");
    expect(r.vars.dollar).toBe("$");
    expect(r.warnings).toEqual([]);
  });
  test("set inside conditional blocks is reported, not evaluated (Azure's OEM file)", () => {
    const azure = `# Flatcar GRUB settings

set oem_id="azure"
set linux_append="flatcar.autologin"

# Azure only has a serial console.
serial --unit=0 --speed=115200 --word=8 --parity=no
terminal_input serial
terminal_output serial

if [ "$grub_cpu" = arm64 ]; then
  set linux_console="console=tty1 console=ttyAMA0,115200n8 earlycon=pl011,0xeffec000"
else
  set linux_console="console=tty1 console=ttyS0,115200n8 earlyprintk=ttyS0,115200"
fi
set after=1
`;
    const r = parseGrubCfg(azure, {}, "/oem/grub.cfg");
    expect(r.vars).toEqual({ oem_id: "azure", linux_append: "flatcar.autologin", after: "1" });
    expect(r.warnings.length).toBe(2);
    expect(r.warnings[0]).toMatch(/^\/oem\/grub\.cfg line 12: "set linux_console=console=tty1 .*" is inside a conditional/);
    expect(r.warnings[1]).toMatch(/line 14/);
  });
  test("one-line if and function blocks", () => {
    const r = parseGrubCfg('if [ -n "$x" ]; then set a=1; fi\nfunction f {\n  set b=2\n}\nset c=3\n');
    expect(r.vars).toEqual({ c: "3" });
    expect(r.warnings.length).toBe(2);
  });
  test("broken lines are reported with their number and skipped", () => {
    const r = parseGrubCfg('set oem_id="qemu\nset linux_append=\'x\nset 9bad=1\nset ok=1\nif true; then\n');
    expect(r.vars).toEqual({ ok: "1" });
    expect(r.warnings).toEqual([
      "grub.cfg line 1: unterminated double quote; line ignored",
      "grub.cfg line 2: unterminated single quote; line ignored",
      'grub.cfg line 3: "set 9bad=1" does not name a variable; ignored',
      "grub.cfg: a block is not closed at the end of the file",
    ]);
  });
});

describe("command line", () => {
  const base: CmdlineInputs = { usrPartUuid: USR_B, oem: {}, firstBoot: false, verityHash: HASH, platform: "pc", arch: "x64" };

  test("GRUB's order with everything present", () => {
    const c = assembleCmdline({
      ...base,
      firstBoot: true,
      oem: { oem_id: "ec2", linux_append: "modprobe.blacklist=xen_fbfront net.ifnames=0", linux_console: "console=ttyS0,115200n8" },
    });
    expect(c).toBe(
      `mount.usr=/dev/mapper/usr verity.usr=PARTUUID=${USR_B} rootflags=rw mount.usrflags=ro consoleblank=0 root=LABEL=ROOT console=ttyS0,115200n8 flatcar.first_boot=detected flatcar.oem.id=ec2 modprobe.blacklist=xen_fbfront net.ifnames=0 verity.usrhash=${HASH}`,
    );
  });
  test("defaults: platform console, no first boot, no OEM, no hash; blanks collapse", () => {
    expect(assembleCmdline({ ...base, verityHash: null, oem: { linux_append: "  a   b " } })).toBe(
      `mount.usr=/dev/mapper/usr verity.usr=PARTUUID=${USR_B} rootflags=rw mount.usrflags=ro consoleblank=0 root=LABEL=ROOT console=ttyS0,115200n8 console=tty0 a b`,
    );
    expect(defaultConsole("efi", "x64")).toBe("console=ttyS0,115200n8 console=tty0");
    expect(defaultConsole("efi", "arm64")).toBe("console=ttyAMA0,115200n8");
    expect(assembleCmdline({ ...base, platform: "efi", arch: "arm64" })).toContain("console=ttyAMA0,115200n8 acpi=force verity.usrhash=");
  });
  test("the OEM can replace linux_root", () => {
    expect(assembleCmdline({ ...base, oem: { linux_root: "root=PARTLABEL=ROOT" } })).toContain("consoleblank=0 root=PARTLABEL=ROOT console=");
  });
  test("x86 length limit: 2017 bytes with the NUL", () => {
    const fixed = assembleCmdline({ ...base, oem: { linux_append: "X" } }).length - 1;
    const fits = "a".repeat(CMDLINE_MAX_WITH_NUL - 1 - fixed);
    expect(assembleCmdline({ ...base, oem: { linux_append: fits } }).length).toBe(CMDLINE_MAX_WITH_NUL - 1);
    expect(() => assembleCmdline({ ...base, oem: { linux_append: fits + "a" } })).toThrow(KexecPlanError);
    expect(() => assembleCmdline({ ...base, oem: { linux_append: fits + "a" } })).toThrow(/2018 bytes with its NUL, over the limit of 2017 .*linux_append/);
  });
});

// The arm64 path against Debian's real arm64 kernel, from the sysroot that
// scripts/arm64-sysroot.sh unpacks (scripts/test.sh runs it, so npm test has it).
const SYSROOT_BOOT = path.resolve(import.meta.dir, "../../.cache/sysroot-arm64/boot");
const arm64Vmlinuz = fs.existsSync(SYSROOT_BOOT) ? fs.readdirSync(SYSROOT_BOOT).filter((f) => f.startsWith("vmlinuz-")).sort().at(-1) : undefined;
if (!arm64Vmlinuz) console.warn(`plan.test.ts: no vmlinuz-* in ${SYSROOT_BOOT} (bash scripts/arm64-sysroot.sh unpacks Debian's arm64 kernel there): skipping the tests against a real arm64 kernel`);

/** Debian's arm64 vmlinuz as the raw Image kexec needs: gunzipped when the package ships it compressed. */
function arm64Image(): Uint8Array {
  const file = new Uint8Array(fs.readFileSync(path.join(SYSROOT_BOOT, arm64Vmlinuz!)));
  return file[0] === 0x1f && file[1] === 0x8b ? new Uint8Array(gunzipSync(file)) : file;
}

describe.skipIf(!arm64Vmlinuz)("arm64: Debian's arm64 kernel image", () => {
  const image = arm64Vmlinuz ? arm64Image() : new Uint8Array();
  const text = (from: number, to: number) => String.fromCharCode(...image.subarray(from, to));

  test("is a raw Image (ARM\\x64 at 0x38, behind the EFI stub's MZ and PE headers), which arm64 kexec loads and x64's does not", () => {
    const head = image.subarray(0, verityHashReadLength("arm64"));
    expect(text(0x38, 0x3c)).toBe("ARM\x64");
    expect(kernelImageFormat(head)).toBe("arm64-image");
    expect(kernelFormatProblem(head, "arm64")).toBeNull();
    expect(kernelFormatProblem(head, "x64")).toBe("the kernel image is an arm64 Image, but this x64 machine's kexec loads only an x86 bzImage");
  });

  test("compressed, it is refused with what to do", () => {
    const gz = new Uint8Array(gzipSync(image.subarray(0, 1 << 20)));
    expect(kernelImageFormat(gz)).toBe("gzip");
    expect(kernelFormatProblem(gz, "arm64")).toBe("the kernel image is gzip-compressed, but this arm64 machine's kexec loads only a raw arm64 Image: decompress it to the raw Image first");
    const zboot = new Uint8Array(64);
    zboot.set(new TextEncoder().encode("MZ\0\0zimg"));
    expect(kernelFormatProblem(zboot, "arm64")).toContain("an EFI zboot (compressed) image");
  });

  test("carries no verity hash of its own: the 64 bytes at 512 are code padding, not hex", () => {
    expect(verityHashFromKernel(image.subarray(0, verityHashReadLength("arm64")), "arm64")).toBeNull();
  });

  test("the hash Flatcar's build writes at 512 is found there, and the image stays an Image; at 64 (x64's offset) it would overwrite the PE header", () => {
    // Offset 64 of an arm64 Image is the PE signature the EFI stub needs: x64's offset cannot be used.
    expect(text(64, 68)).toBe("PE\0\0");
    const withHash = image.slice(0, 1 << 16);
    withHash.set(new TextEncoder().encode(HASH), 512);
    const head = withHash.subarray(0, verityHashReadLength("arm64"));
    expect(verityHashFromKernel(head, "arm64")).toBe(HASH);
    expect(verityHashFromKernel(head, "x64")).toBeNull();
    expect(kernelImageFormat(head)).toBe("arm64-image");
    expect(String.fromCharCode(...withHash.subarray(64, 68))).toBe("PE\0\0");
    // And the command line an arm64 EFI machine gets from it: ttyAMA0, acpi=force, the hash last.
    const cmdline = assembleCmdline({ usrPartUuid: USR_A_PARTUUID, oem: {}, firstBoot: false, verityHash: verityHashFromKernel(head, "arm64"), platform: "efi", arch: "arm64" });
    expect(cmdline).toBe(
      `mount.usr=/dev/mapper/usr verity.usr=PARTUUID=${USR_A_PARTUUID} rootflags=rw mount.usrflags=ro consoleblank=0 root=LABEL=ROOT console=ttyAMA0,115200n8 acpi=force verity.usrhash=${HASH}`,
    );
  });
});

describe("kernel image formats", () => {
  test("x86 bzImage by HdrS at 0x202; unknown bytes are named", () => {
    const bz = new Uint8Array(0x300);
    bz.set(new TextEncoder().encode("HdrS"), 0x202);
    expect(kernelImageFormat(bz)).toBe("x86-bzimage");
    expect(kernelFormatProblem(bz, "x64")).toBeNull();
    expect(kernelFormatProblem(bz, "arm64")).toBe("the kernel image is an x86 bzImage, but this arm64 machine's kexec loads only a raw arm64 Image");
    expect(kernelFormatProblem(new Uint8Array(0x300), "x64")).toContain("not a kernel image format this tool knows");
    expect(kernelFormatProblem(bz, "riscv64")).toBe("no kexec kernel format known for architecture riscv64");
    // The read covers the format magic on both architectures.
    expect(verityHashReadLength("x64")).toBeGreaterThanOrEqual(0x206);
    expect(verityHashReadLength("arm64")).toBe(576);
  });
});
