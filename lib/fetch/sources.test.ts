import { describe, expect, test } from "bun:test";
import { FetchError, redactText, redactUrl, sftpAuth } from "./sources.ts";

describe("redactUrl", () => {
  test.each([
    ["http://user:pass@host/x", "http://user:***@host/x"],
    ["https://u:p%40ss@host:8443/a?b=c#d", "https://u:***@host:8443/a?b=c#d"],
    // A lone userinfo on http(s) is a token (basic auth user or API key).
    ["https://ghp_abcdef@host/x", "https://***@host/x"],
    // On sftp it is the login name, which the messages need.
    ["sftp://root@host:2222/srv/usr.squashfs", "sftp://root@host:2222/srv/usr.squashfs"],
    ["sftp://root:hunter2@host/x", "sftp://root:***@host/x"],
    // The last @ of the authority ends the userinfo.
    ["http://a:b@c@host/x", "http://a:***@host/x"],
    ["http://host/path@not-userinfo", "http://host/path@not-userinfo"],
    ["http://host/x?u=http://a:b@y", "http://host/x?u=http://a:***@y"],
    // Signed URLs: the signature and credential parameters.
    [
      "https://bucket.s3.amazonaws.com/usr.squashfs?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F2024&X-Amz-Signature=abcdef&X-Amz-Expires=60",
      "https://bucket.s3.amazonaws.com/usr.squashfs?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60",
    ],
    ["https://h/x?sig=1&se=2&token=3&access_token=4&password=5&api_key=6&page=7", "https://h/x?sig=***&se=2&token=***&access_token=***&password=***&api_key=***&page=7"],
    ["file:///srv/usr.squashfs", "file:///srv/usr.squashfs"],
    ["http://127.0.0.1:8080/usr.squashfs", "http://127.0.0.1:8080/usr.squashfs"],
    ["not a url", "not a url"],
    ["", ""],
  ])("%s", (url, shown) => {
    expect(redactUrl(url)).toBe(shown);
    // Idempotent.
    expect(redactUrl(shown)).toBe(shown);
  });

  test("redactText finds URLs inside messages (as fetch errors quote them)", () => {
    expect(redactText('UnsupportedRedirectProtocol fetching "http://u:pw@h/x". For more')).toBe('UnsupportedRedirectProtocol fetching "http://u:***@h/x". For more');
    expect(redactText("a https://t0k3n@h/x and sftp://me:pw@h/y")).toBe("a https://***@h/x and sftp://me:***@h/y");
  });
});

describe("sftpAuth", () => {
  const url = "sftp://root@example.invalid/usr.squashfs";

  test("a password without a pinned host key is refused, naming --sftp-host-key", () => {
    let err: unknown;
    try {
      sftpAuth(url, { password: "hunter2" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FetchError);
    expect((err as FetchError).retryable).toBe(false);
    expect((err as Error).message).toBe(
      "rd.usr.url=sftp://root@example.invalid/usr.squashfs: refusing to send the SFTP password to example.invalid:22, whose host key is not pinned: whoever answers there would receive it. Pin the server's host key (build the initrd with --sftp-host-key SHA256:..., as ssh-keygen -lf prints it) or use key authentication (--sftp-key)",
    );
  });

  test("a password with a pinned host key is used", () => {
    expect(sftpAuth(url, { password: "pw", hostKeySha256: "SHA256:x" })).toEqual({ password: "pw", privateKey: undefined, warnings: [] });
  });

  test("a key without a pinned host key works, with a warning; a password next to it is not offered", () => {
    const r = sftpAuth(url, { privateKey: "KEY", password: "pw" });
    expect(r.password).toBeUndefined();
    expect(r.privateKey).toBe("KEY");
    expect(r.warnings).toEqual([
      "the SFTP server example.invalid:22 is not authenticated (no pinned host key: --sftp-host-key); the SFTP password is not offered to it, and the image is trusted only through its hash",
    ]);
    expect(sftpAuth(url, { privateKey: "KEY" }).warnings).toEqual([
      "the SFTP server example.invalid:22 is not authenticated (no pinned host key: --sftp-host-key); the image is trusted only through its hash",
    ]);
  });

  test("no credentials at all", () => {
    expect(() => sftpAuth(url, {})).toThrow("no SFTP credentials");
  });
});

describe("redaction stays linear on long input", () => {
  test.each([
    ["2 MB of letters", "a".repeat(2 << 20)],
    ["2 MB of a:", "a:".repeat(1 << 20)],
    ["2 MB of @", "@".repeat(2 << 20)],
    ["a 2 MB userinfo", `http://${"u:".repeat(1 << 20)}@h/`],
    ["a 2 MB query", `http://h/?${"sig=1&".repeat(350_000)}`],
    ["many URLs", "http://a:b@h ".repeat(150_000)],
  ])("%s", (_, text) => {
    const t0 = performance.now();
    const shown = redactText(text);
    redactUrl(text);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(shown.includes(":b@")).toBe(false);
  });
});
