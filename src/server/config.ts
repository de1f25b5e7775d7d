/**
 * The app definition (`defineApp`, the public contract of `sluice.config.ts`) and its validation.
 *
 * Validation collects every problem before it fails, and each problem names the file, the key and the fix, so a
 * user fixes their config in one pass. Loading the file (esbuild, no build step) lives in `load-app.ts`.
 */
import { checkRule, type TargetKinds } from "../bus/definitions.ts";
import { defaultRetryPolicy, resolveRetryPolicy } from "../bus/retry.ts";
import { targetRegistry } from "../bus/targets/registry.ts";
import type { TargetHandler } from "../bus/targets/target.ts";
import type { Target, TargetKindValues } from "../bus/types.ts";
import { ErrorCode, SluiceError } from "../errors.ts";
import { compilePattern } from "../pattern/compile.ts";
import { storeUrlExamples, storeUrlProblem } from "../store/registry.ts";
import { sourceRegistry } from "../triggers/registry.ts";
import { validateSchedule } from "../triggers/schedule/validate.ts";
import type { ScheduleSpec } from "../triggers/schedules.ts";
import type { ProblemSink, SourceKind } from "../triggers/source.ts";
import { didYouMean } from "../util/did-you-mean.ts";
import { parseDuration } from "../util/duration.ts";
import { isName, isObject, nameRule, splitFix } from "../util/validate.ts";

/** A route's target: a function name, or the long form. */
export interface RouteConfig {
  /** The function that handles the request. */
  function: string;
  /** Answer 202 at once and hand the request to the function through the bus (retries, DLQ). Default false. */
  async?: boolean;
}

export interface EmitConfig {
  type: string;
  source: string;
  subject?: string;
  data?: unknown;
  /** Default `default`. */
  bus?: string;
}

export interface ScheduleConfig {
  /** 5 fields (minute hour day month weekday) or 6 (seconds first). */
  cron?: string;
  /** `"5 minutes"` or `"rate(5 minutes)"`: seconds, minutes, hours, days. */
  rate?: string;
  /** One time: `"2027-01-01T00:00:00Z"` or `"at(…)"`. */
  at?: string;
  /** IANA time zone for `cron` and a local `at` (default UTC). */
  timezone?: string;
  /** Publish this event on every tick. */
  emit?: EmitConfig;
  /** Or invoke this function with a `sluice.schedule.fired` event. */
  invoke?: string;
  /** With `invoke`: passed as `data.input`. */
  input?: unknown;
  /** After downtime, fire the latest missed tick once (default false: skip missed ticks). */
  catchUp?: boolean;
  /** Default true. */
  enabled?: boolean;
}

/** A rule target: exactly one kind key (`function`, `bus`, `webhook`, or a registered kind) and its value. */
/** A source: its kind and that kind's options (a `schedule` takes the fields of a ScheduleConfig). */
export type SourceConfig = ({ kind: "schedule" } & ScheduleConfig) | { kind: string; [option: string]: unknown };

export interface TargetConfig extends Partial<TargetKindValues> {
  /** Unique within the rule; default derived from the target. */
  id?: string;
  inputTransformer?: { inputPaths?: Record<string, string>; inputTemplate: string };
  retryPolicy?: { maxAttempts?: number; maxEventAgeMs?: number; baseBackoffMs?: number; maxBackoffMs?: number };
}

export interface RuleConfig {
  name: string;
  /** Default `default`. */
  bus?: string;
  pattern: unknown;
  enabled?: boolean;
  description?: string;
  targets: TargetConfig[];
}

export interface BusConfig {
  name: string;
  /** Archive retention, e.g. "7d"; "0" disables the archive. */
  retention?: string | number;
  description?: string;
}

/** Server settings a config file may set; `SLUICE_*` variables and CLI flags override them. */
export interface ServerConfig {
  port?: number;
  host?: string;
  /** A store URL (src/store/registry.ts): `sqlite:PATH` or a file path, `postgres://…`. */
  store?: string;
  /** Where `sluice dev` keeps its SQLite file (default `.sluice` in the app). */
  dataDir?: string;
  logLevel?: "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent";
  /** How long a graceful shutdown waits for in-flight work, e.g. "10s". */
  shutdownGrace?: string | number;
  /** Largest request body, in bytes (default 1 MiB; a single event is still limited to 256 KiB). */
  bodyLimit?: number;
  /** Publishing answers 429 (E_BACKPRESSURE) while about this many deliveries are pending, all queues together (default 1 000 000). */
  maxPendingDeliveries?: number;
  /** Publishing answers 429 (E_BACKPRESSURE) while this many events wait to be stored (default 10 000). */
  maxQueuedEntries?: number;
  /** Function instances on this node, all functions together (default 32). */
  maxInstances?: number;
  /** An idle instance above its function's `minInstances` stops after this long (default "60s"; scale to zero). */
  idleTimeout?: string | number;
}

export interface AppConfig {
  name: string;
  /** A folder of function files (every default export of `defineFunction`) or a list of files. Default `./functions`. */
  functions?: string | readonly string[];
  /** `"METHOD /path/:param"` to a function name or `{ function, async }`. */
  routes?: Readonly<Record<string, string | RouteConfig>>;
  schedules?: Readonly<Record<string, ScheduleConfig>>;
  /** Event sources by name, each `{ kind, ...options }` (src/triggers/registry.ts lists the kinds). */
  sources?: Readonly<Record<string, SourceConfig>>;
  rules?: readonly RuleConfig[];
  buses?: readonly (string | BusConfig)[];
  server?: ServerConfig;
}

const appBrand = Symbol.for("sluice.app");
export type AppDefinition = Readonly<AppConfig> & { readonly [appBrand]: true };

/**
 * Declares a Sluice application: the default export of `sluice.config.ts` (or `.js`).
 *
 * @example
 * import { defineApp } from "sluice";
 *
 * export default defineApp({
 *   name: "shop",
 *   functions: "./functions",
 *   routes: { "POST /orders": "create-order", "GET /orders/:id": "get-order" },
 *   schedules: { "nightly-report": { cron: "0 2 * * *", timezone: "Europe/Berlin", emit: { type: "report.requested", source: "shop" } } },
 *   // Event sources by name: `kind` picks the kind, which validates the rest (src/triggers/registry.ts).
 *   sources: { "stock-check": { kind: "schedule", rate: "1 hour", invoke: "check-stock" } },
 *   rules: [{ name: "audit", pattern: { source: ["shop"] }, targets: [{ webhook: "http://127.0.0.1:9000/audit" }] }],
 * });
 */
export function defineApp(config: AppConfig): AppDefinition {
  return Object.freeze({ ...config, [appBrand]: true as const });
}

// ---------------------------------------------------------------------------------------------------------------
// Validation

/** One problem found in a config: where, what, and how to fix it. */
export interface ConfigProblem {
  /** e.g. `routes["POST /orders"]`. */
  key: string;
  message: string;
  fix?: string;
}

/** Thrown when a config has problems; `problems` lists every one, the message shows them all. */
export class ConfigError extends SluiceError {
  override readonly name = "ConfigError";
  constructor(
    readonly file: string,
    readonly problems: ConfigProblem[],
  ) {
    super(ErrorCode.ConfigInvalid, formatProblems(file, problems), problems[0] ? { path: problems[0].key } : {});
  }
}

export function formatProblems(file: string, problems: readonly ConfigProblem[]): string {
  const lines = problems.map((p) => `  - ${p.key}: ${p.message}${p.fix ? `\n      fix: ${p.fix}` : ""}`);
  return `${file} has ${problems.length} problem${problems.length === 1 ? "" : "s"}:\n${lines.join("\n")}`;
}

export interface ValidatedRoute {
  key: string;
  method: string;
  /** Fastify path syntax (`/orders/:id`). */
  path: string;
  function: string;
  async: boolean;
}

export interface ValidatedRule {
  name: string;
  bus: string;
  pattern: unknown;
  enabled: boolean;
  description?: string;
  /** Each with its id and its kind's value in normal form, ready for `putRule`. */
  targets: Target[];
}

export interface ValidatedSource {
  name: string;
  kind: string;
  /** What the kind's `validate` returned, handed to its `create`. */
  options: unknown;
}

/** A function as the config validator sees it: its name and implicit-rule pattern, and the file it came from. */
export interface FunctionInfo {
  name: string;
  file: string;
  on?: unknown;
}

/** The validated, read-only app. */
export interface ValidatedApp {
  name: string;
  file: string;
  /** Function files, resolved later by the loader; `functions` as written. */
  functions: string | readonly string[];
  routes: readonly ValidatedRoute[];
  schedules: readonly ScheduleSpec[];
  /** The `sources` key, each with its kind's validated options. */
  sources: readonly ValidatedSource[];
  rules: readonly ValidatedRule[];
  buses: readonly { name: string; retentionMs?: number; description?: string }[];
  server: ServerConfig;
}

export interface ValidateOptions {
  /** The config file, for messages. */
  file: string;
  /** Functions found by the loader; when given, routes, schedules and rule targets are checked against them. */
  functions?: readonly FunctionInfo[];
  /** Target kinds besides the built-in ones (the same list the broker gets). */
  targets?: readonly TargetHandler[];
  /** Source kinds besides the built-in ones. */
  sources?: readonly SourceKind[];
}

const appKeys = ["name", "functions", "routes", "schedules", "sources", "rules", "buses", "server"] as const;
const ruleKeys = ["name", "bus", "pattern", "enabled", "description", "targets"];
const serverKeys = ["port", "host", "store", "dataDir", "logLevel", "shutdownGrace", "bodyLimit", "maxPendingDeliveries", "maxQueuedEntries", "maxInstances", "idleTimeout"];
const routeKeys = ["function", "async"];
export const httpMethods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] as const;
export const logLevels = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;

function q(s: string): string {
  return JSON.stringify(s);
}

/** A duration's milliseconds, or the problem with it (the shared grammar of util/duration.ts). */
export function durationProblem(value: unknown): { ms: number } | { message: string } {
  try {
    return { ms: parseDuration(value, "") };
  } catch (err) {
    return { message: (err as Error).message.trim() };
  }
}

/**
 * Validates an app definition (what `sluice.config.ts` exported) into a read-only `ValidatedApp`.
 * Throws one `ConfigError` listing every problem.
 */
export function validateApp(input: unknown, options: ValidateOptions): ValidatedApp {
  const problems: ConfigProblem[] = [];
  const add = (key: string, message: string, fix?: string) =>
    problems.push(fix === undefined ? { key, message } : { key, message, fix });
  const unknownKeys = (obj: Record<string, unknown>, known: readonly string[], at: (k: string) => string) => {
    for (const k of Object.keys(obj)) {
      if (known.includes(k)) continue;
      const guess = didYouMean(k, known);
      add(at(k), "is not a known key", guess ? `did you mean ${q(guess)}?` : `known keys: ${known.join(", ")}`);
    }
  };

  if (!isObject(input)) {
    throw new ConfigError(options.file, [
      { key: "default export", message: "is not an app definition", fix: "export default defineApp({ name: \"my-app\", … })" },
    ]);
  }
  unknownKeys(input, appKeys, (k) => k);

  const name = input.name;
  if (typeof name !== "string" || !isName(name)) {
    add("name", name === undefined ? "is missing" : `${JSON.stringify(name)} is not a valid app name`, `${nameRule}, e.g. name: "shop"`);
  }

  // functions
  const functions = input.functions ?? "./functions";
  let functionsOk = true;
  if (typeof functions === "string") {
    if (functions.length === 0) {
      functionsOk = false;
      add("functions", "is empty", 'write a folder like "./functions"');
    }
  } else if (Array.isArray(functions)) {
    functions.forEach((f, i) => {
      if (typeof f !== "string" || f.length === 0) {
        functionsOk = false;
        add(`functions[${i}]`, "is not a file path", 'list files like "./functions/billing.ts"');
      }
    });
  } else {
    functionsOk = false;
    add("functions", "must be a folder or a list of files", 'write functions: "./functions"');
  }
  const known = options.functions;
  const fnNames = new Set<string>();
  if (known) {
    const seen = new Map<string, string>();
    for (const f of known) {
      const first = seen.get(f.name);
      if (first !== undefined) add(`functions (${f.file})`, `function name ${q(f.name)} is also used by ${first}`, "give each function a unique name");
      else seen.set(f.name, f.file);
      fnNames.add(f.name);
      if (f.on !== undefined) checkPattern(f.on, `function ${q(f.name)} (${f.file}) on`);
    }
  }
  const checkFunctionRef = (fn: unknown, key: string) => {
    if (typeof fn !== "string" || fn.length === 0) {
      add(key, "must name a function", 'write the function\'s name, e.g. "create-order"');
      return;
    }
    if (!known || !functionsOk || fnNames.has(fn)) return;
    const guess = didYouMean(fn, fnNames);
    add(
      key,
      `refers to unknown function ${q(fn)}`,
      guess ? `did you mean ${q(guess)}?` : fnNames.size ? `known functions: ${[...fnNames].join(", ")}` : "add a function file that calls defineFunction({ name: … })",
    );
  };

  /** `$.targets[0].id` under `rules[0] ("audit")` -> `rules[0] ("audit").targets[0].id`. */
  const keyAt = (key: string, path: string | undefined) => (path === undefined || path === "$" ? key : `${key}${path.slice(1)}`);
  function checkPattern(pattern: unknown, key: string) {
    try {
      compilePattern(pattern);
    } catch (err) {
      if (!(err instanceof SluiceError)) throw err;
      add(keyAt(key, err.path), err.message, patternFix);
    }
  }

  // buses
  const buses: { name: string; retentionMs?: number; description?: string }[] = [];
  const busNames = new Set(["default"]);
  if (input.buses !== undefined) {
    if (!Array.isArray(input.buses)) add("buses", "must be a list", 'write buses: ["orders"] or [{ name: "orders", retention: "7d" }]');
    else {
      input.buses.forEach((b, i) => {
        const key = `buses[${i}]`;
        const bus = typeof b === "string" ? { name: b } : b;
        if (!isObject(bus) || typeof bus.name !== "string" || !isName(bus.name)) {
          add(key, "is not a bus", 'write a name like "orders" or { name: "orders", retention: "7d" }');
          return;
        }
        unknownKeys(bus, ["name", "retention", "description"], (k) => `${key}.${k}`);
        if (busNames.has(bus.name) && bus.name !== "default") add(key, `bus ${q(bus.name)} is declared twice`, "remove the duplicate");
        busNames.add(bus.name);
        const entry: { name: string; retentionMs?: number; description?: string } = { name: bus.name };
        if (bus.retention !== undefined) {
          const d = durationProblem(bus.retention);
          if ("message" in d) add(`${key}.retention`, d.message, 'write e.g. "7d", "12h" or 0 to disable');
          else entry.retentionMs = d.ms;
        }
        if (typeof bus.description === "string") entry.description = bus.description;
        buses.push(entry);
      });
    }
  }
  const checkBusRef = (bus: unknown, key: string) => {
    if (typeof bus !== "string" || !busNames.has(bus)) {
      const guess = typeof bus === "string" ? didYouMean(bus, busNames) : undefined;
      add(key, `refers to unknown bus ${JSON.stringify(bus)}`, guess ? `did you mean ${q(guess)}?` : `declare it in buses: [${JSON.stringify(bus)}]`);
    }
  };

  const problemSink: ProblemSink = {
    add,
    unknownKeys: (obj, knownKeys, key) => unknownKeys(obj, knownKeys, (k) => `${key}.${k}`),
    functionRef: checkFunctionRef,
    busRef: checkBusRef,
  };

  // routes
  const routes: ValidatedRoute[] = [];
  if (input.routes !== undefined) {
    if (!isObject(input.routes)) add("routes", "must be an object", 'write routes: { "POST /orders": "create-order" }');
    else {
      const seen = new Set<string>();
      for (const [routeKey, value] of Object.entries(input.routes)) {
        const key = `routes[${q(routeKey)}]`;
        const m = /^([A-Za-z]+)\s+(\/\S*)$/.exec(routeKey.trim());
        const method = m?.[1]?.toUpperCase();
        if (!m || !method || !(httpMethods as readonly string[]).includes(method)) {
          add(key, "is not \"METHOD /path\"", `write e.g. "POST /orders" or "GET /orders/:id" (methods: ${httpMethods.join(", ")})`);
          continue;
        }
        const path = m[2] ?? "/";
        if (path === "/events" || path.startsWith("/buses/") || path.startsWith("/admin/") || path === "/healthz" || path === "/metrics") {
          add(key, `path ${q(path)} is reserved by Sluice`, "choose another path, e.g. under /api/");
          continue;
        }
        const norm = `${method} ${path.replace(/:[^/]+/g, ":")}`;
        if (seen.has(norm)) add(key, "duplicates another route with the same method and path", "remove one of them");
        seen.add(norm);
        let fn: unknown;
        let isAsync = false;
        if (typeof value === "string") fn = value;
        else if (isObject(value)) {
          unknownKeys(value, routeKeys, (k) => `${key}.${k}`);
          fn = value.function;
          if (value.async !== undefined && typeof value.async !== "boolean") add(`${key}.async`, "must be true or false");
          isAsync = value.async === true;
        } else {
          add(key, "must be a function name or { function, async }", 'write "POST /orders": "create-order"');
          continue;
        }
        checkFunctionRef(fn, typeof value === "string" ? key : `${key}.function`);
        if (typeof fn === "string") routes.push({ key: `${method} ${path}`, method, path, function: fn, async: isAsync });
      }
    }
  }

  // schedules
  const schedules: ScheduleSpec[] = [];
  if (input.schedules !== undefined) {
    if (!isObject(input.schedules)) add("schedules", "must be an object", 'write schedules: { "nightly": { cron: "0 2 * * *", emit: { … } } }');
    else {
      for (const [sName, s] of Object.entries(input.schedules)) {
        const key = `schedules[${q(sName)}]`;
        if (!isName(sName)) add(key, "is not a valid schedule name", nameRule);
        if (!isObject(s)) {
          add(key, "must be an object", 'write { rate: "5 minutes", emit: { type: "…", source: "…" } }');
          continue;
        }
        const spec = validateSchedule(sName, s, key, problemSink);
        if (spec) schedules.push(spec);
      }
    }
  }

  // sources: each kind validates its own options (src/triggers/registry.ts)
  const sources: ValidatedSource[] = [];
  const sourceKinds = sourceRegistry(options.sources);
  if (input.sources !== undefined) {
    if (!isObject(input.sources)) add("sources", "must be an object", 'write sources: { nightly: { kind: "schedule", cron: "0 2 * * *", emit: { … } } }');
    else {
      for (const [sName, raw] of Object.entries(input.sources)) {
        const key = `sources.${sName}`;
        if (!isName(sName)) add(key, "is not a valid source name", nameRule);
        else if (isObject(input.schedules) && Object.hasOwn(input.schedules, sName)) add(key, `schedules[${q(sName)}] has the same name`, "rename one of them");
        if (!isObject(raw)) {
          add(key, "must be an object", `write { kind: ${q([...sourceKinds.keys()][0] ?? "schedule")}, … }`);
          continue;
        }
        const { kind: kindName, ...rest } = raw;
        const kind = typeof kindName === "string" ? sourceKinds.get(kindName) : undefined;
        if (kind === undefined) {
          const guess = typeof kindName === "string" ? didYouMean(kindName, sourceKinds.keys()) : undefined;
          const kinds = `kinds are ${[...sourceKinds.keys()].join(", ")}`;
          add(`${key}.kind`, kindName === undefined ? "is missing" : `${JSON.stringify(kindName)} is not a source kind`, guess ? `did you mean ${q(guess)}?` : kinds);
          continue;
        }
        const opts = kind.validate(sName, rest, key, problemSink);
        if (opts !== undefined && isName(sName)) sources.push({ name: sName, kind: kind.kind, options: opts });
      }
    }
  }

  // rules: the bus's own rule compiler checks each one (checkRule, with every target kind's own validation); the
  // config adds what only it knows: functions and buses by name, rules declared twice, default target ids.
  const rules: ValidatedRule[] = [];
  const kinds = targetRegistry(options.targets);
  const policyBase = resolveRetryPolicy(undefined, "$.retryPolicy", defaultRetryPolicy);
  if (input.rules !== undefined) {
    if (!Array.isArray(input.rules)) add("rules", "must be a list", 'write rules: [{ name: "audit", pattern: { … }, targets: [ … ] }]');
    else {
      const seen = new Set<string>(known?.map((f) => `fn:${f.name}`) ?? []);
      input.rules.forEach((r, i) => {
        const key = `rules[${i}]`;
        if (!isObject(r)) {
          add(key, "must be an object", "write { name, pattern, targets }");
          return;
        }
        unknownKeys(r, ruleKeys, (k) => `${key}.${k}`);
        const label = typeof r.name === "string" ? `rules[${i}] (${q(r.name)})` : key;
        if (isName(r.name)) {
          const bus = typeof r.bus === "string" ? r.bus : "default";
          if (seen.has(`${bus}/${r.name}`)) add(`${label}.name`, `rule ${q(r.name)} is declared twice on bus ${q(bus)}`, "rename one of them");
          seen.add(`${bus}/${r.name}`);
        }
        if (r.bus !== undefined) checkBusRef(r.bus, `${label}.bus`);
        if (r.pattern === undefined) add(`${label}.pattern`, "is missing", 'write pattern: { type: ["order.created"] }');
        if (Array.isArray(r.targets) && r.targets.length === 0) {
          add(`${label}.targets`, "lists no target", 'write targets: [{ function: "billing" }, { webhook: "https://…" }]');
        }
        const targets = Array.isArray(r.targets) ? r.targets.map((t, j) => withDefaultId(t, j, kinds)) : r.targets;
        const checked = checkRule({ ...r, targets }, kinds, policyBase, (err) => {
          if (r.pattern === undefined && err.path?.startsWith("$.pattern")) return; // reported as missing above
          const [message, fix] = splitFix(err.message);
          add(keyAt(label, err.path), message, err.path?.startsWith("$.pattern") ? patternFix : fix);
        });
        const compiled = checked.targets.flatMap((t, j) => (t === undefined ? [] : [{ t, j }]));
        for (const { t, j } of compiled) {
          for (const ref of t.handler.references?.(t.spec) ?? []) {
            const at = `${label}.targets[${j}].${t.handler.kind}`;
            if (ref.kind === "bus") checkBusRef(ref.name, at);
            else checkFunctionRef(ref.name, at);
          }
        }
        if (checked.ok && checked.name !== undefined && checked.bus !== undefined) {
          rules.push({
            name: checked.name,
            bus: checked.bus,
            pattern: r.pattern,
            enabled: r.enabled !== false,
            ...(typeof r.description === "string" ? { description: r.description } : {}),
            // The kind's normal form (a webhook URL string becomes { url }), as the broker will compile it again.
            targets: compiled.map(({ t, j }) => ({ ...(targets as Record<string, unknown>[])[j], id: t.id, [t.handler.kind]: t.spec }) as unknown as Target),
          });
        }
      });
    }
  }

  // server
  const server: ServerConfig = {};
  if (input.server !== undefined) {
    if (!isObject(input.server)) add("server", "must be an object", "write server: { port: 8787 }");
    else {
      unknownKeys(input.server, serverKeys, (k) => `server.${k}`);
      collectServerProblems(input.server, "server.", add, server);
    }
  }

  if (problems.length > 0) throw new ConfigError(options.file, problems);
  return deepFreeze({
    name: name as string,
    file: options.file,
    functions: functions as string | readonly string[],
    routes,
    schedules,
    sources,
    rules,
    buses,
    server,
  });
}

const patternFix = "see docs/patterns.md for the event-pattern syntax";

/** A config target without an id gets its kind's default (`fn-billing`, `webhook-0`), made a valid name. */
function withDefaultId(target: unknown, index: number, kinds: TargetKinds): unknown {
  if (!isObject(target)) return target;
  if (typeof target.id === "string") return { ...target, id: validId(target.id) };
  if (target.id !== undefined) return target;
  const named = Object.keys(target).filter((k) => kinds.has(k));
  if (named.length !== 1) return target;
  const handler = kinds.get(named[0]!)!;
  const id = handler.defaultId?.(target[handler.kind], index) ?? `${handler.kind}-${index}`;
  return { ...target, id: validId(id) };
}

const validId = (id: string) => id.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 64);


/**
 * Checks server settings from any layer (config file, environment, flags). `prefix` names the key in messages
 * (`server.` for the file, `SLUICE_` for the environment, `--` for flags). Valid values are copied into `out`.
 */
export function collectServerProblems(
  raw: Record<string, unknown>,
  prefix: string,
  add: (key: string, message: string, fix?: string) => void,
  out: ServerConfig,
  keyName: (k: string) => string = (k) => `${prefix}${k}`,
): void {
  if (raw.port !== undefined) {
    const port = typeof raw.port === "string" && /^\d+$/.test(raw.port) ? Number(raw.port) : raw.port;
    if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535) {
      add(keyName("port"), `${JSON.stringify(raw.port)} is not a port`, "use a whole number from 0 to 65535 (0 picks a free port)");
    } else out.port = port;
  }
  if (raw.host !== undefined) {
    if (typeof raw.host !== "string" || raw.host === "") add(keyName("host"), "must be a host name or address", 'e.g. "127.0.0.1" or "0.0.0.0"');
    else out.host = raw.host;
  }
  if (raw.store !== undefined) {
    const s = raw.store;
    const problem = typeof s === "string" ? storeUrlProblem(s) : "not a string";
    if (typeof s !== "string" || problem !== undefined) {
      add(keyName("store"), `${JSON.stringify(s)} is not a store: ${problem}`, `write ${storeUrlExamples().map((e) => JSON.stringify(e)).join(" or ")}`);
    } else out.store = s;
  }
  if (raw.dataDir !== undefined) {
    if (typeof raw.dataDir !== "string" || raw.dataDir === "") add(keyName("dataDir"), "must be a folder path");
    else out.dataDir = raw.dataDir;
  }
  if (raw.logLevel !== undefined) {
    if (typeof raw.logLevel !== "string" || !(logLevels as readonly string[]).includes(raw.logLevel)) {
      add(keyName("logLevel"), `${JSON.stringify(raw.logLevel)} is not a log level`, `use one of ${logLevels.join(", ")}`);
    } else out.logLevel = raw.logLevel as NonNullable<ServerConfig["logLevel"]>;
  }
  for (const key of ["shutdownGrace", "idleTimeout"] as const) {
    if (raw[key] === undefined) continue;
    const d = durationProblem(raw[key]);
    if ("message" in d) add(keyName(key), d.message, key === "idleTimeout" ? 'write e.g. "60s"' : 'write e.g. "10s"');
    else out[key] = raw[key] as string | number;
  }
  if (raw.bodyLimit !== undefined) {
    const n = typeof raw.bodyLimit === "string" && /^\d+$/.test(raw.bodyLimit) ? Number(raw.bodyLimit) : raw.bodyLimit;
    if (typeof n !== "number" || !Number.isInteger(n) || n < 1024) add(keyName("bodyLimit"), "must be a number of bytes, at least 1024");
    else out.bodyLimit = n;
  }
  for (const key of ["maxPendingDeliveries", "maxQueuedEntries", "maxInstances"] as const) {
    if (raw[key] === undefined) continue;
    const n = typeof raw[key] === "string" && /^\d+$/.test(raw[key]) ? Number(raw[key]) : raw[key];
    if (typeof n !== "number" || !Number.isInteger(n) || n < 1) add(keyName(key), `${JSON.stringify(raw[key])} is not a limit`, "use a whole number, at least 1");
    else out[key] = n;
  }
}

/** Freezes plain objects and arrays (not class instances such as a Cron). */
function deepFreeze<T>(value: T): T {
  if (typeof value !== "object" || value === null || Object.isFrozen(value)) return value;
  const proto = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === Array.prototype || proto === null) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
