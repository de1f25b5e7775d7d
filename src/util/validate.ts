/**
 * The shape checks every layer shares, written once: plain objects, names, and JSON paths of nested inputs.
 * They throw or return nothing else, so the bus, the runtime and the config agree on what is valid.
 */
import { ErrorCode, SluiceError } from "../errors.ts";

/** A plain object: not null, not an array. */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Names of buses, rules, targets, replays, functions, schedules and sources: 1-64 letters, digits, `.`, `_` or `-`,
 * starting with a letter or digit (a leading `.` or `-` reads as a flag or a hidden file in CLI output and paths).
 */
export const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const nameRule = 'names are 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit';

export function isName(value: unknown): value is string {
  return typeof value === "string" && namePattern.test(value);
}

/** Returns `name` when it is a valid name; throws E_BAD_REQUEST naming `path` otherwise. */
export function checkName(what: string, name: unknown, path: string): string {
  if (name === undefined) throw new SluiceError(ErrorCode.BadRequest, `${what} name is missing`, { path });
  if (!isName(name)) throw new SluiceError(ErrorCode.BadRequest, `${what} name ${JSON.stringify(name)} is invalid: ${nameRule}`, { path });
  return name;
}

/** `$.pattern` + `$.type[0]` -> `$.pattern.type[0]`: a nested input's JSON path under the path of its parent. */
export function joinPath(prefix: string, inner: string | undefined): string {
  return `${prefix}${(inner ?? "").replace(/^\$/, "")}`;
}

/** Runs `fn`; a SluiceError it throws is thrown again with its path under `prefix`. */
export function underPath<T>(prefix: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof SluiceError) throw new SluiceError(err.code, err.message, { path: joinPath(prefix, err.path), cause: err });
    throw err;
  }
}

/** `"bad cron; write 5 fields"` -> `["bad cron", "write 5 fields"]`: an error message split into problem and fix. */
export function splitFix(message: string): [string, string | undefined] {
  const i = message.indexOf("; ");
  return i < 0 ? [message, undefined] : [message.slice(0, i), message.slice(i + 2)];
}
