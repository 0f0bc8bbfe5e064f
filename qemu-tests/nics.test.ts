// Diskless boots (DHCP, then /usr over HTTP) through every NIC model QEMU
// emulates that clouds and hypervisors present: the driver must come from the
// initrd's module set (NIC_MODULES), bind, get a lease and carry the fetch.
// Two VMs run at a time (harness/slots.ts).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../lib/testing/testserver.ts";
import { bootRemoteToStage2, DEFAULT_MAC, guestUrl, initrdWithHashList, remoteUsr, userNic } from "./harness/remote-usr.ts";
import { vmSlots } from "./harness/slots.ts";
import { Vm } from "./harness/vm.ts";

const BOOT_MS = 300_000;

/**
 * QEMU device model -> the Linux driver that must bind to it, and the line
 * that driver prints about eth0 (virtio_net prints none): the kernel's word
 * must agree with the init's about which interface the driver made.
 * QEMU's rtl8139 is a C+ chip, which 8139cp takes before 8139too.
 */
const MODELS: Array<{ model: string; driver: string; kernelSays?: RegExp }> = [
  { model: "virtio-net-pci", driver: "virtio_net" },
  { model: "e1000", driver: "e1000", kernelSays: /e1000 \S+ eth0: Intel\(R\) PRO\/1000 Network Connection/ },
  { model: "e1000e", driver: "e1000e", kernelSays: /e1000e \S+ eth0: Intel\(R\) PRO\/1000 Network Connection/ },
  { model: "rtl8139", driver: "8139cp", kernelSays: /8139cp \S+ eth0: RTL-8139C\+ at / },
  { model: "vmxnet3", driver: "vmxnet3", kernelSays: /vmxnet3 \S+ eth0: NIC Link is Up/ },
  { model: "pcnet", driver: "pcnet32", kernelSays: /pcnet32: eth0: registered as PCnet\/PCI/ },
];

const usr = remoteUsr();
const initrd = initrdWithHashList();
let http: TestServer;
beforeAll(async () => {
  // One path per model: the server's request log then shows which NIC each fetch came through.
  http = await startTestServer(Object.fromEntries(MODELS.map(({ model }) => [`/${model}.squashfs`, { path: usr.path }])));
});
afterAll(async () => {
  await http?.stop();
});

describe.concurrent("diskless /usr through each NIC model", () => {
  for (const { model, driver, kernelSays } of MODELS) {
    test(`${model}: ${driver} binds, DHCP lease, HTTP fetch, stage 2`, async () => {
      const vm = await vmSlots.run(async () => {
        const vm = new Vm({ name: `nic-${model}`, initrd, extraArgs: userNic(model), append: `rd.usr.url=${guestUrl(http, `/${model}.squashfs`)}` });
        await bootRemoteToStage2(vm, BOOT_MS);
        return vm;
      });
      const out = vm.console;
      if (kernelSays) expect(out).toMatch(kernelSays);
      expect(out).toContain(`using eth0 (driver ${driver}, mac ${DEFAULT_MAC}, carrier up)`);
      expect(out).toMatch(/network: eth0 10\.0\.2\.15\/24 via 10\.0\.2\.2 \(dhcp\), dns 10\.0\.2\.3/);
      expect(out).toContain(`fetched /usr: ${usr.image.length} bytes verified`);
      expect(out).toContain("STAGE2: done");
      expect(http.requests.filter((r) => r.path === `/${model}.squashfs`).length).toBeGreaterThanOrEqual(1);
    }, 3 * BOOT_MS);
  }
});
