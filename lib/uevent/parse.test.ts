// The device manager hears about disks and drivers only through these
// parsers: a kernel datagram misread means a module never loaded or a disk
// never seen, and a libudev re-broadcast taken for a kernel event would make
// every event count twice. Datagrams are built byte for byte as the kernel's
// kobject_uevent_env() sends them ("ACTION@DEVPATH\0" then KEY=VALUE\0 each).
import { describe, expect, test } from "bun:test";
import { parseNetlinkUevent, parseUeventFile } from "./parse.ts";

const enc = new TextEncoder();

/** A kernel datagram: the header, then each variable NUL-terminated (the kernel ends with a NUL too). */
function kernelDatagram(header: string, vars: string[]): Uint8Array {
  return enc.encode([header, ...vars].map((s) => s + "\0").join(""));
}

/**
 * A libudev re-broadcast (struct monitor_netlink_header in systemd's
 * sd-device/device-monitor.c): "libudev\0", magic 0xfeedcafe in network
 * order, header size, properties offset and length, filter hashes, then the
 * properties as KEY=VALUE\0.
 */
function libudevDatagram(vars: string[]): Uint8Array {
  const props = enc.encode(vars.map((s) => s + "\0").join(""));
  const header = new Uint8Array(40);
  header.set(enc.encode("libudev\0"), 0);
  const dv = new DataView(header.buffer);
  dv.setUint32(8, 0xfeedcafe, false);
  dv.setUint32(12, header.length, true);
  dv.setUint32(16, header.length, true);
  dv.setUint32(20, props.length, true);
  dv.setUint32(24, 0x9a3b21c7, true); // filter_subsystem_hash: arbitrary bytes, some not valid UTF-8
  dv.setUint32(28, 0x00ff80fe, true);
  const out = new Uint8Array(header.length + props.length);
  out.set(header, 0);
  out.set(props, header.length);
  return out;
}

const VDA3 = "/devices/pci0000:00/0000:00:05.0/virtio2/block/vda/vda3";

describe("parseNetlinkUevent: kernel datagrams", () => {
  test("a partition appearing", () => {
    const dg = kernelDatagram(`add@${VDA3}`, [
      "ACTION=add",
      `DEVPATH=${VDA3}`,
      "SUBSYSTEM=block",
      "MAJOR=252",
      "MINOR=3",
      "DEVNAME=vda3",
      "DEVTYPE=partition",
      "DISKSEQ=1",
      "PARTN=3",
      "PARTUUID=7130c94a-213a-4e5a-8e26-6cce9662f132",
      "PARTNAME=USR-A",
      "SEQNUM=1843",
    ]);
    expect(parseNetlinkUevent(dg)).toEqual({
      action: "add",
      devpath: VDA3,
      env: {
        ACTION: "add",
        DEVPATH: VDA3,
        SUBSYSTEM: "block",
        MAJOR: "252",
        MINOR: "3",
        DEVNAME: "vda3",
        DEVTYPE: "partition",
        DISKSEQ: "1",
        PARTN: "3",
        PARTUUID: "7130c94a-213a-4e5a-8e26-6cce9662f132",
        PARTNAME: "USR-A",
        SEQNUM: "1843",
      },
    });
  });

  test("a device with a MODALIAS (what the module loader acts on)", () => {
    const dp = "/devices/pci0000:00/0000:00:05.0/virtio2";
    const ev = parseNetlinkUevent(
      kernelDatagram(`add@${dp}`, [
        "ACTION=add",
        `DEVPATH=${dp}`,
        "SUBSYSTEM=virtio",
        "MODALIAS=virtio:d00000002v00001AF4",
        "SEQNUM=1201",
      ]),
    );
    expect(ev?.action).toBe("add");
    expect(ev?.devpath).toBe(dp);
    expect(ev?.env.SUBSYSTEM).toBe("virtio");
    expect(ev?.env.MODALIAS).toBe("virtio:d00000002v00001AF4");
  });

  test("a PCI MODALIAS is kept verbatim, case included (modprobe matches it against alias globs)", () => {
    const ev = parseNetlinkUevent(
      kernelDatagram("add@/devices/pci0000:00/0000:00:1f.2", [
        "ACTION=add",
        "DEVPATH=/devices/pci0000:00/0000:00:1f.2",
        "SUBSYSTEM=pci",
        "PCI_CLASS=10601",
        "MODALIAS=pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",
      ]),
    );
    expect(ev?.env.MODALIAS).toBe("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01");
  });

  test("remove, change, bind and move", () => {
    for (const action of ["remove", "change", "bind", "unbind", "move", "online", "offline"]) {
      const ev = parseNetlinkUevent(kernelDatagram(`${action}@${VDA3}`, [`ACTION=${action}`, `DEVPATH=${VDA3}`, "SUBSYSTEM=block"]));
      expect(ev?.action).toBe(action);
      expect(ev?.devpath).toBe(VDA3);
    }
  });

  test("ACTION and DEVPATH from the variables win over the header", () => {
    // The header is a summary; the variables are what udev itself uses.
    const ev = parseNetlinkUevent(kernelDatagram("add@/devices/old", ["ACTION=move", "DEVPATH=/devices/new", "DEVPATH_OLD=/devices/old"]));
    expect(ev).toEqual({ action: "move", devpath: "/devices/new", env: { ACTION: "move", DEVPATH: "/devices/new", DEVPATH_OLD: "/devices/old" } });
  });

  test("without ACTION/DEVPATH variables the header supplies them", () => {
    expect(parseNetlinkUevent(kernelDatagram(`change@${VDA3}`, ["SUBSYSTEM=block"]))).toEqual({
      action: "change",
      devpath: VDA3,
      env: { SUBSYSTEM: "block" },
    });
  });

  test("a datagram of only the header", () => {
    expect(parseNetlinkUevent(enc.encode(`add@${VDA3}`))).toEqual({ action: "add", devpath: VDA3, env: {} });
    expect(parseNetlinkUevent(enc.encode(`add@${VDA3}\0`))).toEqual({ action: "add", devpath: VDA3, env: {} });
  });

  test("values keep further '=' signs and may be empty", () => {
    const ev = parseNetlinkUevent(kernelDatagram(`add@${VDA3}`, ["PARTNAME=a=b=c", "EMPTY="]));
    expect(ev?.env).toEqual({ PARTNAME: "a=b=c", EMPTY: "" });
  });

  test("words without a key (no '=' or a leading '=') are skipped", () => {
    const ev = parseNetlinkUevent(kernelDatagram(`add@${VDA3}`, ["garbage", "=value", "SUBSYSTEM=block", ""]));
    expect(ev?.env).toEqual({ SUBSYSTEM: "block" });
  });

  test("a repeated key: the last one counts", () => {
    expect(parseNetlinkUevent(kernelDatagram(`add@${VDA3}`, ["X=1", "X=2"]))?.env.X).toBe("2");
  });

  test("UTF-8 partition names are decoded", () => {
    expect(parseNetlinkUevent(kernelDatagram(`add@${VDA3}`, ["PARTNAME=données"]))?.env.PARTNAME).toBe("données");
  });

  test("a subarray of a larger receive buffer is read within its bounds", () => {
    const dg = kernelDatagram(`add@${VDA3}`, ["ACTION=add", "SUBSYSTEM=block"]);
    const buf = new Uint8Array(8192).fill(0x41);
    buf.set(dg, 0);
    expect(parseNetlinkUevent(buf.subarray(0, dg.length))?.env).toEqual({ ACTION: "add", SUBSYSTEM: "block" });
  });
});

describe("parseNetlinkUevent: not from the kernel", () => {
  test("a libudev re-broadcast is ignored", () => {
    expect(parseNetlinkUevent(libudevDatagram(["ACTION=add", `DEVPATH=${VDA3}`, "SUBSYSTEM=block", "ID_FS_TYPE=ext4"]))).toBeNull();
  });

  test("a libudev message is ignored even if its binary header happens to contain '@'", () => {
    const dg = libudevDatagram(["ACTION=add"]);
    // '@' in the header-size field, after "libudev\0": the prefix, not the '@', rejects it.
    dg[12] = 0x40;
    expect(parseNetlinkUevent(dg)).toBeNull();
  });

  test("a header without '@' is not an event", () => {
    expect(parseNetlinkUevent(kernelDatagram("add", ["ACTION=add"]))).toBeNull();
  });

  test("an empty action before '@' is not an event", () => {
    expect(parseNetlinkUevent(kernelDatagram(`@${VDA3}`, ["ACTION=add"]))).toBeNull();
  });

  test("an empty datagram", () => {
    expect(parseNetlinkUevent(new Uint8Array(0))).toBeNull();
  });
});

describe("parseUeventFile", () => {
  test("a partition's /sys/class/block/<name>/uevent", () => {
    const text = "MAJOR=252\nMINOR=3\nDEVNAME=vda3\nDEVTYPE=partition\nDISKSEQ=1\nPARTN=3\nPARTNAME=USR-A\n";
    expect(parseUeventFile(text)).toEqual({
      MAJOR: "252",
      MINOR: "3",
      DEVNAME: "vda3",
      DEVTYPE: "partition",
      DISKSEQ: "1",
      PARTN: "3",
      PARTNAME: "USR-A",
    });
  });

  test("a device's uevent with MODALIAS", () => {
    expect(parseUeventFile("DRIVER=virtio_blk\nMODALIAS=virtio:d00000002v00001AF4\n")).toEqual({
      DRIVER: "virtio_blk",
      MODALIAS: "virtio:d00000002v00001AF4",
    });
  });

  test("a device-mapper node's DEVNAME with a slash", () => {
    expect(parseUeventFile("MAJOR=253\nMINOR=0\nDEVNAME=dm-0\nDEVTYPE=disk\n").DEVNAME).toBe("dm-0");
    expect(parseUeventFile("DEVNAME=mapper/usr\n").DEVNAME).toBe("mapper/usr");
  });

  test("without a trailing newline", () => {
    expect(parseUeventFile("MAJOR=8\nMINOR=0")).toEqual({ MAJOR: "8", MINOR: "0" });
  });

  test("empty text (an unreadable file is passed as \"\")", () => {
    expect(parseUeventFile("")).toEqual({});
  });

  test("values keep '=' and blanks; lines without a key are skipped", () => {
    expect(parseUeventFile("PARTNAME=a = b\nnoequals\n=x\n\nK=\n")).toEqual({ PARTNAME: "a = b", K: "" });
  });
});
