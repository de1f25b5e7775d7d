/** The `alerts` key of defineApp: conditions on dead letters, error rate, backlog and budget use (docs/telemetry.md). */
import type { Duration } from "../runtime/define.ts";
import { parseDuration } from "../util/duration.ts";
import { isObject } from "../util/validate.ts";

export const alertConditions = ["dlqSize", "errorRate", "backlog", "budgetUse"] as const;
export type AlertCondition = (typeof alertConditions)[number];

export interface AlertConfig {
  dlqSize?: { above: number };
  /** Failed invocations / invocations over `window`, from 0 to 1. */
  errorRate?: { above: number };
  backlog?: { above: number };
  /** The budget window's use, from 0 to 1 (the larger of invocations and GB-seconds). */
  budgetUse?: { above: number };
  /** How long the condition must hold before the alert fires. Default "0s". */
  for?: Duration;
  /** Only this target (`bus/rule/target`), for dlqSize and backlog. */
  target?: string;
  /** Only this function, for errorRate, backlog and budgetUse. */
  function?: string;
  /** The error-rate window. Default "5m". */
  window?: Duration;
}

export interface ValidatedAlert {
  name: string;
  condition: AlertCondition;
  above: number;
  forMs: number;
  windowMs: number;
  target?: string;
  function?: string;
}

type Add = (key: string, message: string, fix?: string) => void;

const nameRe = /^[A-Za-z0-9._-]{1,64}$/;

export function validateAlerts(raw: unknown, add: Add, unknownKeys: (obj: Record<string, unknown>, known: readonly string[], prefix: string) => void): ValidatedAlert[] {
  if (raw === undefined) return [];
  if (!isObject(raw)) {
    add("alerts", "must be an object", 'write alerts: { "dlq-growing": { dlqSize: { above: 10 }, for: "5m" } }');
    return [];
  }
  const out: ValidatedAlert[] = [];
  for (const [name, a] of Object.entries(raw)) {
    const key = `alerts.${name}`;
    if (!nameRe.test(name)) add(key, "an alert name is letters, digits, '.', '_' or '-' (at most 64)");
    if (!isObject(a)) {
      add(key, "must be an object", "e.g. { dlqSize: { above: 10 }, for: \"5m\" }");
      continue;
    }
    unknownKeys(a, [...alertConditions, "for", "target", "function", "window"], key);
    const present = alertConditions.filter((c) => a[c] !== undefined);
    if (present.length !== 1) {
      add(key, present.length === 0 ? "needs one condition" : `has ${present.length} conditions; one per alert`, `one of ${alertConditions.join(", ")}`);
      continue;
    }
    const condition = present[0]!;
    const c = a[condition];
    const above = isObject(c) ? c.above : undefined;
    const fraction = condition === "errorRate" || condition === "budgetUse";
    if (!isObject(c) || typeof above !== "number" || !Number.isFinite(above) || above < 0 || (fraction && above > 1)) {
      add(`${key}.${condition}.above`, fraction ? "must be a number from 0 to 1" : "must be a number >= 0", `e.g. ${condition}: { above: ${fraction ? 0.05 : 10} }`);
      continue;
    }
    if (isObject(c)) unknownKeys(c, ["above"], `${key}.${condition}`);
    const ms = (v: unknown, k: string, fallback: number): number | undefined => {
      if (v === undefined) return fallback;
      try {
        return parseDuration(v, `${key}.${k}`);
      } catch (err) {
        add(`${key}.${k}`, (err as Error).message, 'e.g. "30s" or "5m"');
        return undefined;
      }
    };
    const forMs = ms(a.for, "for", 0);
    const windowMs = ms(a.window, "window", 5 * 60_000);
    if (a.target !== undefined && (typeof a.target !== "string" || a.target.split("/").length !== 3 || (condition !== "dlqSize" && condition !== "backlog"))) {
      add(`${key}.target`, "is bus/rule/target, for dlqSize and backlog");
      continue;
    }
    if (a.function !== undefined && (typeof a.function !== "string" || condition === "dlqSize")) {
      add(`${key}.function`, "is a function name, for errorRate, backlog and budgetUse");
      continue;
    }
    if (forMs === undefined || windowMs === undefined) continue;
    out.push({
      name,
      condition,
      above,
      forMs,
      windowMs,
      ...(a.target === undefined ? {} : { target: a.target as string }),
      ...(a.function === undefined ? {} : { function: a.function as string }),
    });
  }
  return out;
}
