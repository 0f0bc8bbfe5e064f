import { describe, expect, test } from "bun:test";
import { crc32, crc32cRaw, describeBytes, formatUuid, toHex } from "./bytes.ts";
import { encodeGuid, formatGuid } from "./gpt.ts";

describe("toHex", () => {
  test("two lower-case digits per byte, optional separator", () => {
    expect(toHex(new Uint8Array([0, 0x0a, 0xff]))).toBe("000aff");
    expect(toHex(new Uint8Array([0, 0x0a, 0xff]), " ")).toBe("00 0a ff");
    expect(toHex(new Uint8Array())).toBe("");
  });
});

describe("describeBytes", () => {
  test("hex then the printable characters", () => {
    expect(describeBytes(new Uint8Array([0x68, 0x73, 0x00, 0x7f]))).toBe('68 73 00 7f "hs.."');
  });
});

describe("UUIDs and GUIDs", () => {
  const bytes = Uint8Array.from({ length: 16 }, (_, i) => i);
  test("formatUuid keeps the byte order (filesystems, cryptsetup)", () => {
    expect(formatUuid(bytes)).toBe("00010203-0405-0607-0809-0a0b0c0d0e0f");
  });
  test("formatGuid swaps the first three fields (GPT, mixed endian), and encodeGuid undoes it", () => {
    expect(formatGuid(bytes)).toBe("03020100-0504-0706-0809-0a0b0c0d0e0f");
    expect(encodeGuid(formatGuid(bytes))).toEqual(bytes);
  });
});

describe("CRC32C", () => {
  test("the standard check value (seed ~0, inverted)", () => {
    expect(~crc32cRaw(0xffffffff, new TextEncoder().encode("123456789")) >>> 0).toBe(0xe3069283);
  });
  test("can be continued from a previous value", () => {
    const d = new TextEncoder().encode("123456789");
    expect(crc32cRaw(crc32cRaw(0xffffffff, d.subarray(0, 4)), d.subarray(4))).toBe(crc32cRaw(0xffffffff, d));
  });
  test("CRC32 check value", () => {
    expect(crc32(new TextEncoder().encode("123456789"))).toBe(0xcbf43926);
  });
});
