/**
 * Archive replay: reads a bus's log range page by page and republishes each matching event into a bus, or
 * enqueues it for one rule's targets, with the `replay` extension set to the replay's name. Progress is stored
 * in the StateStore after every page (so any process can read it) and a replay can be cancelled between pages.
 *
 * A replay runs in the process that started it; if that process dies, the replay stays `running` in the store
 * with its last position (resuming it elsewhere is not implemented).
 */
import { ErrorCode, SluiceError } from "../errors.ts";
import { encodeEvent } from "../event/codec.ts";
import { SluiceExtension, type CloudEvent } from "../event/types.ts";
import { compilePattern } from "../pattern/compile.ts";
import type { AppendEntry, NewDelivery, StorageBackend } from "../store/contract.ts";
import type { Logger } from "../logger.ts";
import { checkName, type Definitions } from "./definitions.ts";
import { describeError } from "./handler-errors.ts";
import { dedupeKey, partitionKeyOf, type Publisher } from "./publisher.ts";
import type { Replay, ReplayInput } from "./types.ts";

const namespace = "sluice.replays";
const pageSize = 100;

export class Replays {
  readonly #store: StorageBackend;
  readonly #defs: Definitions;
  readonly #publisher: Publisher;
  readonly #now: () => number;
  readonly #logger: Logger;
  readonly #wake: () => void;
  #running = new Map<string, { controller: AbortController; done: Promise<void> }>();

  constructor(store: StorageBackend, defs: Definitions, publisher: Publisher, now: () => number, logger: Logger, wake: () => void) {
    this.#store = store;
    this.#defs = defs;
    this.#publisher = publisher;
    this.#now = now;
    this.#logger = logger;
    this.#wake = wake;
  }

  async start(input: ReplayInput): Promise<Replay> {
    if (typeof input !== "object" || input === null) throw new SluiceError(ErrorCode.BadRequest, "a replay must be an object", { path: "$" });
    const name = checkName("replay", input.name, "$.name");
    const bus = checkName("bus", input.bus, "$.bus");
    if (this.#defs.bus(bus) === undefined) throw new SluiceError(ErrorCode.BusNotFound, `bus "${bus}" does not exist`, { path: "$.bus" });
    const now = this.#now();
    for (const key of ["fromAt", "toAt"] as const) {
      if (typeof input[key] !== "number" || !Number.isInteger(input[key]) || input[key] < 0) {
        throw new SluiceError(ErrorCode.BadRequest, `${key} must be an epoch-ms integer`, { path: `$.${key}` });
      }
    }
    if (input.toAt <= input.fromAt) throw new SluiceError(ErrorCode.BadRequest, "toAt must be after fromAt", { path: "$.toAt" });
    if (input.toAt > now) throw new SluiceError(ErrorCode.BadRequest, "toAt must not be in the future", { path: "$.toAt" });
    let matches: ((e: CloudEvent) => boolean) | undefined;
    if (input.pattern !== undefined) {
      try {
        const compiled = compilePattern(input.pattern);
        matches = (e) => compiled.matches(e);
      } catch (err) {
        if (err instanceof SluiceError) {
          throw new SluiceError(err.code, err.message, { path: `$.pattern${(err.path ?? "").replace(/^\$/, "")}`, cause: err });
        }
        throw err;
      }
    }
    const d = input.destination as Record<string, unknown> | undefined;
    if (typeof d !== "object" || d === null || (d.bus === undefined) === (d.rule === undefined)) {
      throw new SluiceError(ErrorCode.BadRequest, "destination is { bus } or { rule }", { path: "$.destination" });
    }
    if (d.bus !== undefined) {
      const dest = checkName("bus", d.bus, "$.destination.bus");
      if (this.#defs.bus(dest) === undefined) {
        throw new SluiceError(ErrorCode.BusNotFound, `bus "${dest}" does not exist`, { path: "$.destination.bus" });
      }
    } else {
      const rule = checkName("rule", d.rule, "$.destination.rule");
      if (this.#defs.rule(bus, rule) === undefined) {
        throw new SluiceError(ErrorCode.RuleNotFound, `rule "${rule}" does not exist on bus "${bus}"`, { path: "$.destination.rule" });
      }
    }
    const replay: Replay = {
      name,
      bus,
      fromAt: input.fromAt,
      toAt: input.toAt,
      ...(input.pattern === undefined ? {} : { pattern: input.pattern }),
      destination: d.bus !== undefined ? { bus: d.bus as string } : { rule: d.rule as string },
      state: "running",
      eventsReplayed: 0,
      eventsRead: 0,
      lastSeq: 0,
      startedAt: now,
      updatedAt: now,
    };
    if (!(await this.#store.state.putIfAbsent(namespace, name, JSON.stringify(replay), { now }))) {
      throw new SluiceError(ErrorCode.AlreadyExists, `a replay named "${name}" already exists`, { path: "$.name" });
    }
    const controller = new AbortController();
    const done = this.#run(replay, matches, controller.signal).finally(() => this.#running.delete(name));
    this.#running.set(name, { controller, done });
    return { ...replay };
  }

  async #save(replay: Replay): Promise<void> {
    replay.updatedAt = this.#now();
    await this.#store.state.put(namespace, replay.name, JSON.stringify(replay), { now: replay.updatedAt });
  }

  async #run(replay: Replay, matches: ((e: CloudEvent) => boolean) | undefined, signal: AbortSignal): Promise<void> {
    try {
      while (!signal.aborted) {
        const page = await this.#store.events.read(replay.bus, {
          fromAt: replay.fromAt,
          toAt: replay.toAt,
          afterSeq: replay.lastSeq,
          limit: pageSize,
        });
        if (page.length === 0) break;
        const entries: AppendEntry[] = [];
        const deliveries: (NewDelivery & { payload: string })[] = [];
        for (const stored of page) {
          replay.eventsRead++;
          replay.lastSeq = stored.seq;
          replay.lastAt = stored.storedAt;
          const original = JSON.parse(stored.encoded) as CloudEvent;
          if (matches !== undefined && !matches(original)) continue;
          const event: CloudEvent = { ...original, [SluiceExtension.Replay]: replay.name };
          const encoded = encodeEvent(event);
          replay.eventsReplayed++;
          if ("bus" in replay.destination) {
            const dest = replay.destination.bus;
            entries.push(this.#publisher.route(dest, event, encoded, dedupeKey(dest, event, replay.name)));
          } else {
            const rule = this.#defs.rule(replay.bus, replay.destination.rule);
            if (rule === undefined) throw new SluiceError(ErrorCode.RuleNotFound, `rule "${replay.destination.rule}" was deleted`);
            const partitionKey = partitionKeyOf(event);
            for (const t of rule.targets) {
              deliveries.push(partitionKey === undefined ? { queue: t.queue, payload: encoded } : { queue: t.queue, partitionKey, payload: encoded });
            }
          }
        }
        if (entries.length > 0) await this.#publisher.append(entries);
        if (deliveries.length > 0) await this.#store.queues.enqueue(deliveries, { now: this.#now() });
        if (entries.length > 0 || deliveries.length > 0) this.#wake();
        // A cancel from another process is seen here, between pages.
        const stored = await this.#store.state.get(namespace, replay.name, { now: this.#now() });
        if (stored !== undefined && (JSON.parse(stored) as Replay).state === "cancelled") {
          replay.state = "cancelled";
          break;
        }
        if (signal.aborted) break;
        await this.#save(replay);
      }
      if (replay.state === "running") replay.state = signal.aborted ? "cancelled" : "completed";
    } catch (err) {
      replay.state = "failed";
      replay.error = describeError(err);
      this.#logger.error({ replay: replay.name, err: replay.error }, "replay failed");
    }
    replay.endedAt = this.#now();
    await this.#save(replay).catch((err) => this.#logger.error({ replay: replay.name, err: describeError(err) }, "saving replay state failed"));
  }

  async get(name: string): Promise<Replay> {
    const value = await this.#store.state.get(namespace, name, { now: this.#now() });
    if (value === undefined) throw new SluiceError(ErrorCode.ReplayNotFound, `replay "${name}" does not exist`, { path: "$.name" });
    return JSON.parse(value) as Replay;
  }

  async list(): Promise<Replay[]> {
    const rows = await this.#store.state.list(namespace, { now: this.#now() });
    return rows.map((r) => JSON.parse(r.value) as Replay).sort((a, b) => a.startedAt - b.startedAt);
  }

  /** Cancels a running replay (here or, between pages, in another process) and resolves with its final state here. */
  async cancel(name: string): Promise<Replay> {
    const current = await this.get(name);
    const local = this.#running.get(name);
    if (local !== undefined) {
      local.controller.abort();
      await local.done;
      return this.get(name);
    }
    if (current.state !== "running") return current;
    const next: Replay = { ...current, state: "cancelled", updatedAt: this.#now(), endedAt: this.#now() };
    await this.#store.state.compareAndSet(namespace, name, JSON.stringify(current), JSON.stringify(next), { now: this.#now() });
    return this.get(name);
  }

  /** Waits for one replay run by this process to finish (tests, CLI). */
  async wait(name: string): Promise<Replay> {
    await this.#running.get(name)?.done;
    return this.get(name);
  }

  async close(): Promise<void> {
    for (const r of this.#running.values()) r.controller.abort();
    await Promise.all([...this.#running.values()].map((r) => r.done));
  }
}
