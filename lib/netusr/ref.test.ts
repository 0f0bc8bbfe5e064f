import { describe, expect, test } from "bun:test";
import { ParamError } from "../param-error.ts";
import { formatNetworkUsr, formatNfsExport, isNetworkUsrUrl, isNfsExportRef, NBD_URL_EXPECTED, NFS_EXPORT_EXPECTED, NFS_URL_EXPECTED, parseNetworkUsr, parseNfsExport } from "./ref.ts";

function errorOf(fn: () => unknown): ParamError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ParamError) return e;
    throw e;
  }
  throw new Error("no error");
}

describe("verity.usr=nbd://", () => {
  test("host, port and export", () => {
    expect(parseNetworkUsr("verity.usr", "nbd://10.0.2.2:10809/usr")).toEqual({ kind: "nbd", host: "10.0.2.2", port: 10809, exportName: "usr" });
    expect(parseNetworkUsr("verity.usr", "nbd://Boot.Example/usr-a")).toEqual({ kind: "nbd", host: "boot.example", port: 10809, exportName: "usr-a" });
    expect(parseNetworkUsr("verity.usr", "NBD://h:1/a/b%20c")).toEqual({ kind: "nbd", host: "h", port: 1, exportName: "a/b c" });
  });
  test("spelt back so that it parses to the same", () => {
    for (const text of ["nbd://10.0.2.2/usr", "nbd://h:2000/a/b%20c", "nbd://h/%C3%A9"]) {
      const v = parseNetworkUsr("verity.usr", text);
      expect(parseNetworkUsr("verity.usr", formatNetworkUsr(v))).toEqual(v);
    }
    expect(formatNetworkUsr(parseNetworkUsr("verity.usr", "nbd://10.0.2.2:10809/usr"))).toBe("nbd://10.0.2.2/usr");
  });
  test.each([
    "nbd://",
    "nbd://host",
    "nbd://host/",
    "nbd:///usr",
    "nbd://host:0/usr",
    "nbd://host:65536/usr",
    "nbd://host:010/usr",
    "nbd://host:-1/usr",
    "nbd://host:/usr",
    "nbd://[::1]/usr",
    "nbd://user@host/usr",
    "nbd://host/usr?x",
    "nbd://host/usr#x",
    "nbd://host/us r",
    "nbd://host/%zz",
    "nbd://host/%00",
    "nbd://-host/usr",
    "nbd://host/" + "x".repeat(4097),
    "nbd://999.1.1.1/usr",
    "nbd://10.0.2/usr",
    "nbd://1.2.3.4.5/usr",
    "nbd://h/a%E2%80%AEb",
    "nbd://h/a%E2%80%A8b",
  ])("refuses %p, naming the parameter and the form", (text) => {
    const e = errorOf(() => parseNetworkUsr("verity.usr", text));
    expect(e.param).toBe("verity.usr");
    expect(e.message).toContain("verity.usr=");
    expect(e.message).toContain("nbd://HOST[:PORT]/EXPORT");
  });
});

describe("verity.usr=nfs://", () => {
  test("the directory to mount and the image in it", () => {
    expect(parseNetworkUsr("verity.usr", "nfs://10.0.2.2/export/usr.img")).toEqual({ kind: "nfs", host: "10.0.2.2", port: 2049, dir: "/export", file: "usr.img" });
    expect(parseNetworkUsr("verity.usr", "nfs://nas:20490/a/b/usr%20a.img")).toEqual({ kind: "nfs", host: "nas", port: 20490, dir: "/a/b", file: "usr a.img" });
    expect(parseNetworkUsr("verity.usr", "nfs://nas/usr.img")).toEqual({ kind: "nfs", host: "nas", port: 2049, dir: "/", file: "usr.img" });
  });
  test("spelt back so that it parses to the same", () => {
    for (const text of ["nfs://nas/usr.img", "nfs://nas:20490/a/b/usr%20a.img", "nfs://10.0.2.2/export/usr.img"]) {
      const v = parseNetworkUsr("verity.usr", text);
      expect(parseNetworkUsr("verity.usr", formatNetworkUsr(v))).toEqual(v);
    }
  });
  test.each(["nfs://nas", "nfs://nas/", "nfs://nas/dir/", "nfs://nas//usr.img", "nfs://nas/../usr.img", "nfs://nas/a/./usr.img", "nfs://nas/a/%2e%2e/usr.img", "nfs://nas:99999/usr.img", "nfs://u@nas/usr.img"])(
    "refuses %p",
    (text) => {
      const e = errorOf(() => parseNetworkUsr("verity.usr", text));
      expect(e.param).toBe("verity.usr");
      expect(e.expected).toContain("nfs://HOST[:PORT]/PATH/FILE");
    },
  );
  test("a scheme of neither kind names both forms", () => {
    expect(isNetworkUsrUrl("nbd://h/x")).toBe(true);
    expect(isNetworkUsrUrl("NFS://h/x")).toBe(true);
    expect(isNetworkUsrUrl("PARTUUID=x")).toBe(false);
    expect(errorOf(() => parseNetworkUsr("verity.usr", "iscsi://h/x")).expected).toBe(`${NBD_URL_EXPECTED}, or ${NFS_URL_EXPECTED}`);
  });
});

describe("mount.usr= as an NFS export", () => {
  test("HOST:/EXPORT and nfs4:HOST:/EXPORT", () => {
    expect(isNfsExportRef("10.0.2.2:/srv/usr")).toBe(true);
    expect(isNfsExportRef("nfs4:nas:/usr")).toBe(true);
    expect(isNfsExportRef("/dev/mapper/usr")).toBe(false);
    expect(isNfsExportRef("PARTUUID=7130c94a-213a-4e5a-8e26-6cce9662f132")).toBe(false);
    expect(isNfsExportRef("LABEL=a:/b")).toBe(false);
    // A URL is not HOST:/PATH.
    expect(isNfsExportRef("nbd://h/x")).toBe(false);
    expect(isNfsExportRef("http://h/x")).toBe(false);
    // The path is the mount's source, not its options: a comma in it adds none.
    expect(parseNfsExport("mount.usr", "nas:/a,vers=3").path).toBe("/a,vers=3");
    expect(parseNfsExport("mount.usr", "10.0.2.2:/srv/usr")).toEqual({ kind: "nfs-export", host: "10.0.2.2", path: "/srv/usr", typed: false });
    expect(parseNfsExport("mount.usr", "nfs4:NAS:/")).toEqual({ kind: "nfs-export", host: "nas", path: "/", typed: true });
    expect(formatNfsExport(parseNfsExport("mount.usr", "nfs4:nas:/usr"))).toBe("nfs4:nas:/usr");
  });
  test.each(["nfs4:", "nfs4:nas", "nfs4:nas:usr", "nas:/a b", "nas:/a/../b", "nfs4::/usr", "nfs4:[::1]:/usr", "999.1.1.1:/usr", "nas:/a\u202eb"])("refuses %p", (text) => {
    const e = errorOf(() => parseNfsExport("mount.usr", text));
    expect(e.param).toBe("mount.usr");
    expect(e.expected).toBe(NFS_EXPORT_EXPECTED);
  });
});
