// planUsr() decides where /usr comes from before any device is touched. The
// inputs are built from real command lines (splitCmdline + parseBootParams),
// so these tests also pin how the parser's output reaches the plan: a typo in
// either layer would show up here as a wrong plan or a wrong message.
import { describe, expect, test } from "bun:test";
import { parseBootParams, splitCmdline, type BootParams } from "./cmdline.ts";
import { MountOptionError } from "./mountopts.ts";
import { MS_FLAGS } from "./msflags.ts";
import { MAPPER_USR, planUsr, type UsrPlan } from "./plan.ts";
import { BootError } from "./errors.ts";

const HASH = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const USR_A = "7130c94a-213a-4e5a-8e26-6cce9662f132";

const DISK = { hasUsrSquashfs: false };
const PXE = { hasUsrSquashfs: true };

/** Parameters from a command line that must parse cleanly: a parse error would make the test meaningless. */
function params(cmdline: string): BootParams {
  const { params, errors } = parseBootParams(splitCmdline(cmdline));
  expect(errors.map((e) => e.message)).toEqual([]);
  return params;
}

function plan(cmdline: string, facts = DISK): UsrPlan {
  return planUsr(params(cmdline), facts);
}

/** The plan's own BootError a command line must produce; checked for class, exact text and parameter. */
function planError(cmdline: string, facts = DISK): BootError {
  let caught: unknown;
  try {
    planUsr(params(cmdline), facts);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(BootError);
  // Not a subclass such as MountOptionError: the plan itself refused.
  expect((caught as BootError).name).toBe("BootError");
  return caught as BootError;
}

// The options the default mount.usrflags=ro turns into.
const RO = { flags: MS_FLAGS.RDONLY, data: "", readOnly: true };

describe("verity", () => {
  test("Flatcar's default command line gives the verity plan", () => {
    // As Flatcar's grub.cfg writes it (USR-A active), with the unrelated
    // parameters the kernel and stage 2 consume left in.
    const cmdline =
      `BOOT_IMAGE=/flatcar/vmlinuz-a mount.usr=/dev/mapper/usr verity.usr=PARTUUID=${USR_A} rootflags=rw mount.usrflags=ro ` +
      `consoleblank=0 root=LABEL=ROOT console=ttyS0,115200n8 console=tty0 flatcar.first_boot=detected flatcar.oem.id=qemu verity.usrhash=${HASH}`;
    expect(plan(cmdline)).toEqual({
      kind: "verity",
      data: { kind: "partuuid", value: USR_A },
      rootHash: HASH,
      fsType: "auto",
      options: RO,
    });
  });

  test("mount.usr is optional with verity", () => {
    expect(plan(`verity.usr=PARTLABEL=USR-A verity.usrhash=${HASH}`)).toEqual({
      kind: "verity",
      data: { kind: "partlabel", value: "USR-A" },
      rootHash: HASH,
      fsType: "auto",
      options: RO,
    });
  });

  test("the root hash arrives lower-cased, whatever case the command line used", () => {
    const p = plan(`verity.usr=PARTUUID=${USR_A.toUpperCase()} verity.usrhash=${HASH.toUpperCase()}`);
    expect(p).toMatchObject({ kind: "verity", data: { kind: "partuuid", value: USR_A }, rootHash: HASH });
  });

  test("mount.usrfstype is passed through", () => {
    expect(plan(`verity.usr=/dev/vda3 verity.usrhash=${HASH} mount.usrfstype=btrfs`)).toMatchObject({
      kind: "verity",
      data: { kind: "path", value: "/dev/vda3" },
      fsType: "btrfs",
    });
  });

  test("an explicit verity.usr wins over an appended /usr.squashfs", () => {
    expect(plan(`verity.usr=PARTUUID=${USR_A} verity.usrhash=${HASH}`, PXE).kind).toBe("verity");
  });

  test("verity.usr without verity.usrhash is refused", () => {
    const e = planError(`verity.usr=PARTUUID=${USR_A}`);
    expect(e.message).toBe(
      `verity.usr=PARTUUID=${USR_A} is set but verity.usrhash= is missing: without the root hash /usr cannot be verified, and an unverified /usr is never mounted`,
    );
    expect(e.param).toBe("verity.usrhash");
  });

  test("verity.usr without verity.usrhash is refused even with mount.usr=/dev/mapper/usr and /usr.squashfs", () => {
    // The missing hash is reported first: it is the root cause, the
    // squashfs must not be used as a silent fallback for a broken verity setup.
    const e = planError(`mount.usr=/dev/mapper/usr verity.usr=PARTLABEL=USR-A`, PXE);
    expect(e.message).toBe(
      "verity.usr=PARTLABEL=USR-A is set but verity.usrhash= is missing: without the root hash /usr cannot be verified, and an unverified /usr is never mounted",
    );
    expect(e.param).toBe("verity.usrhash");
  });

  test("verity.usrhash without verity.usr is refused", () => {
    const e = planError(`verity.usrhash=${HASH}`);
    expect(e.message).toBe("verity.usrhash= is set but verity.usr= is missing: name the partition that holds /usr and its hash tree");
    expect(e.param).toBe("verity.usr");
  });

  test("verity.usrhash without verity.usr is refused even when mount.usr or /usr.squashfs could be used", () => {
    // A hash nobody checks would look like protection that is not there.
    for (const [cmdline, facts] of [
      [`verity.usrhash=${HASH} mount.usr=/dev/vda3`, DISK],
      [`verity.usrhash=${HASH}`, PXE],
    ] as const) {
      const e = planError(cmdline, facts);
      expect(e.message).toBe("verity.usrhash= is set but verity.usr= is missing: name the partition that holds /usr and its hash tree");
      expect(e.param).toBe("verity.usr");
    }
  });

  test("mount.usr naming anything but /dev/mapper/usr conflicts with verity.usr", () => {
    // Mounting the raw partition would bypass verification.
    const cases: [string, string][] = [
      ["PARTUUID=" + USR_A, `PARTUUID=${USR_A}`],
      ["PARTLABEL=USR-A", "PARTLABEL=USR-A"],
      ["LABEL=USR", "LABEL=USR"],
      ["/dev/vda3", "/dev/vda3"],
      // A different mapper name is not the verified mapping either.
      ["/dev/mapper/usr2", "/dev/mapper/usr2"],
    ];
    for (const [given, shown] of cases) {
      const e = planError(`verity.usr=PARTUUID=${USR_A} verity.usrhash=${HASH} mount.usr=${given}`);
      expect(e.message).toBe(
        `mount.usr=${shown} conflicts with verity.usr=PARTUUID=${USR_A}: with verity, /usr is mounted from /dev/mapper/usr (set mount.usr=/dev/mapper/usr or drop it)`,
      );
      expect(e.param).toBe("mount.usr");
    }
  });

  test("the legacy usr= conflicts in the same way, reported under mount.usr", () => {
    const e = planError(`verity.usr=PARTLABEL=USR-A verity.usrhash=${HASH} usr=/dev/vda3`);
    expect(e.message).toBe(
      "mount.usr=/dev/vda3 conflicts with verity.usr=PARTLABEL=USR-A: with verity, /usr is mounted from /dev/mapper/usr (set mount.usr=/dev/mapper/usr or drop it)",
    );
    expect(e.param).toBe("mount.usr");
  });
});

describe("plain device", () => {
  test("mount.usr=/dev/mapper/usr without verity is refused: nothing would create that device", () => {
    const e = planError("mount.usr=/dev/mapper/usr");
    expect(e.message).toBe("mount.usr=/dev/mapper/usr needs verity.usr= and verity.usrhash= to create that device");
    expect(e.param).toBe("verity.usr");
    expect(MAPPER_USR).toBe("/dev/mapper/usr");
  });

  test("mount.usr=/dev/mapper/usr without verity is refused even with an appended /usr.squashfs", () => {
    // The user asked for a device; silently booting the squashfs instead would hide the mistake.
    expect(planError("usr=/dev/mapper/usr", PXE).param).toBe("verity.usr");
  });

  test("by LABEL=, UUID=, PARTUUID=, PARTLABEL= and path", () => {
    const cases: [string, UsrPlan["kind"], object][] = [
      ["mount.usr=LABEL=USR", "plain", { kind: "label", value: "USR" }],
      ["mount.usr=UUID=AbCd1234-0000-4000-8000-00000000CAFE", "plain", { kind: "uuid", value: "abcd1234-0000-4000-8000-00000000cafe" }],
      [`mount.usr=PARTUUID=${USR_A}`, "plain", { kind: "partuuid", value: USR_A }],
      ["mount.usr=PARTLABEL=USR-B", "plain", { kind: "partlabel", value: "USR-B" }],
      ["mount.usr=/dev/vda3", "plain", { kind: "path", value: "/dev/vda3" }],
      ["mount.usr=/dev/disk/by-label/USR", "plain", { kind: "path", value: "/dev/disk/by-label/USR" }],
    ];
    for (const [cmdline, kind, device] of cases) {
      expect(plan(cmdline)).toEqual({ kind, device, fsType: "auto", options: RO } as UsrPlan);
    }
  });

  test("the legacy names usr=, usrfstype=, usrflags= work", () => {
    expect(plan("usr=LABEL=USR usrfstype=ext4 usrflags=ro,noatime")).toEqual({
      kind: "plain",
      device: { kind: "label", value: "USR" },
      fsType: "ext4",
      options: { flags: MS_FLAGS.RDONLY | MS_FLAGS.NOATIME, data: "", readOnly: true },
    });
  });

  test("the Flatcar names win over the legacy ones", () => {
    expect(plan("usr=/dev/vda3 mount.usr=/dev/vda4 usrfstype=ext4 mount.usrfstype=btrfs")).toMatchObject({
      kind: "plain",
      device: { kind: "path", value: "/dev/vda4" },
      fsType: "btrfs",
    });
  });

  test("an explicit mount.usr wins over an appended /usr.squashfs", () => {
    expect(plan("mount.usr=LABEL=USR", PXE)).toEqual({ kind: "plain", device: { kind: "label", value: "USR" }, fsType: "auto", options: RO });
  });
});

describe("PXE", () => {
  test("/usr.squashfs and nothing on the command line gives the squashfs plan", () => {
    expect(plan("console=ttyS0 flatcar.autologin", PXE)).toEqual({ kind: "squashfs-file", image: "/usr.squashfs" });
  });

  test("mount.usrflags/fstype do not stop a squashfs boot", () => {
    expect(plan("mount.usrflags=ro mount.usrfstype=squashfs", PXE)).toEqual({ kind: "squashfs-file", image: "/usr.squashfs" });
  });
});

describe("nothing to boot", () => {
  const MESSAGE =
    "no /usr to boot: the command line has neither verity.usr= (with verity.usrhash=), mount.usr= nor rd.usr.url=, and no /usr.squashfs was appended to the initrd";

  test("an empty command line without /usr.squashfs is an error naming verity.usr", () => {
    const e = planError("");
    expect(e.message).toBe(MESSAGE);
    expect(e.param).toBe("verity.usr");
  });

  test("only unrelated parameters: same error", () => {
    expect(planError("root=LABEL=ROOT console=tty0 rd.debug").message).toBe(MESSAGE);
  });

  test("parameters after a bare -- are init's arguments, not a /usr", () => {
    expect(planError(`-- verity.usr=PARTUUID=${USR_A} verity.usrhash=${HASH}`).message).toBe(MESSAGE);
  });

  test("the plan error is an Error with the parameter attached", () => {
    const e = planError("");
    expect(e).toBeInstanceOf(Error);
    expect(e.param).toBe("verity.usr");
  });
});

describe("mount.usrflags", () => {
  const base = `verity.usr=PARTUUID=${USR_A} verity.usrhash=${HASH}`;
  const optionsOf = (extra: string) => {
    const p = plan(`${base} ${extra}`);
    if (p.kind === "squashfs-file" || p.kind === "remote") throw new Error("unexpected plan");
    return p.options;
  };

  test("read-only by default", () => {
    expect(optionsOf("")).toEqual(RO);
  });

  test('with verity, "rw,noatime" still mounts read-only (the mapping is read-only)', () => {
    expect(optionsOf("mount.usrflags=rw,noatime")).toEqual({ flags: MS_FLAGS.NOATIME | MS_FLAGS.RDONLY, data: "", readOnly: true });
  });

  test('without verity, "rw,noatime" is writable with noatime', () => {
    const p = plan("mount.usr=LABEL=USR mount.usrflags=rw,noatime");
    if (p.kind === "squashfs-file" || p.kind === "remote") throw new Error("unexpected plan");
    expect(p.options).toEqual({ flags: MS_FLAGS.NOATIME, data: "", readOnly: false });
  });

  test("filesystem data options are kept, flags taken out, x- options dropped", () => {
    expect(optionsOf("mount.usrflags=ro,nodev,compress=zstd:3,x-systemd.device-timeout=0,subvol=/usr")).toEqual({
      flags: MS_FLAGS.RDONLY | MS_FLAGS.NODEV,
      data: "compress=zstd:3,subvol=/usr",
      readOnly: true,
    });
  });

  test("the plain plan gets the same translation", () => {
    expect(plan("mount.usr=/dev/vda3 mount.usrflags=ro,errors=panic")).toMatchObject({
      kind: "plain",
      options: { flags: MS_FLAGS.RDONLY, data: "errors=panic", readOnly: true },
    });
  });

  test("an option with a space (kernel quoting) is refused with a MountOptionError naming mount.usrflags", () => {
    // Each plan kind that mounts a device parses the flags before any device is touched.
    for (const cmdline of [`${base} mount.usrflags="ro,a b"`, `mount.usr=/dev/vda3 mount.usrflags="ro,a b"`]) {
      let caught: unknown;
      try {
        planUsr(params(cmdline), DISK);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(MountOptionError);
      expect((caught as Error).message).toBe('mount.usrflags=ro,a b: option "a b" contains a space, quote or backslash');
    }
  });
});

describe("remote /usr (rd.usr.url=)", () => {
  const url = "http://10.0.2.2:8080/usr.squashfs";
  test("with a pinned whole-image hash", () => {
    expect(plan(`rd.usr.url=${url} rd.usr.hash=sha256:${"ab".repeat(32)}`)).toEqual({
      kind: "remote", url, image: "/usr.squashfs", sha256: "ab".repeat(32), hashList: false, insecure: false,
    });
  });
  test("with the initrd's stream-hash list and no hash on the command line", () => {
    const p = planUsr(parseBootParams(splitCmdline(`rd.usr.url=${url}`)).params, { hasUsrSquashfs: false, hasUsrHashList: true });
    expect(p).toMatchObject({ kind: "remote", hashList: true, sha256: undefined });
  });
  test("nothing to verify against is refused unless rd.usr.insecure=1", () => {
    expect(() => plan(`rd.usr.url=${url}`)).toThrow(`rd.usr.url=${url} has nothing to verify the image against`);
    expect(plan(`rd.usr.url=${url} rd.usr.insecure=1`)).toMatchObject({ kind: "remote", insecure: true });
  });
  test("an appended /usr.squashfs wins over the URL", () => {
    const p = planUsr(parseBootParams(splitCmdline(`rd.usr.url=${url}`)).params, { hasUsrSquashfs: true });
    expect(p).toEqual({ kind: "squashfs-file", image: "/usr.squashfs" });
  });
});

describe("planUsr: /usr over the network, block by block or NFS", () => {
  test("verity.usr=nbd:// and nfs:// are verity over a network source, read-only", () => {
    expect(plan(`verity.usr=nbd://10.0.2.2/usr verity.usrhash=${HASH} mount.usr=${MAPPER_USR}`)).toEqual({
      kind: "verity-net",
      source: { kind: "nbd", host: "10.0.2.2", port: 10809, exportName: "usr" },
      rootHash: HASH,
      fsType: "auto",
      options: { flags: MS_FLAGS.RDONLY, data: "", readOnly: true },
    });
    const nfs = plan(`verity.usr=nfs://nas:20490/srv/usr.img verity.usrhash=${HASH}`);
    expect(nfs.kind === "verity-net" && nfs.source).toEqual({ kind: "nfs", host: "nas", port: 20490, dir: "/srv", file: "usr.img" });
  });

  test("a network verity.usr still needs its root hash, and an appended image does not win over it", () => {
    const e = planError("verity.usr=nbd://h/usr");
    expect(e.message).toContain("verity.usr=nbd://h/usr is set but verity.usrhash= is missing");
    expect(e.param).toBe("verity.usrhash");
    expect(plan(`verity.usr=nbd://h/usr verity.usrhash=${HASH}`, PXE).kind).toBe("verity-net");
  });

  test("mount.usr= naming an NFS export is refused without rd.usr.insecure=1, saying what to use instead", () => {
    const e = planError("mount.usr=nfs4:10.0.2.2:/srv/usr");
    expect(e.param).toBe("rd.usr.insecure");
    expect(e.message).toContain("mount.usr=nfs4:10.0.2.2:/srv/usr is an NFS /usr, which nothing verifies");
    expect(e.message).toContain("verity.usr=nfs://HOST/PATH/usr.img");
  });

  test("with rd.usr.insecure=1 it is an NFS plan, read-only, with mount.usrflags= kept", () => {
    expect(plan("mount.usr=nfs4:10.0.2.2:/srv/usr rd.usr.insecure=1 mount.usrflags=ro,port=20490")).toEqual({
      kind: "nfs",
      export: { kind: "nfs-export", host: "10.0.2.2", path: "/srv/usr", typed: true },
      options: { flags: MS_FLAGS.RDONLY, data: "port=20490", readOnly: true },
    });
    expect(plan("mount.usr=10.0.2.2:/srv/usr mount.usrfstype=nfs4 rd.usr.insecure=1").kind).toBe("nfs");
  });

  test("HOST:/EXPORT needs mount.usrfstype=nfs4; nfs4:… with another type is a contradiction", () => {
    const bare = planError("mount.usr=10.0.2.2:/srv/usr rd.usr.insecure=1");
    expect(bare.param).toBe("mount.usrfstype");
    expect(bare.message).toContain("set mount.usrfstype=nfs4, or write mount.usr=nfs4:10.0.2.2:/srv/usr");
    const typed = planError("mount.usr=nfs4:h:/u mount.usrfstype=ext4 rd.usr.insecure=1");
    expect(typed.message).toContain("mount.usrfstype=ext4 says otherwise");
  });

  test("verity with a mount.usr= NFS export is the usual conflict", () => {
    const e = planError(`verity.usr=nbd://h/usr verity.usrhash=${HASH} mount.usr=nfs4:h:/u`);
    expect(e.param).toBe("mount.usr");
    expect(e.message).toContain("mount.usr=nfs4:h:/u conflicts with verity.usr=nbd://h/usr");
  });
});
