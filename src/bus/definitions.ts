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
import { checkName, isObject, underPath } from "../util/validate.ts";
import { checkWebhookSpec } from "./webhook.ts";
import type { Bus, BusInput, Rule, RuleInput, Target, WebhookTargetSpec } from "./types.ts";

export const defaultBusName = "default";
export const defaultRetentionMs = 7 * 24 * 60 * 60 * 1000;
export const maxTargetsPerRule = 5;
const ns = { buses: "sluice.buses", rules: "sluice.rules", retired: "sluice.retired-targets", meta: "sluice.meta" } as const;
const versionKey = "definitions";

export type TargetKind =
  | { kind: "function"; functionName: string }
  | { kind: "bus"; busName: string }
  | { kind: "webhook"; webhook: WebhookTargetSpec };

/** A target ready to deliver to. */
export interface CompiledTarget {
  bus: string;
  rule: string;
  id: string;
  queue: string;
  target: Target;
  how: TargetKind;
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

function compileTarget(bus: string, rule: string, raw: unknown, path: string, policyBase: ResolvedRetryPolicy): CompiledTarget {
  if (!isObject(raw)) throw new SluiceError(ErrorCode.BadRequest, "a target must be an object", { path });
  const id = checkName("target", raw.id, `${path}.id`);
  const kinds = (["function", "bus", "webhook"] as const).filter((k) => raw[k] !== undefined);
  if (kinds.length !== 1) {
    throw new SluiceError(ErrorCode.BadRequest, "a target has exactly one of function, bus or webhook", { path });
  }
  for (const key of Object.keys(raw)) {
    if (!["id", "function", "bus", "webhook", "inputTransformer", "retryPolicy"].includes(key)) {
      throw new SluiceError(ErrorCode.BadRequest, `unknown target field "${key}"`, { path: `${path}.${key}` });
    }
  }
  let how: TargetKind;
  if (kinds[0] === "function") {
    if (typeof raw.function !== "string" || raw.function.length === 0 || raw.function.length > 128) {
      throw new SluiceError(ErrorCode.BadRequest, "function must be a function name", { path: `${path}.function` });
    }
    how = { kind: "function", functionName: raw.function };
  } else if (kinds[0] === "bus") {
    how = { kind: "bus", busName: checkName("bus", raw.bus, `${path}.bus`) };
  } else {
    how = { kind: "webhook", webhook: checkWebhookSpec(raw.webhook, `${path}.webhook`) };
  }
  let transform: CompiledTarget["transform"];
  if (raw.inputTransformer !== undefined) {
    const t = underPath(`${path}.inputTransformer`, () => compileTransformer(raw.inputTransformer));
    const context = { ruleName: rule, busName: bus };
    transform = { mode: t.mode, apply: (event) => t.apply(event, context) };
  }
  const policy = resolveRetryPolicy(raw.retryPolicy, `${path}.retryPolicy`, policyBase);
  return { bus, rule, id, queue: queueName(bus, rule, id), target: raw as unknown as Target, how, policy, transform };
}

/** Validates rule input; throws a SluiceError with the JSON path of the first problem. */
export function compileRule(input: RuleInput | Rule, now: number, previous: Rule | undefined, policyBase: ResolvedRetryPolicy): CompiledRule {
  if (!isObject(input)) throw new SluiceError(ErrorCode.BadRequest, "a rule must be an object", { path: "$" });
  const name = checkName("rule", input.name, "$.name");
  const bus = checkName("bus", input.bus ?? defaultBusName, "$.bus");
  underPath("$.pattern", () => compilePattern(input.pattern));
  if (input.enabled !== undefined && typeof input.enabled !== "boolean") {
    throw new SluiceError(ErrorCode.BadRequest, "enabled must be a boolean", { path: "$.enabled" });
  }
  if (input.description !== undefined && (typeof input.description !== "string" || input.description.length > 512)) {
    throw new SluiceError(ErrorCode.BadRequest, "description must be a string of at most 512 characters", { path: "$.description" });
  }
  if (!Array.isArray(input.targets)) throw new SluiceError(ErrorCode.BadRequest, "targets must be an array", { path: "$.targets" });
  if (input.targets.length > maxTargetsPerRule) {
    throw new SluiceError(ErrorCode.BadRequest, `a rule has at most ${maxTargetsPerRule} targets, got ${input.targets.length}`, {
      path: "$.targets",
    });
  }
  const targets = input.targets.map((t, i) => compileTarget(bus, name, t, `$.targets[${i}]`, policyBase));
  const seen = new Set<string>();
  targets.forEach((t, i) => {
    if (seen.has(t.id)) throw new SluiceError(ErrorCode.BadRequest, `duplicate target id "${t.id}"`, { path: `$.targets[${i}].id` });
    seen.add(t.id);
  });
  const rule: Rule = {
    name,
    bus,
    pattern: input.pattern,
    enabled: input.enabled ?? true,
    ...(input.description === undefined ? {} : { description: input.description }),
    targets: input.targets,
    createdAt: "createdAt" in input && typeof input.createdAt === "number" ? input.createdAt : (previous?.createdAt ?? now),
    updatedAt: "updatedAt" in input && typeof input.updatedAt === "number" ? input.updatedAt : now,
  };
  return { rule, targets };
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

  constructor(state: StateStore, now: () => number, policyBase: ResolvedRetryPolicy) {
    this.#state = state;
    this.#now = now;
    this.#policyBase = policyBase;
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
        entry.rules.set(rule.name, compileRule(rule, now, undefined, this.#policyBase));
      } catch {
        continue; // a stored rule that no longer compiles stays listed in the store but does not route
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
        retired.set(row.key, compileTarget(r.bus, r.rule, r.target, "$", this.#policyBase));
      } catch {
        continue;
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
    const compiled = compileRule(clean, this.#now(), previous, this.#policyBase);
    compiled.targets.forEach((t, i) => {
      if (t.how.kind === "bus" && !this.#buses.has(t.how.busName)) {
        throw new SluiceError(ErrorCode.BusNotFound, `target bus "${t.how.busName}" does not exist`, { path: `$.targets[${i}].bus` });
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
