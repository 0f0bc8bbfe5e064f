import { describe, expect, test } from "bun:test";
import { effectivePort, nfsMountData } from "./nfs.ts";

describe("NFS mount data", () => {
  test("TCP, soft with a bounded retry, the address the init resolved, the user's options last", () => {
    expect(nfsMountData("10.0.2.2", 2049, "4.2")).toBe("vers=4.2,addr=10.0.2.2,port=2049,proto=tcp,soft,timeo=100,retrans=3");
    expect(nfsMountData("10.0.2.2", 2049, "4.0", "port=20490,nosharecache")).toBe("vers=4.0,addr=10.0.2.2,port=2049,proto=tcp,soft,timeo=100,retrans=3,port=20490,nosharecache");
  });

  test("the port the kernel uses is the last port= given", () => {
    expect(effectivePort(2049)).toBe(2049);
    expect(effectivePort(2049, "port=20490")).toBe(20490);
    expect(effectivePort(2049, "ro,port=1,port=2")).toBe(2);
    expect(effectivePort(2049, "mountport=5,ports=7")).toBe(2049);
  });
});
