import { describe, expect, test } from "bun:test";
import { blockSizeFor, encodeGoData, encodeOption, INFO, NBDMAGIC, NbdHandshakeError, negotiate, OPT, REP, REPLY_MAGIC } from "./nbd-protocol.ts";
import { be, cat, greeting, infoExport, reply, scripted } from "../testing/nbd-script.ts";

describe("NBD handshake", () => {
  test("NBD_OPT_GO: size and flags from NBD_INFO_EXPORT, the block sizes from NBD_INFO_BLOCK_SIZE", async () => {
    const t = scripted(cat(greeting(), reply(REP.INFO, infoExport(1n << 30n, 3)), reply(REP.INFO, cat(be(2, INFO.BLOCK_SIZE), be(4, 1), be(4, 4096), be(4, 1 << 25))), reply(REP.ACK, new Uint8Array(0))));
    expect(await negotiate(t, "usr")).toEqual({ sizeBytes: 1n << 30n, flags: 3, blockSizes: { min: 1, preferred: 4096, max: 1 << 25 }, via: "NBD_OPT_GO" });
    // Our flags (fixed newstyle, no zeroes), then the option.
    expect([...t.written[0]!]).toEqual([0, 0, 0, 3]);
    expect(t.written[1]).toEqual(encodeOption(OPT.GO, encodeGoData("usr")));
    expect([...encodeGoData("usr")]).toEqual([0, 0, 0, 3, 0x75, 0x73, 0x72, 0, 1, 0, INFO.BLOCK_SIZE]);
  });

  test("a server without NBD_OPT_GO is asked with NBD_OPT_EXPORT_NAME", async () => {
    const t = scripted(cat(greeting(1), reply(0x80000001, new Uint8Array(0)), be(8, 4096n * 10n), be(2, 1), new Uint8Array(124)));
    expect(await negotiate(t, "x")).toEqual({ sizeBytes: 40960n, flags: 1, via: "NBD_OPT_EXPORT_NAME" });
    expect(t.written[2]).toEqual(encodeOption(OPT.EXPORT_NAME, new TextEncoder().encode("x")));
  });

  test("a server without fixed newstyle gets NBD_OPT_EXPORT_NAME at once", async () => {
    const t = scripted(cat(greeting(2), be(8, 512n), be(2, 3)));
    expect(await negotiate(t, "x")).toEqual({ sizeBytes: 512n, flags: 3, via: "NBD_OPT_EXPORT_NAME" });
    expect([...t.written[0]!]).toEqual([0, 0, 0, 2]);
  });

  const refusals: Array<[string, Uint8Array, RegExp]> = [
    ["unknown export", cat(greeting(), reply(0x80000006, new TextEncoder().encode("Export unknown"))), /no export of that name \(NBD_REP_ERR_UNKNOWN\); it said: "Export unknown"/],
    ["TLS required", cat(greeting(), reply(0x80000005, new Uint8Array(0))), /requires TLS/],
    ["escaped server text", cat(greeting(), reply(0x80000002, new TextEncoder().encode("no\u001b[2J\u009b\u202e"))), /it said: "no\\x1b\[2J\\x9b\\u\{202e\}"/],
    ["an unknown error", cat(greeting(), reply(0x80000077, new Uint8Array(0))), /error reply 0x80000077/],
    ["no NBD_INFO_EXPORT", cat(greeting(), reply(REP.ACK, new Uint8Array(0))), /without saying the export's size/],
    ["a reply for another option", cat(greeting(), reply(REP.ACK, new Uint8Array(0), 3)), /answered option 3/],
    ["an oversized reply", cat(greeting(), be(8, REPLY_MAGIC), be(4, OPT.GO), be(4, REP.INFO), be(4, 1 << 30)), /longer than the 4096 allowed/],
    ["a short NBD_INFO_EXPORT", cat(greeting(), reply(REP.INFO, cat(be(2, 0), be(8, 1n)))), /NBD_INFO_EXPORT is 10 bytes, expected 12/],
    ["not NBD", new TextEncoder().encode("SSH-2.0-OpenSSH_9.2p1\r\n"), /did not greet with NBDMAGIC \(got SSH-2\.0-\)/],
    ["old-style", cat(be(8, NBDMAGIC), be(8, 0x00420281861253n), be(2, 0)), /old-style NBD handshake/],
    ["bad reply magic", cat(greeting(), new Uint8Array(20)), /reply magic/],
  ];
  test.each(refusals)("refuses %s with what the server did", async (_, bytes, message) => {
    await expect(negotiate(scripted(bytes), "usr")).rejects.toThrow(NbdHandshakeError);
    await expect(negotiate(scripted(bytes), "usr")).rejects.toThrow(message);
  });

  test("an empty export, or one whose size is no disk's, is refused; flags without HAS_FLAGS count as none", async () => {
    await expect(negotiate(scripted(cat(greeting(), reply(REP.INFO, infoExport(0n, 3)), reply(REP.ACK, new Uint8Array(0)))), "usr")).rejects.toThrow("the export is empty");
    await expect(negotiate(scripted(cat(greeting(), reply(REP.INFO, infoExport(1000n, 3)), reply(REP.ACK, new Uint8Array(0)))), "usr")).rejects.toThrow("not a multiple of 512");
    const e = await negotiate(scripted(cat(greeting(), reply(REP.INFO, infoExport(4096n, 2)), reply(REP.ACK, new Uint8Array(0)))), "usr");
    expect(e.flags).toBe(0);
  });

  test("a server that hangs up after NBD_OPT_EXPORT_NAME has no such export; one that is only slow is not called so", async () => {
    await expect(negotiate(scripted(cat(greeting(2))), "x")).rejects.toThrow(/closed the connection after NBD_OPT_EXPORT_NAME/);
    const slow = scripted(greeting(2));
    slow.read = async (n: number) => {
      if (n === 18) return greeting(2);
      throw new Error("read: timed out");
    };
    await expect(negotiate(slow, "x")).rejects.toThrow("read: timed out");
  });

  test("endless replies without an acknowledgement end the handshake", async () => {
    const noise = reply(42, new Uint8Array(8));
    const t = scripted(cat(greeting(), ...Array.from({ length: 70 }, () => noise)));
    await expect(negotiate(t, "usr")).rejects.toThrow(/more than 64 replies/);
  });

  test("an empty or too long export name is refused before anything is sent", async () => {
    const t = scripted(greeting());
    await expect(negotiate(t, "")).rejects.toThrow(/1 to 4096 bytes/);
    await expect(negotiate(t, "x".repeat(4097))).rejects.toThrow(/1 to 4096 bytes/);
    expect(t.written).toHaveLength(0);
  });

  test("the block size divides the export, is one the kernel takes, and keeps to the server's minimum and maximum", () => {
    const sizes = (min: number, preferred: number, max: number) => ({ min, preferred, max });
    expect(blockSizeFor({ sizeBytes: 1n << 30n, flags: 0, via: "NBD_OPT_GO" })).toBe(4096);
    expect(blockSizeFor({ sizeBytes: 1n << 30n, flags: 0, blockSizes: sizes(1, 512, 1 << 25), via: "NBD_OPT_GO" })).toBe(512);
    expect(blockSizeFor({ sizeBytes: 1n << 30n, flags: 0, blockSizes: sizes(1, 65536, 1 << 25), via: "NBD_OPT_GO" })).toBe(4096);
    expect(blockSizeFor({ sizeBytes: 1536n, flags: 0, blockSizes: sizes(1, 1024, 4096), via: "NBD_OPT_GO" })).toBe(512);
    expect(blockSizeFor({ sizeBytes: 4608n, flags: 0, via: "NBD_OPT_EXPORT_NAME" })).toBe(512);
    // A minimum of 4096 rules out 512 even where it would divide the export.
    expect(() => blockSizeFor({ sizeBytes: 4608n, flags: 0, blockSizes: sizes(4096, 4096, 4096), via: "NBD_OPT_GO" })).toThrow(/no block size fits: the server asks for 4096 to 4096 bytes/);
    expect(() => blockSizeFor({ sizeBytes: 1n << 30n, flags: 0, blockSizes: sizes(8192, 8192, 1 << 20), via: "NBD_OPT_GO" })).toThrow(NbdHandshakeError);
  });
});
