/**
 * Bus and rule definitions: validated once, persisted in the StateStore (so they survive restarts and are shared
 * by every process on one PostgreSQL), compiled into one RuleIndex per bus. A change updates the bus's index in
 * place with one synchronous add or remove, so publishes in flight see either the old or the new rule set.
 *
 * Other processes notice changes by polling a version key (`sluice.meta/definitions`): every write stores the
 * definition first, then a fresh version, so a reader that loads after seeing a new version sees the write.
 */
import { randomUUID } from "node:crypto";
import { ErrorCode, SluiceError } from "../errors.ts";
import { compilePattern } from "../pattern/compile.ts";
import { RuleIndex } from "../pattern/rule-index.ts";
import { compileTransformer } from "../pattern/transform.ts";
import type { CloudEvent } from "../event/types.ts";
import type { StateStore } from "../store/contract.ts";
import { resolveRetryPolicy, type ResolvedRetryPolicy } from "./retry.ts";
import { didYouMean } from "../util/did-you-mean.ts";
import { checkName, isObject, underPath } from "../util/validate.ts";
import type { TargetHandler } from "./targets/target.ts";
import type { Bus, BusInput, Rule, RuleInput, Target } from "./types.ts";

export const defaultBusName = "default";
export const defaultRetentionMs = 7 * 24 * 60 * 60 * 1000;
export const maxTargetsPerRule = 5;
const ns = { buses: "sluice.buses", rules: "sluice.rules", retired: "sluice.retired-targets", meta: "sluice.meta" } as const;
const versionKey = "definitions";

/** Target kinds by the key that names them in a target (`function`, `bus`, `webhook`, …); see targets/registry.ts. */
export type TargetKinds = ReadonlyMap<string, TargetHandler>;
/** The fields every target has besides its kind's key. */
const targetFields = ["id", "inputTransformer", "retryPolicy"];

/** A target ready to deliver to. */
export interface CompiledTarget {
  bus: string;
  rule: string;
  id: string;
  queue: string;
  target: Target;
  handler: TargetHandler;
  /** The kind's compiled value (what `handler.compile` returned). */
  spec: unknown;
  policy: ResolvedRetryPolicy;
  /** The input transformer: its output replaces the delivered event's `data`. */
  transform: { mode: "json" | "text"; apply(event: CloudEvent): unknown } | undefined;
}

export interface CompiledRule {
  rule: Rule;
  targets: CompiledTarget[];
}

interface BusEntry {
  bus: Bus;
  rules: Map<string, CompiledRule>;
  /** Swapped, never mutated, after construction. */
  index: RuleIndex;
}

/** The durable queue of one (rule, target): also the name of its dead-letter list. */
export function queueName(bus: string, rule: string, target: string): string {
  return `rule:${bus}/${rule}/${target}`;
}

/** Compiles one target of a rule; throws a SluiceError naming the JSON path of the problem. */
export function compileTarget(
  kinds: TargetKinds,
  bus: string,
  rule: string,
  raw: unknown,
  path: string,
  policyBase: ResolvedRetryPolicy,
): CompiledTarget {
  if (!isObject(raw)) throw new SluiceError(ErrorCode.BadRequest, "a target must be an object", { path });
  for (const key of Object.keys(raw)) {
    if (kinds.has(key) || targetFields.includes(key)) continue;
    const guess = didYouMean(key, [...targetFields, ...kinds.keys()]);
    throw new SluiceError(
      ErrorCode.BadRequest,
      `"${key}" is not a target kind or field; ${guess ? `did you mean "${guess}"?` : `kinds are ${[...kinds.keys()].join(", ")}`}`,
      { path: `${path}.${key}` },
    );
  }
  const named = Object.keys(raw).filter((k) => kinds.has(k));
  if (named.length !== 1) {
    throw new SluiceError(ErrorCode.BadRequest, `a target has exactly one of ${[...kinds.keys()].join(", ")}`, { path });
  }
  const id = checkName("target", raw.id, `${path}.id`);
  const handler = kinds.get(named[0]!)!;
  const spec = handler.compile(raw[handler.kind], `${path}.${handler.kind}`);
  let transform: CompiledTarget["transform"];
  if (raw.inputTransformer !== undefined) {
    const t = underPath(`${path}.inputTransformer`, () => compileTransformer(raw.inputTransformer));
    const context = { ruleName: rule, busName: bus };
    transform = { mode: t.mode, apply: (event) => t.apply(event, context) };
  }
  const policy = resolveRetryPolicy(raw.retryPolicy, `${path}.retryPolicy`, policyBase);
  return { bus, rule, id, queue: queueName(bus, rule, id), target: raw as unknown as Target, handler, spec, policy, transform };
}

/** Where a rule's problems go: thrown (the first fails `putRule`) or collected (the config lists every one). */
export type ReportProblem = (err: SluiceError) => void;

/** What `checkRule` found: the rule's name and bus when valid, and each target compiled or undefined. */
export interface CheckedRule {
  ok: boolean;
  name: string | undefined;
  bus: string | undefined;
  targets: (CompiledTarget | undefined)[];
}

/** Validates rule input, passing every problem (a SluiceError with the JSON path of the bad part) to `report`. */
export function checkRule(input: unknown, kinds: TargetKinds, policyBase: ResolvedRetryPolicy, report: ReportProblem): CheckedRule {
  let ok = true;
  const step = <T>(fn: () => T): T | undefined => {
    try {
      return fn();
    } catch (err) {
      if (!(err instanceof SluiceError)) throw err;
      ok = false;
      report(err);
      return undefined;
    }
  };
  const fail = (message: string, path: string) => step(() => { throw new SluiceError(ErrorCode.BadRequest, message, { path }); });
  if (!isObject(input)) {
    fail("a rule must be an object", "$");
    return { ok, name: undefined, bus: undefined, targets: [] };
  }
  const name = step(() => checkName("rule", input.name, "$.name"));
  const bus = step(() => checkName("bus", input.bus ?? defaultBusName, "$.bus"));
  step(() => underPath("$.pattern", () => compilePattern(input.pattern)));
  if (input.enabled !== undefined && typeof input.enabled !== "boolean") fail("enabled must be a boolean", "$.enabled");
  if (input.description !== undefined && (typeof input.description !== "string" || input.description.length > 512)) {
    fail("description must be a string of at most 512 characters", "$.description");
  }
  if (!Array.isArray(input.targets)) {
    fail("targets must be an array", "$.targets");
    return { ok, name, bus, targets: [] };
  }
  if (input.targets.length > maxTargetsPerRule) fail(`a rule has at most ${maxTargetsPerRule} targets, got ${input.targets.length}`, "$.targets");
  const targets = input.targets.map((t, i) => step(() => compileTarget(kinds, bus ?? "", name ?? "", t, `$.targets[${i}]`, policyBase)));
  const seen = new Set<string>();
  targets.forEach((t, i) => {
    if (t === undefined) return;
    if (seen.has(t.id)) fail(`duplicate target id "${t.id}"`, `$.targets[${i}].id`);
    seen.add(t.id);
  });
  return { ok, name, bus, targets };
}

/** Validates rule input; throws a SluiceError with the JSON path of the first problem. */
export function compileRule(input: RuleInput | Rule, now: number, previous: Rule | undefined, policyBase: ResolvedRetryPolicy, kinds: TargetKinds): CompiledRule {
  const checked = checkRule(input, kinds, policyBase, (err) => {
    throw err;
  });
  const rule: Rule = {
    name: checked.name!,
    bus: checked.bus!,
    pattern: input.pattern,
    enabled: input.enabled ?? true,
    ...(input.description === undefined ? {} : { description: input.description }),
    targets: input.targets,
    createdAt: "createdAt" in input && typeof input.createdAt === "number" ? input.createdAt : (previous?.createdAt ?? now),
    updatedAt: "updatedAt" in input && typeof input.updatedAt === "number" ? input.updatedAt : now,
  };
  return { rule, targets: checked.targets as CompiledTarget[] };
}

function buildIndex(rules: Map<string, CompiledRule>): RuleIndex {
  const index = new RuleIndex();
  for (const [name, r] of rules) if (r.rule.enabled) index.add(name, r.rule.pattern);
  return index;
}

/**
 * A target removed from its rule (rule updated or deleted) keeps delivering what it had already been matched:
 * its definition is kept as "retired" (in the store, expiring after its maximum event age) until the queue drains.
 */
interface RetiredTarget {
  bus: string;
  rule: string;
  target: Target;
}

export class Definitions {
  #buses = new Map<string, BusEntry>();
  #queues = new Map<string, CompiledTarget>();
  #retired = new Map<string, CompiledTarget>();
  #version: string | undefined;
  readonly #state: StateStore;
  readonly #now: () => number;
  readonly #policyBase: ResolvedRetryPolicy;
  readonly #kinds: TargetKinds;

  constructor(state: StateStore, now: () => number, policyBase: ResolvedRetryPolicy, kinds: TargetKinds) {
    this.#state = state;
    this.#now = now;
    this.#policyBase = policyBase;
    this.#kinds = kinds;
  }

  /** Loads every definition from the store, creating the `default` bus on first start. */
  async load(): Promise<void> {
    const now = this.#now();
    const version = await this.#state.get(ns.meta, versionKey, { now });
    const busRows = await this.#state.list(ns.buses, { now });
    const ruleRows = await this.#state.list(ns.rules, { now });
    const retiredRows = await this.#state.list(ns.retired, { now });
    const buses = new Map<string, BusEntry>();
    for (const row of busRows) {
      const bus = JSON.parse(row.value) as Bus;
      buses.set(bus.name, { bus, rules: new Map(), index: new RuleIndex() });
    }
    if (!buses.has(defaultBusName)) {
      const bus: Bus = { name: defaultBusName, retentionMs: defaultRetentionMs, createdAt: now };
      await this.#state.putIfAbsent(ns.buses, defaultBusName, JSON.stringify(bus), { now });
      buses.set(defaultBusName, { bus, rules: new Map(), index: new RuleIndex() });
    }
    for (const row of ruleRows) {
      const rule = JSON.parse(row.value) as Rule;
      const entry = buses.get(rule.bus);
      if (entry === undefined) continue; // bus deleted under the rule: the rule is inert
      try {
        entry.rules.set(rule.name, compileRule(rule, now, undefined, this.#policyBase, this.#kinds));
      } catch {
        // A stored rule that no longer compiles stays listed in the store but does not route.
      }
    }
    const queues = new Map<string, CompiledTarget>();
    for (const entry of buses.values()) {
      entry.index = buildIndex(entry.rules);
      for (const r of entry.rules.values()) for (const t of r.targets) queues.set(t.queue, t);
    }
    const retired = new Map<string, CompiledTarget>();
    for (const row of retiredRows) {
      if (queues.has(row.key)) continue;
      try {
        const r = JSON.parse(row.value) as RetiredTarget;
        retired.set(row.key, compileTarget(this.#kinds, r.bus, r.rule, r.target, "$", this.#policyBase));
      } catch {
        // As above: a retired target that no longer compiles is dropped from routing only.
      }
    }
    this.#buses = buses;
    this.#queues = queues;
    this.#retired = retired;
    this.#version = version;
  }

  /** Reloads when another process changed a definition. Returns true when it reloaded. */
  async refreshIfChanged(): Promise<boolean> {
    const version = await this.#state.get(ns.meta, versionKey, { now: this.#now() });
    if (version === this.#version) return false;
    await this.load();
    return true;
  }

  async #bumpVersion(): Promise<void> {
    const version = randomUUID();
    await this.#state.put(ns.meta, versionKey, version, { now: this.#now() });
    this.#version = version;
  }

  bus(name: string): BusEntry | undefined {
    return this.#buses.get(name);
  }

  buses(): Bus[] {
    return [...this.#buses.values()].map((e) => e.bus);
  }

  /** The live target of a queue, or the retired one still draining it. */
  /** Every queue a rule's target (or a retired target still draining) delivers through. */
  queueNames(): string[] {
    return [...this.#queues.keys(), ...this.#retired.keys()];
  }

  target(queue: string): CompiledTarget | undefined {
    return this.#queues.get(queue) ?? this.#retired.get(queue);
  }

  rule(bus: string, name: string): CompiledRule | undefined {
    return this.#buses.get(bus)?.rules.get(name);
  }

  async putBus(input: BusInput): Promise<Bus> {
    if (!isObject(input)) throw new SluiceError(ErrorCode.BadRequest, "a bus must be an object", { path: "$" });
    const name = checkName("bus", input.name, "$.name");
    const retentionMs = input.retentionMs ?? defaultRetentionMs;
    if (typeof retentionMs !== "number" || !Number.isInteger(retentionMs) || retentionMs < 0 || retentionMs > 10 * 365 * 86_400_000) {
      throw new SluiceError(ErrorCode.BadRequest, "retentionMs must be an integer >= 0 (0 disables the archive)", { path: "$.retentionMs" });
    }
    if (input.description !== undefined && typeof input.description !== "string") {
      throw new SluiceError(ErrorCode.BadRequest, "description must be a string", { path: "$.description" });
    }
    const now = this.#now();
    const existing = this.#buses.get(name);
    const bus: Bus = {
      name,
      retentionMs,
      ...(input.description === undefined ? {} : { description: input.description }),
      createdAt: existing?.bus.createdAt ?? now,
    };
    await this.#state.put(ns.buses, name, JSON.stringify(bus), { now });
    await this.#bumpVersion();
    if (existing) existing.bus = bus;
    else this.#buses.set(name, { bus, rules: new Map(), index: new RuleIndex() });
    return bus;
  }

  async deleteBus(name: string): Promise<void> {
    const entry = this.#buses.get(name);
    if (entry === undefined) throw new SluiceError(ErrorCode.BusNotFound, `bus "${name}" does not exist`, { path: "$.name" });
    if (name === defaultBusName) throw new SluiceError(ErrorCode.BadRequest, "the default bus cannot be deleted", { path: "$.name" });
    if (entry.rules.size > 0) {
      throw new SluiceError(ErrorCode.BadRequest, `bus "${name}" still has ${entry.rules.size} rule(s); delete them first`, { path: "$.name" });
    }
    await this.#state.delete(ns.buses, name);
    await this.#bumpVersion();
    this.#buses.delete(name);
  }

  async putRule(input: RuleInput): Promise<Rule> {
    const busName = checkName("bus", (input as { bus?: unknown } | null)?.bus ?? defaultBusName, "$.bus");
    const entry = this.#buses.get(busName);
    if (entry === undefined) throw new SluiceError(ErrorCode.BusNotFound, `bus "${busName}" does not exist`, { path: "$.bus" });
    const previous = entry.rules.get((input as { name?: unknown }).name as string)?.rule;
    const { createdAt: _c, updatedAt: _u, ...clean } = input as RuleInput & { createdAt?: unknown; updatedAt?: unknown };
    const compiled = compileRule(clean, this.#now(), previous, this.#policyBase, this.#kinds);
    compiled.targets.forEach((t, i) => {
      for (const ref of t.handler.references?.(t.spec) ?? []) {
        if (ref.kind === "bus" && !this.#buses.has(ref.name)) {
          throw new SluiceError(ErrorCode.BusNotFound, `target bus "${ref.name}" does not exist`, { path: `$.targets[${i}].${t.handler.kind}` });
        }
      }
    });
    const kept = new Set(compiled.targets.map((t) => t.queue));
    await this.#retire(entry.rules.get(compiled.rule.name)?.targets.filter((t) => !kept.has(t.queue)) ?? []);
    for (const t of compiled.targets) {
      if (this.#retired.delete(t.queue)) await this.#state.delete(ns.retired, t.queue);
    }
    await this.#state.put(ns.rules, `${busName}/${compiled.rule.name}`, JSON.stringify(compiled.rule), { now: this.#now() });
    await this.#bumpVersion();
    this.#install(entry, compiled.rule.name, compiled);
    return compiled.rule;
  }

  /** Keeps removed targets' definitions so their queues drain (each expires after its maximum event age). */
  async #retire(targets: CompiledTarget[]): Promise<void> {
    for (const t of targets) {
      const value: RetiredTarget = { bus: t.bus, rule: t.rule, target: t.target };
      await this.#state.put(ns.retired, t.queue, JSON.stringify(value), { now: this.#now(), ttlMs: t.policy.maxEventAgeMs + 60_000 });
      this.#retired.set(t.queue, t);
    }
  }

  /**
   * Replaces one rule in a bus and updates the bus's index in place (one `add` or `remove`, not a rebuild: that
   * took seconds at 100 000 rules). Both are synchronous, so no publish sees a half-updated index.
   */
  #install(entry: BusEntry, name: string, compiled: CompiledRule | undefined): void {
    if (compiled?.rule.enabled) entry.index.add(name, compiled.rule.pattern);
    else entry.index.remove(name);
    const old = entry.rules.get(name);
    for (const t of old?.targets ?? []) this.#queues.delete(t.queue);
    const rules = new Map(entry.rules);
    if (compiled) rules.set(name, compiled);
    else rules.delete(name);
    for (const t of compiled?.targets ?? []) this.#queues.set(t.queue, t);
    entry.rules = rules;
  }

  #existing(bus: string, name: string): { entry: BusEntry; rule: CompiledRule } {
    const entry = this.#buses.get(bus);
    if (entry === undefined) throw new SluiceError(ErrorCode.BusNotFound, `bus "${bus}" does not exist`, { path: "$.bus" });
    const rule = entry.rules.get(name);
    if (rule === undefined) throw new SluiceError(ErrorCode.RuleNotFound, `rule "${name}" does not exist on bus "${bus}"`, { path: "$.name" });
    return { entry, rule };
  }

  async setEnabled(bus: string, name: string, enabled: boolean): Promise<Rule> {
    const { entry, rule } = this.#existing(bus, name);
    const next: CompiledRule = { rule: { ...rule.rule, enabled, updatedAt: this.#now() }, targets: rule.targets };
    await this.#state.put(ns.rules, `${bus}/${name}`, JSON.stringify(next.rule), { now: this.#now() });
    await this.#bumpVersion();
    this.#install(entry, name, next);
    return next.rule;
  }

  async deleteRule(bus: string, name: string): Promise<void> {
    const { entry, rule } = this.#existing(bus, name);
    await this.#retire(rule.targets);
    await this.#state.delete(ns.rules, `${bus}/${name}`);
    await this.#bumpVersion();
    this.#install(entry, name, undefined);
  }

  getRule(bus: string, name: string): Rule {
    return this.#existing(bus, name).rule.rule;
  }
}
