import { describe, expect, test } from "bun:test";
import { BUILD_OPTIONS, mergeOptions, OptionError, optionsFromArgv, optionsFromConfig, parseConfigText, renderHelp } from "./options.ts";
import { resolveOptions } from "../../cli/build.ts";

describe("builder options: one table for flags, config file and help", () => {
  test("flags: --name value and --name=value, lists split on commas", () => {
    expect(optionsFromArgv(["--compress", "xz", "--compress-level=6", "--add-modules", "nbd, nfsv4,", "--extra-files", "/a:/etc/a,/b:/b"])).toEqual({
      compress: "xz",
      "compress-level": 6,
      "add-modules": ["nbd", "nfsv4"],
      "extra-files": [
        { source: "/a", dest: "/etc/a" },
        { source: "/b", dest: "/b" },
      ],
    });
    expect(optionsFromArgv(["--help"])).toEqual({ help: true });
    // Lists given twice add up; other options: the last wins.
    expect(optionsFromArgv(["--add-modules", "a", "--add-modules=b,c", "--compress", "xz", "--compress", "gzip"])).toEqual({ "add-modules": ["a", "b", "c"], compress: "gzip" });
    expect(optionsFromArgv(["--no-config"])).toEqual({ config: "" });
  });

  test.each([
    [["--compres", "xz"], "unknown option --compres"],
    [["--compress", "lz4"], '--compress expects zstd, xz, gzip or none, got "lz4"'],
    [["--compress-level", "-1"], '--compress-level expects N, got "-1"'],
    [["--compress-level", "1e3"], '--compress-level expects N, got "1e3"'],
    [["--out"], "--out needs a value (FILE)"],
    [["--help=yes"], "--help takes no value"],
    [["stray"], 'unexpected argument "stray"'],
    [["--extra-files", "nocolon"], 'expects SRC:DEST pairs, got "nocolon"'],
    [["--extra-files", "/a:etc/a"], 'dest "etc/a" must be an absolute path'],
    [["--kernelVersion", "x"], "unknown option --kernelVersion"],
  ])("flags %p are refused: %s", (argv, message) => {
    expect(() => optionsFromArgv(argv)).toThrow(OptionError);
    expect(() => optionsFromArgv(argv)).toThrow(message);
  });

  test("a TOML file takes the same names, typed", () => {
    const text = `
kernel-version = "6.1.0-57-amd64"
compress = "gzip"
compress-level = 9
add-modules = ["nbd"]
verity-hash-offset = 4096
[[extra-files]]
source = "/etc/hostname"
dest = "/etc/hostname"
`;
    expect(parseConfigText(text, "/etc/bunboot/bunboot.toml")).toEqual({
      "kernel-version": "6.1.0-57-amd64",
      compress: "gzip",
      "compress-level": 9,
      "add-modules": ["nbd"],
      "verity-hash-offset": 4096,
      "extra-files": [{ source: "/etc/hostname", dest: "/etc/hostname" }],
    });
  });

  test.each([
    [`compres = "xz"`, `f.toml: unknown key "compres"`],
    [`compress = 3`, `f.toml: compress must be one of "zstd", "xz", "gzip", "none", not 3`],
    [`compress-level = "9"`, `f.toml: compress-level must be a non-negative integer, not "9"`],
    [`compress-level = 1.5`, `f.toml: compress-level must be a non-negative integer, not 1.5`],
    [`add-modules = "nbd"`, `f.toml: add-modules must be a list of strings, not "nbd"`],
    [`add-modules = ["nbd", 1]`, `f.toml: add-modules must be a list of strings`],
    [`config = "/x"`, `f.toml: "config" can only be given on the command line`],
    [`help = true`, `f.toml: "help" can only be given on the command line`],
    [`[[extra-files]]\nsource = "/a"`, `f.toml: extra-files[0]: dest must be a string`],
    [`[[extra-files]]\nsource = "/a"\ndest = "/b"\nmode = 1`, `f.toml: extra-files[0]: unknown key "mode"`],
    [`[[extra-files]]\nsource = "/a"\ndest = "/../b"`, `f.toml: extra-files[0]: dest "/../b" must be an absolute path`],
    [`compress = `, `f.toml: not valid TOML`],
    [`[profile]\nx = 1`, `f.toml: profile must be one of "netboot", "disk"`],
  ])("config %p is refused naming the key and the file", (text, message) => {
    expect(() => parseConfigText(text, "f.toml")).toThrow(OptionError);
    expect(() => parseConfigText(text, "f.toml")).toThrow(message);
  });

  test("flags override the file key by key", () => {
    expect(mergeOptions({ compress: "gzip", "compress-level": 9 }, { compress: "xz" })).toEqual({ compress: "xz", "compress-level": 9 });
  });

  test("the default config file is read when present; --config names another; --no-config reads none", () => {
    const files: Record<string, string> = { "/etc/bunboot/bunboot.toml": `compress = "gzip"`, "/tmp/other.toml": `compress = "xz"` };
    const read = (p: string) => files[p] ?? null;
    expect(resolveOptions([], read)).toEqual({ values: { compress: "gzip" }, configFile: "/etc/bunboot/bunboot.toml" });
    expect(resolveOptions(["--compress", "none"], read)).toEqual({ values: { compress: "none" }, configFile: "/etc/bunboot/bunboot.toml" });
    expect(resolveOptions(["--config", "/tmp/other.toml"], read)).toEqual({ values: { compress: "xz" }, configFile: "/tmp/other.toml" });
    expect(resolveOptions(["--no-config"], read)).toEqual({ values: {}, configFile: null });
    expect(() => resolveOptions(["--config", "/nope.toml"], read)).toThrow("--config /nope.toml: no such file");
    expect(resolveOptions([], () => null)).toEqual({ values: {}, configFile: null });
  });

  test("--help lists every option of the table, once", () => {
    const help = renderHelp("usage");
    for (const o of BUILD_OPTIONS) expect(help.match(new RegExp(`^  --${o.name}(?=[ \n]|$)`, "gm"))).toHaveLength(1);
    expect(optionsFromConfig({}, "f")).toEqual({});
  });
});
