import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { encodeNewc } from "../build/cpio.ts";
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
