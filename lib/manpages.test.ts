import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { commandSummaries, EXIT_CODES } from "../cli/bunboot.ts";
import { PARAMS } from "./cmdline.ts";
import { BUILD_OPTIONS } from "./initrd/options.ts";
import { renderBunbootMan, renderCmdlineMan } from "./manpages.ts";

const MAN = path.resolve(import.meta.dir, "../man");

describe("man pages come from the tables the code parses with", () => {
  test("man/bunboot.8 and man/bunboot.cmdline.7 are what scripts/man.ts writes now", async () => {
    // To update them: node_modules/.bin/bun scripts/man.ts
    expect(fs.readFileSync(path.join(MAN, "bunboot.8"), "utf8")).toBe(renderBunbootMan(await commandSummaries(), EXIT_CODES));
    expect(fs.readFileSync(path.join(MAN, "bunboot.cmdline.7"), "utf8")).toBe(renderCmdlineMan());
  });

  test("every command, build option, exit status and kernel parameter is in them", async () => {
    const eight = renderBunbootMan(await commandSummaries(), EXIT_CODES);
    for (const [name] of await commandSummaries()) expect(eight).toContain(`.B ${name.replaceAll("-", "\\-")}\n`);
    for (const o of BUILD_OPTIONS) expect(eight).toContain(`.BR \\-\\-${o.name.replaceAll("-", "\\-")}`);
    for (const [n] of EXIT_CODES) expect(eight).toContain(`.B ${n}\n`);
    const seven = renderCmdlineMan();
    for (const name of Object.keys(PARAMS)) expect(seven).toContain(`.TP\n\\fB${name.replaceAll("-", "\\-")}`);
  });

  const man = ["/usr/bin/man"].find((p) => fs.existsSync(p));
  test.skipIf(!man)("man -l renders both without a warning (but for words longer than a line: hashes, URLs)", () => {
    for (const page of ["bunboot.8", "bunboot.cmdline.7"]) {
      const r = Bun.spawnSync([man!, "-l", path.join(MAN, page)], { env: { ...process.env, MANWIDTH: "80", MAN_KEEP_FORMATTING: "0", PAGER: "cat" }, stderr: "pipe" });
      expect(r.exitCode).toBe(0);
      expect(r.stderr.toString().split("\n").filter((l) => l !== "" && !l.includes("can't break line"))).toEqual([]);
      expect(r.stdout.toString().replace(/.\x08/g, "")).toContain(page.startsWith("bunboot.8") ? "EXIT STATUS" : "Example:");
    }
  });
});
