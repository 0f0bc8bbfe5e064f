// Slot choice and the tries write-back against GPT images made by sfdisk, with the slot attributes
// set by `sgdisk --attributes`, cross-checked by `sgdisk -v` and `sfdisk -J` after our writes.
// Needs: fdisk (sfdisk), gdisk (sgdisk).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { fileSize as size, readAt, run } from "../testing/host.ts";
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FLATCAR_USR_TYPE_GUID, gptPriority, gptSuccessful, gptTries } from "../devices/gpt.ts";
import { planAttributeWrites, readGptDisk, type GptDisk } from "./gpt-copies.ts";
import { chooseSlot, KexecPlanError, USR_A_PARTUUID } from "./plan.ts";

const USR_B = "e03dd35c-7c2d-4a47-b3fe-27f15780a57c";
const ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
let dir = "";

function load(img: string): GptDisk {
  return readGptDisk((offset: number, len: number) => readAt(img, offset, len), size(img), 512);
}

function flip(img: string, offset: number): void {
  const fd = openSync(img, "r+");
  try {
    const b = new Uint8Array(1);
    readSync(fd, b, 0, 1, offset);
    b[0] = b[0]! ^ 0xff;
    writeSync(fd, b, 0, 1, offset);
  } finally {
    closeSync(fd);
  }
}

function apply(img: string, disk: GptDisk, index: number, attr: bigint): void {
  const fd = openSync(img, "r+");
  try {
    for (const w of planAttributeWrites(disk, index, attr)) writeSync(fd, w.bytes, 0, w.bytes.length, w.offset);
  } finally {
    closeSync(fd);
  }
}

/** A Flatcar-like disk; `attrs` are sgdisk --attributes arguments. */
function image(name: string, attrs: string[]): string {
  const img = join(dir, name);
  writeFileSync(img, "");
  run(["truncate", "-s", "64M", img]);
  run(
    ["sfdisk", "-q", img],
    `label: gpt
${img}1 : start=2048, size=4096, type=${ESP_TYPE}, name="EFI-SYSTEM"
${img}3 : start=8192, size=32768, type=${FLATCAR_USR_TYPE_GUID}, uuid=${USR_A_PARTUUID}, name="USR-A"
${img}4 : start=40960, size=32768, type=${FLATCAR_USR_TYPE_GUID}, uuid=${USR_B}, name="USR-B"
${img}6 : start=73728, size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="OEM"
`,
  );
  if (attrs.length) run(["sgdisk", ...attrs.map((a) => `--attributes=${a}`), img]);
  return img;
}

function sfdiskAttrs(img: string, n: number): string | undefined {
  const t = JSON.parse(run(["sfdisk", "-J", img])) as { partitiontable: { partitions: Array<{ node: string; attrs?: string }> } };
  return t.partitiontable.partitions.find((p) => p.node.endsWith(String(n)))?.attrs;
}

function slots(disk: GptDisk) {
  return disk.good.entries
    .filter((e) => e.typeGuid === FLATCAR_USR_TYPE_GUID)
    .map((e) => [e.name, gptPriority(e.attributes), gptTries(e.attributes), gptSuccessful(e.attributes)]);
}

// USR-A: priority 1, successful (the running system). USR-B: priority 2, one try (a fresh update).
const UPDATE = ["3:set:48", "3:set:56", "4:set:49", "4:set:52"];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "bunboot-kexec-gpt-"));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("slot choice and tries write-back", () => {
  test("fresh update: USR-B chosen, tries 1 -> 0 in both copies, tools accept the result", () => {
    const img = image("update.img", UPDATE);
    const disk = load(img);
    expect(disk.primary).not.toBeNull();
    expect(disk.backup).not.toBeNull();
    expect(disk.warnings).toEqual([]);
    expect(slots(disk)).toEqual([
      ["USR-A", 1, 0, true],
      ["USR-B", 2, 1, false],
    ]);
    const c = chooseSlot(disk.good.entries);
    expect(c.entry.partGuid).toBe(USR_B);
    expect(c.newAttributes).not.toBeNull();
    const writes = planAttributeWrites(disk, c.entry.index, c.newAttributes!);
    // backup first, then primary; the header after its entries
    expect(writes.map((w) => w.what)).toEqual(["backup GPT entries", "backup GPT header", "primary GPT entries", "primary GPT header"]);
    expect(writes[1]!.offset).toBe(size(img) - 512);
    expect(writes[3]!.offset).toBe(512);
    apply(img, disk, c.entry.index, c.newAttributes!);
    expect(run(["sgdisk", "-v", img])).toContain("No problems found");
    expect(sfdiskAttrs(img, 4)).toBe("GUID:49");
    expect(sfdiskAttrs(img, 3)).toBe("GUID:48,56");
    const after = load(img);
    expect(after.warnings).toEqual([]);
    expect(slots(after)).toEqual([
      ["USR-A", 1, 0, true],
      ["USR-B", 2, 0, false],
    ]);
    // Next time GRUB (or we) would fall back to USR-A: B has no tries and never succeeded.
    const next = chooseSlot(after.good.entries);
    expect(next.entry.partGuid).toBe(USR_A_PARTUUID);
    expect(next.newAttributes).toBeNull();
  });

  test("corrupt primary header: the backup is used and the primary rebuilt", () => {
    const img = image("bad-primary.img", UPDATE);
    flip(img, 512 + 40); // FirstUsableLBA, inside the header CRC
    expect(run(["sgdisk", "-v", img])).not.toContain("No problems found");
    const disk = load(img);
    expect(disk.primary).toBeNull();
    expect(disk.primaryError).toMatch(/header CRC32 mismatch/);
    expect(disk.warnings[0]).toMatch(/primary GPT is corrupt .*using the backup/);
    const c = chooseSlot(disk.good.entries);
    expect(c.entry.name).toBe("USR-B");
    const writes = planAttributeWrites(disk, c.entry.index, c.newAttributes!);
    expect(writes.map((w) => w.what)).toEqual(["backup GPT entries", "backup GPT header", "primary GPT entries (rebuilt)", "primary GPT header (rebuilt)"]);
    apply(img, disk, c.entry.index, c.newAttributes!);
    expect(run(["sgdisk", "-v", img])).toContain("No problems found");
    const after = load(img);
    expect(after.warnings).toEqual([]);
    expect(after.primary!.header.firstUsableLba).toBe(after.backup!.header.firstUsableLba);
    expect(slots(after)[1]).toEqual(["USR-B", 2, 0, false]);
  });

  test("corrupt backup entry array: the primary is used and the backup rebuilt", () => {
    const img = image("bad-backup.img", UPDATE);
    // the backup entry array ends right before the last sector
    flip(img, size(img) - 512 - 32 * 512 + 3 * 128 + 60);
    const disk = load(img);
    expect(disk.backup).toBeNull();
    expect(disk.backupError).toMatch(/entries CRC32 mismatch/);
    expect(disk.warnings[0]).toMatch(/backup GPT is corrupt/);
    const c = chooseSlot(disk.good.entries);
    apply(img, disk, c.entry.index, c.newAttributes!);
    expect(run(["sgdisk", "-v", img])).toContain("No problems found");
    const after = load(img);
    expect(after.warnings).toEqual([]);
    expect(slots(after)[1]).toEqual(["USR-B", 2, 0, false]);
  });

  test("both copies corrupt: a clear error", () => {
    const img = image("bad-both.img", UPDATE);
    flip(img, 512 + 40);
    flip(img, size(img) - 512 + 40);
    expect(() => load(img)).toThrow(/no valid GPT on the disk: primary: .*header CRC32.*backup .*header CRC32/);
  });

  test("no eligible slot: priority 0, or no tries and not successful", () => {
    const img = image("none.img", ["3:set:48", "4:set:56"]); // A: prio 1 no tries; B: prio 0 successful
    expect(() => chooseSlot(load(img).good.entries)).toThrow(KexecPlanError);
    expect(() => chooseSlot(load(img).good.entries)).toThrow(/no bootable \/usr slot.*USR-A .*priority=1 tries=0 successful=0.*USR-B .*priority=0 tries=0 successful=1/);
  });

  test("all tries exhausted: nothing bootable", () => {
    const img = image("exhausted.img", ["3:set:48", "4:set:49"]); // both have priority, neither tries nor success
    expect(() => chooseSlot(load(img).good.entries)).toThrow(/no bootable \/usr slot/);
  });

  test("an update whose tries ran out falls back to the successful slot, nothing written", () => {
    const img = image("fallback.img", ["3:set:48", "3:set:56", "4:set:49"]);
    const c = chooseSlot(load(img).good.entries);
    expect(c.entry.name).toBe("USR-A");
    expect(c.newAttributes).toBeNull();
  });

  test("equal priority: the first partition wins; higher tries count down by one and keep other bits", () => {
    const img = image("tie.img", ["3:set:49", "3:set:52", "3:set:53", "3:set:0", "4:set:49", "4:set:56"]);
    const disk = load(img);
    const c = chooseSlot(disk.good.entries);
    expect(c.entry.name).toBe("USR-A");
    expect(gptTries(c.newAttributes!)).toBe(2);
    expect(gptPriority(c.newAttributes!)).toBe(2);
    expect(c.newAttributes! & 1n).toBe(1n);
    apply(img, disk, c.entry.index, c.newAttributes!);
    expect(sfdiskAttrs(img, 3)).toBe("RequiredPartition GUID:49,53");
  });

  test("a disk without /usr partitions", () => {
    const img = join(dir, "plain.img");
    writeFileSync(img, "");
    run(["truncate", "-s", "8M", img]);
    run(["sgdisk", "-o", "-n", "1:2048:+1M", img]);
    expect(() => chooseSlot(load(img).good.entries)).toThrow(/no \/usr partition/);
  });

  test("an image without a GPT", () => {
    const img = join(dir, "zero.img");
    writeFileSync(img, new Uint8Array(1 << 20));
    expect(() => load(img)).toThrow(/no valid GPT/);
  });
});
