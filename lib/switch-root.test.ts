// resolveInRoot() is the last check before the point of no return: switchRoot
// deletes the old initramfs only if the new root has an executable init, so a
// wrong "yes" leaves a machine with no init and no shell, and a wrong "no"
// refuses a good root. It must resolve links as the kernel will after chroot:
// absolute targets (also of directory links such as /sbin -> /usr/sbin)
// restart at the new root, relative ones are read from the directory the link
// is really in, and ".." never climbs above the new root. Uses a temporary
// directory as a fake new root; the host's own files must never be consulted.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { resolveInRoot } from "./switch-root.ts";

let base = "";
let root = "";
/** Outside the fake root: an executable that must never be found through it. */
let hostInit = "";

function file(rel: string, mode = 0o755): void {
  const p = path.join(root, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, "#!/bin/sh\n");
  fs.chmodSync(p, mode);
}

function link(rel: string, target: string): void {
  const p = path.join(root, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.symlinkSync(target, p);
}

beforeAll(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), "bunboot-switch-root-"));
  root = path.join(base, "root");
  fs.mkdirSync(root);
  hostInit = path.join(base, "hostinit");
  fs.writeFileSync(hostInit, "#!/bin/sh\n");
  fs.chmodSync(hostInit, 0o755);

  // A merged-/usr layout like a dracut/systemd initrd's.
  file("/usr/lib/systemd/systemd");
  link("/init", "usr/lib/systemd/systemd");
  link("/bin", "usr/bin");
  link("/sbin", "usr/sbin");
  link("/usr/sbin/init", "../lib/systemd/systemd");
  file("/usr/bin/bash");

  // Absolute links, which must restart at the new root.
  link("/abs-init", "/usr/lib/systemd/systemd");
  link("/chain/1", "/chain/2");
  link("/chain/2", "3");
  link("/chain/3", "../usr/sbin/init");
  // A directory link with an absolute target.
  link("/opt", "/usr/lib");
  // A relative link read from its real directory: /via -> usr/sbin, then
  // usr/sbin/rel -> ../lib/systemd/systemd is relative to /usr/sbin, not /via's parent.
  link("/via", "usr/sbin");
  link("/usr/sbin/rel", "../lib/systemd/systemd");

  // Escapes that would find the host's file if resolved on the host.
  link("/escape-dotdot", "/../hostinit");
  link("/escape-rel", "../../../../../../hostinit");
  link("/hostdir", base);

  file("/etc/os-release", 0o644);
  link("/noexec-link", "/etc/os-release");
  file("/only-other-x", 0o001);
  link("/dangling", "/nowhere/init");
  link("/loop-self", "loop-self");
  link("/loop-a", "loop-b");
  link("/loop-b", "/loop-a");
  fs.mkdirSync(path.join(root, "/somedir"));
  link("/dirlink", "somedir");

  // 40 links in a chain (the kernel's limit, MAXSYMLINKS) and 41.
  for (let i = 0; i < 41; i++) link(`/hops/${i}`, i === 40 ? "/usr/bin/bash" : `${i + 1}`);
});

afterAll(() => {
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

describe("resolveInRoot: found", () => {
  test("a plain executable file", () => {
    expect(resolveInRoot(root, "/usr/lib/systemd/systemd")).toBe("/usr/lib/systemd/systemd");
  });

  test("/init as a relative link (the dracut layout)", () => {
    expect(resolveInRoot(root, "/init")).toBe("/usr/lib/systemd/systemd");
  });

  test("an absolute link resolves inside the new root", () => {
    expect(resolveInRoot(root, "/abs-init")).toBe("/usr/lib/systemd/systemd");
  });

  test("a chain of absolute and relative links through a directory link", () => {
    // /chain/1 -> /chain/2 -> 3 -> ../usr/sbin/init -> ../lib/systemd/systemd
    expect(resolveInRoot(root, "/chain/1")).toBe("/usr/lib/systemd/systemd");
  });

  test("through a relative directory link: /sbin/init with /sbin -> usr/sbin", () => {
    expect(resolveInRoot(root, "/sbin/init")).toBe("/usr/lib/systemd/systemd");
    expect(resolveInRoot(root, "/bin/bash")).toBe("/usr/bin/bash");
  });

  test("through an absolute directory link: /opt -> /usr/lib", () => {
    // Resolved on the host, /opt/systemd/systemd would be the host's /usr/lib/systemd/systemd.
    expect(resolveInRoot(root, "/opt/systemd/systemd")).toBe("/usr/lib/systemd/systemd");
  });

  test("a relative link is read from the directory it really is in", () => {
    // /via/rel is /usr/sbin/rel -> ../lib/systemd/systemd = /usr/lib/systemd/systemd;
    // read lexically from /via it would be /lib/systemd/systemd, which this root lacks.
    expect(resolveInRoot(root, "/via/rel")).toBe("/usr/lib/systemd/systemd");
  });

  test("redundant '/', '.' and '..' in the path", () => {
    expect(resolveInRoot(root, "//usr/./lib/../lib/systemd//systemd")).toBe("/usr/lib/systemd/systemd");
  });

  test("'..' at the new root stays there, as after chroot", () => {
    expect(resolveInRoot(root, "/../../usr/bin/bash")).toBe("/usr/bin/bash");
  });

  test("any execute bit will do (root may run it)", () => {
    expect(resolveInRoot(root, "/only-other-x")).toBe("/only-other-x");
  });

  test("40 links in a row are followed (the kernel's MAXSYMLINKS)", () => {
    expect(resolveInRoot(root, "/hops/1")).toBe("/usr/bin/bash");
  });

  test("a new root given with a trailing slash", () => {
    expect(resolveInRoot(root + "/", "/init")).toBe("/usr/lib/systemd/systemd");
  });
});

describe("resolveInRoot: refused", () => {
  test("a missing file", () => {
    expect(resolveInRoot(root, "/sbin/nonexistent")).toBeNull();
    expect(resolveInRoot(root, "/nonexistent/init")).toBeNull();
  });

  test("a file that is not executable, directly or through a link", () => {
    expect(resolveInRoot(root, "/etc/os-release")).toBeNull();
    expect(resolveInRoot(root, "/noexec-link")).toBeNull();
  });

  test("a directory, directly or through a link, and the root itself", () => {
    expect(resolveInRoot(root, "/usr/bin")).toBeNull();
    expect(resolveInRoot(root, "/dirlink")).toBeNull();
    expect(resolveInRoot(root, "/")).toBeNull();
  });

  test("a file used as a directory", () => {
    expect(resolveInRoot(root, "/usr/bin/bash/x")).toBeNull();
    expect(resolveInRoot(root, "/usr/bin/bash/")).toBeNull();
  });

  test("a dangling link", () => {
    expect(resolveInRoot(root, "/dangling")).toBeNull();
  });

  test("a link to itself", () => {
    expect(resolveInRoot(root, "/loop-self")).toBeNull();
  });

  test("two links pointing at each other", () => {
    expect(resolveInRoot(root, "/loop-a")).toBeNull();
    expect(resolveInRoot(root, "/loop-b")).toBeNull();
  });

  test("41 links in a row are too many", () => {
    expect(resolveInRoot(root, "/hops/0")).toBeNull();
  });

  test("an absolute link to a host path that only exists on the host", () => {
    // /bin/sh exists on the test host, but not in the new root (its /bin is usr/bin without sh).
    expect(fs.existsSync("/bin/sh")).toBe(true);
    link("/host-sh", "/bin/sh");
    expect(resolveInRoot(root, "/host-sh")).toBeNull();
  });

  test("an absolute directory link naming a host directory is read inside the new root", () => {
    // /hostdir -> <base> (an absolute host path); the new root has no such directory.
    expect(resolveInRoot(root, "/hostdir/hostinit")).toBeNull();
  });

  test("'..' in an absolute link target does not leave the new root", () => {
    expect(resolveInRoot(root, "/escape-dotdot")).toBeNull();
  });

  test("'..' in a relative link target does not leave the new root", () => {
    expect(resolveInRoot(root, "/escape-rel")).toBeNull();
  });

  test("'..' in init= itself does not leave the new root", () => {
    expect(resolveInRoot(root, "/../hostinit")).toBeNull();
  });

  test("the host's copy stays reachable from outside, so the refusals above are not accidents", () => {
    expect(fs.statSync(path.join(root, "..", "hostinit")).mode & 0o111).not.toBe(0);
  });
});
