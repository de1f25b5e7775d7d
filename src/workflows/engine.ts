/**
 * The workflow engine (host side): turns deliveries into run progress. Every step attempt is one delivery of the
 * workflow's queue (`rule:default/workflow.<name>/run`), so steps get the bus's retries, backoff and dead-letter
 * queue; run state lives in the state store and changes only by compare-and-set, so any node may run any
 * delivery. Only the storage contract is used.
 *
 * One delivery: read the run; drop it if it is stale (its `v` is not the run's) or another delivery holds the
 * run's claim; claim the run; do one thing (replay the workflow in the runtime and run its next step, wake a
 * sleeper, resolve a wait, run one compensation); enqueue the successor delivery; write the new state; ack.
 * The successor is enqueued before the write, so a crash in between leaves a delivery that finds nothing to do,
 * never a run without one. See docs/workflows.md.
 */
import { createHash } from "node:crypto";
import type { Broker } from "../bus/broker.ts";
import type { DeliveryContext } from "../bus/types.ts";
import type { Clock } from "../clock.ts";
import { ErrorCode, NonRetriableError, RetryAfterError, SluiceError } from "../errors.ts";
import { encodeEvent } from "../event/codec.ts";
import { newEventId } from "../event/ids.ts";
import { SluiceExtension, type CloudEvent } from "../event/types.ts";
import type { Logger } from "../logger.ts";
import type { FunctionConfig } from "../runtime/define.ts";
import type { WireError } from "../runtime/protocol.ts";
import type { Runtime } from "../runtime/runtime-types.ts";
import type { StorageBackend } from "../store/contract.ts";
import { stepEventType, type DriverInput, type DriverOp } from "./protocol.ts";
import { isFinal, pendingCompensations, stepOf, type RunState, type RunStatus, type StepKind, type StepRecord } from "./run-state.ts";
import { Runs, type RunRecord } from "./runs.ts";
import { maxRunStateBytes, maxStepResultBytes, maxStepsPerRun, normalizeWorkflowSpec, readPath } from "./spec.ts";
import { compilePattern } from "../pattern/compile.ts";
import { matchesWaiter, waitRuleName, Waits } from "./waits.ts";
import { Slots } from "./slots.ts";
import { errorOf, isRetriable, retryError } from "./failures.ts";
import { continueType, maxHopMs, waitRouter, workflowQueue, workflowRuleName, workflowSource, type Continue, type Workflow } from "./queue.ts";

/** Re-scan of the archive after a wait began: covers a wait rule that other nodes have not loaded yet. */
const rescanAfterMs = 2500;

export interface EngineOptions {
  store: StorageBackend;
  broker: Pick<Broker, "publish" | "putRule" | "getRule" | "wakeAt">;
  runtime: Pick<Runtime, "invoke">;
  functions: FunctionConfig[];
  clock: Clock;
  logger: Logger;
}

const activeStatuses: ReadonlySet<RunStatus> = new Set(["running", "sleeping", "waiting"]);

export class WorkflowEngine {
  readonly #o: EngineOptions;
  readonly #workflows = new Map<string, Workflow>();
  readonly #runs: Runs;
  readonly #waits: Waits;
  readonly #slots: Slots;
  readonly #waitRules = new Map<string, Promise<void>>();
  /** Writes in flight by run: a successor leased on this node waits for its predecessor's write to land. */
  readonly #writing = new Map<string, Promise<unknown>>();
  #closed = false;

  constructor(o: EngineOptions) {
    this.#o = o;
    const now = () => o.clock.now();
    this.#runs = new Runs(o.store.state, now);
    this.#waits = new Waits(o.store, now);
    this.#slots = new Slots(o.store.state, now);
    const names = new Set(o.functions.map((f) => f.name));
    for (const f of o.functions) {
      if (f.workflow === undefined) continue;
      if (workflowRuleName(f.name).length > 64) {
        throw new SluiceError(ErrorCode.ConfigInvalid, `workflow "${f.name}": a workflow name has at most ${64 - workflowRuleName("").length} characters`, { path: "$.name" });
      }
      const spec = normalizeWorkflowSpec(f.workflow, f.name);
      spec.steps?.forEach((st, i) => {
        for (const key of ["run", "compensate"] as const) {
          const fn = st[key];
          if (fn !== undefined && !names.has(fn)) {
            throw new SluiceError(ErrorCode.ConfigInvalid, `saga "${f.name}": steps[${i}].${key} names function "${fn}", which does not exist`, { path: `$.steps[${i}].${key}` });
          }
        }
      });
      this.#workflows.set(f.name, { name: f.name, spec, timeoutMs: f.timeoutMs });
    }
  }

  workflows(): Workflow[] {
    return [...this.#workflows.values()];
  }

  /** Arms the timers of sleeping and waiting runs (they survive restarts in the state store). */
  async start(): Promise<void> {
    for (const t of await this.#waits.timers()) this.#o.broker.wakeAt(t.at);
  }

  close(): void {
    this.#closed = true;
  }

  #now(): number {
    return this.#o.clock.now();
  }

  // --- deliveries ---------------------------------------------------------------------------------------

  /** One delivery of a workflow queue (`spec` = the workflow name) or of the wait router. */
  async deliver(spec: string, event: CloudEvent, ctx: DeliveryContext): Promise<void> {
    if (this.#closed) throw new SluiceError(ErrorCode.Closed, "the workflow engine is closed", { retryable: true });
    if (spec === waitRouter) return this.#route(event);
    const wf = this.#workflows.get(spec);
    if (wf === undefined) throw new SluiceError(ErrorCode.FunctionNotFound, `workflow "${spec}" does not exist on this node`, { retryable: true });
    if (event.type === continueType && event.source === workflowSource) {
      const c = event.data as Continue;
      if (typeof c?.runId !== "string" || typeof c.v !== "number") throw new NonRetriableError("a workflow continuation without runId and v");
      return this.#advance(wf, c, ctx);
    }
    return this.#trigger(wf, event, ctx);
  }

  #runIdFor(wf: Workflow, event: CloudEvent): string {
    let key: string;
    if (wf.spec.idempotencyKey === undefined) key = `${event.source}\n${event.id}`;
    else {
      const v = readPath(event, wf.spec.idempotencyKey);
      if (v === undefined || v === null || typeof v === "object") {
        throw new NonRetriableError(`workflow "${wf.name}": idempotency key ${wf.spec.idempotencyKey} is missing from the event or not a scalar`);
      }
      key = String(v);
    }
    return `${wf.name}-${createHash("sha256").update(key).digest("hex").slice(0, 24)}`;
  }

  async #trigger(wf: Workflow, event: CloudEvent, ctx: DeliveryContext): Promise<void> {
    const runId = this.#runIdFor(wf, event);
    const now = this.#now();
    const time = typeof event.time === "string" ? Date.parse(event.time) : NaN;
    // Waits match from the trigger's time (same batch included), but never from more than a minute before the run.
    const sinceAt = Number.isFinite(time) ? Math.max(Math.min(time, now), now - 60_000) : now;
    const run: RunState = {
      runId,
      workflow: wf.name,
      v: 0,
      status: "running",
      trigger: event,
      sinceAt,
      createdAt: now,
      updatedAt: now,
      memo: {},
      steps: [],
    };
    if (!(await this.#runs.create(run))) {
      const existing = await this.#runs.get(runId);
      if (existing && (existing.state.trigger.id !== event.id || existing.state.trigger.source !== event.source)) {
        this.#o.logger.debug({ workflow: wf.name, runId, eventId: event.id }, "workflow trigger skipped: a run with its idempotency key exists");
        return;
      }
    }
    return this.#advance(wf, { runId, v: 0 }, ctx);
  }

  async #advance(wf: Workflow, c: Continue, ctx: DeliveryContext): Promise<void> {
    for (;;) {
      await this.#writing.get(c.runId);
      const rec = await this.#runs.get(c.runId);
      if (rec === undefined) return;
      const s = rec.state;
      if (isFinal(s.status)) return;
      const now = this.#now();
      let hit: CloudEvent | null | undefined;
      if (c.wake !== undefined) {
        if (s.status !== "waiting" || s.wait?.stepId !== c.wake) return;
        hit = await this.#findHit(s, c.scan === true);
        if (hit === undefined) return;
      } else if (s.v > c.v) return;
      else if (s.v < c.v) {
        // Enqueued by a write that has not landed yet (the successor goes first): look again shortly. When it
        // never lands (its process died), the delivery that made it runs again and enqueues a new successor.
        if (ctx.attempt < wf.spec.retry.attempts + 2) throw new RetryAfterError(Math.min(10 * 2 ** ctx.attempt, 2000), "the run's previous step is still being recorded");
        return;
      }
      // Another delivery does the run's current work: it comes back (same delivery) until it has written its
      // successor, and nobody else moves the run on meanwhile, so this one ends. A wake-up ends too: whoever holds
      // the claim of a waiting run is resolving that wait, and reads the recorded event when it does.
      if (s.claim && s.claim.owner !== ctx.deliveryId && s.claim.until > now) return;
      const dueAt = s.status === "sleeping" ? s.sleep?.until : s.status === "waiting" ? s.wait?.timeoutAt : undefined;
      if (c.hop && typeof dueAt === "number" && dueAt > now && s.claim === undefined) {
        const claimedHop = await this.#runs.replace(rec.raw, { ...s, claim: { owner: ctx.deliveryId, until: now + 60_000 } });
        if (claimedHop === undefined) continue;
        await this.#commit(wf, claimedHop, ctx, () => dueAt);
        return;
      }
      if (c.wake === undefined && s.status === "sleeping" && s.sleep && s.sleep.until > now) {
        this.#o.broker.wakeAt(s.sleep.until);
        return;
      }
      if (c.wake === undefined && s.status === "waiting" && s.wait) {
        const due = s.wait.timeoutAt !== null && s.wait.timeoutAt <= now;
        hit = await this.#findHit(s, false);
        if (hit === undefined && !due) return;
      }
      const claimed: RunState = { ...s, claim: { owner: ctx.deliveryId, until: now + wf.timeoutMs + 60_000 } };
      // A redriven compensation: the run compensates again.
      if (s.status === "compensation-failed") claimed.status = "compensating";
      const mine = await this.#runs.replace(rec.raw, claimed);
      if (mine === undefined) continue;
      return this.#work(wf, mine, ctx, hit);
    }
  }

  async #findHit(s: RunState, scan: boolean): Promise<CloudEvent | undefined> {
    const wait = s.wait!;
    const hit = await this.#waits.hit(s.runId, wait.stepId);
    if (hit !== undefined || !scan) return hit;
    const w = stepOf(s, wait.stepId)?.waiter;
    const criteria = { triggerId: s.trigger.id, ...(w?.match ? { match: w.match } : {}), ...(w?.if ? { if: w.if } : {}) };
    const found = await this.#waits.scanArchive(wait.type, criteria, s.sinceAt - (w?.lookbackMs ?? 0));
    return found === undefined ? undefined : this.#waits.offer(s.runId, wait.stepId, found.event, found.encoded);
  }

  async #work(wf: Workflow, rec: RunRecord, ctx: DeliveryContext, hit: CloudEvent | null | undefined): Promise<void> {
    const s = rec.state;
    if (s.ending !== undefined) return this.#compensate(wf, rec, ctx);
    switch (s.status) {
      case "compensating":
        return this.#compensate(wf, rec, ctx);
      case "sleeping":
        return this.#wakeSleeper(wf, rec, ctx);
      case "waiting":
        return this.#resolveWait(wf, rec, ctx, hit ?? null);
      default:
        if (s.slot === undefined && wf.spec.concurrency) {
          const got = await this.#takeSlot(wf, rec, ctx);
          if (got === undefined) return;
          rec = got;
        }
        return this.#replay(wf, rec, ctx);
    }
  }

  // --- state changes --------------------------------------------------------------------------------------

  /**
   * Applies `change` to the run and writes it, re-reading and re-applying when the run changed meanwhile (a
   * cancel), as long as this delivery still holds the claim. `change` returns when the successor delivery is due
   * (undefined: none); it is enqueued before the write. The claim is released unless `keepClaim`.
   */
  async #commit(wf: Workflow, rec: RunRecord, ctx: DeliveryContext, change: (s: RunState) => number | undefined, keepClaim = false): Promise<RunRecord> {
    let cur = rec;
    for (;;) {
      if (cur.state.claim?.owner !== ctx.deliveryId) {
        throw new SluiceError(ErrorCode.LeaseLost, `run ${rec.state.runId} is claimed by another delivery`, { retryable: true });
      }
      const next = structuredClone(cur.state);
      let at = change(next);
      if (next.ending !== undefined && activeStatuses.has(next.status)) {
        // Cancelled meanwhile: whatever this step did stays recorded, and the run compensates next.
        next.status = "compensating";
        delete next.sleep;
        delete next.wait;
        at = this.#now();
      }
      next.updatedAt = this.#now();
      if (!keepClaim) delete next.claim;
      if (at !== undefined) {
        next.v = cur.state.v + 1;
        await this.#enqueue(wf, { runId: next.runId, v: next.v }, at);
      }
      const final = isFinal(next.status);
      if (final) next.endedAt ??= next.updatedAt;
      const writing = this.#runs.replace(cur.raw, next, final ? wf.spec.retentionMs : undefined);
      const settled = writing.catch(() => undefined);
      this.#writing.set(next.runId, settled);
      const written = await writing.finally(() => {
        if (this.#writing.get(next.runId) === settled) this.#writing.delete(next.runId);
      });
      if (written) {
        if (final) await this.#finished(wf, written.state);
        return written;
      }
      const fresh = await this.#runs.get(rec.state.runId);
      if (fresh === undefined) throw new SluiceError(ErrorCode.NotFound, `run ${rec.state.runId} disappeared`);
      cur = fresh;
    }
  }

  async #enqueue(wf: Workflow, c: Continue, at: number): Promise<void> {
    const now = this.#now();
    if (at - now > maxHopMs) {
      c = { ...c, hop: true };
      at = now + maxHopMs;
    }
    const event: CloudEvent = { specversion: "1.0", id: newEventId(now), source: workflowSource, type: continueType, time: new Date(now).toISOString(), data: c };
    await this.#o.store.queues.enqueue([{ queue: workflowQueue(wf.name), payload: encodeEvent(event), availableAt: Math.max(at, now) }], { now });
    if (at > now) this.#o.broker.wakeAt(at);
  }

  async #finished(wf: Workflow, s: RunState): Promise<void> {
    this.#o.logger.info({ workflow: wf.name, runId: s.runId, status: s.status }, "workflow run finished");
    if (s.slot?.held && wf.spec.concurrency) {
      const next = await this.#slots.release(wf.name, s.slot.key, s.runId, wf.spec.concurrency.limit);
      for (const runId of next) await this.#enqueue(wf, { runId, v: (await this.#runs.get(runId))?.state.v ?? 0 }, this.#now());
    }
  }

  #upsertStep(s: RunState, id: string, kind: StepKind, attempt: number): StepRecord {
    let step = stepOf(s, id);
    if (step === undefined) {
      step = { id, kind, status: "running", attempts: 0, startedAt: this.#now() };
      s.steps.push(step);
    }
    step.attempts = Math.max(step.attempts, attempt);
    return step;
  }

  // --- concurrency ---------------------------------------------------------------------------------------

  /** The run's concurrency slot: the claimed run once it holds one, undefined when it was queued (and parked). */
  async #takeSlot(wf: Workflow, rec: RunRecord, ctx: DeliveryContext): Promise<RunRecord | undefined> {
    const c = wf.spec.concurrency!;
    const raw = c.key === undefined ? "" : readPath(rec.state.trigger, c.key);
    const key = raw === undefined || raw === null ? "" : typeof raw === "object" ? JSON.stringify(raw) : String(raw);
    const held = await this.#slots.acquire(wf.name, key, rec.state.runId, c.limit);
    if (held) {
      return this.#commit(wf, rec, ctx, (s) => {
        s.slot = { key, held: true };
        return undefined;
      }, true);
    }
    // Queued behind the runs holding the key's slots: a finishing run hands its slot over and wakes this one;
    // the retry below covers a node that died between the two.
    await this.#commit(wf, rec, ctx, (s) => {
      delete s.slot;
      return this.#now() + 5000;
    });
    return undefined;
  }

  // --- running the workflow -------------------------------------------------------------------------------

  #stepEvent(wf: Workflow, input: DriverInput): CloudEvent {
    const t = input.trigger;
    return {
      specversion: "1.0",
      id: `${input.runId}/${newEventId(this.#now())}`,
      source: `${workflowSource}/${wf.name}`,
      type: stepEventType,
      time: new Date(this.#now()).toISOString(),
      [SluiceExtension.CorrelationId]: t[SluiceExtension.CorrelationId] ?? t.id,
      data: input,
    };
  }

  async #replay(wf: Workflow, rec: RunRecord, ctx: DeliveryContext): Promise<void> {
    const s = rec.state;
    let op: DriverOp;
    try {
      op = (await this.#o.runtime.invoke(wf.name, this.#stepEvent(wf, { mode: "run", runId: s.runId, trigger: s.trigger, memo: s.memo }), { attempt: ctx.attempt, signal: ctx.signal })) as DriverOp;
    } catch (err) {
      // Timeout, crash, out of memory, throttled: the attempt failed as a whole.
      return this.#failedAttempt(wf, rec, ctx, err, undefined, "run");
    }
    if (typeof op !== "object" || op === null || typeof op.op !== "string") {
      return this.#failedAttempt(wf, rec, ctx, new NonRetriableError("the workflow's handler did not answer as a workflow"), undefined, "run");
    }
    if ("id" in op && stepOf(s, op.id) === undefined && s.steps.length >= maxStepsPerRun) {
      return this.#failedAttempt(wf, rec, ctx, new NonRetriableError(`the run passed ${maxStepsPerRun} steps`), undefined, "run");
    }
    switch (op.op) {
      case "step":
        return this.#completeStep(wf, rec, ctx, op.id, "run", op.value, op.compensate ? { closure: true } : undefined);
      case "step-failed":
        return this.#failedAttempt(wf, rec, ctx, op.error, op.id, "run");
      case "sleep":
        return this.#sleep(wf, rec, ctx, op.id, op.until);
      case "wait":
        return this.#beginWait(wf, rec, ctx, op);
      case "emit":
        return this.#emit(wf, rec, ctx, op.id, op.event);
      case "invoke": {
        let value: unknown;
        try {
          value = await this.#o.runtime.invoke(op.function, this.#invokeEvent(wf, s, op.id, op.data), { attempt: ctx.attempt, signal: ctx.signal });
        } catch (err) {
          return this.#failedAttempt(wf, rec, ctx, err, op.id, "invoke");
        }
        return this.#completeStep(wf, rec, ctx, op.id, "invoke", value ?? null, op.compensate ? { function: op.compensate } : undefined);
      }
      case "done": {
        const size = JSON.stringify(op.value ?? null).length;
        if (size > maxStepResultBytes) return this.#failedAttempt(wf, rec, ctx, new NonRetriableError(`the run's result is ${size} bytes, more than ${maxStepResultBytes}`), undefined, "run");
        await this.#commit(wf, rec, ctx, (n) => {
          n.status = "completed";
          n.output = op.value ?? null;
          return undefined;
        });
        return;
      }
      case "failed":
        return this.#failedAttempt(wf, rec, ctx, op.error, undefined, "run");
      default:
        return this.#failedAttempt(wf, rec, ctx, new NonRetriableError(`unexpected answer ${JSON.stringify(op.op)} from the workflow`), undefined, "run");
    }
  }

  #invokeEvent(wf: Workflow, s: RunState, stepId: string, data: unknown): CloudEvent {
    const t = s.trigger;
    return {
      specversion: "1.0",
      id: `${s.runId}:${stepId}`,
      source: `${workflowSource}/${wf.name}`,
      type: "sluice.workflow.invoke",
      time: new Date(this.#now()).toISOString(),
      subject: s.runId,
      [SluiceExtension.CorrelationId]: t[SluiceExtension.CorrelationId] ?? t.id,
      datacontenttype: "application/json",
      data,
    };
  }

  async #completeStep(wf: Workflow, rec: RunRecord, ctx: DeliveryContext, id: string, kind: StepKind, value: unknown, compensate: StepRecord["compensate"]): Promise<void> {
    const size = JSON.stringify(value ?? null).length;
    if (size > maxStepResultBytes) {
      return this.#failedAttempt(wf, rec, ctx, new NonRetriableError(`step "${id}" returned ${size} bytes, more than ${maxStepResultBytes}`), id, kind);
    }
    if (rec.raw.length + size > maxRunStateBytes) {
      return this.#failedAttempt(wf, rec, ctx, new NonRetriableError(`the run's state would pass ${maxRunStateBytes} bytes`), id, kind);
    }
    await this.#commit(wf, rec, ctx, (n) => {
      const step = this.#upsertStep(n, id, kind, ctx.attempt);
      step.status = "completed";
      step.endedAt = this.#now();
      delete step.error;
      if (compensate) step.compensate = compensate;
      n.memo[id] = value ?? null;
      return this.#now();
    });
  }

  /** A failed attempt: retried by the bus (throws), or, when final, the run fails and compensates. */
  async #failedAttempt(wf: Workflow, rec: RunRecord, ctx: DeliveryContext, err: unknown, stepId: string | undefined, kind: StepKind): Promise<void> {
    const error = errorOf(err);
    const last = !isRetriable(err) || ctx.attempt >= wf.spec.retry.attempts;
    if (!last) {
      await this.#commit(wf, rec, ctx, (n) => {
        if (stepId !== undefined) {
          const step = this.#upsertStep(n, stepId, kind, ctx.attempt);
          step.error = error;
        }
        return undefined;
      }, true);
      throw retryError(err as WireError, stepId === undefined ? `workflow ${wf.name}` : `step "${stepId}"`);
    }
    await this.#commit(wf, rec, ctx, (n) => {
      if (stepId !== undefined) {
        const step = this.#upsertStep(n, stepId, kind, ctx.attempt);
        step.status = "failed";
        step.error = error;
        step.endedAt = this.#now();
      }
      n.error = stepId === undefined ? error : { ...error, message: `step "${stepId}": ${error.message}` };
      if (n.ending === undefined) n.ending = "failed";
      n.status = "compensating";
      return this.#now();
    });
    this.#o.logger.warn({ workflow: wf.name, runId: rec.state.runId, stepId, err: error.message }, "workflow run failed");
  }

  async #sleep(wf: Workflow, rec: RunRecord, ctx: DeliveryContext, id: string, until: number): Promise<void> {
    const now = this.#now();
    if (until <= now) return this.#completeStep(wf, rec, ctx, id, "sleep", null, undefined);
    await this.#waits.setTimer(rec.state.runId, until);
    await this.#commit(wf, rec, ctx, (n) => {
      const step = this.#upsertStep(n, id, "sleep", ctx.attempt);
      step.status = "sleeping";
      step.until = until;
      n.status = "sleeping";
      n.sleep = { stepId: id, until };
      return until;
    });
  }

  async #wakeSleeper(wf: Workflow, rec: RunRecord, ctx: DeliveryContext): Promise<void> {
    const id = rec.state.sleep?.stepId;
    await this.#commit(wf, rec, ctx, (n) => {
      n.status = "running";
      delete n.sleep;
      if (id !== undefined) {
        const step = this.#upsertStep(n, id, "sleep", 1);
        step.status = "completed";
        step.endedAt = this.#now();
        n.memo[id] = null;
      }
      return this.#now();
    });
    await this.#waits.clearTimer(rec.state.runId).catch(() => undefined);
  }

  async #beginWait(wf: Workflow, rec: RunRecord, ctx: DeliveryContext, op: Extract<DriverOp, { op: "wait" }>): Promise<void> {
    const s = rec.state;
    const now = this.#now();
    const timeoutAt = op.timeoutMs === null ? null : now + op.timeoutMs;
    const waiter = { workflow: wf.name, runId: s.runId, stepId: op.id, triggerId: s.trigger.id, ...(op.match ? { match: op.match } : {}), ...(op.if ? { if: op.if } : {}) };
    if (op.if !== undefined) {
      try {
        compilePattern(op.if);
      } catch (err) {
        return this.#failedAttempt(wf, rec, ctx, new NonRetriableError(`step.waitForEvent("${op.id}"): if is not a valid event pattern: ${(err as Error).message}`), op.id, "wait");
      }
    }
    // 1. The waiter is known to the router, and the router's rule exists, before the wait is recorded;
    await this.#waits.register(op.type, waiter, timeoutAt === null ? undefined : timeoutAt - now + 86_400_000);
    await this.#ensureWaitRule(op.type);
    if (timeoutAt !== null) await this.#waits.setTimer(s.runId, timeoutAt);
    // 2. the run waits (a timeout delivery is enqueued for timeoutAt);
    await this.#commit(wf, rec, ctx, (n) => {
      const step = this.#upsertStep(n, op.id, "wait", ctx.attempt);
      step.status = "waiting";
      step.until = timeoutAt;
      step.waiter = { ...(op.match ? { match: op.match } : {}), ...(op.if ? { if: op.if } : {}), lookbackMs: op.lookbackMs };
      n.status = "waiting";
      n.wait = { stepId: op.id, type: op.type, timeoutAt };
      return timeoutAt ?? undefined;
    });
    // 3. then a wake-up searches the archive since the run began: an event stored before the router knew the
    // waiter is found there, one stored after reaches the router, which wakes the run. A second look follows
    // once every node has loaded the wait rule (definitions are polled once a second).
    await this.#enqueue(wf, { runId: s.runId, v: -1, wake: op.id, scan: true }, now);
    await this.#enqueue(wf, { runId: s.runId, v: -1, wake: op.id, scan: true }, now + rescanAfterMs);
  }

  async #ensureWaitRule(type: string): Promise<void> {
    const name = waitRuleName(type);
    let ensured = this.#waitRules.get(name);
    if (ensured === undefined) {
      ensured = (async () => {
        try {
          this.#o.broker.getRule(name);
        } catch {
          await this.#o.broker.putRule({
            name,
            bus: "default",
            pattern: { type: [type] },
            description: `routes ${type} events to waiting workflow runs`,
            targets: [{ id: "wait", workflow: waitRouter } as never],
          });
        }
      })();
      this.#waitRules.set(name, ensured);
      ensured.catch(() => this.#waitRules.delete(name));
    }
    await ensured;
  }

  async #resolveWait(wf: Workflow, rec: RunRecord, ctx: DeliveryContext, event: CloudEvent | null): Promise<void> {
    const wait = rec.state.wait;
    if (wait === undefined) return void (await this.#commit(wf, rec, ctx, () => this.#now()));
    await this.#commit(wf, rec, ctx, (n) => {
      const step = this.#upsertStep(n, wait.stepId, "wait", 1);
      step.status = "completed";
      step.endedAt = this.#now();
      n.memo[wait.stepId] = event;
      n.status = "running";
      delete n.wait;
      return this.#now();
    });
    await Promise.all([this.#waits.unregister(wait.type, rec.state.runId, wait.stepId), this.#waits.clearTimer(rec.state.runId)]).catch(() => undefined);
  }

  /** The wait router: an event of an awaited type satisfies every matching waiter and wakes its run. */
  async #route(event: CloudEvent): Promise<void> {
    const encoded = encodeEvent(event);
    for (const w of await this.#waits.waiters(event.type)) {
      if (!matchesWaiter(w, event)) continue;
      const wf = this.#workflows.get(w.workflow);
      if (wf === undefined) continue;
      const taken = await this.#waits.offer(w.runId, w.stepId, event, encoded);
      if (taken.id === event.id && taken.source === event.source) await this.#enqueue(wf, { runId: w.runId, v: -1, wake: w.stepId }, this.#now());
    }
  }

  async #emit(wf: Workflow, rec: RunRecord, ctx: DeliveryContext, id: string, emitted: Record<string, unknown>): Promise<void> {
    const s = rec.state;
    const t = s.trigger;
    // The same id on every attempt: the publisher's dedupe window makes a repeated publish a no-op.
    const eventId = typeof emitted.id === "string" ? emitted.id : `wf-${createHash("sha256").update(`${s.runId}\n${id}`).digest("hex").slice(0, 32)}`;
    const event = {
      ...emitted,
      specversion: "1.0",
      id: eventId,
      time: typeof emitted.time === "string" ? emitted.time : new Date(this.#now()).toISOString(),
      source: typeof emitted.source === "string" ? emitted.source : `${workflowSource}/${wf.name}`,
      [SluiceExtension.CorrelationId]: emitted[SluiceExtension.CorrelationId] ?? t[SluiceExtension.CorrelationId] ?? t.id,
      [SluiceExtension.Hops]: (Number(t[SluiceExtension.Hops]) || 0) + 1,
    };
    try {
      const out = await this.#o.broker.publish("default", event);
      const entry = out.entries[0];
      if (entry && "errorCode" in entry) {
        const err = new SluiceError(entry.errorCode, entry.errorMessage, { retryable: entry.errorCode === ErrorCode.Backpressure || entry.errorCode === ErrorCode.StoreUnavailable });
        return this.#failedAttempt(wf, rec, ctx, err, id, "emit");
      }
    } catch (err) {
      return this.#failedAttempt(wf, rec, ctx, err, id, "emit");
    }
    return this.#completeStep(wf, rec, ctx, id, "emit", { eventId }, undefined);
  }

  // --- compensation ---------------------------------------------------------------------------------------

  async #compensate(wf: Workflow, rec: RunRecord, ctx: DeliveryContext): Promise<void> {
    const s = rec.state;
    const pending = pendingCompensations(s);
    const step = pending[0];
    if (step === undefined) {
      const any = s.steps.some((x) => x.compensation?.status === "completed");
      await this.#commit(wf, rec, ctx, (n) => {
        n.status = n.ending === "cancelled" ? "cancelled" : any ? "compensated" : "failed";
        return undefined;
      });
      return;
    }
    try {
      if (step.compensate && "function" in step.compensate) {
        const data = { trigger: s.trigger, step: step.id, result: s.memo[step.id] ?? null, results: s.memo };
        await this.#o.runtime.invoke(step.compensate.function, this.#invokeEvent(wf, s, `${step.id}:compensate`, data), { attempt: ctx.attempt, signal: ctx.signal });
      } else {
        const input: DriverInput = { mode: "compensate", runId: s.runId, trigger: s.trigger, memo: s.memo, stepId: step.id };
        const op = (await this.#o.runtime.invoke(wf.name, this.#stepEvent(wf, input), { attempt: ctx.attempt, signal: ctx.signal })) as DriverOp;
        if (op?.op === "compensation-failed") throw Object.assign(new Error(op.error.message), op.error);
        if (op?.op !== "compensated" || op.id !== step.id) throw new Error(`the workflow did not compensate step "${step.id}"`);
      }
    } catch (err) {
      const error = errorOf(err);
      const last = ctx.attempt >= wf.spec.retry.attempts;
      await this.#commit(wf, rec, ctx, (n) => {
        const st = stepOf(n, step.id)!;
        st.compensation = { status: last ? "failed" : "running", attempts: ctx.attempt, error };
        if (last) n.status = "compensation-failed";
        return undefined;
      }, !last);
      if (!last) throw retryError(error, `compensation of step "${step.id}"`);
      this.#o.logger.error({ workflow: wf.name, runId: s.runId, stepId: step.id, err: error.message }, "workflow compensation failed");
      // Dead-lettered: `sluice dlq redrive` runs it again once it is fixed.
      throw new NonRetriableError(`compensation of step "${step.id}" of run ${s.runId} failed ${ctx.attempt} times: ${error.message}`);
    }
    await this.#commit(wf, rec, ctx, (n) => {
      const st = stepOf(n, step.id)!;
      st.compensation = { status: "completed", attempts: ctx.attempt, endedAt: this.#now() };
      return this.#now();
    });
  }

  // --- operator API ---------------------------------------------------------------------------------------

  async list(filter: { workflow?: string; status?: string; limit?: number } = {}): Promise<RunState[]> {
    const runs = (await this.#runs.list())
      .filter((r) => (filter.workflow === undefined || r.workflow === filter.workflow) && (filter.status === undefined || r.status === filter.status))
      .sort((a, b) => b.createdAt - a.createdAt || (a.runId < b.runId ? -1 : 1));
    return runs.slice(0, filter.limit ?? 1000);
  }

  async get(runId: string): Promise<RunState> {
    const rec = await this.#runs.get(runId);
    if (rec === undefined) throw new SluiceError(ErrorCode.NotFound, `no workflow run ${runId}; list them with sluice runs list`, { path: "$.runId" });
    const { claim: _c, ...state } = rec.state;
    return state as RunState;
  }

  /** Cancels a run: the compensations of its completed steps run, newest first, then it is `cancelled`. */
  async cancel(runId: string): Promise<RunState> {
    for (;;) {
      const rec = await this.#runs.get(runId);
      if (rec === undefined) throw new SluiceError(ErrorCode.NotFound, `no workflow run ${runId}; list them with sluice runs list`, { path: "$.runId" });
      const s = rec.state;
      if (isFinal(s.status) || s.ending !== undefined) return this.get(runId);
      const wf = this.#workflows.get(s.workflow);
      if (wf === undefined) throw new SluiceError(ErrorCode.NotFound, `workflow "${s.workflow}" of run ${runId} is not loaded on this node`);
      // A delivery doing the run's work sees the cancel when it writes and compensates next; otherwise a new
      // delivery starts the compensations.
      const claimed = s.claim !== undefined && s.claim.until > this.#now();
      const next: RunState = { ...s, ending: "cancelled", updatedAt: this.#now() };
      if (!claimed) {
        next.status = "compensating";
        next.v = s.v + 1;
        delete next.sleep;
        delete next.wait;
        await this.#enqueue(wf, { runId, v: next.v }, this.#now());
      }
      if (await this.#runs.replace(rec.raw, next)) {
        if (s.wait) await this.#waits.unregister(s.wait.type, runId, s.wait.stepId).catch(() => undefined);
        await this.#waits.clearTimer(runId).catch(() => undefined);
        return this.get(runId);
      }
    }
  }
}
