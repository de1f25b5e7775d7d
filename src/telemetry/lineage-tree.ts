/**
 * An event's lineage as a tree: where it was stored, which rules it matched, each delivery with its attempts and
 * the function run of each attempt, and the events its handlers emitted, down through their own lineage.
 * This is the JSON of `sluice trace --json` and `GET /admin/events/:id/trace` (docs/telemetry.md).
 */
import type { StateStore } from "../store/contract.ts";
import { parseQueue } from "./lineage-recorder.ts";
import { lineageNamespace, type AttemptRecord, type ChildRecord, type LineageRecord, type RunRecord, type StoredRecord } from "./lineage-records.ts";

export interface RunNode {
  functionName: string;
  invocationId: string;
  attempt: number;
  startedAt: number;
  durationMs: number;
  outcome: string;
  reason?: string;
  cold: boolean;
  gbSeconds: number;
}

/** One attempt as recorded (outcome, error, reason, next attempt), with its run. */
export interface AttemptNode extends Omit<AttemptRecord, "kind" | "queue" | "deliveryId" | "function"> {
  /** The function run of this attempt (function targets). */
  run?: RunNode;
}

export interface DeliveryNode {
  queue: string;
  bus: string;
  rule: string;
  target: string;
  function?: string;
  /** `delivered`, `dead`, `retrying` (last attempt failed, another is due) or `pending` (no attempt recorded yet). */
  status: "delivered" | "dead" | "retrying" | "pending";
  attempts: AttemptNode[];
}

export interface LineageNode {
  eventId: string;
  /** False when nothing is recorded for this id (never seen, or past retention). */
  found: boolean;
  type?: string;
  source?: string;
  subject?: string;
  time?: string;
  correlationId?: string;
  parentId?: string;
  replay?: string;
  /** One entry per bus the event was stored on (a bus target re-publishes it on another bus). */
  stored: { bus: string; storedAt: number; rules: string[] }[];
  deliveries: DeliveryNode[];
  /** Runs not tied to a recorded delivery attempt (a direct invoke, a synchronous route). */
  runs: RunNode[];
  /** Which run emitted this event, when it was emitted with ctx.emit. */
  emittedBy?: { functionName: string; invocationId: string };
  children: LineageNode[];
  /** Set when the walk stopped here (depth or node limit) although children exist. */
  truncated?: true;
}

export interface TraceOptions {
  now: number;
  /** Default 32. */
  maxDepth?: number;
  /** Events read at most. Default 1 000. */
  maxNodes?: number;
}

async function readRecords(state: StateStore, eventId: string, now: number): Promise<LineageRecord[]> {
  const rows = await state.list(lineageNamespace(eventId), { now });
  const out: LineageRecord[] = [];
  for (const row of rows) {
    try {
      out.push(JSON.parse(row.value) as LineageRecord);
    } catch {
      // A record that does not parse is skipped: lineage is best-effort diagnostics.
    }
  }
  return out;
}

function runNode(r: RunRecord): RunNode {
  return {
    functionName: r.functionName,
    invocationId: r.invocationId,
    attempt: r.attempt,
    startedAt: r.arrivedAt,
    durationMs: r.durationMs,
    outcome: r.outcome,
    ...(r.reason === undefined ? {} : { reason: r.reason }),
    cold: r.cold,
    gbSeconds: r.gbSeconds,
  };
}

/** Builds one event's node (children left empty) from its records. */
export function buildNode(eventId: string, records: LineageRecord[]): { node: LineageNode; childRecords: ChildRecord[] } {
  const stored = records.filter((r): r is StoredRecord => r.kind === "stored").sort((a, b) => a.storedAt - b.storedAt);
  const attempts = records.filter((r): r is AttemptRecord => r.kind === "attempt").sort((a, b) => a.startedAt - b.startedAt || a.attempt - b.attempt);
  const runs = records.filter((r): r is RunRecord => r.kind === "run").sort((a, b) => a.arrivedAt - b.arrivedAt);
  const childRecords = records.filter((r): r is ChildRecord => r.kind === "child").sort((a, b) => a.at - b.at || a.eventId.localeCompare(b.eventId));
  const first = stored[0];
  const node: LineageNode = { eventId, found: records.length > 0, stored: [], deliveries: [], runs: [], children: [] };
  if (first !== undefined) {
    node.type = first.type;
    node.source = first.source;
    if (first.subject !== undefined) node.subject = first.subject;
    if (first.time !== undefined) node.time = first.time;
    if (first.correlationId !== undefined) node.correlationId = first.correlationId;
    if (first.parentId !== undefined) node.parentId = first.parentId;
    const replay = stored.find((s) => s.replay !== undefined)?.replay;
    if (replay !== undefined) node.replay = replay;
  }
  const deliveries = new Map<string, DeliveryNode>();
  const delivery = (queue: string, fn?: string): DeliveryNode => {
    let d = deliveries.get(queue);
    if (d === undefined) {
      const parts = parseQueue(queue) ?? { bus: "", rule: queue, target: "" };
      d = { queue, ...parts, status: "pending", attempts: [] };
      deliveries.set(queue, d);
    }
    if (fn !== undefined) d.function = fn;
    return d;
  };
  for (const s of stored) {
    node.stored.push({ bus: s.bus, storedAt: s.storedAt, rules: s.rules });
    for (const q of s.queues) delivery(q);
  }
  const unused = new Set(runs);
  for (const a of attempts) {
    const d = delivery(a.queue, a.function);
    const at: AttemptNode = { attempt: a.attempt, startedAt: a.startedAt, durationMs: a.durationMs, outcome: a.outcome };
    if (a.error !== undefined) at.error = a.error;
    if (a.reason !== undefined) at.reason = a.reason;
    if (a.nextAttemptAt !== undefined) at.nextAttemptAt = a.nextAttemptAt;
    if (a.function !== undefined) {
      // The run of this attempt: same function and attempt number, the earliest not yet matched.
      for (const r of unused) {
        if (r.functionName === a.function && r.attempt === a.attempt) {
          at.run = runNode(r);
          unused.delete(r);
          break;
        }
      }
    }
    d.attempts.push(at);
    d.status = a.outcome === "delivered" ? "delivered" : a.outcome === "dead" ? "dead" : "retrying";
  }
  node.deliveries = [...deliveries.values()];
  node.runs = [...unused].map(runNode);
  return { node, childRecords };
}

/**
 * Reads the lineage of `eventId` and of every event emitted from it, breadth first, within the depth and node
 * limits (a node past them is marked `truncated`).
 */
export async function readLineage(state: StateStore, eventId: string, options: TraceOptions): Promise<LineageNode> {
  const maxDepth = options.maxDepth ?? 32;
  const maxNodes = options.maxNodes ?? 1000;
  const root = buildNode(eventId, await readRecords(state, eventId, options.now));
  let read = 1;
  let level: { node: LineageNode; childRecords: ChildRecord[] }[] = [root];
  const seen = new Set([eventId]);
  for (let depth = 0; level.length > 0; depth++) {
    const next: typeof level = [];
    for (const { node, childRecords } of level) {
      const wanted = childRecords.filter((c) => !seen.has(c.eventId));
      if (wanted.length === 0) continue;
      if (depth >= maxDepth || read >= maxNodes) {
        node.truncated = true;
        continue;
      }
      for (const c of wanted) {
        if (read >= maxNodes) {
          node.truncated = true;
          break;
        }
        seen.add(c.eventId);
        read++;
        const child = buildNode(c.eventId, await readRecords(state, c.eventId, options.now));
        if (child.node.type === undefined) child.node.type = c.type;
        if (c.functionName !== undefined && c.invocationId !== undefined) child.node.emittedBy = { functionName: c.functionName, invocationId: c.invocationId };
        node.children.push(child.node);
        next.push(child);
      }
    }
    level = next;
  }
  return root.node;
}
