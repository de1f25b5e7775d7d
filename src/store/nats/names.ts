/**
 * Names of a deployment's streams, buckets, subjects and consumers. User-chosen names (buses, queues, partition
 * keys, namespaces) become base64url tokens, which are valid in subjects, consumer names and KV keys alike.
 */
import { createHash } from "node:crypto";

export function token(name: string): string {
  return name === "" ? "=" : Buffer.from(name, "utf8").toString("base64url");
}

export function untoken(t: string): string {
  return t === "=" ? "" : Buffer.from(t, "base64url").toString("utf8");
}

/** A short stable digest (consumer names and message ids stay bounded whatever the input's length). */
export function digest(text: string): string {
  return createHash("sha256").update(text).digest("base64url").slice(0, 27);
}

export interface Names {
  events: string;
  deliveries: string;
  dead: string;
  state: string;
  meta: string;
  eventSubject(bus: string): string;
  deliverySubject(queue: string, partitionKey: string | undefined): string;
  queueFilter(queue: string): string;
  deadSubject(queue: string): string;
  consumer(queue: string): string;
  /** Core NATS subject on which appends and enqueues announce work to every node. */
  work: string;
}

/** The no-key token: a partition key token is never `_` (base64url of a non-empty key is longer or differs). */
export const noKey = "_";

export function namesFor(deployment: string): Names {
  const root = `sluice.${deployment}`;
  const upper = `SLUICE_${deployment}`;
  return {
    events: `${upper}_EVENTS`,
    deliveries: `${upper}_DELIVERIES`,
    dead: `${upper}_DEAD`,
    state: `${upper}_STATE`,
    meta: `${upper}_META`,
    eventSubject: (bus) => `${root}.ev.${token(bus)}`,
    deliverySubject: (queue, key) => `${root}.dl.${token(queue)}.${key === undefined ? noKey : `k${token(key)}`}`,
    queueFilter: (queue) => `${root}.dl.${token(queue)}.>`,
    deadSubject: (queue) => `${root}.dead.${token(queue)}`,
    consumer: (queue) => `q_${digest(queue)}`,
    work: `${root}.work`,
  };
}
