import { describe, expect, test } from "bun:test";
import { ParamError } from "../param-error.ts";
import { DEVICE_EXPECTED, formatDeviceRef, parseDeviceRef, type DeviceRef } from "./ref.ts";

// The texts a ParamError from parseDeviceRef ends with ("expected ...").
const PARTUUID_EXPECTED =
  "PARTUUID= with a GPT partition UUID (such as 7130c94a-213a-4e5a-8e26-6cce9662f132) or an MBR one (such as 1234abcd-01)";
const UUID_EXPECTED = "UUID= with a filesystem UUID (hex digits and dashes)";
const PARTLABEL_EXPECTED = "PARTLABEL= with a non-empty partition name";
const LABEL_EXPECTED = "LABEL= with a non-empty filesystem label";
const DEV_PATH_EXPECTED = "a path below /dev/ without spaces, control characters, empty, . or .. components";

const USR_A = "7130c94a-213a-4e5a-8e26-6cce9662f132";

describe("parseDeviceRef / formatDeviceRef", () => {
  const good: [string, DeviceRef][] = [
    [`PARTUUID=${USR_A}`, { kind: "partuuid", value: USR_A }],
    [`PARTUUID=${USR_A.toUpperCase()}`, { kind: "partuuid", value: USR_A }],
    ["PARTUUID=1234ABCD-01", { kind: "partuuid", value: "1234abcd-01" }],
    ["PARTLABEL=USR-A", { kind: "partlabel", value: "USR-A" }],
    ["PARTLABEL=My Disk", { kind: "partlabel", value: "My Disk" }],
    ["PARTLABEL=a=b", { kind: "partlabel", value: "a=b" }],
    ["UUID=2C8A6F5E-1D7B-4E4A-9F3C-0A1B2C3D4E5F", { kind: "uuid", value: "2c8a6f5e-1d7b-4e4a-9f3c-0a1b2c3d4e5f" }],
    ["UUID=ABCD-1234", { kind: "uuid", value: "abcd-1234" }],
    ["UUID=0123456789ABCDEF", { kind: "uuid", value: "0123456789abcdef" }],
    ["LABEL=ROOT", { kind: "label", value: "ROOT" }],
    ["LABEL=données", { kind: "label", value: "données" }],
    ["/dev/mapper/usr", { kind: "path", value: "/dev/mapper/usr" }],
    ["/dev/disk/by-partlabel/USR-A", { kind: "path", value: "/dev/disk/by-partlabel/USR-A" }],
    ["/dev/vda3", { kind: "path", value: "/dev/vda3" }],
  ];
  for (const [text, ref] of good) {
    test(`accepts ${text}`, () => {
      expect(parseDeviceRef("verity.usr", text)).toEqual(ref);
      // Round trip through the command-line spelling.
      expect(parseDeviceRef("verity.usr", formatDeviceRef(ref))).toEqual(ref);
    });
  }

  test("formatDeviceRef spells each kind", () => {
    expect(formatDeviceRef({ kind: "partuuid", value: USR_A })).toBe(`PARTUUID=${USR_A}`);
    expect(formatDeviceRef({ kind: "partlabel", value: "USR-A" })).toBe("PARTLABEL=USR-A");
    expect(formatDeviceRef({ kind: "uuid", value: "abcd-1234" })).toBe("UUID=abcd-1234");
    expect(formatDeviceRef({ kind: "label", value: "ROOT" })).toBe("LABEL=ROOT");
    expect(formatDeviceRef({ kind: "path", value: "/dev/sda" })).toBe("/dev/sda");
  });

  const bad: [string, string][] = [
    ["FOO=bar", DEVICE_EXPECTED],
    ["", DEVICE_EXPECTED],
    ["sda3", DEVICE_EXPECTED],
    ["dev/sda", DEVICE_EXPECTED],
    // Tags are case-sensitive, as for the kernel's root=.
    [`partuuid=${USR_A}`, DEVICE_EXPECTED],
    ["label=ROOT", DEVICE_EXPECTED],
    ["PARTUUID=", PARTUUID_EXPECTED],
    ["PARTUUID=xyz", PARTUUID_EXPECTED],
    [`PARTUUID=${USR_A}/PARTNROFF=1`, PARTUUID_EXPECTED],
    [`PARTUUID=${USR_A}x`, PARTUUID_EXPECTED],
    ["PARTUUID=1234abcd-1", PARTUUID_EXPECTED],
    ["PARTLABEL=", PARTLABEL_EXPECTED],
    ["UUID=", UUID_EXPECTED],
    ["UUID=not-a-uuid", UUID_EXPECTED],
    ["UUID=abcd--1234", UUID_EXPECTED],
    ["UUID=-abcd", UUID_EXPECTED],
    [`UUID=${"a".repeat(200)}`, UUID_EXPECTED],
    ["LABEL=", LABEL_EXPECTED],
    ["/dev/", DEV_PATH_EXPECTED],
    ["/dev//sda", DEV_PATH_EXPECTED],
    ["/dev/sda/", DEV_PATH_EXPECTED],
    ["/dev/../etc/passwd", DEV_PATH_EXPECTED],
    ["/dev/./sda", DEV_PATH_EXPECTED],
    ["/dev/my disk", DEV_PATH_EXPECTED],
    ["/dev/sda\x1b", DEV_PATH_EXPECTED],
  ];
  for (const [text, expected] of bad) {
    test(`rejects ${JSON.stringify(text)}`, () => {
      let err: unknown;
      try {
        parseDeviceRef("verity.usr", text);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ParamError);
      const pe = err as ParamError;
      expect(pe.param).toBe("verity.usr");
      expect(pe.value).toBe(text);
      expect(pe.expected).toBe(expected);
    });
  }

  test("the contract's example message", () => {
    expect(() => parseDeviceRef("verity.usr", "FOO=bar")).toThrow(
      "verity.usr=FOO=bar: expected PARTUUID=, PARTLABEL=, UUID=, LABEL= or a /dev/ path",
    );
  });
});
