import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { attrU16, attrU32, CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME, CTRL_CMD_GETFAMILY, decodeAttrs, decodeNetlinkMessages, encodeAttrs, familyRequest, GENL_ID_CTRL, NetlinkError, NLA_F_NESTED, NLM_F, NLMSG, replyOf } from "./genl.ts";
import { connectAttrs, NBD_ATTR, NBD_CMD, NBD_GENL_VERSION, NBD_SOCK_FD, NBD_SOCK_ITEM, STAGE1_REQUEST_TIMEOUT_S } from "../netusr/nbd.ts";

function header(len: number, type: number, flags: number, seq: number): number[] {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint32(0, len, true);
  v.setUint16(4, type, true);
  v.setUint16(6, flags, true);
  v.setUint32(8, seq, true);
  return [...b];
}

describe("generic netlink messages", () => {
  test("the family lookup, byte by byte", () => {
    expect([...familyRequest("nbd", 7)]).toEqual([
      ...header(28, GENL_ID_CTRL, NLM_F.REQUEST | NLM_F.ACK, 7),
      CTRL_CMD_GETFAMILY, 1, 0, 0,
      // nlattr: len 8 (4 + "nbd\0"), type 2
      8, 0, CTRL_ATTR_FAMILY_NAME, 0, 0x6e, 0x62, 0x64, 0,
    ]);
  });

  test("attributes pad to 4 bytes and nested ones carry NLA_F_NESTED", () => {
    expect([...encodeAttrs([{ type: 1, str: "ab" }, { type: 2, u32: 5 }])]).toEqual([7, 0, 1, 0, 0x61, 0x62, 0, 0, 8, 0, 2, 0, 5, 0, 0, 0]);
    expect([...encodeAttrs([{ type: 7, nested: [{ type: 1, u64: 1n }] }])]).toEqual([16, 0, 7, 0x80, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
  });

  test("NBD_CMD_CONNECT's attributes: the socket nested twice, sizes as u64, always read-only, a stage-1 timeout", () => {
    const attrs = decodeAttrs(encodeAttrs(connectAttrs(9, { sizeBytes: 1n << 30n, flags: 1, via: "NBD_OPT_GO" }, "nbd://h/usr")));
    expect(new DataView(attrs.get(NBD_ATTR.SIZE_BYTES)!.buffer, attrs.get(NBD_ATTR.SIZE_BYTES)!.byteOffset).getBigUint64(0, true)).toBe(1n << 30n);
    expect(attrs.get(NBD_ATTR.BLOCK_SIZE_BYTES)!.length).toBe(8);
    // The server allowed writes (HAS_FLAGS only): the kernel is told read-only all the same.
    expect(attrU32(attrs, NBD_ATTR.SERVER_FLAGS, "flags")).toBe(3);
    expect(new TextDecoder().decode(attrs.get(NBD_ATTR.BACKEND_IDENTIFIER)!)).toBe("nbd://h/usr\0");
    expect(attrU32(attrs, NBD_ATTR.TIMEOUT, "timeout")).toBe(STAGE1_REQUEST_TIMEOUT_S);
    const item = decodeAttrs(decodeAttrs(attrs.get(NBD_ATTR.SOCKETS)!).get(NBD_SOCK_ITEM)!);
    expect(attrU32(item, NBD_SOCK_FD, "fd")).toBe(9);
  });

  test("replies: the family id, an acknowledgement, a refusal", () => {
    const reply = new Uint8Array([...header(28, GENL_ID_CTRL, 0, 1), 1, 2, 0, 0, 6, 0, CTRL_ATTR_FAMILY_ID, 0, 0x1f, 0, 0, 0, ...header(36, NLMSG.ERROR, 0, 1), 0, 0, 0, 0, ...new Array(16).fill(0)]);
    const msgs = decodeNetlinkMessages(reply);
    const r = replyOf(msgs, 1);
    expect(r.done).toBe(true);
    expect(r.errno).toBe(0);
    expect(attrU16(decodeAttrs(r.genl[0]!.attrs), CTRL_ATTR_FAMILY_ID, "id")).toBe(0x1f);
    const refused = decodeNetlinkMessages(new Uint8Array([...header(20, NLMSG.ERROR, 0, 2), 0xfe, 0xff, 0xff, 0xff]));
    expect(replyOf(refused, 2)).toEqual({ done: true, errno: 2, genl: [] });
    // Another request's reply is not ours.
    expect(replyOf(refused, 3).done).toBe(false);
  });

  test.each([
    ["a length past the datagram", [...header(40, 20, 0, 1)]],
    ["a length below the header", [...header(8, 20, 0, 1)]],
    ["an error without its code", [...header(16, NLMSG.ERROR, 0, 1)]],
    ["a genl message without its header", [...header(18, 20, 0, 1), 0, 0, 0, 0]],
  ])("refuses %s", (_, bytes) => {
    expect(() => decodeNetlinkMessages(new Uint8Array(bytes))).toThrow(NetlinkError);
  });

  test("attribute lists that lie about lengths are refused; short values are not read", () => {
    expect(() => decodeAttrs(new Uint8Array([40, 0, 1, 0]))).toThrow(NetlinkError);
    expect(() => decodeAttrs(new Uint8Array([2, 0, 1, 0]))).toThrow(NetlinkError);
    expect(() => attrU32(decodeAttrs(new Uint8Array([6, 0, 1, 0, 1, 2, 0, 0])), 1, "x")).toThrow(/no x/);
  });

  test("hostile datagrams decode or throw NetlinkError, never anything else", () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
    for (let i = 0; i < 5000; i++) {
      const b = new Uint8Array(rnd() % 96).map(() => rnd());
      if (b.length >= 4 && i % 2 === 0) new DataView(b.buffer).setUint32(0, Math.max(16, b.length - (rnd() % 8)), true);
      try {
        for (const m of decodeNetlinkMessages(b)) if (m.kind === "genl") decodeAttrs(m.attrs);
      } catch (e) {
        expect(e).toBeInstanceOf(NetlinkError);
      }
    }
  });

  // The numbers as the kernel's headers define them, when a compiler is installed.
  const cc = ["/usr/bin/cc", "/usr/bin/gcc"].find((p) => fs.existsSync(p));
  test.skipIf(!cc || !fs.existsSync("/usr/include/linux/nbd-netlink.h"))("constants agree with linux/netlink.h, genetlink.h and nbd-netlink.h", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bunboot-genl-"));
    try {
      const src = path.join(dir, "genl.c");
      fs.writeFileSync(
        src,
        `#include <stdio.h>
#include <linux/netlink.h>
#include <linux/genetlink.h>
#include <linux/nbd-netlink.h>
#define P(x) printf(#x " %d\\n", (int)(x))
int main(void) {
  P(NLM_F_REQUEST); P(NLM_F_ACK); P(NLMSG_ERROR); P(NLMSG_DONE); P(GENL_ID_CTRL); P(CTRL_CMD_GETFAMILY);
  P(CTRL_ATTR_FAMILY_ID); P(CTRL_ATTR_FAMILY_NAME); P(NLA_F_NESTED); P(NBD_CMD_CONNECT); P(NBD_CMD_DISCONNECT); P(NBD_CMD_RECONFIGURE); P(NBD_GENL_VERSION);
  P(NBD_ATTR_INDEX); P(NBD_ATTR_SIZE_BYTES); P(NBD_ATTR_BLOCK_SIZE_BYTES); P(NBD_ATTR_TIMEOUT); P(NBD_ATTR_SERVER_FLAGS);
  P(NBD_ATTR_SOCKETS); P(NBD_ATTR_BACKEND_IDENTIFIER); P(NBD_SOCK_ITEM); P(NBD_SOCK_FD);
  return 0;
}
`,
      );
      const exe = path.join(dir, "genl");
      expect(Bun.spawnSync([cc!, "-o", exe, src]).stderr.toString()).toBe("");
      const out = Object.fromEntries(Bun.spawnSync([exe]).stdout.toString().trim().split("\n").map((l) => [l.split(" ")[0], Number(l.split(" ")[1])]));
      expect(out).toEqual({
        NLM_F_REQUEST: NLM_F.REQUEST, NLM_F_ACK: NLM_F.ACK, NLMSG_ERROR: NLMSG.ERROR, NLMSG_DONE: NLMSG.DONE, GENL_ID_CTRL, CTRL_CMD_GETFAMILY,
        CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME, NLA_F_NESTED, NBD_CMD_CONNECT: NBD_CMD.CONNECT, NBD_CMD_DISCONNECT: NBD_CMD.DISCONNECT, NBD_CMD_RECONFIGURE: NBD_CMD.RECONFIGURE, NBD_GENL_VERSION,
        NBD_ATTR_INDEX: NBD_ATTR.INDEX, NBD_ATTR_SIZE_BYTES: NBD_ATTR.SIZE_BYTES, NBD_ATTR_BLOCK_SIZE_BYTES: NBD_ATTR.BLOCK_SIZE_BYTES,
        NBD_ATTR_TIMEOUT: NBD_ATTR.TIMEOUT, NBD_ATTR_SERVER_FLAGS: NBD_ATTR.SERVER_FLAGS, NBD_ATTR_SOCKETS: NBD_ATTR.SOCKETS,
        NBD_ATTR_BACKEND_IDENTIFIER: NBD_ATTR.BACKEND_IDENTIFIER, NBD_SOCK_ITEM, NBD_SOCK_FD,
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
