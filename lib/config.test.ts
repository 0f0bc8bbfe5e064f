// The builder's config.json is read once at boot; the verity hash offset in
// it decides where the hash tree is looked for, and a wrong one would fail
// verification with a confusing message. Every rejection must name the file,
// because the fix is a rebuild, not a command-line change.
import { describe, expect, test } from "bun:test";
import { FLATCAR_VERITY_HASH_OFFSET, parseConfig } from "./config.ts";
import { CONFIG_PATH } from "./paths.ts";

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(Error);
    return e as Error;
  }
  throw new Error("expected an error");
}

/** The engine's own JSON.parse message, so the expected text is exact on any Bun version. */
function jsonMessage(text: string): string {
  try {
    JSON.parse(text);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error(`${text} is valid JSON`);
}

describe("defaults", () => {
  test("Flatcar's hash offset: 260094 blocks of 4096 bytes", () => {
    expect(FLATCAR_VERITY_HASH_OFFSET).toBe(1065345024);
    expect(FLATCAR_VERITY_HASH_OFFSET).toBe(260094 * 4096);
  });

  test("an empty object gives Flatcar's offset and unknown build and kernel", () => {
    expect(parseConfig("{}")).toEqual({ verityHashOffset: 1065345024, buildId: "unknown", kernelVersion: "unknown" });
  });

  test("the config the builder writes is read back as written", () => {
    const written = { verityHashOffset: 16777216, buildId: "3f9a0c1d2e4b", kernelVersion: "6.6.54-flatcar" };
    expect(parseConfig(JSON.stringify(written, null, 2) + "\n")).toEqual(written);
  });

  test("missing fields get defaults independently", () => {
    expect(parseConfig('{"buildId":"abc"}')).toEqual({ verityHashOffset: 1065345024, buildId: "abc", kernelVersion: "unknown" });
    expect(parseConfig('{"verityHashOffset":4096}')).toEqual({ verityHashOffset: 4096, buildId: "unknown", kernelVersion: "unknown" });
  });

  test("unknown fields are ignored (a newer builder may add some)", () => {
    expect(parseConfig('{"future":true,"buildId":"x"}').buildId).toBe("x");
  });

  test("the smallest offset: 512 bytes", () => {
    expect(parseConfig('{"verityHashOffset":512}').verityHashOffset).toBe(512);
  });

  test("the base modules the kernel has are read back; anything but a list of base modules is refused, naming the file", () => {
    expect(parseConfig('{"baseModules":["loop","dm_mod","dm_verity"]}').baseModules).toEqual(["loop", "dm_mod", "dm_verity"]);
    // None of them (every one left out) is not the same as an initrd that does not say (all of them).
    expect(parseConfig('{"baseModules":[]}').baseModules).toEqual([]);
    expect(parseConfig("{}").baseModules).toBeUndefined();
    for (const bad of ['"loop"', "{}", "null", "[1]", '["-a"]', '["../x"]', '["ext4"]', '["dm-verity"]', '[""]']) {
      expect(thrown(() => parseConfig(`{"baseModules":${bad}}`)).message).toStartWith(`${CONFIG_PATH}: baseModules must be a list of base modules (sd_mod, loop, dm_mod, dm_verity, squashfs, overlay), got `);
    }
  });

  test("non-string build and kernel ids are turned into text", () => {
    expect(parseConfig('{"buildId":1234,"kernelVersion":6}')).toMatchObject({ buildId: "1234", kernelVersion: "6" });
  });

  test("JSON null as the whole document gives the defaults", () => {
    expect(parseConfig("null")).toEqual({ verityHashOffset: 1065345024, buildId: "unknown", kernelVersion: "unknown" });
  });
});

describe("bad JSON", () => {
  test("names the file and quotes the parser's reason", () => {
    for (const text of ["", "{", "{verityHashOffset: 4096}", "{'a':1}", '{"a":1,}']) {
      expect(thrown(() => parseConfig(text)).message).toBe(`/etc/bunboot/config.json: not valid JSON (${jsonMessage(text)})`);
    }
  });

  test("the default file name is CONFIG_PATH", () => {
    expect(CONFIG_PATH).toBe("/etc/bunboot/config.json");
  });

  test("the file name given by the caller is used", () => {
    expect(thrown(() => parseConfig("{", "/tmp/x/config.json")).message).toBe(`/tmp/x/config.json: not valid JSON (${jsonMessage("{")})`);
  });
});

describe("bad verityHashOffset", () => {
  const cases: [string, string][] = [
    ["0", "0"],
    ["-512", "-512"],
    ["-1065345024", "-1065345024"],
    ["1000", "1000"],
    ["513", "513"],
    ["4096.5", "4096.5"],
    ['"1065345024"', '"1065345024"'],
    ['"auto"', '"auto"'],
    ["true", "true"],
    ["[4096]", "[4096]"],
    ['{"bytes":4096}', '{"bytes":4096}'],
    // Beyond 2^53 the value is no longer exact; 1e300 is a float, not a byte offset.
    ["18014398509481984", "18014398509481984"],
    ["1e300", "1e+300"],
  ];
  for (const [json, shown] of cases) {
    test(`${json} is refused`, () => {
      expect(thrown(() => parseConfig(`{"verityHashOffset":${json}}`)).message).toBe(
        `/etc/bunboot/config.json: verityHashOffset must be a positive multiple of 512, got ${shown}`,
      );
    });
  }

  test("the message names the file given by the caller", () => {
    expect(thrown(() => parseConfig('{"verityHashOffset":0}', "initrd:/etc/bunboot/config.json")).message).toBe(
      "initrd:/etc/bunboot/config.json: verityHashOffset must be a positive multiple of 512, got 0",
    );
  });

  test("null counts as absent: the builder never writes it, and the default is Flatcar's", () => {
    expect(parseConfig('{"verityHashOffset":null}').verityHashOffset).toBe(1065345024);
  });
});

describe("config.json profile", () => {
  test("the builder's module profile is read back; a malformed one is named", () => {
    expect(parseConfig('{"profile":"disk"}').profile).toBe("disk");
    expect(parseConfig("{}").profile).toBeUndefined();
    expect(() => parseConfig('{"profile":"../x"}')).toThrow('profile must be a profile name such as "netboot" or "disk"');
    expect(() => parseConfig('{"profile":7}')).toThrow("profile must be a profile name");
  });
});
