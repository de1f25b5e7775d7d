/**
 * Durations, one grammar for every setting (function timeouts, backoffs, shutdown grace, bus retention):
 * a number of milliseconds, or a decimal with a unit (`"250ms"`, `"1.5s"`, `"5m"`, `"12h"`, `"7d"`).
 *
 * A bare number in a string (`"500"`) is refused: written next to `"5s"` it reads as seconds as easily as
 * milliseconds. Only `"0"` passes, being zero in every unit (`retention: "0"` turns an archive off).
 */
import { ErrorCode, SluiceError } from "../errors.ts";

const unitMs = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * Parses a duration into milliseconds; throws E_CONFIG_INVALID naming `path` and the fix.
 * @example
 * parseDuration("30s", "$.timeout"); // 30000
 * parseDuration(250, "$.timeout"); // 250
 * parseDuration("500", "$.timeout"); // throws: write "500ms"
 */
export function parseDuration(value: unknown, path: string): number {
  if (typeof value === "number") {
    if (Number.isFinite(value) && value >= 0) return value;
    throw new SluiceError(ErrorCode.ConfigInvalid, `${path} must be a non-negative number of milliseconds, got ${value}`, { path });
  }
  if (typeof value === "string") {
    const text = value.trim();
    if (text === "0") return 0;
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text);
    if (m) return Number(m[1]) * unitMs[m[2] as keyof typeof unitMs];
    if (/^\d+(?:\.\d+)?$/.test(text)) {
      throw new SluiceError(ErrorCode.ConfigInvalid, `${path} ${JSON.stringify(value)} has no unit; write "${text}ms" (or "s", "m", "h", "d")`, {
        path,
      });
    }
  }
  throw new SluiceError(ErrorCode.ConfigInvalid, `${path} must be a duration like "30s", "5m", "1h" or milliseconds, got ${JSON.stringify(value)}`, {
    path,
  });
}
