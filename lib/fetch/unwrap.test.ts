import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { encodeNewc } from "../initrd/cpio.ts";
import { UnwrapError, UsrImageUnwrapper } from "./unwrap.ts";

const squash = Buffer.concat([Buffer.from("hsqs"), randomBytes(10_001)]);

function feed(data: Uint8Array, piece: number): { out: Buffer; u: UsrImageUnwrapper } {
  const u = new UsrImageUnwrapper();
  const out: Uint8Array[] = [];
  for (let i = 0; i < data.length; i += piece) out.push(...u.push(data.subarray(i, i + piece)));
  u.end();
  return { out: Buffer.concat(out), u };
}

describe("unwrapping the /usr image while it streams", () => {
  test("a squashfs passes through, whatever the piece size", () => {
    for (const piece of [1, 3, 7, 4096, 1 << 20]) expect(feed(squash, piece).out).toEqual(squash);
  });

  test("a cpio (with other entries and trailing padding) yields exactly usr.squashfs", () => {
    const cpio = Buffer.concat([
      ...encodeNewc([
        { kind: "dir", path: "etc" },
        { kind: "file", path: "etc/x", data: Buffer.from("abc") },
        { kind: "file", path: "usr.squashfs", data: squash },
        { kind: "file", path: "zzz", data: Buffer.from("tail") },
      ]),
      Buffer.alloc(512),
    ]);
    for (const piece of [1, 5, 110, 111, 4096]) {
      const { out, u } = feed(cpio, piece);
      expect(out).toEqual(squash);
      expect(u.format).toBe("cpio");
    }
  });

  test("errors say what was expected", () => {
    expect(() => feed(Buffer.from("<html>not found</html>"), 100)).toThrow('the image is neither a squashfs (magic "hsqs") nor a newc cpio (magic "070701"): it starts with 3c 68 74 6d 6c 3e');
    expect(() => feed(Buffer.concat(encodeNewc([{ kind: "file", path: "other", data: Buffer.from("x") }])), 64)).toThrow("the cpio image holds no usr.squashfs");
    const cut = Buffer.concat(encodeNewc([{ kind: "file", path: "usr.squashfs", data: squash }])).subarray(0, 5000);
    expect(() => feed(cut, 64)).toThrow(UnwrapError);
    expect(() => feed(cut, 64)).toThrow("cpio: the archive ends inside an entry");
    expect(() => feed(Buffer.from("hs"), 1)).toThrow("the image is too short (2 bytes)");
  });
});

// A newc header from its 13 fields as text, exactly as they appear on the wire.
function rawHeader(fields: Partial<Record<"mode" | "filesize" | "namesize", string>>, name: Uint8Array): Buffer {
  const f = (s: string | undefined, d: string) => s ?? d;
  const text =
    "070701" +
    "00000001" +
    f(fields.mode, "000081A4") +
    "00000000".repeat(4) +
    f(fields.filesize, "00000000") +
    "00000000".repeat(4) +
    f(fields.namesize, (name.length + 1).toString(16).toUpperCase().padStart(8, "0")) +
    "00000000";
  const head = Buffer.concat([Buffer.from(text, "latin1"), name, Buffer.from([0])]);
  return Buffer.concat([head, Buffer.alloc((4 - (head.length % 4)) % 4)]);
}

describe("malformed cpio headers end with an UnwrapError, never a loop", () => {
  test("the 116-byte archive with filesize -0000070 that made PID 1 spin", () => {
    // printf '070701...-0000070...00000002 00000000 a\0pad!'
    const neg = Buffer.from(
      "070701" + ["00000000", "000081A4", "00000000", "00000000", "00000000", "00000000", "-0000070", "00000000", "00000000", "00000000", "00000000", "00000002", "00000000"].join("") + "a\0pad!",
      "latin1",
    );
    expect(neg.length).toBe(116);
    const t0 = performance.now();
    expect(() => feed(neg, 116)).toThrow('cpio: header field filesize at byte 54 is "-0000070"; expected 8 hex digits');
    expect(() => feed(neg, 1)).toThrow(UnwrapError);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  test.each([
    ["+0000010", "filesize"],
    [" 0000010", "filesize"],
    ["0x000010", "filesize"],
    ["0000001g", "filesize"],
    ["1e+00000", "filesize"],
  ])("filesize %p is refused", (bad, field) => {
    const cpio = Buffer.concat([rawHeader({ filesize: bad }, Buffer.from("usr.squashfs")), Buffer.alloc(64)]);
    expect(() => feed(cpio, 7)).toThrow(`cpio: header field ${field} at byte 54 is ${JSON.stringify(bad)}; expected 8 hex digits`);
  });

  test("a name size of 0 or above PATH_MAX is refused before anything is allocated", () => {
    expect(() => feed(rawHeader({ namesize: "00000000" }, Buffer.from("")), 50)).toThrow("cpio: name size 0 at byte 94 is out of range; expected 1 to 4096");
    expect(() => feed(Buffer.concat([rawHeader({ namesize: "FFFFFFFF" }, Buffer.from("x")), Buffer.alloc(100)]), 50)).toThrow("cpio: name size 4294967295 at byte 94 is out of range; expected 1 to 4096");
  });

  test("a name must end with its only NUL and be UTF-8", () => {
    const noNul = Buffer.concat([rawHeader({ namesize: "00000002" }, Buffer.from("a")).subarray(0, 110), Buffer.from("ab\0\0")]);
    expect(() => feed(noNul, 9)).toThrow("cpio: the entry name at byte 110 is not NUL-terminated");
    expect(() => feed(rawHeader({}, Buffer.from("usr.squashfs\0x")), 9)).toThrow("cpio: the entry name at byte 110 contains a NUL");
    expect(() => feed(rawHeader({}, Buffer.from([0xff, 0xfe])), 9)).toThrow("cpio: the entry name at byte 110 is not valid UTF-8");
  });

  test("usr.squashfs must be a regular file holding a squashfs", () => {
    const link = Buffer.concat(encodeNewc([{ kind: "symlink", path: "usr.squashfs", target: "hsqs-but-a-link" }]));
    expect(() => feed(link, 64)).toThrow("cpio: usr.squashfs at byte 0 is not a regular file (mode 0o120777)");
    const dir = Buffer.concat(encodeNewc([{ kind: "dir", path: "usr.squashfs" }]));
    expect(() => feed(dir, 64)).toThrow("cpio: usr.squashfs at byte 0 is not a regular file (mode 0o40755)");
    const html = Buffer.concat(encodeNewc([{ kind: "file", path: "usr.squashfs", data: Buffer.from("<html>404</html>") }]));
    expect(() => feed(html, 3)).toThrow('cpio: usr.squashfs does not start with the squashfs magic "hsqs": it starts with 3c 68 74 6d');
    const tiny = Buffer.concat(encodeNewc([{ kind: "file", path: "usr.squashfs", data: Buffer.from("hs") }]));
    expect(() => feed(tiny, 3)).toThrow("cpio: usr.squashfs is 2 bytes, too small to be a squashfs");
    const twice = Buffer.concat([rawHeader({ filesize: "00000004" }, Buffer.from("usr.squashfs")), Buffer.from("hsqs"), ...encodeNewc([{ kind: "file", path: "usr.squashfs", data: squash }])]);
    expect(() => feed(twice, 100)).toThrow("cpio: the archive holds usr.squashfs twice");
  });
});
