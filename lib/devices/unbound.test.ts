import { describe, expect, test } from "bun:test";
import { describeUnbound } from "./unbound.ts";

describe("devices without a driver", () => {
  const virtio = { bus: "virtio", id: "virtio0", modalias: "virtio:d00000002v00001AF4" };
  const pci = { bus: "pci", id: "0000:00:05.0", modalias: "pci:v00001000d00000012sv00000000sd00000000bc01sc04i00" };

  test("nothing to say when every device has a driver", () => {
    expect(describeUnbound([], () => [], [])).toBeNull();
  });

  test("names the module, marks blacklisted ones, and says when the initrd has none", () => {
    const modulesFor = (a: string) => (a.startsWith("virtio:") ? ["virtio_blk"] : []);
    expect(describeUnbound([virtio, pci], modulesFor, ["virtio-blk"])).toBe(
      "devices without a driver: virtio virtio0 [virtio:d00000002v00001AF4]: virtio_blk (blacklisted); " +
        "pci 0000:00:05.0 [pci:v00001000d00000012sv00000000sd00000000bc01sc04i00]: no module for it in this initrd (add one with build.ts --add-modules)",
    );
    expect(describeUnbound([virtio], modulesFor, [])).toBe("devices without a driver: virtio virtio0 [virtio:d00000002v00001AF4]: virtio_blk");
  });
});
