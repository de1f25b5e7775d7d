/**
 * The state store on a KV bucket. Keys are `<namespace>.<key>` as base64url tokens; values carry their expiry
 * (`{"v":…,"e":…}`), evaluated against the caller's `now` like every backend. putIfAbsent is KV `create` (or an
 * update at the revision of an expired value), compareAndSet an update at the read revision: both are atomic on the
 * server, so one of concurrent writers wins across nodes (schedule ticks, idempotency keys, replay leases).
 */
import type { KV } from "@nats-io/kv";
import type { StateStore } from "../contract.ts";
import type { Gate } from "./gate.ts";
import { token, untoken } from "./names.ts";

interface Stored {
  v: string;
  e?: number;
}

function encode(value: string, now: number, ttlMs: number | undefined): string {
  return JSON.stringify(ttlMs === undefined ? { v: value } : { v: value, e: now + ttlMs });
}

function isWrongRevision(err: unknown): boolean {
  return /wrong last sequence|key exists|10071/i.test(String((err as { message?: unknown })?.message ?? err));
}

export class NatsStateStore implements StateStore {
  readonly #kv: KV;
  readonly #gate: Gate;

  constructor(kv: KV, gate: Gate) {
    this.#kv = kv;
    this.#gate = gate;
  }

  async #read(namespace: string, key: string, now: number): Promise<{ value?: string; revision: number }> {
    const e = await this.#kv.get(`${token(namespace)}.${token(key)}`);
    if (e === null) return { revision: 0 };
    if (e.operation !== "PUT" || e.value.length === 0) return { revision: e.revision };
    const stored = JSON.parse(e.string()) as Stored;
    if (stored.e !== undefined && stored.e <= now) return { revision: e.revision };
    return { value: stored.v, revision: e.revision };
  }

  get(namespace: string, key: string, { now }: { now: number }): Promise<string | undefined> {
    return this.#gate.run("state.get", async () => (await this.#read(namespace, key, now)).value);
  }

  put(namespace: string, key: string, value: string, { now, ttlMs }: { now: number; ttlMs?: number }): Promise<void> {
    return this.#gate.run("state.put", async () => {
      await this.#kv.put(`${token(namespace)}.${token(key)}`, encode(value, now, ttlMs));
    });
  }

  putIfAbsent(namespace: string, key: string, value: string, { now, ttlMs }: { now: number; ttlMs?: number }): Promise<boolean> {
    return this.#gate.run("state.putIfAbsent", async () => {
      const k = `${token(namespace)}.${token(key)}`;
      const current = await this.#read(namespace, key, now);
      if (current.value !== undefined) return false;
      try {
        if (current.revision === 0) await this.#kv.create(k, encode(value, now, ttlMs));
        else await this.#kv.update(k, encode(value, now, ttlMs), current.revision);
        return true;
      } catch (err) {
        if (isWrongRevision(err)) return false;
        throw err;
      }
    });
  }

  compareAndSet(namespace: string, key: string, expected: string, value: string, { now, ttlMs }: { now: number; ttlMs?: number }): Promise<boolean> {
    return this.#gate.run("state.compareAndSet", async () => {
      const current = await this.#read(namespace, key, now);
      if (current.value !== expected) return false;
      try {
        await this.#kv.update(`${token(namespace)}.${token(key)}`, encode(value, now, ttlMs), current.revision);
        return true;
      } catch (err) {
        if (isWrongRevision(err)) return false;
        throw err;
      }
    });
  }

  delete(namespace: string, key: string): Promise<void> {
    return this.#gate.run("state.delete", async () => {
      await this.#kv.delete(`${token(namespace)}.${token(key)}`);
    });
  }

  list(namespace: string, { now }: { now: number }): Promise<{ key: string; value: string }[]> {
    return this.#gate.run("state.list", async () => {
      const prefix = token(namespace);
      const keys: string[] = [];
      for await (const k of await this.#kv.keys(`${prefix}.*`)) keys.push(k);
      const out: { key: string; value: string }[] = [];
      for (const k of keys) {
        const key = untoken(k.slice(prefix.length + 1));
        const { value } = await this.#read(namespace, key, now);
        if (value !== undefined) out.push({ key, value });
      }
      return out;
    });
  }
}
