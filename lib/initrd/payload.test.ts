// The split of the payload layout: what stays in the small archive, what
// goes into the image, and the links that keep every path the init, kmod and
// the shell use where it was.
import { describe, expect, test } from "bun:test";
import { bootModuleOrder, BOOT_MODULES_DIR, PAYLOAD_MOUNT, splitPayload, type TreeEntry } from "./payload.ts";

const bytes = (s: string) => new TextEncoder().encode(s);
const file = (path: string, component: string): TreeEntry => ({ kind: "file", path, mode: 0o755, data: bytes(path), component });
const dir = (path: string): TreeEntry => ({ kind: "dir", path, mode: 0o755, component: "skeleton" });
const link = (path: string, target: string, component = "tools"): TreeEntry => ({ kind: "symlink", path, target, component });

const KO = "/lib/modules/6.1.0/kernel";
const tree: TreeEntry[] = [
  dir("/bin"),
  dir("/sbin"),
  dir("/lib"),
  dir("/etc"),
  file("/init", "skeleton"),
  file("/etc/bunboot/config.json", "skeleton"),
  file("/bin/busybox", "tools"),
  link("/bin/sh", "/bin/busybox"),
  file("/bin/bunboot-init", "bun init"),
  file("/bin/kmod", "tools"),
  link("/sbin/modprobe", "/bin/kmod"),
  file("/sbin/tool", "tools"),
  file("/lib/x86_64-linux-gnu/libc.so.6", "libraries"),
  file("/lib64/ld-linux-x86-64.so.2", "libraries"),
  file(`${KO}/drivers/block/loop.ko`, "modules"),
  file(`${KO}/fs/squashfs/squashfs.ko`, "modules"),
  file("/lib/modules/6.1.0/modules.dep", "modules"),
  file("/lib/firmware/a.bin", "firmware"),
];

describe("splitPayload", () => {
  const s = splitPayload(tree, [`${KO}/drivers/block/loop.ko`, `${KO}/fs/squashfs/squashfs.ko`]);
  const outer = new Map(s.outer.map((e) => [e.path, e]));
  const payload = new Set(s.payload.map((e) => e.path));

  test("the shim, busybox and its links, the skeleton and the config stay in the small archive", () => {
    for (const p of ["/init", "/bin/busybox", "/bin/sh", "/etc/bunboot/config.json", "/sbin/modprobe"]) expect(outer.get(p)?.kind).not.toBe(undefined);
    expect(payload.has("/bin/busybox")).toBe(false);
  });

  test("the init, tools, libraries, modules and firmware go into the image", () => {
    for (const p of ["/bin/bunboot-init", "/bin/kmod", "/sbin/tool", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2", `${KO}/drivers/block/loop.ko`, "/lib/firmware/a.bin"]) {
      expect(payload.has(p)).toBe(true);
    }
  });

  test("a directory with payload files only is one link; a shared directory gets a link per file", () => {
    expect(outer.get("/lib")).toMatchObject({ kind: "symlink", target: `${PAYLOAD_MOUNT}/lib` });
    expect(outer.get("/lib64")).toMatchObject({ kind: "symlink", target: `${PAYLOAD_MOUNT}/lib64` });
    expect(outer.get("/bin/bunboot-init")).toMatchObject({ kind: "symlink", target: `${PAYLOAD_MOUNT}/bin/bunboot-init` });
    expect(outer.get("/sbin/tool")).toMatchObject({ kind: "symlink", target: `${PAYLOAD_MOUNT}/sbin/tool` });
    // Nothing below a linked directory is left in the small archive.
    expect([...outer.keys()].filter((p) => p.startsWith("/lib/"))).toEqual([]);
  });

  test("the boot modules are copied out, in the order given, and stay in the image for kmod", () => {
    expect(s.bootModules).toEqual([`${BOOT_MODULES_DIR}/loop.ko`, `${BOOT_MODULES_DIR}/squashfs.ko`]);
    expect(outer.get(`${BOOT_MODULES_DIR}/loop.ko`)).toMatchObject({ kind: "file" });
    expect(payload.has(`${KO}/fs/squashfs/squashfs.ko`)).toBe(true);
  });

  test("every path of the tree is reachable: in the small archive, or in the image under a link", () => {
    const linked = s.outer.filter((e) => e.kind === "symlink" && e.target.startsWith(PAYLOAD_MOUNT + "/")).map((e) => e.path);
    for (const e of tree) {
      const reachable = outer.has(e.path) || linked.some((l) => e.path === l || e.path.startsWith(l + "/"));
      expect(reachable ? e.path : `unreachable ${e.path}`).toBe(e.path);
    }
  });
});

describe("bootModuleOrder", () => {
  const dep = ["kernel/fs/squashfs/squashfs.ko: kernel/lib/zstd_x.ko", "kernel/lib/zstd_x.ko:", "kernel/drivers/block/loop.ko:", ""].join("\n");

  test("dependencies first, each once", () => {
    expect(bootModuleOrder(dep, ["loop", "squashfs"])).toEqual(["kernel/drivers/block/loop.ko", "kernel/lib/zstd_x.ko", "kernel/fs/squashfs/squashfs.ko"]);
  });

  test("a module the kernel has built in needs nothing", () => {
    expect(bootModuleOrder("kernel/drivers/block/loop.ko:\n", ["loop", "squashfs"])).toEqual(["kernel/drivers/block/loop.ko"]);
    expect(bootModuleOrder("", ["loop"])).toEqual([]);
  });

  test("a dependency cycle in a hostile modules.dep ends", () => {
    expect(bootModuleOrder("a.ko: b.ko\nb.ko: a.ko\n", ["a"]).sort()).toEqual(["a.ko", "b.ko"]);
  });
});
