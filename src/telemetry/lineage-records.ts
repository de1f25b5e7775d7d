/**
 * Lineage records: what Sluice itself keeps of each event (no collector needed). They live in the StateStore,
 * one namespace per event (`sluice.lineage:<eventId>`), one key per record, with the bus's archive retention as
 * their TTL, so every backend keeps and expires them the same way and one `list` reads an event's whole story.
 */

export const lineageNamespacePrefix = "sluice.lineage:";

export function lineageNamespace(eventId: string): string {
  return `${lineageNamespacePrefix}${eventId}`;
}

/** The event was stored on a bus: what it is and which rules (queues) it matched there. */
export interface StoredRecord {
  kind: "stored";
  bus: string;
  eventId: string;
  type: string;
  source: string;
  subject?: string;
  time?: string;
  correlationId?: string;
  /** The event whose handler emitted this one (`causationid`). */
  parentId?: string;
  /** The replay that re-published it. */
  replay?: string;
  storedAt: number;
  rules: string[];
  queues: string[];
}

/** One delivery attempt to one target and how it ended. */
export interface AttemptRecord {
  kind: "attempt";
  queue: string;
  deliveryId: string;
  attempt: number;
  startedAt: number;
  durationMs: number;
  /** `delivered`, `retry` (failed; another attempt follows at `nextAttemptAt`) or `dead` (dead-lettered). */
  outcome: "delivered" | "retry" | "dead";
  error?: string;
  /** Why it was dead-lettered (`max-attempts`, `non-retriable`, …). */
  reason?: string;
  nextAttemptAt?: number;
  /** The function the target runs, for a function target. */
  function?: string;
}

/** One function invocation for the event (a delivery's run, or a direct invoke). */
export interface RunRecord {
  kind: "run";
  functionName: string;
  invocationId: string;
  attempt: number;
  arrivedAt: number;
  durationMs: number;
  outcome: string;
  reason?: string;
  cold: boolean;
  gbSeconds: number;
}

/** An event emitted while handling this one (ctx.emit): the child's own records carry the rest. */
export interface ChildRecord {
  kind: "child";
  eventId: string;
  type: string;
  at: number;
  functionName?: string;
  invocationId?: string;
}

export type LineageRecord = StoredRecord | AttemptRecord | RunRecord | ChildRecord;

const pad = (n: number) => String(Math.max(0, Math.floor(n))).padStart(15, "0");

/** The record's key within its event's namespace: unique per record, sorted by time where that helps. */
export function recordKey(r: LineageRecord): string {
  switch (r.kind) {
    case "stored":
      return `s:${r.bus}`;
    case "attempt":
      return `a:${pad(r.startedAt)}:${r.deliveryId}:${pad(r.attempt)}:${r.outcome}`;
    case "run":
      return `r:${pad(r.arrivedAt)}:${r.invocationId}`;
    case "child":
      return `c:${r.eventId}`;
  }
}
