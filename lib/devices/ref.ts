// Device references: how the command line names a block device
// (verity.usr=, mount.usr=, and the kexec tool reading /proc/cmdline), parsed
// and spelt back. Pure; matching a reference against devices is match.ts.
import { ParamError } from "../param-error.ts";

export type DeviceRef =
  | { kind: "partuuid"; value: string } // lower-cased
  | { kind: "partlabel"; value: string } // exact
  | { kind: "uuid"; value: string } // lower-cased
  | { kind: "label"; value: string } // exact
  | { kind: "path"; value: string }; // starts with /dev/

export const DEVICE_EXPECTED = "PARTUUID=, PARTLABEL=, UUID=, LABEL= or a /dev/ path";
const PARTUUID_EXPECTED =
  "PARTUUID= with a GPT partition UUID (such as 7130c94a-213a-4e5a-8e26-6cce9662f132) or an MBR one (such as 1234abcd-01)";
const UUID_EXPECTED = "UUID= with a filesystem UUID (hex digits and dashes)";
const PARTLABEL_EXPECTED = "PARTLABEL= with a non-empty partition name";
const LABEL_EXPECTED = "LABEL= with a non-empty filesystem label";
const DEV_PATH_EXPECTED = "a path below /dev/ without spaces, control characters, empty, . or .. components";

// GPT: 8-4-4-4-12 hex. MBR (as the kernel's root=PARTUUID= accepts it): the
// 32-bit disk signature and the partition number, both in hex.
const GPT_UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MBR_PARTUUID_RE = /^[0-9a-f]{8}-[0-9a-f]{2}$/i;
// Filesystem UUIDs come in several shapes (ext4/btrfs/xfs 8-4-4-4-12, vfat
// "ABCD-1234", NTFS 16 hex digits, iso9660 dates), so only the alphabet is
// checked. The length cap keeps a huge typo away from the regex.
const FS_UUID_RE = /^[0-9a-f]+(?:-[0-9a-f]+)*$/i;
const FS_UUID_MAX = 128;
const DEV_PATH_BAD_CHAR_RE = /[\s\u0000-\u001f\u007f-\u009f]/;

function parseDevPath(param: string, text: string): DeviceRef {
  const rest = text.slice("/dev/".length);
  const ok =
    rest.length > 0 &&
    !DEV_PATH_BAD_CHAR_RE.test(text) &&
    rest.split("/").every((part) => part !== "" && part !== "." && part !== "..");
  if (!ok) throw new ParamError(param, text, DEV_PATH_EXPECTED);
  return { kind: "path", value: text };
}

/**
 * Parses a device reference (verity.usr=, mount.usr=). The tags are
 * case-sensitive, as for the kernel's root=. UUIDs are lower-cased because
 * blkid and the kernel print them in either case; labels are kept exact
 * because they are compared exactly (never as substrings, unlike Flatcar's
 * script).
 */
export function parseDeviceRef(param: string, text: string): DeviceRef {
  if (text.startsWith("PARTUUID=")) {
    const v = text.slice("PARTUUID=".length);
    if (!GPT_UUID_RE.test(v) && !MBR_PARTUUID_RE.test(v)) throw new ParamError(param, text, PARTUUID_EXPECTED);
    return { kind: "partuuid", value: v.toLowerCase() };
  }
  if (text.startsWith("PARTLABEL=")) {
    const v = text.slice("PARTLABEL=".length);
    if (v === "") throw new ParamError(param, text, PARTLABEL_EXPECTED);
    return { kind: "partlabel", value: v };
  }
  if (text.startsWith("UUID=")) {
    const v = text.slice("UUID=".length);
    if (v.length > FS_UUID_MAX || !FS_UUID_RE.test(v)) throw new ParamError(param, text, UUID_EXPECTED);
    return { kind: "uuid", value: v.toLowerCase() };
  }
  if (text.startsWith("LABEL=")) {
    const v = text.slice("LABEL=".length);
    if (v === "") throw new ParamError(param, text, LABEL_EXPECTED);
    return { kind: "label", value: v };
  }
  if (text.startsWith("/dev/")) return parseDevPath(param, text);
  throw new ParamError(param, text, DEVICE_EXPECTED);
}

/** The command-line spelling of a device reference; parseDeviceRef() reads it back unchanged. */
export function formatDeviceRef(ref: DeviceRef): string {
  switch (ref.kind) {
    case "partuuid":
      return `PARTUUID=${ref.value}`;
    case "partlabel":
      return `PARTLABEL=${ref.value}`;
    case "uuid":
      return `UUID=${ref.value}`;
    case "label":
      return `LABEL=${ref.value}`;
    case "path":
      return ref.value;
  }
}
