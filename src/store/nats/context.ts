/** What the parts of the NATS store share: the connection, JetStream handles, names, options and the gate. */
import type { NatsConnection } from "@nats-io/transport-node";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import type { Gate } from "./gate.ts";
import type { Names } from "./names.ts";

export interface NatsContext {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  names: Names;
  gate: Gate;
  replicas: number;
  maxAckPending: number;
  /** Per-delivery bookkeeping (attempt offsets, last errors, the dead-letter index). */
  meta: KV;
  /** Called when a consumer hits `max_ack_pending` (warning and metric). */
  onAckPendingCap(queue: string): void;
}

export const encoder = new TextEncoder();
export const decoder = new TextDecoder();

/** Milliseconds to the nanoseconds JetStream configuration takes. */
export function nanos(ms: number): number {
  return Math.round(ms * 1_000_000);
}
