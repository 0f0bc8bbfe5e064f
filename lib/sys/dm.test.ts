// The device-mapper ioctl buffers (lib/sys/dm.ts): layout against the
// kernel's header, request encoding byte by byte, reply decoding including
// hostile replies, the verity table line and dev_t decoding.
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  decodeDev,
  decodeDmHeader,
  decodeTargets,
  DM_CMD,
  DM_FLAG,
  DM_IOCTL_SIZE,
  DM_OFF,
  DM_TARGET_SPEC_SIZE,
  DmError,
  dmRequest,
  encodeDmIoctl,
  formatDev,
  formatTarget,
  verityTarget,
  type DmTarget,
  type VerityTableInput,
} from "./dm.ts";

const HEADER = "/usr/include/linux/dm-ioctl.h";
const ROOT = "54c6b38d075ef88d6408a410ff43cff7e34d16613a2186de021aed8123cd1ed2";
const SALT = Uint8Array.from({ length: 32 }, (_, i) => i * 7);

const text = (b: Uint8Array, at: number, n: number) => {
  const s = b.subarray(at, at + n);
  const nul = s.indexOf(0);
  return new TextDecoder().decode(nul < 0 ? s : s.subarray(0, nul));
};

/**
 * A reply as the kernel's retrieve_status() writes it: data_start 312, each
 * spec's `next` counted from the first spec, data_size the end of the last
 * string. `tweak` corrupts it afterwards.
 */
function reply(targets: DmTarget[], opts: { size?: number; flags?: number; tweak?: (v: DataView, b: Uint8Array) => void } = {}): Uint8Array {
  const b = new Uint8Array(opts.size ?? 4096);
  const v = new DataView(b.buffer);
  [4, 47, 0].forEach((x, i) => v.setUint32(4 * i, x, true));
  v.setUint32(DM_OFF.dataStart, DM_IOCTL_SIZE, true);
  v.setUint32(DM_OFF.targetCount, targets.length, true);
  v.setUint32(DM_OFF.flags, opts.flags ?? 0, true);
  v.setBigUint64(DM_OFF.dev, 0xfe00n, true);
  b.set(new TextEncoder().encode("usr"), DM_OFF.name);
  let at = DM_IOCTL_SIZE;
  let used = DM_IOCTL_SIZE;
  for (const t of targets) {
    v.setBigUint64(at, t.start, true);
    v.setBigUint64(at + 8, t.length, true);
    b.set(new TextEncoder().encode(t.type), at + 24);
    const p = new TextEncoder().encode(t.params);
    b.set(p, at + DM_TARGET_SPEC_SIZE);
    used = at + DM_TARGET_SPEC_SIZE + p.length + 1;
    const next = (used + 7) & ~7;
    v.setUint32(at + 20, next - DM_IOCTL_SIZE, true);
    at = next;
  }
  v.setUint32(DM_OFF.dataSize, used, true);
  opts.tweak?.(v, b);
  return b;
}

const linear: DmTarget = { start: 0n, length: 2048n, type: "linear", params: "252:3 0" };
const verity: DmTarget = { start: 0n, length: 2080752n, type: "verity", params: "V" };

function verityInput(over: Partial<VerityTableInput> = {}): VerityTableInput {
  return {
    dataDev: "254:3",
    hashDev: "254:3",
    hashType: 1,
    dataBlockSize: 4096,
    hashBlockSize: 4096,
    dataBlocks: 260094n,
    hashStartBlock: 260095n,
    algorithm: "sha256",
    rootHash: ROOT,
    salt: SALT,
    options: ["panic_on_corruption"],
    ...over,
  };
}

describe("layout and request numbers", () => {
  test("the request numbers are _IOWR(0xfd, nr, 312 bytes)", () => {
    expect(dmRequest("VERSION")).toBe(0xc138fd00);
    expect(dmRequest("DEV_CREATE")).toBe(0xc138fd03);
    expect(dmRequest("DEV_REMOVE")).toBe(0xc138fd04);
    expect(dmRequest("DEV_SUSPEND")).toBe(0xc138fd06);
    expect(dmRequest("TABLE_LOAD")).toBe(0xc138fd09);
    expect(dmRequest("TABLE_STATUS")).toBe(0xc138fd0c);
  });

  test.skipIf(!fs.existsSync(HEADER))("command numbers and flags agree with the kernel's header", () => {
    const h = fs.readFileSync(HEADER, "utf8");
    const body = h.match(/enum\s*\{([^}]*DM_VERSION_CMD[^}]*)\}/)![1]!;
    const names = [...body.matchAll(/\bDM_([A-Z_]+)_CMD\b/g)].map((m) => m[1]!);
    for (const [name, nr] of Object.entries(DM_CMD)) expect(`${name}=${names.indexOf(name)}`).toBe(`${name}=${nr}`);
    const flag = (n: string) => Number(h.match(new RegExp(`#define\\s+DM_${n}_FLAG\\s+\\(1 << (\\d+)\\)`))![1]);
    expect(DM_FLAG.READONLY).toBe(1 << flag("READONLY"));
    expect(DM_FLAG.SUSPEND).toBe(1 << flag("SUSPEND"));
    expect(DM_FLAG.STATUS_TABLE).toBe(1 << flag("STATUS_TABLE"));
    expect(DM_FLAG.BUFFER_FULL).toBe(1 << flag("BUFFER_FULL"));
  });

  // The struct layout as the C compiler sees it, when one is installed.
  const cc = ["/usr/bin/cc", "/usr/bin/gcc"].find((p) => fs.existsSync(p));
  test.skipIf(!cc || !fs.existsSync(HEADER))("sizes, offsets and request numbers agree with the C compiler", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bunboot-dm-"));
    try {
      const src = path.join(dir, "dm.c");
      fs.writeFileSync(
        src,
        `#include <stdio.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <linux/dm-ioctl.h>
#define O(f) printf(#f " %zu\\n", offsetof(struct dm_ioctl, f))
int main(void) {
  printf("size %zu\\nspec %zu\\n", sizeof(struct dm_ioctl), sizeof(struct dm_target_spec));
  O(version); O(data_size); O(data_start); O(target_count); O(open_count); O(flags); O(event_nr); O(dev); O(name); O(uuid);
  printf("spec_next %zu\\nspec_type %zu\\n", offsetof(struct dm_target_spec, next), offsetof(struct dm_target_spec, target_type));
  printf("create %lu\\nload %lu\\nstatus %lu\\n", (unsigned long)DM_DEV_CREATE, (unsigned long)DM_TABLE_LOAD, (unsigned long)DM_TABLE_STATUS);
  return 0;
}
`,
      );
      const exe = path.join(dir, "dm");
      const built = Bun.spawnSync([cc!, "-o", exe, src]);
      expect(built.stderr.toString()).toBe("");
      const out = Object.fromEntries(
        Bun.spawnSync([exe])
          .stdout.toString()
          .trim()
          .split("\n")
          .map((l) => l.split(" ") as [string, string])
          .map(([k, n]) => [k, Number(n)]),
      );
      expect(out).toEqual({
        size: DM_IOCTL_SIZE,
        spec: DM_TARGET_SPEC_SIZE,
        version: DM_OFF.version,
        data_size: DM_OFF.dataSize,
        data_start: DM_OFF.dataStart,
        target_count: DM_OFF.targetCount,
        open_count: DM_OFF.openCount,
        flags: DM_OFF.flags,
        event_nr: DM_OFF.eventNr,
        dev: DM_OFF.dev,
        name: DM_OFF.name,
        uuid: DM_OFF.uuid,
        spec_next: 20,
        spec_type: 24,
        create: dmRequest("DEV_CREATE"),
        load: dmRequest("TABLE_LOAD"),
        status: dmRequest("TABLE_STATUS"),
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("encodeDmIoctl", () => {
  test("a create request: version 4.0.0, sizes, flags, name and uuid at their offsets", () => {
    const b = encodeDmIoctl({ name: "usr", uuid: "CRYPT-VERITY-abc-usr", flags: DM_FLAG.READONLY });
    const v = new DataView(b.buffer);
    expect(b.length).toBe(312);
    expect([v.getUint32(0, true), v.getUint32(4, true), v.getUint32(8, true)]).toEqual([4, 0, 0]);
    expect(v.getUint32(12, true)).toBe(312);
    expect(v.getUint32(16, true)).toBe(312);
    expect(v.getUint32(20, true)).toBe(0);
    expect(v.getUint32(28, true)).toBe(1);
    expect(text(b, 48, 128)).toBe("usr");
    expect(text(b, 176, 129)).toBe("CRYPT-VERITY-abc-usr");
    // Everything else is zero.
    const rest = b.slice();
    rest.fill(0, 0, 32);
    rest.fill(0, 48, 51);
    rest.fill(0, 176, 196);
    expect(rest.every((x) => x === 0)).toBe(true);
  });

  test("a table load: each spec at its offset, next counted from that spec, params NUL-terminated and 8-byte aligned", () => {
    const t1: DmTarget = { start: 0n, length: 8n, type: "linear", params: "254:1 0" };
    const t2: DmTarget = { start: 8n, length: 2080752n, type: "verity", params: "1 254:3 254:3 4096 4096 260094 260095 sha256 ab -" };
    const b = encodeDmIoctl({ name: "usr", targets: [t1, t2], flags: DM_FLAG.READONLY });
    const v = new DataView(b.buffer);
    expect(v.getUint32(20, true)).toBe(2);
    const first = 312;
    expect(v.getBigUint64(first, true)).toBe(0n);
    expect(v.getBigUint64(first + 8, true)).toBe(8n);
    expect(text(b, first + 24, 16)).toBe("linear");
    expect(text(b, first + 40, 100)).toBe("254:1 0");
    expect(b[first + 40 + 7]).toBe(0);
    const next = v.getUint32(first + 20, true);
    // 40 + "254:1 0\0" = 48, already aligned.
    expect(next).toBe(48);
    const second = first + next;
    expect(second % 8).toBe(0);
    expect(v.getBigUint64(second, true)).toBe(8n);
    expect(v.getBigUint64(second + 8, true)).toBe(2080752n);
    expect(text(b, second + 24, 16)).toBe("verity");
    expect(text(b, second + 40, 200)).toBe(t2.params);
    expect(b.length).toBe(second + ((40 + t2.params.length + 1 + 7) & ~7));
    expect(v.getUint32(12, true)).toBe(b.length);
    expect(b.length % 8).toBe(0);
  });

  test("a status request gets the buffer size asked for, and data_size says so", () => {
    const b = encodeDmIoctl({ name: "usr", flags: DM_FLAG.STATUS_TABLE, bufferSize: 16384 });
    expect(b.length).toBe(16384);
    expect(new DataView(b.buffer).getUint32(12, true)).toBe(16384);
    expect(new DataView(b.buffer).getUint32(28, true)).toBe(16);
  });

  test("names, uuids, types and params the kernel would cut or misread are refused", () => {
    expect(() => encodeDmIoctl({ name: "" })).toThrow(DmError);
    expect(() => encodeDmIoctl({ name: "a/b" })).toThrow("is not allowed");
    expect(() => encodeDmIoctl({ name: "x".repeat(128) })).toThrow("is 128 bytes; at most 127 fit");
    expect(encodeDmIoctl({ name: "x".repeat(127) }).length).toBe(312);
    expect(() => encodeDmIoctl({ name: "usr", uuid: "u".repeat(129) })).toThrow("at most 128 fit");
    expect(() => encodeDmIoctl({ name: "u\0sr" })).toThrow("contains a NUL byte");
    expect(() => encodeDmIoctl({ name: "usr", targets: [{ ...linear, type: "a-sixteen-chars!" }] })).toThrow("at most 15 fit");
    expect(() => encodeDmIoctl({ name: "usr", targets: [{ ...linear, params: "0\x000" }] })).toThrow("contains a NUL byte");
    expect(() => encodeDmIoctl({ name: "usr", targets: [{ ...linear, length: 0n }] })).toThrow(DmError);
    expect(() => encodeDmIoctl({ name: "usr", targets: [{ ...linear, start: 1n << 64n }] })).toThrow(DmError);
  });
});

describe("decodeTargets", () => {
  test("a reply with two targets round-trips, next counted from the first spec", () => {
    const r = decodeTargets(reply([linear, verity]));
    expect(r.kind).toBe("ok");
    if (r.kind !== "ok") return;
    expect(r.targets).toEqual([linear, verity]);
    expect(r.header).toMatchObject({ version: [4, 47, 0], targetCount: 2, name: "usr", uuid: "", dev: 0xfe00n });
    expect(r.targets.map(formatTarget)).toEqual(["0 2048 linear 252:3 0", "0 2080752 verity V"]);
  });

  test("no table: no targets", () => {
    expect(decodeTargets(reply([]))).toMatchObject({ kind: "ok", targets: [] });
  });

  test("a target without parameters, and a 16-character type name without NUL from an older kernel", () => {
    const r = decodeTargets(reply([{ start: 0n, length: 1n, type: "error", params: "" }]));
    expect(r).toMatchObject({ kind: "ok", targets: [{ type: "error", params: "" }] });
    const long = decodeTargets(reply([{ start: 0n, length: 1n, type: "abcdefghijklmnop", params: "x" }]));
    expect(long).toMatchObject({ kind: "ok", targets: [{ type: "abcdefghijklmnop", params: "x" }] });
  });

  test("BUFFER_FULL is reported for a retry, whatever else the reply holds", () => {
    const r = decodeTargets(reply([linear], { flags: DM_FLAG.BUFFER_FULL, tweak: (v) => v.setUint32(DM_OFF.dataSize, 1 << 30, true) }));
    expect(r.kind).toBe("full");
  });

  test("hostile replies: a clear DmError, never a read outside the buffer", () => {
    const bad = (tweak: (v: DataView, b: Uint8Array) => void, targets = [linear, verity]) => () => decodeTargets(reply(targets, { tweak }));
    expect(bad((v) => v.setUint32(DM_OFF.dataSize, 5000, true))).toThrow("data_size 5000 is beyond the buffer of 4096 bytes");
    expect(bad((v) => v.setUint32(DM_OFF.dataStart, 4000, true))).toThrow("data_start 4000 is outside 312..");
    expect(bad((v) => v.setUint32(DM_OFF.dataStart, 100, true))).toThrow("data_start 100 is outside 312..");
    // next pointing outside the buffer, backwards, or at itself.
    expect(bad((v) => v.setUint32(312 + 20, 0xfffffff0, true))).toThrow("its 40-byte header ends beyond data_size");
    expect(bad((v) => v.setUint32(312 + 20, 0, true))).toThrow("does not start after this one's parameters");
    expect(bad((v) => v.setUint32(312 + 20, 8, true))).toThrow("does not start after this one's parameters");
    // The parameter string runs to data_size without a NUL.
    expect(
      bad((v, b) => {
        const end = v.getUint32(DM_OFF.dataSize, true);
        b.fill(0x41, 312 + 40, end);
      }, [linear]),
    ).toThrow("its parameter string has no NUL before data_size");
    // More targets announced than the reply holds.
    expect(bad((v) => v.setUint32(DM_OFF.targetCount, 3, true))).toThrow("target 3 of 3");
    expect(bad((v) => v.setUint32(DM_OFF.targetCount, 0xffffffff, true))).toThrow(DmError);
    // Not interface version 4, or shorter than the header.
    expect(bad((v) => v.setUint32(0, 5, true))).toThrow("interface version 5.47.0 is not 4.x");
    expect(() => decodeTargets(new Uint8Array(311))).toThrow("shorter than struct dm_ioctl");
    // A name without its NUL.
    expect(bad((_, b) => b.fill(0x61, DM_OFF.name, DM_OFF.name + 128))).toThrow("name in the reply is not NUL-terminated");
  });

  test("the header of a create reply", () => {
    const b = encodeDmIoctl({ name: "usr", uuid: "CRYPT-VERITY-x-usr" });
    new DataView(b.buffer).setBigUint64(DM_OFF.dev, 0xfe00n, true);
    new DataView(b.buffer).setInt32(DM_OFF.openCount, -1, true);
    expect(decodeDmHeader(b)).toMatchObject({ name: "usr", uuid: "CRYPT-VERITY-x-usr", dev: 0xfe00n, openCount: -1, dataSize: 312 });
  });
});

describe("decodeDev", () => {
  test("the kernel's huge encoding and glibc's: small and large majors and minors", () => {
    expect(decodeDev(0xfe00n)).toEqual({ major: 254, minor: 0 });
    expect(decodeDev(0xfe03)).toEqual({ major: 254, minor: 3 });
    expect(formatDev(0x803)).toBe("8:3");
    // minor 256 and above: bits 20.. of the 32-bit encoding.
    expect(decodeDev((0x100n << 12n) | (253n << 8n))).toEqual({ major: 253, minor: 256 });
    expect(decodeDev(0xfff_ff_fffn)).toEqual({ major: 0xfff, minor: 0xfffff });
    // glibc's 64-bit dev_t: the major's high bits above bit 32.
    expect(decodeDev((0x12345n << 44n) | (0xabcn << 8n))).toEqual({ major: 0x12345abc, minor: 0 });
  });

  test("the inverse of glibc's makedev for every major up to 4095 and a spread of minors", () => {
    const makedev = (ma: number, mi: number) => (BigInt(ma & 0xfff) << 8n) | BigInt(mi & 0xff) | (BigInt(mi & ~0xff) << 12n) | (BigInt(ma & ~0xfff) << 32n);
    for (let ma = 0; ma < 4096; ma += 17) {
      for (const mi of [0, 1, 255, 256, 4095, 65536, 0xfffff]) expect(decodeDev(makedev(ma, mi))).toEqual({ major: ma, minor: mi });
    }
  });
});

describe("verityTarget", () => {
  test("Flatcar's USR partition: the line veritysetup loads", () => {
    const t = verityTarget(verityInput());
    expect(formatTarget(t)).toBe(`0 2080752 verity 1 254:3 254:3 4096 4096 260094 260095 sha256 ${ROOT} ${Buffer.from(SALT).toString("hex")} 1 panic_on_corruption`);
    expect(t.length).toBe((260094n * 4096n) / 512n);
  });

  test("no salt is -, no options no count, hash type 0, 512-byte blocks", () => {
    const t = verityTarget(verityInput({ salt: new Uint8Array(), options: [], hashType: 0, dataBlockSize: 512, hashBlockSize: 1024, dataBlocks: 3n, hashStartBlock: 7n }));
    expect(t.params).toBe(`0 254:3 254:3 512 1024 3 7 sha256 ${ROOT} -`);
    expect(t.length).toBe(3n);
  });

  test("a value that would shift the fields is refused", () => {
    expect(() => verityTarget(verityInput({ dataDev: "/dev/vda3" }))).toThrow("must be major:minor");
    expect(() => verityTarget(verityInput({ algorithm: "sha 256" }))).toThrow("is not one word");
    expect(() => verityTarget(verityInput({ rootHash: ROOT.toUpperCase() }))).toThrow("is not lower-case hex");
    expect(() => verityTarget(verityInput({ options: ["panic_on_corruption ignore_corruption"] }))).toThrow("is not one word");
    expect(() => verityTarget(verityInput({ dataBlockSize: 4095 }))).toThrow("is not a power of two");
    expect(() => verityTarget(verityInput({ hashType: 2 }))).toThrow("is not 0 or 1");
    expect(() => verityTarget(verityInput({ dataBlocks: 0n }))).toThrow("must be above 0");
  });

  test("the table line goes into a load request and comes back out of a reply unchanged", () => {
    const t = verityTarget(verityInput());
    const b = encodeDmIoctl({ name: "usr", targets: [t] });
    const v = new DataView(b.buffer);
    expect(text(b, 312 + 40, 1000)).toBe(t.params);
    // Turn the request into a reply: next counted from the first spec, data_size the string's end.
    v.setUint32(DM_OFF.dataSize, 312 + 40 + t.params.length + 1, true);
    expect(decodeTargets(b)).toMatchObject({ kind: "ok", targets: [t] });
  });
});
