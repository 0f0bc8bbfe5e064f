// Credentials never reach a log line or an error message: URLs are shown
// through these. Pure, so the init's planner, the fetch engine and the host
// commands share them.

/** Query parameters that carry a secret (signed object-store URLs, tokens). */
const SECRET_PARAM = /sig|signature|token|secret|passw|pwd|credential|key|auth/i;

/**
 * The URL as it may be shown: a password in the userinfo becomes "***"; a
 * userinfo without a password is kept for sftp (the login name) and
 * replaced for every other scheme (there it is a token); the values of
 * query parameters that look like signatures, tokens or keys become "***".
 * Pure and textual: the rest of the URL stays exactly as given (no
 * normalisation by the URL parser), and a redacted URL redacts to itself.
 */
export function redactUrl(url: string): string {
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?#]*)(.*)$/s.exec(url);
  if (!m) return url;
  const scheme = m[1]!.toLowerCase();
  let authority = m[2]!;
  let rest = m[3]!;
  const at = authority.lastIndexOf("@");
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    const colon = userinfo.indexOf(":");
    let shown: string;
    if (colon >= 0) shown = `${userinfo.slice(0, colon)}:***`;
    else if (scheme === "sftp" || scheme === "ssh" || userinfo === "***") shown = userinfo;
    else shown = "***";
    authority = `${shown}@${authority.slice(at + 1)}`;
  }
  const q = rest.indexOf("?");
  if (q >= 0) {
    const hash = rest.indexOf("#", q);
    const query = rest.slice(q + 1, hash < 0 ? undefined : hash);
    const redacted = query
      .split("&")
      .map((pair) => {
        const eq = pair.indexOf("=");
        if (eq < 0) return redactText(pair);
        const name = pair.slice(0, eq);
        return SECRET_PARAM.test(name) ? `${name}=***` : `${name}=${redactText(pair.slice(eq + 1))}`;
      })
      .join("&");
    rest = `${rest.slice(0, q + 1)}${redacted}${hash < 0 ? "" : rest.slice(hash)}`;
  }
  return `${m[1]}://${authority}${rest}`;
}

/** Every URL inside a piece of text (an error message from fetch or ssh2), redacted. */
export function redactText(text: string): string {
  // The scheme's length is bounded so that a long run of letters is scanned
  // in linear time (an unbounded [a-z]* before "://" would be quadratic).
  return text.replace(/[a-zA-Z][a-zA-Z0-9+.-]{0,31}:\/\/[^\s"'<>`]+/g, (u) => redactUrl(u));
}
