// The error of an invalid command-line value. In a module of its own so that
// every parser of a parameter's value (lib/cmdline.ts, lib/devices/ref.ts)
// can throw it without importing the others.
import { showValue } from "./text.ts";

/**
 * An invalid parameter value. The message names the parameter, the value as
 * given (shortened and escaped) and what was expected, so that the failure
 * screen tells the user what to fix on the command line.
 */
export class ParamError extends Error {
  readonly param: string;
  /**
   * The value as given, unshortened; "" for a bare word. URL parameters pass
   * it with the password redacted (redactUrlPassword), so that neither the
   * message nor this field can leak it into a log.
   */
  readonly value: string;
  readonly expected: string;

  /** `value` null means the word had no "=" at all; the message then shows the name alone. */
  constructor(param: string, value: string | null, expected: string) {
    super(value === null ? `${param}: expected ${expected}` : `${param}=${showValue(value)}: expected ${expected}`);
    this.name = "ParamError";
    this.param = param;
    this.value = value ?? "";
    this.expected = expected;
  }
}
