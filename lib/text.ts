// Showing text from outside (the command line, labels and names read from
// disks and archives) in a console message without letting it garble the
// console. Pure.

/**
 * Makes text safe for a console message without shortening it: control
 * characters (escape sequences, carriage returns) must not garble the
 * screen. C0, DEL and C1 controls become \xNN; line separators,
 * bidirectional overrides and lone surrogates, which would reorder or break
 * the line, become \u{NNNN}. For text from outside (the command line, labels
 * read from a disk).
 */
export function escapeControls(text: string): string {
  return text
    .replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`)
    .replace(
      /[\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g,
      (c) => `\\u{${c.charCodeAt(0).toString(16).padStart(4, "0")}}`,
    );
}

const SHOWN_VALUE_MAX = 80;

/**
 * Makes a value safe and short enough for a console message: a 1 MB typo
 * must not flood the console, and control characters must not garble it
 * (escapeControls). For the command-line parsers (parameters, ip=, mount
 * options), so that every message shows values the same way.
 */
export function showValue(value: string): string {
  let shown = value;
  let cut = false;
  if (shown.length > SHOWN_VALUE_MAX) {
    shown = shown.slice(0, SHOWN_VALUE_MAX);
    // Do not leave half of a surrogate pair before the ellipsis.
    const last = shown.charCodeAt(shown.length - 1);
    if (last >= 0xd800 && last <= 0xdbff) shown = shown.slice(0, -1);
    cut = true;
  }
  shown = escapeControls(shown);
  return cut ? `${shown}…` : shown;
}
