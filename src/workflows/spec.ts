/**
 * A workflow's settings (what `defineWorkflow` and `defineSaga` accept besides `run`), validated into the
 * normalized form the engine uses. Pure: it runs where the definition is written and again in the host.
 */
import { ErrorCode, SluiceError } from "../errors.ts";
import { parseDuration } from "../util/duration.ts";
import { isName, isObject } from "../util/validate.ts";

/** Steps one run may record (step.run, sleeps, waits, emits, invokes together). */
export const maxStepsPerRun = 1000;
/** Largest JSON result of one step, in bytes. */
export const maxStepResultBytes = 256 * 1024;
/** Largest stored run (trigger, results, history), in bytes. */
export const maxRunStateBytes = 4 * 1024 * 1024;

export interface SagaStepSpec {
  name: string;
  run: string;
  compensate: string | undefined;
}

export interface WorkflowSpec {
  kind: "workflow" | "saga";
  on: Record<string, unknown>;
  /** Attempts of each step (and of each compensation) in total, with full-jitter backoff between them. */
  retry: { attempts: number; backoff: { initialMs: number; maxMs: number } };
  /** A dotted path into the trigger event; absent: the trigger's source and id. */
  idempotencyKey: string | undefined;
  concurrency: { key: string | undefined; limit: number } | undefined;
  /** How long finished runs stay listed. */
  retentionMs: number;
  steps: SagaStepSpec[] | undefined;
}

const pathRe = /^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$/;

function invalid(name: string, path: string, message: string): SluiceError {
  return new SluiceError(ErrorCode.ConfigInvalid, `workflow "${name}": ${path} ${message}`, { path });
}

/** Validates `workflow` settings; `name` is the workflow's name, for messages. */
export function normalizeWorkflowSpec(raw: unknown, name: string): WorkflowSpec {
  if (!isObject(raw)) throw invalid(name, "$", "must be an object");
  const known = new Set(["kind", "on", "retry", "idempotency", "concurrency", "retention", "steps"]);
  for (const key of Object.keys(raw)) if (!known.has(key)) throw invalid(name, `$.${key}`, "is not a known field");
  const kind = raw.kind === "saga" ? "saga" : "workflow";
  if (!isObject(raw.on)) throw invalid(name, "$.on", "must be an event pattern object, like { type: [\"order.created\"] }");
  const retry = raw.retry ?? {};
  if (!isObject(retry)) throw invalid(name, "$.retry", "must be { attempts?, backoff? }");
  const attempts = retry.attempts ?? 4;
  if (typeof attempts !== "number" || !Number.isInteger(attempts) || attempts < 1 || attempts > 100) {
    throw invalid(name, "$.retry.attempts", `must be an integer from 1 to 100 (attempts in total), got ${JSON.stringify(attempts)}`);
  }
  const backoff = retry.backoff ?? {};
  if (!isObject(backoff)) throw invalid(name, "$.retry.backoff", "must be { initial?, max? }");
  const initialMs = backoff.initial === undefined ? 1000 : parseDuration(backoff.initial, "$.retry.backoff.initial");
  const maxMs = backoff.max === undefined ? 300_000 : parseDuration(backoff.max, "$.retry.backoff.max");
  if (maxMs < initialMs) throw invalid(name, "$.retry.backoff.max", "must not be less than retry.backoff.initial");

  let idempotencyKey: string | undefined;
  if (raw.idempotency !== undefined) {
    const key = isObject(raw.idempotency) ? raw.idempotency.key : undefined;
    if (typeof key !== "string" || !pathRe.test(key)) throw invalid(name, "$.idempotency.key", 'must be a dotted path into the event, like "data.orderId"');
    idempotencyKey = key;
  }
  let concurrency: WorkflowSpec["concurrency"];
  if (raw.concurrency !== undefined) {
    const c = raw.concurrency;
    if (!isObject(c)) throw invalid(name, "$.concurrency", "must be { key?, limit }");
    if (typeof c.limit !== "number" || !Number.isInteger(c.limit) || c.limit < 1 || c.limit > 10_000) {
      throw invalid(name, "$.concurrency.limit", `must be an integer from 1 to 10000, got ${JSON.stringify(c.limit)}`);
    }
    if (c.key !== undefined && (typeof c.key !== "string" || !pathRe.test(c.key))) {
      throw invalid(name, "$.concurrency.key", 'must be a dotted path into the event, like "data.customerId"');
    }
    concurrency = { key: c.key as string | undefined, limit: c.limit };
  }
  const retentionMs = raw.retention === undefined ? 7 * 86_400_000 : parseDuration(raw.retention, "$.retention");

  let steps: SagaStepSpec[] | undefined;
  if (kind === "saga") {
    if (!Array.isArray(raw.steps) || raw.steps.length === 0) throw invalid(name, "$.steps", "must be a non-empty list of { name, run, compensate? }");
    if (raw.steps.length > maxStepsPerRun) throw invalid(name, "$.steps", `has more than ${maxStepsPerRun} steps`);
    const seen = new Set<string>();
    steps = raw.steps.map((s: unknown, i: number) => {
      const at = `$.steps[${i}]`;
      if (!isObject(s)) throw invalid(name, at, "must be { name, run, compensate? }");
      for (const key of Object.keys(s)) if (!["name", "run", "compensate"].includes(key)) throw invalid(name, `${at}.${key}`, "is not a known field");
      if (!isName(s.name)) throw invalid(name, `${at}.name`, "must be 1-64 letters, digits, '.', '_' or '-'");
      if (seen.has(s.name)) throw invalid(name, `${at}.name`, `repeats the step name "${s.name}"`);
      seen.add(s.name);
      if (!isName(s.run)) throw invalid(name, `${at}.run`, "must name a function");
      if (s.compensate !== undefined && !isName(s.compensate)) throw invalid(name, `${at}.compensate`, "must name a function");
      return { name: s.name, run: s.run, compensate: s.compensate as string | undefined };
    });
  }
  return { kind, on: raw.on, retry: { attempts, backoff: { initialMs, maxMs } }, idempotencyKey, concurrency, retentionMs, steps };
}

/** Reads a dotted path (`data.orderId`) out of an event. */
export function readPath(value: unknown, path: string): unknown {
  let cur: unknown = value;
  for (const part of path.split(".")) {
    if (typeof cur !== "object" || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}
