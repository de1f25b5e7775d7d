/**
 * One schedule's config, validated into a ScheduleSpec: the same checks for an entry of the `schedules` key and
 * for a source of kind `schedule`. Problems name the key of the bad option and the fix.
 */
import type { SluiceError } from "../../errors.ts";
import { isObject, splitFix } from "../../util/validate.ts";
import { parseScheduleExpression, type ScheduleExpression } from "../schedule-expression.ts";
import type { ScheduleAction, ScheduleSpec } from "../schedules.ts";
import type { ProblemSink } from "../source.ts";

export const scheduleKeys = ["cron", "rate", "at", "timezone", "emit", "invoke", "input", "catchUp", "enabled"];
const emitKeys = ["type", "source", "subject", "data", "bus"];

/** The spec, or undefined when it has problems (reported) or is disabled (`enabled: false`). */
export function validateSchedule(name: string, s: Record<string, unknown>, key: string, problems: ProblemSink): ScheduleSpec | undefined {
  const { add } = problems;
  problems.unknownKeys(s, scheduleKeys, key);
  let expression: ScheduleExpression | undefined;
  try {
    expression = parseScheduleExpression(s, key);
  } catch (err) {
    const e = err as SluiceError;
    const [message, fix] = splitFix(e.message);
    add(e.path ?? key, message, fix);
  }
  let action: ScheduleAction | undefined;
  if ((s.emit === undefined) === (s.invoke === undefined)) {
    add(key, "needs exactly one of emit or invoke", 'add emit: { type: "report.requested", source: "shop" } or invoke: "function-name"');
  } else if (s.emit !== undefined) {
    const e = s.emit;
    if (!isObject(e)) add(`${key}.emit`, "must be an object", 'write emit: { type: "report.requested", source: "shop" }');
    else {
      problems.unknownKeys(e, emitKeys, `${key}.emit`);
      if (typeof e.type !== "string" || !e.type) add(`${key}.emit.type`, "is missing", 'write type: "report.requested"');
      if (typeof e.source !== "string" || !e.source) add(`${key}.emit.source`, "is missing", 'write source: "shop"');
      if (e.subject !== undefined && typeof e.subject !== "string") add(`${key}.emit.subject`, "must be a string");
      if (e.bus !== undefined) problems.busRef(e.bus, `${key}.emit.bus`);
      if (typeof e.type === "string" && typeof e.source === "string") {
        action = {
          kind: "emit",
          bus: typeof e.bus === "string" ? e.bus : "default",
          type: e.type,
          source: e.source,
          ...(typeof e.subject === "string" ? { subject: e.subject } : {}),
          ...(e.data === undefined ? {} : { data: e.data }),
        };
      }
    }
  } else {
    problems.functionRef(s.invoke, `${key}.invoke`);
    if (typeof s.invoke === "string") action = { kind: "invoke", function: s.invoke, ...(s.input === undefined ? {} : { data: s.input }) };
  }
  if (s.catchUp !== undefined && typeof s.catchUp !== "boolean") add(`${key}.catchUp`, "must be true or false");
  if (s.enabled !== undefined && typeof s.enabled !== "boolean") add(`${key}.enabled`, "must be true or false");
  if (expression && action && s.enabled !== false) return { name, expression, catchUp: s.catchUp === true, action };
  return undefined;
}
