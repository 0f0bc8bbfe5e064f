#!/usr/bin/env bun
// Writes man/bunboot.8 and man/bunboot.cmdline.7 from the tables the code
// parses with (lib/manpages.ts). lib/manpages.test.ts fails when the
// committed pages differ from what this writes.
import fs from "node:fs";
import path from "node:path";
import { commandSummaries, EXIT_CODES } from "../cli/bunboot.ts";
import { renderBunbootMan, renderCmdlineMan } from "../lib/manpages.ts";

const dir = path.resolve(import.meta.dir, "../man");
fs.mkdirSync(dir, { recursive: true });
fs.writeFileSync(path.join(dir, "bunboot.8"), renderBunbootMan(await commandSummaries(), EXIT_CODES));
fs.writeFileSync(path.join(dir, "bunboot.cmdline.7"), renderCmdlineMan());
console.log(`wrote ${dir}/bunboot.8 and ${dir}/bunboot.cmdline.7`);
