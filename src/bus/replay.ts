/**
 * Archive replay: reads a bus's log range page by page and republishes each matching event into a bus, or
 * enqueues it for one rule's targets, with the `replay` extension set to the replay's name. Progress is stored
 * in the StateStore after every page (so any process can read it) and a replay can be cancelled between pages.
 *
 * A replay survives the process running it. Its runner holds a lease (a StateStore key with a TTL of `leaseMs`,
 * renewed while it runs); every broker looks for `running` replays every `pollIntervalMs` and claims those whose
 * lease is gone (the runner died, or closed and let go) with `putIfAbsent`, so one process resumes each, from the
 * last saved position. The position is saved after the page's events were appended, so a resumed replay skips
 * nothing, and may replay again the events of the page its runner was on when it died (at least once).
 * Every write of the replay's record is a compareAndSet against what this runner last wrote: a cancel from
 * another process, or a runner that took over, is never overwritten.
 */
import { randomUUID } from "node:crypto";
import { ErrorCode, SluiceError } from "../errors.ts";
import { encodeEvent } from "../event/codec.ts";
import { SluiceExtension, type CloudEvent } from "../event/types.ts";
import { compilePattern } from "../pattern/compile.ts";
import type { AppendEntry, NewDelivery, StorageBackend } from "../store/contract.ts";
import type { Clock } from "../clock.ts";
import type { Logger } from "../logger.ts";
import { checkName, underPath } from "../util/validate.ts";
import type { Definitions } from "./definitions.ts";
import { describeError } from "./handler-errors.ts";
import { dedupeKey, partitionKeyOf, type Publisher } from "./publisher.ts";
import type { Replay, ReplayInput } from "./types.ts";

/** Replay records (`Replay` as JSON), by name. */
export const replayNamespace = "sluice.replays";
/** Who runs each running replay: the runner's id, with a TTL of `leaseMs`. */
export const replayLeaseNamespace = "sluice.replay-leases";
const pageSize = 100;

export interface ReplaysOptions {
  /** Replay times, and the look-out for replays to resume. */
  clock: Clock;
  /** A runner renews its lease every third of this; a replay whose runner died is resumed after it. */
  leaseMs: number;
  /** How often running replays without a live runner are looked for. */
  pollIntervalMs: number;
}

/** The abort reason of a run stopped by `close()`: the replay stays `running` for another process to resume. */
const closing = Symbol("closing");

type Matcher = ((e: CloudEvent) => boolean) | undefined;

function compileReplayPattern(pattern: unknown): Matcher {
  if (pattern === undefined) return undefined;
  const compiled = underPath("$.pattern", () => compilePattern(pattern));
  return (e) => compiled.matches(e);
}

export class Replays {
  readonly #store: StorageBackend;
  readonly #defs: Definitions;
  readonly #publisher: Publisher;
  readonly #now: () => number;
  readonly #logger: Logger;
  readonly #wake: () => void;
  readonly #o: ReplaysOptions;
  /** This instance's lease value. */
  readonly #owner = randomUUID();
  #running = new Map<string, { controller: AbortController; done: Promise<void> }>();
  #closed = false;
  #scanTimer: unknown;
  #scanning: Promise<void> | undefined;

  constructor(store: StorageBackend, defs: Definitions, publisher: Publisher, logger: Logger, wake: () => void, options: ReplaysOptions) {
    this.#store = store;
    this.#defs = defs;
    this.#publisher = publisher;
    this.#now = () => options.clock.now();
    this.#logger = logger;
    this.#wake = wake;
    this.#o = options;
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
    const rate = input.maxPerSecond;
    if (rate !== undefined && (typeof rate !== "number" || !Number.isFinite(rate) || rate <= 0)) {
      throw new SluiceError(ErrorCode.BadRequest, "maxPerSecond must be a positive number of events per second", { path: "$.maxPerSecond" });
    }
    const matches = compileReplayPattern(input.pattern);
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
      ...(rate === undefined ? {} : { maxPerSecond: rate }),
      state: "running",
      eventsReplayed: 0,
      eventsRead: 0,
      lastSeq: 0,
      startedAt: now,
      updatedAt: now,
    };
    const exists = () => new SluiceError(ErrorCode.AlreadyExists, `a replay named "${name}" already exists`, { path: "$.name" });
    // The lease first: another process's look-out must not resume the record before this process runs it.
    if (!(await this.#claim(name))) throw exists();
    const written = JSON.stringify(replay);
    if (!(await this.#store.state.putIfAbsent(replayNamespace, name, written, { now }))) {
      await this.#release(name);
      throw exists();
    }
    this.#launch(replay, written, matches);
    return { ...replay };
  }

  /**
   * Resumes running replays that no live process runs (the process that ran them died or closed): now, and every
   * `pollIntervalMs` until `close()`. A replay whose runner died is resumed once its lease expired.
   */
  resumeUnfinished(): void {
    if (this.#closed || this.#scanTimer !== undefined || this.#scanning !== undefined) return;
    const next = () => {
      if (this.#closed) return;
      this.#scanTimer = this.#o.clock.setTimeout(() => {
        this.#scanTimer = undefined;
        scan();
      }, this.#o.pollIntervalMs);
    };
    const scan = () => {
      this.#scanning = this.#resumeOrphans()
        .catch((err) => this.#logger.error({ err: describeError(err) }, "looking for replays to resume failed"))
        .finally(() => {
          this.#scanning = undefined;
          next();
        });
    };
    scan();
  }

  async #resumeOrphans(): Promise<void> {
    const rows = await this.#store.state.list(replayNamespace, { now: this.#now() });
    for (const row of rows) {
      if (this.#closed) return;
      if (this.#running.has(row.key) || (JSON.parse(row.value) as Replay).state !== "running") continue;
      if (!(await this.#claim(row.key))) continue;
      // It may have ended between the listing and the claim.
      const current = await this.#store.state.get(replayNamespace, row.key, { now: this.#now() });
      const replay = current === undefined ? undefined : (JSON.parse(current) as Replay);
      if (current === undefined || replay === undefined || replay.state !== "running" || this.#closed) {
        await this.#release(row.key);
        continue;
      }
      this.#logger.info({ replay: replay.name, lastSeq: replay.lastSeq, eventsRead: replay.eventsRead }, "replay resumed");
      let matches: Matcher;
      try {
        matches = compileReplayPattern(replay.pattern);
      } catch (err) {
        // Stored by a start() that compiled it; only a pattern language change gets here.
        matches = () => {
          throw err;
        };
      }
      this.#launch(replay, current, matches);
    }
  }

  #claim(name: string): Promise<boolean> {
    return this.#store.state.putIfAbsent(replayLeaseNamespace, name, this.#owner, { now: this.#now(), ttlMs: this.#o.leaseMs });
  }

  #renew(name: string): Promise<boolean> {
    return this.#store.state.compareAndSet(replayLeaseNamespace, name, this.#owner, this.#owner, { now: this.#now(), ttlMs: this.#o.leaseMs });
  }

  /** Lets go of a lease this instance holds (a lease that expired and was claimed elsewhere is left alone). */
  async #release(name: string): Promise<void> {
    if ((await this.#store.state.get(replayLeaseNamespace, name, { now: this.#now() })) === this.#owner) {
      await this.#store.state.delete(replayLeaseNamespace, name);
    }
  }

  #launch(replay: Replay, written: string, matches: Matcher): void {
    const controller = new AbortController();
    const done = this.#run(replay, written, matches, controller.signal).finally(() => this.#running.delete(replay.name));
    this.#running.set(replay.name, { controller, done });
  }

  /**
   * Runs a replay whose lease this instance holds, from `replay.lastSeq`. `written` is the record as stored now;
   * each save replaces exactly that, so a change made elsewhere (a cancel, a runner that took over) stops this run.
   */
  async #run(replay: Replay, written: string, matches: Matcher, signal: AbortSignal): Promise<void> {
    const name = replay.name;
    /** What stopped the run when the record changed under it: the state found there, or a lost lease. */
    let superseded: "lost" | Replay["state"] | undefined;
    const save = async (): Promise<boolean> => {
      replay.updatedAt = this.#now();
      const next = JSON.stringify(replay);
      if (await this.#store.state.compareAndSet(replayNamespace, name, written, next, { now: replay.updatedAt })) {
        written = next;
        return true;
      }
      const current = await this.#store.state.get(replayNamespace, name, { now: this.#now() });
      const state = current === undefined ? undefined : (JSON.parse(current) as Replay).state;
      superseded = state === undefined || state === "running" ? "lost" : state;
      return false;
    };
    let renewedAt = this.#now();
    const rate = replay.maxPerSecond;
    // Paced replays read smaller pages, so a page is never a burst of more than a second's worth.
    const limit = rate === undefined ? pageSize : Math.max(1, Math.min(pageSize, Math.floor(rate)));
    const pace = { since: this.#now(), replayed: replay.eventsReplayed };
    try {
      while (!signal.aborted) {
        if (this.#now() - renewedAt >= this.#o.leaseMs / 3) {
          if (!(await this.#renew(name))) {
            superseded = "lost";
            break;
          }
          renewedAt = this.#now();
        }
        const page = await this.#store.events.read(replay.bus, {
          fromAt: replay.fromAt,
          toAt: replay.toAt,
          afterSeq: replay.lastSeq,
          limit,
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
          const event: CloudEvent = { ...original, [SluiceExtension.Replay]: name };
          const encoded = encodeEvent(event);
          replay.eventsReplayed++;
          if ("bus" in replay.destination) {
            const dest = replay.destination.bus;
            entries.push(this.#publisher.route(dest, event, encoded, dedupeKey(dest, event, name)));
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
        // Saved only after the page is stored: a resumed replay starts after it and skips nothing.
        if (!(await save())) break;
        // A short page was the range's last: no need to wait before finding the next one empty.
        if (rate !== undefined && page.length === limit) await this.#sleep(pace.since + ((replay.eventsReplayed - pace.replayed) * 1000) / rate - this.#now(), signal);
      }
      if (superseded === undefined) {
        if (signal.aborted && signal.reason === closing) {
          // Left running with its position saved; another process (or the next start) resumes it.
          await this.#release(name);
          return;
        }
        replay.state = signal.aborted ? "cancelled" : "completed";
      }
    } catch (err) {
      replay.state = "failed";
      replay.error = describeError(err);
      this.#logger.error({ replay: name, err: replay.error }, "replay failed");
    }
    if (superseded === undefined) {
      replay.endedAt = this.#now();
      await save().catch((err) => this.#logger.error({ replay: name, err: describeError(err) }, "saving replay state failed"));
    }
    if (superseded === "lost") {
      this.#logger.warn({ replay: name }, "replay taken over by another process");
      return;
    }
    await this.#release(name).catch((err) => this.#logger.error({ replay: name, err: describeError(err) }, "releasing replay lease failed"));
  }

  /** Waits `ms` on the replay clock, or until `signal` aborts. */
  #sleep(ms: number, signal: AbortSignal): Promise<void> {
    if (ms <= 0 || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.#o.clock.clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = this.#o.clock.setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  async get(name: string): Promise<Replay> {
    const value = await this.#store.state.get(replayNamespace, name, { now: this.#now() });
    if (value === undefined) throw new SluiceError(ErrorCode.ReplayNotFound, `replay "${name}" does not exist`, { path: "$.name" });
    return JSON.parse(value) as Replay;
  }

  async list(): Promise<Replay[]> {
    const rows = await this.#store.state.list(replayNamespace, { now: this.#now() });
    return rows.map((r) => JSON.parse(r.value) as Replay).sort((a, b) => a.startedAt - b.startedAt);
  }

  /** Cancels a running replay (here or, between pages, in another process) and resolves with its final state here. */
  async cancel(name: string): Promise<Replay> {
    for (;;) {
      const local = this.#running.get(name);
      if (local !== undefined) {
        local.controller.abort("cancelled");
        await local.done;
        return this.get(name);
      }
      const raw = await this.#store.state.get(replayNamespace, name, { now: this.#now() });
      if (raw === undefined) throw new SluiceError(ErrorCode.ReplayNotFound, `replay "${name}" does not exist`, { path: "$.name" });
      const current = JSON.parse(raw) as Replay;
      if (current.state !== "running") return current;
      const now = this.#now();
      const next: Replay = { ...current, state: "cancelled", updatedAt: now, endedAt: now };
      // Fails when its runner saved a page meanwhile: read again and retry.
      if (await this.#store.state.compareAndSet(replayNamespace, name, raw, JSON.stringify(next), { now })) return next;
    }
  }

  /** Waits for one replay run by this process to finish (tests, CLI). */
  async wait(name: string): Promise<Replay> {
    await this.#running.get(name)?.done;
    return this.get(name);
  }

  /** Stops looking for replays and stops the ones running here; they stay `running`, for another process to resume. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#scanTimer !== undefined) this.#o.clock.clearTimeout(this.#scanTimer);
    this.#scanTimer = undefined;
    await this.#scanning;
    for (const r of this.#running.values()) r.controller.abort(closing);
    await Promise.all([...this.#running.values()].map((r) => r.done));
  }
}
