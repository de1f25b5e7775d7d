/** What the conformance cases share: the fixed clock, entry builders, assertions, and the case signature. */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { TestContext } from "node:test";
import type { AppendEntry, Lease, LeaseRequest, NewDelivery, StorageBackend, StoreCapabilities } from "../contract.ts";

/** A capability a case needs (see `StoreCapabilities`); without it the case is skipped, with the reason. */
export type Capability = keyof StoreCapabilities;

export interface CaseOptions {
  needs?: Capability[];
}

/** Declares a case with `it(title, body)` or `it(title, needs(...), body)`. */
export interface It {
  (title: string, body: (t: TestContext) => Promise<void>): void;
  (title: string, options: CaseOptions, body: (t: TestContext) => Promise<void>): void;
}

/** Opens a backend for one test and closes every backend object it opened when the test ends. */
export type Setup = (t: TestContext) => Promise<{ store: StorageBackend; reopen(): Promise<StorageBackend> }>;

/** What every `*.case.ts` function receives. */
export interface CaseContext {
  it: It;
  setup: Setup;
}

export function needs(...capabilities: Capability[]): CaseOptions {
  return { needs: capabilities };
}

export const T0 = 1_700_000_000_000;
export const WINDOW_MS = 300_000;
export const appendOptions = { now: T0, dedupeWindowMs: WINDOW_MS };

export function unique(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

export function entry(bus: string, eventId: string, deliveries: NewDelivery[] = [], source = "test"): AppendEntry {
  return {
    bus,
    eventId,
    dedupeKey: `${source}\n${eventId}`,
    encoded: JSON.stringify({ specversion: "1.0", id: eventId, source, type: "test.happened" }),
    deliveries,
  };
}

/** Enqueues one delivery per payload, each in its own call so their enqueue order is the payload order. */
export async function enqueueEach(
  store: StorageBackend,
  queue: string,
  payloads: string[],
  options: { now?: number; partitionKey?: string } = {},
): Promise<void> {
  for (const payload of payloads) {
    await store.queues.enqueue(
      [{ queue, payload, ...(options.partitionKey === undefined ? {} : { partitionKey: options.partitionKey }) }],
      { now: options.now ?? T0 },
    );
  }
}

export function payloads(leases: Lease[]): string[] {
  return leases.map((l) => l.payload);
}

export async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.equal((err as { code?: unknown }).code, code);
    return true;
  });
}

/** Fails when `promise` does not settle within `ms` (a timeout, not a sleep: it resolves as soon as it settles). */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}


/**
 * Leases once on a backend with native per-key order; elsewhere (a key's next delivery comes back after a short
 * hand-back delay, `capabilities.nativeKeyOrder` false) leases again until something is leased, for up to 5 s.
 */
export async function leaseNextOfKey(store: StorageBackend, request: LeaseRequest): Promise<Lease[]> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const leases = await store.queues.lease(request);
    if (leases.length > 0 || store.capabilities.nativeKeyOrder || Date.now() > deadline) return leases;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
