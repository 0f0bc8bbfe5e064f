#!/usr/bin/env bun
// The repository's entry to the initrd builder: the same as `bunboot build`
// (cli/build.ts), kept so that `bun build.ts` works from a clone.
import { main } from "./cli/bunboot.ts";

if (import.meta.main) process.exit(await main(["build", ...process.argv.slice(2)]));
