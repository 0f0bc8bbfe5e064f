import { describe, expect, test } from "bun:test";
import {
  decodePacket,
  encodeAck,
  encodeData,
  encodeError,
  encodeOack,
  encodeRrq,
  negotiate,
  parseTftpUrl,
  requestOptions,
  TftpError,
  type TftpRequest,
} from "./tftp.ts";

const bytes = (...parts: Array<number | string>) =>
  new Uint8Array(parts.flatMap((p) => (typeof p === "number" ? [p] : [...new TextEncoder().encode(p)])));

const REQ: TftpRequest = { blksize: 1468, windowsize: 16, tsize: true };

describe("encoding", () => {
  test("RRQ in octet mode with options, byte for byte (RFC 1350, 2347)", () => {
    expect(encodeRrq("usr.squashfs", requestOptions(REQ))).toEqual(
      bytes(0, 1, "usr.squashfs", 0, "octet", 0, "blksize", 0, "1468", 0, "tsize", 0, "0", 0, "windowsize", 0, "16", 0),
    );
    expect(encodeRrq("a")).toEqual(bytes(0, 1, "a", 0, "octet", 0));
  });

  test("default values are not asked for", () => {
    expect(requestOptions({ blksize: 512, windowsize: 1, tsize: false })).toEqual([]);
  });

  test("a request over 512 bytes, an empty or NUL name is a TftpError", () => {
    expect(() => encodeRrq("x".repeat(500), requestOptions(REQ))).toThrow(/more than the 512/);
    expect(() => encodeRrq("")).toThrow(TftpError);
    expect(() => encodeRrq("a\0b")).toThrow(TftpError);
  });

  test("ACK, DATA, ERROR, OACK", () => {
    expect(encodeAck(0x1234)).toEqual(bytes(0, 4, 0x12, 0x34));
    expect(encodeData(65535, bytes(9, 8))).toEqual(bytes(0, 3, 0xff, 0xff, 9, 8));
    expect(encodeError(5, "unknown transfer ID")).toEqual(bytes(0, 5, 0, 5, "unknown transfer ID", 0));
    expect(encodeOack([["blksize", "1428"]])).toEqual(bytes(0, 6, "blksize", 0, "1428", 0));
    expect(() => encodeAck(65536)).toThrow(TftpError);
    expect(() => encodeAck(-1)).toThrow(TftpError);
  });

  test("every packet decodes to what was encoded", () => {
    expect(decodePacket(encodeRrq("f", [["BlkSize", "8"]]))).toEqual({ op: "RRQ", filename: "f", mode: "octet", options: new Map([["blksize", "8"]]) });
    expect(decodePacket(encodeData(7, bytes(1, 2, 3)))).toEqual({ op: "DATA", block: 7, data: bytes(1, 2, 3) });
    expect(decodePacket(encodeData(1, bytes()))).toEqual({ op: "DATA", block: 1, data: bytes() });
    expect(decodePacket(encodeAck(65535))).toEqual({ op: "ACK", block: 65535 });
    expect(decodePacket(encodeError(1, "File not found"))).toEqual({ op: "ERROR", code: 1, message: "File not found" });
    expect(decodePacket(encodeOack([["TSIZE", "99"]]))).toEqual({ op: "OACK", options: new Map([["tsize", "99"]]) });
  });
});

describe("decoding hostile packets", () => {
  test.each([
    ["empty", bytes()],
    ["one byte", bytes(0)],
    ["opcode 0", bytes(0, 0, 0, 1)],
    ["opcode 7", bytes(0, 7)],
    ["opcode 0x0103", bytes(1, 3, 0, 1)],
    ["truncated DATA", bytes(0, 3, 0)],
    ["truncated ACK", bytes(0, 4, 0)],
    ["long ACK", bytes(0, 4, 0, 1, 0)],
    ["truncated ERROR", bytes(0, 5, 0)],
    ["OACK with an unterminated name", bytes(0, 6, "blksize")],
    ["OACK with an unterminated value", bytes(0, 6, "blksize", 0, "512")],
    ["OACK with a name and no value", bytes(0, 6, "blksize", 0)],
    ["OACK with an empty name", bytes(0, 6, 0, "1", 0)],
    ["OACK naming an option twice", bytes(0, 6, "tsize", 0, "1", 0, "TSIZE", 0, "2", 0)],
    ["RRQ without mode", bytes(0, 1, "f", 0)],
  ])("%s: a TftpError", (_name, packet) => {
    expect(() => decodePacket(packet)).toThrow(TftpError);
  });

  test("an ERROR message without its NUL, or with control characters, is still read, and cut to 200 characters", () => {
    expect(decodePacket(bytes(0, 5, 0, 2, "denied"))).toEqual({ op: "ERROR", code: 2, message: "denied" });
    expect(decodePacket(bytes(0, 5, 0, 0, "a\x1b[2Jb", 0))).toEqual({ op: "ERROR", code: 0, message: "a\\x1b[2Jb" });
    // C1 controls and bidirectional overrides too: the message reaches the console.
    expect((decodePacket(bytes(0, 5, 0, 0, "a\u009b2J\u202eb", 0)) as { message: string }).message).toBe("a\\x9b2J\\u{202e}b");
    expect((decodePacket(bytes(0, 5, 0, 0, "x".repeat(5000), 0)) as { message: string }).message).toHaveLength(200);
  });
});

describe("negotiate", () => {
  const oack = (o: Record<string, string>) => new Map(Object.entries(o));

  test("no OACK: RFC 1350's 512-byte blocks, window 1, no size", () => {
    expect(negotiate(REQ, null)).toEqual({ blksize: 512, windowsize: 1, tsize: null });
  });

  test("the server's answers are taken; a missing windowsize is 1, a missing blksize 512", () => {
    expect(negotiate(REQ, oack({ blksize: "1468", tsize: "123456", windowsize: "16" }))).toEqual({ blksize: 1468, windowsize: 16, tsize: 123456 });
    expect(negotiate(REQ, oack({ blksize: "1428", tsize: "5" }))).toEqual({ blksize: 1428, windowsize: 1, tsize: 5 });
    expect(negotiate(REQ, oack({ tsize: "0" }))).toEqual({ blksize: 512, windowsize: 1, tsize: 0 });
    expect(negotiate(REQ, oack({ windowsize: "4" }))).toEqual({ blksize: 512, windowsize: 4, tsize: null });
  });

  test.each([
    [{ blksize: "1469" }, /blksize 1469: expected 8 to 1468/],
    [{ blksize: "7" }, /blksize 7: expected 8 to 1468/],
    [{ blksize: "0" }, /blksize 0/],
    [{ blksize: "-1" }, /not a number/],
    [{ blksize: "1e3" }, /not a number/],
    [{ blksize: "" }, /not a number/],
    [{ blksize: " 512" }, /not a number/],
    [{ blksize: "99999999999999999999" }, /not a number/],
    [{ windowsize: "0" }, /windowsize 0: expected 1 to 16/],
    [{ windowsize: "17" }, /windowsize 17/],
    [{ tsize: "9007199254740993" }, /tsize 9007199254740993: expected 0 to/],
    [{ tsize: "0x10" }, /not a number/],
    [{ timeout: "5" }, /option "timeout", which was not requested/],
    [{ multicast: "" }, /option "multicast", which was not requested/],
  ])("%o is refused with code 8", (o, why) => {
    let err: unknown;
    try {
      negotiate(REQ, oack(o as Record<string, string>));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TftpError);
    expect((err as TftpError).message).toMatch(why);
    expect((err as TftpError).code).toBe(8);
  });

  test("an option not asked for is refused even when it is a known one", () => {
    expect(() => negotiate({ blksize: 512, windowsize: 1, tsize: true }, oack({ windowsize: "1" }))).toThrow(/windowsize", which was not requested/);
  });
});

describe("parseTftpUrl", () => {
  test.each([
    ["tftp://10.0.2.2/usr.squashfs", { host: "10.0.2.2", port: 69, filename: "usr.squashfs" }],
    ["tftp://pxe.example.com:6969/flatcar/usr.squashfs", { host: "pxe.example.com", port: 6969, filename: "flatcar/usr.squashfs" }],
    ["TFTP://[fd00::1]/x", { host: "fd00::1", port: 69, filename: "x" }],
    ["tftp://h//srv/tftp/usr.squashfs", { host: "h", port: 69, filename: "/srv/tftp/usr.squashfs" }],
    ["tftp://h/usr%20image%C3%A4", { host: "h", port: 69, filename: "usr imageä" }],
  ])("%s", (url, target) => {
    expect(parseTftpUrl(url)).toEqual(target);
  });

  test.each([
    ["tftp://h", /needs a file/],
    ["tftp://h/", /needs a file/],
    ["tftp:///x", /needs a host/],
    ["tftp://u@h/x", /no user or password/],
    ["tftp://u:pw@h/x", /no user or password/],
    ["tftp://h/x?y", /no \?query or #fragment/],
    ["tftp://h/x#y", /no \?query or #fragment/],
    ["tftp://h/x%ff", /does not decode to UTF-8/],
    ["tftp://h/x%0a", /control characters/],
    ["tftp://h/x;mode=octet", /drop the ;mode= suffix/],
    ["tftp://h:0/x", /port must be 1 to 65535/],
    ["http://h/x", /not a tftp:\/\/ URL/],
    ["tftp://h:99999/x", /not a valid URL/],
  ])("%s is refused, naming rd.usr.url=", (url, why) => {
    expect(() => parseTftpUrl(url)).toThrow(why);
    expect(() => parseTftpUrl(url)).toThrow(/^rd\.usr\.url=/);
  });

  test("a password in the URL is not repeated by the error", () => {
    expect(() => parseTftpUrl("tftp://core:hunter2@h/x")).toThrow("rd.usr.url=tftp://core:***@h/x: a tftp URL has no user or password (TFTP has no authentication)");
  });
});
