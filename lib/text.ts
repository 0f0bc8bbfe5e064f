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
