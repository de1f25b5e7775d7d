/**
 * Schedule expressions: cron (5 or 6 fields, time zones and DST through croner), `rate(5 minutes)` and one-time
 * `at(2027-01-01T00:00:00Z)`. Pure: computes tick times, never sets timers.
 */
import { Cron } from "croner";
import { ErrorCode, SluiceError } from "../errors.ts";

export type ScheduleExpression =
  | { kind: "cron"; text: string; cron: Cron; timezone?: string }
  /** Ticks at every multiple of `periodMs` since the Unix epoch, so every node computes the same tick times. */
  | { kind: "rate"; text: string; periodMs: number }
  | { kind: "at"; text: string; at: number };

export interface ScheduleExpressionInput {
  cron?: unknown;
  rate?: unknown;
  at?: unknown;
  timezone?: unknown;
}

const rateUnits: Record<string, number> = {
  second: 1_000,
  seconds: 1_000,
  minute: 60_000,
  minutes: 60_000,
  hour: 3_600_000,
  hours: 3_600_000,
  day: 86_400_000,
  days: 86_400_000,
};

function invalid(message: string, path: string): SluiceError {
  return new SluiceError(ErrorCode.ConfigInvalid, message, { path });
}

/** True when `tz` is an IANA time zone this Node.js knows. */
export function isValidTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** Offset of `timeZone` from UTC at the instant `at`, in ms. */
function zoneOffsetMs(at: number, timeZone: string): number {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  }).formatToParts(new Date(at));
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  const asUtc = Date.UTC(get("year"), get("month") - 1, get("day"), get("hour"), get("minute"), get("second"));
  return asUtc - Math.floor(at / 1000) * 1000;
}

const atPattern = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$/;

/** Parses `2027-01-01T00:00:00Z`, an offset, or a local time in `timezone` (UTC when absent). */
export function parseAt(text: string, timezone: string | undefined, path: string): number {
  const m = atPattern.exec(text.trim());
  if (!m) {
    throw invalid(`at(${text}) is not an ISO 8601 date-time; write it like at(2027-01-01T00:00:00Z)`, path);
  }
  const [, y, mo, d, h, mi, s, zone] = m;
  if (zone !== undefined) {
    const t = Date.parse(text.trim());
    if (Number.isNaN(t)) throw invalid(`at(${text}) is not a valid date-time`, path);
    return t;
  }
  const wall = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s ?? 0));
  if (Number.isNaN(wall)) throw invalid(`at(${text}) is not a valid date-time`, path);
  if (timezone === undefined) return wall;
  // Two passes settle the offset around DST changes.
  let t = wall - zoneOffsetMs(wall, timezone);
  t = wall - zoneOffsetMs(t, timezone);
  return t;
}

function unwrap(text: string, fn: string): string {
  const t = text.trim();
  const prefix = `${fn}(`;
  return t.startsWith(prefix) && t.endsWith(")") ? t.slice(prefix.length, -1).trim() : t;
}

/**
 * Parses exactly one of `cron`, `rate` or `at`. Errors are `E_CONFIG_INVALID` with `path` set to
 * `${basePath}.cron` (etc.) and a message that says how to write it.
 */
export function parseScheduleExpression(input: ScheduleExpressionInput, basePath = "$"): ScheduleExpression {
  const given = (["cron", "rate", "at"] as const).filter((k) => input[k] !== undefined);
  if (given.length !== 1) {
    throw invalid(
      given.length === 0
        ? `a schedule needs one of cron, rate or at, e.g. { cron: "0 2 * * *" }, { rate: "5 minutes" } or { at: "2027-01-01T00:00:00Z" }`
        : `a schedule takes only one of cron, rate or at; it has ${given.join(" and ")}`,
      basePath,
    );
  }
  let timezone: string | undefined;
  if (input.timezone !== undefined) {
    if (typeof input.timezone !== "string" || !isValidTimeZone(input.timezone)) {
      throw invalid(
        `timezone ${JSON.stringify(input.timezone)} is not an IANA time zone; use a name like "Europe/Berlin" or "UTC"`,
        `${basePath}.timezone`,
      );
    }
    timezone = input.timezone;
  }
  const key = given[0] as "cron" | "rate" | "at";
  const raw = input[key];
  const path = `${basePath}.${key}`;
  if (typeof raw !== "string") throw invalid(`${key} must be a string`, path);

  if (key === "cron") {
    const text = unwrap(raw, "cron");
    const fields = text.split(/\s+/).filter(Boolean);
    if (!text.startsWith("@") && fields.length !== 5 && fields.length !== 6) {
      throw invalid(
        `cron "${text}" has ${fields.length} fields; write 5 (minute hour day month weekday, e.g. "0 2 * * *") or 6 (with seconds first)`,
        path,
      );
    }
    try {
      const cron = new Cron(text, { paused: true, ...(timezone === undefined ? {} : { timezone }) });
      if (cron.nextRun(new Date()) === null) throw new Error("the expression never fires");
      return { kind: "cron", text, cron, ...(timezone === undefined ? {} : { timezone }) };
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw invalid(`cron "${text}" is invalid: ${why}; write 5 fields like "*/5 * * * *"`, path);
    }
  }
  if (key === "rate") {
    const text = unwrap(raw, "rate");
    const m = /^(\d+)\s+([a-z]+)$/i.exec(text);
    const unit = m ? rateUnits[(m[2] ?? "").toLowerCase()] : undefined;
    const value = m ? Number(m[1]) : 0;
    if (!m || unit === undefined || value < 1 || !Number.isSafeInteger(value)) {
      throw invalid(`rate "${text}" is invalid; write a positive whole number and a unit, e.g. "5 minutes", "1 hour", "30 seconds"`, path);
    }
    return { kind: "rate", text: `rate(${text})`, periodMs: value * unit };
  }
  const text = unwrap(raw, "at");
  return { kind: "at", text: `at(${text})`, at: parseAt(text, timezone, path) };
}

/** The first tick strictly after `afterAt`, or undefined when there is none (a past `at`). */
export function nextTick(expr: ScheduleExpression, afterAt: number): number | undefined {
  switch (expr.kind) {
    case "rate":
      return (Math.floor(afterAt / expr.periodMs) + 1) * expr.periodMs;
    case "at":
      return expr.at > afterAt ? expr.at : undefined;
    case "cron": {
      // croner works in whole seconds and returns the next run strictly after its argument.
      const next = expr.cron.nextRun(new Date(afterAt));
      return next === null ? undefined : next.getTime();
    }
  }
}

/**
 * Ticks in `(afterAt, untilAt]`: how many there are (capped at `cap`) and the latest one.
 * Used to detect and catch up ticks missed during downtime.
 */
export function ticksBetween(
  expr: ScheduleExpression,
  afterAt: number,
  untilAt: number,
  cap = 100_000,
): { count: number; latest?: number } {
  if (expr.kind === "rate") {
    const first = nextTick(expr, afterAt) ?? Infinity;
    if (first > untilAt) return { count: 0 };
    const latest = Math.floor(untilAt / expr.periodMs) * expr.periodMs;
    return { count: Math.min(cap, (latest - first) / expr.periodMs + 1), latest };
  }
  let count = 0;
  let latest: number | undefined;
  let t = nextTick(expr, afterAt);
  while (t !== undefined && t <= untilAt && count < cap) {
    latest = t;
    count++;
    t = nextTick(expr, t);
  }
  return latest === undefined ? { count } : { count, latest };
}
