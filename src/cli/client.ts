/**
 * What the client commands share: talking to a running server's admin API (`--url`, `SLUICE_URL`), printing
 * tables or `--json`, reading `@file` arguments, and turning failures into messages a user can act on.
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { ErrorCode, SluiceError } from "../errors.ts";
import { DEFAULT_URL } from "../server/settings.ts";
import { parseDuration } from "../util/duration.ts";

export interface ClientOptions {
  url: string;
  json?: boolean;
}

/** Adds `--url` (and `--json` for read commands). */
export function clientOptions(cmd: Command, read = true): Command {
  cmd.option("--url <url>", "the server's URL (env SLUICE_URL)", process.env.SLUICE_URL ?? DEFAULT_URL);
  if (read) cmd.option("--json", "print JSON instead of a table");
  return cmd;
}

/** An error answer from the server, with its HTTP status. */
export class ServerError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly path?: string,
  ) {
    super(message);
  }
}

/** Calls the server; resolves to the parsed JSON answer, rejects with ServerError or an unreachable-server error. */
export async function request<T = unknown>(url: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
  let res: Response;
  const target = new URL(path, url.endsWith("/") ? url : `${url}/`);
  try {
    res = await fetch(target, {
      method,
      headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
      ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    throw new Error(
      `no Sluice server answers at ${url}${cause ? ` (${cause})` : ""}; start one with \`sluice dev\` or pass --url (or SLUICE_URL)`,
    );
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const e = (json as { error?: { code?: string; message?: string; path?: string } } | undefined)?.error;
    throw new ServerError(res.status, e?.code ?? `HTTP_${res.status}`, e?.message ?? (text || res.statusText), e?.path);
  }
  return json as T;
}

/** Exit code for a failure: 2 for bad input (a 4xx other than 404 lookups of things that may appear), 1 otherwise. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof ServerError) return err.status >= 400 && err.status < 500 && err.status !== 404 && err.status !== 429 ? 2 : 1;
  if (err instanceof SluiceError) return 2;
  return 1;
}

/** Prints a failure on stderr and returns its exit code. */
export function report(err: unknown): number {
  if (err instanceof ServerError) {
    process.stderr.write(`sluice: ${err.code}: ${err.message}${err.path ? ` (at ${err.path})` : ""}\n`);
  } else if (err instanceof SluiceError) {
    process.stderr.write(`sluice: ${err.code}: ${err.message}${err.path ? ` (at ${err.path})` : ""}\n`);
  } else {
    process.stderr.write(`sluice: ${err instanceof Error ? err.message : String(err)}\n`);
  }
  return exitCodeFor(err);
}

/** Runs a command body, mapping failures to exit codes. */
export function action<A extends unknown[]>(setExitCode: (code: number) => void, fn: (...args: A) => Promise<void | number>) {
  return async (...args: A) => {
    try {
      const code = await fn(...args);
      if (typeof code === "number") setExitCode(code);
    } catch (err) {
      setExitCode(report(err));
    }
  };
}

/** Parses a JSON argument, or reads it from a file when it starts with `@`. */
export function jsonArg(value: string, what: string): unknown {
  let text = value;
  if (value.startsWith("@")) {
    try {
      text = readFileSync(value.slice(1), "utf8");
    } catch (err) {
      throw new SluiceError(ErrorCode.BadRequest, `${what}: cannot read ${value.slice(1)}: ${(err as Error).message}`);
    }
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new SluiceError(ErrorCode.JsonInvalid, `${what} is not valid JSON: ${(err as Error).message}`);
  }
}

/** `2026-01-01T00:00:00Z`, epoch ms, `now`, or relative like `-1h`, `-30m`, `-2d`. */
export function timeArg(value: string, what: string, now = Date.now()): number {
  if (value === "now") return now;
  if (/^-\d.*(ms|s|m|h|d)$/.test(value)) return now - parseDuration(value.slice(1), what);
  if (/^\d{10,}$/.test(value)) return Number(value);
  const t = Date.parse(value);
  if (Number.isNaN(t)) {
    throw new SluiceError(ErrorCode.BadRequest, `${what} ${JSON.stringify(value)} is not a time; write 2026-01-01T00:00:00Z, now, or -1h`);
  }
  return t;
}

/** Prints rows as an aligned table. */
export function table(rows: Record<string, unknown>[], columns: string[]): string {
  if (rows.length === 0) return "(none)\n";
  const cell = (v: unknown) => (v === undefined || v === null ? "-" : typeof v === "object" ? JSON.stringify(v) : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i] ?? 0)).join("  ").trimEnd();
  return `${[line(columns.map((c) => c.toUpperCase())), ...rows.map((r) => line(columns.map((c) => cell(r[c]))))].join("\n")}\n`;
}

export function print(opts: { json?: boolean }, value: unknown, human: () => string): void {
  process.stdout.write(opts.json ? `${JSON.stringify(value, null, 2)}\n` : human());
}

/** A one-line progress bar on stderr (only when it is a terminal). */
export function progress(fraction: number, label: string): void {
  if (!process.stderr.isTTY) return;
  const width = 30;
  const f = Math.max(0, Math.min(1, fraction));
  const filled = Math.round(f * width);
  process.stderr.write(`\r[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${(f * 100).toFixed(0).padStart(3)}% ${label}   `);
}
export function progressDone(): void {
  if (process.stderr.isTTY) process.stderr.write("\n");
}
