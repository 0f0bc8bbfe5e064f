import { describe, expect, test } from "bun:test";
import { parseMountinfo, unescapeMountinfo } from "./mountinfo.ts";

describe("parseMountinfo", () => {
  test("reads the fields of a line with optional fields", () => {
    const [e] = parseMountinfo("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n");
    expect(e).toEqual({
      id: 36,
      parent: 35,
      majorMinor: "98:0",
      root: "/mnt1",
      mountPoint: "/mnt2",
      options: ["rw", "noatime"],
      optional: ["master:1", "shared:7"],
      fsType: "ext3",
      source: "/dev/root",
      superOptions: ["rw", "errors=continue"],
    });
  });

  test("a line without optional fields", () => {
    const [e] = parseMountinfo("22 1 0:21 / /proc rw,nosuid,nodev,noexec - proc proc rw");
    expect(e?.optional).toEqual([]);
    expect(e?.mountPoint).toBe("/proc");
    expect(e?.source).toBe("proc");
  });

  test("decodes octal escapes in paths and the source", () => {
    const [e] = parseMountinfo("40 22 8:1 /a\\134b /mnt/my\\040disk\\011x\\012y rw - vfat /dev/odd\\040name rw");
    expect(e?.root).toBe("/a\\b");
    expect(e?.mountPoint).toBe("/mnt/my disk\tx\ny");
    expect(e?.source).toBe("/dev/odd name");
  });

  test("a mount point named '-' is not taken for the separator", () => {
    const [e] = parseMountinfo("40 22 8:1 / - rw - ext4 /dev/sda1 rw");
    expect(e?.mountPoint).toBe("-");
    expect(e?.fsType).toBe("ext4");
  });

  test("skips hostile and truncated lines, keeps the good ones", () => {
    const text = [
      "",
      "garbage",
      "1 2 3 4 5 6 7 8 9 10",
      "x 1 8:1 / /a rw - ext4 /dev/sda1 rw",
      "1 1 8:1 / /a rw - ext4",
      "1 1 8:1 / /a rw shared:1",
      "23 1 8:2 / /ok rw - ext4 /dev/sda2 rw",
    ].join("\n");
    expect(parseMountinfo(text).map((e) => e.mountPoint)).toEqual(["/ok"]);
  });

  test("leaves stray backslashes and out-of-range escapes alone", () => {
    expect(unescapeMountinfo("a\\b\\777\\04")).toBe("a\\b\\777\\04");
  });
});
