/**
 * API keys kept in the store's state (namespace `sluice.keys`, one entry per key name), so every node sharing the
 * store knows every key. Only the key's SHA-256 is stored; the key itself is returned once, by `create`.
 *
 * A node reads the whole namespace at most once per `refreshMs` (and when it meets a well-formed key it does not
 * know yet), so a key revoked on one node stops working on the others within that time.
 */
import { timingSafeEqual } from "node:crypto";
import { ErrorCode, SluiceError } from "../errors.ts";
import type { StateStore } from "../store/contract.ts";
import { isName, nameRule } from "../util/validate.ts";
import { generateKey, hashKey, isWellFormedKey, keyHint } from "./key-format.ts";
import { ALL_SCOPES, scopeProblem } from "./scopes.ts";

export const KEYS_NAMESPACE = "sluice.keys";
/** The name the bootstrap key (SLUICE_ADMIN_KEY) goes by in logs and the audit log. */
export const BOOTSTRAP_KEY_NAME = "bootstrap";

export interface KeyRecord {
  name: string;
  /** SHA-256 (hex) of the key. */
  hash: string;
  /** The key's first characters, enough to recognise it, never to use it. */
  hint: string;
  scopes: string[];
  createdAt: number;
  expiresAt?: number;
  revokedAt?: number;
  /** The key that created this one (`bootstrap`, another key's name, or `cli` for a store opened directly). */
  createdBy?: string;
}

/** Who made a request: the key's name and scopes. */
export interface Principal {
  readonly name: string;
  readonly scopes: readonly string[];
}

export interface CreateKeyInput {
  name: string;
  scopes: readonly string[];
  expiresInMs?: number;
  createdBy?: string;
}

export interface KeyStoreOptions {
  /** A bootstrap admin key (SLUICE_ADMIN_KEY): every scope, never stored. */
  bootstrapKey?: string;
  refreshMs?: number;
  now?: () => number;
}

/** A key as listings show it: no hash. */
export type KeyInfo = Omit<KeyRecord, "hash"> & { status: "active" | "expired" | "revoked" };

/** Checks a create request; every problem is a typed error naming the field. */
export function checkKeyInput(input: { name?: unknown; scopes?: unknown }): void {
  if (!isName(input.name)) throw new SluiceError(ErrorCode.BadRequest, `key name ${JSON.stringify(input.name)} is invalid: ${nameRule}`, { path: "$.name" });
  if (!Array.isArray(input.scopes) || input.scopes.length === 0) {
    throw new SluiceError(ErrorCode.BadRequest, "a key needs at least one scope (--scope publish, --scope admin:read, …)", { path: "$.scopes" });
  }
  input.scopes.forEach((s, i) => {
    const problem = scopeProblem(s);
    if (problem) throw new SluiceError(ErrorCode.ConfigInvalid, problem, { path: `$.scopes[${i}]` });
  });
}

/** Why a bootstrap key value is unusable, or undefined. */
export function bootstrapKeyProblem(value: string): string | undefined {
  if (isWellFormedKey(value) || value.length >= 32) return undefined;
  return "must be a key made by `sluice keys generate` or a random string of at least 32 characters";
}

export class KeyStore {
  readonly #state: StateStore;
  readonly #bootstrapHash: Buffer | undefined;
  readonly #refreshMs: number;
  readonly #now: () => number;
  #byHash = new Map<string, KeyRecord>();
  #loadedAt = -Infinity;
  #loading: Promise<void> | undefined;

  constructor(state: StateStore, options: KeyStoreOptions = {}) {
    this.#state = state;
    this.#bootstrapHash = options.bootstrapKey ? Buffer.from(hashKey(options.bootstrapKey), "hex") : undefined;
    this.#refreshMs = options.refreshMs ?? 1000;
    this.#now = options.now ?? Date.now;
  }

  get hasBootstrapKey(): boolean {
    return this.#bootstrapHash !== undefined;
  }

  async #records(): Promise<KeyRecord[]> {
    const rows = await this.#state.list(KEYS_NAMESPACE, { now: this.#now() });
    const out: KeyRecord[] = [];
    for (const r of rows) {
      try {
        out.push(JSON.parse(r.value) as KeyRecord);
      } catch {
        // A damaged entry is skipped (it cannot authenticate anyone), not fatal.
      }
    }
    return out.sort((a, b) => a.createdAt - b.createdAt || a.name.localeCompare(b.name));
  }

  async #refresh(): Promise<void> {
    this.#loading ??= (async () => {
      try {
        const next = new Map<string, KeyRecord>();
        for (const r of await this.#records()) next.set(r.hash, r);
        this.#byHash = next;
        this.#loadedAt = this.#now();
      } finally {
        this.#loading = undefined;
      }
    })();
    return this.#loading;
  }

  /** Creates a key; resolves with the key itself (shown once) and what is stored. */
  async create(input: CreateKeyInput): Promise<{ key: string; info: KeyInfo }> {
    checkKeyInput(input);
    if (input.expiresInMs !== undefined && (!Number.isFinite(input.expiresInMs) || input.expiresInMs <= 0)) {
      throw new SluiceError(ErrorCode.BadRequest, "expiry must be a positive duration, e.g. 90d", { path: "$.expires" });
    }
    const now = this.#now();
    const key = generateKey();
    const record: KeyRecord = {
      name: input.name,
      hash: hashKey(key),
      hint: keyHint(key),
      scopes: [...new Set(input.scopes)],
      createdAt: now,
      ...(input.expiresInMs === undefined ? {} : { expiresAt: now + input.expiresInMs }),
      ...(input.createdBy === undefined ? {} : { createdBy: input.createdBy }),
    };
    const value = JSON.stringify(record);
    if (!(await this.#state.putIfAbsent(KEYS_NAMESPACE, input.name, value, { now }))) {
      // A revoked key's name may be taken again; a live one may not.
      const current = await this.#state.get(KEYS_NAMESPACE, input.name, { now });
      const old = current ? (JSON.parse(current) as KeyRecord) : undefined;
      if (!current || !old || old.revokedAt === undefined || !(await this.#state.compareAndSet(KEYS_NAMESPACE, input.name, current, value, { now }))) {
        throw new SluiceError(ErrorCode.AlreadyExists, `a key named ${JSON.stringify(input.name)} exists; revoke it first or choose another name`, { path: "$.name" });
      }
    }
    this.#loadedAt = -Infinity;
    return { key, info: this.#info(record, now) };
  }

  async list(): Promise<KeyInfo[]> {
    const now = this.#now();
    return (await this.#records()).map((r) => this.#info(r, now));
  }

  /** Live keys (not revoked, not expired). */
  async activeCount(): Promise<number> {
    return (await this.list()).filter((k) => k.status === "active").length;
  }

  async revoke(name: string): Promise<KeyInfo> {
    const now = this.#now();
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = await this.#state.get(KEYS_NAMESPACE, name, { now });
      if (!current) throw new SluiceError(ErrorCode.NotFound, `no key named ${JSON.stringify(name)}; see sluice keys list`, { path: "$.name" });
      const record = JSON.parse(current) as KeyRecord;
      if (record.revokedAt !== undefined) return this.#info(record, now);
      const next = { ...record, revokedAt: now };
      if (await this.#state.compareAndSet(KEYS_NAMESPACE, name, current, JSON.stringify(next), { now })) {
        this.#loadedAt = -Infinity;
        return this.#info(next, now);
      }
    }
    throw new SluiceError(ErrorCode.StoreUnavailable, `key ${JSON.stringify(name)} changed while it was being revoked; try again`, { retryable: true });
  }

  /** The principal of an `Authorization` header value; throws a 401 SluiceError when there is none. */
  async authenticate(authorization: string | undefined): Promise<Principal> {
    if (!authorization) {
      throw new SluiceError(ErrorCode.AuthRequired, "this endpoint needs an API key: send Authorization: Bearer <key> (sluice keys create; the CLI takes --key or SLUICE_KEY)");
    }
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!m) throw new SluiceError(ErrorCode.KeyInvalid, "the Authorization header is not \"Bearer <key>\"");
    const token = m[1]!;
    const hash = hashKey(token);
    if (this.#bootstrapHash && timingSafeEqual(Buffer.from(hash, "hex"), this.#bootstrapHash)) {
      return { name: BOOTSTRAP_KEY_NAME, scopes: ALL_SCOPES };
    }
    // The checksum turns away random strings without a store read.
    if (!isWellFormedKey(token)) throw new SluiceError(ErrorCode.KeyInvalid, "the key is not a Sluice API key (wrong format or checksum)");
    const now = this.#now();
    if (now - this.#loadedAt >= this.#refreshMs) await this.#refresh();
    const record = this.#byHash.get(hash);
    if (!record) throw new SluiceError(ErrorCode.KeyInvalid, "the key is not known to this server");
    if (record.revokedAt !== undefined) throw new SluiceError(ErrorCode.KeyRevoked, `key ${JSON.stringify(record.name)} was revoked`);
    if (record.expiresAt !== undefined && record.expiresAt <= now) {
      throw new SluiceError(ErrorCode.KeyExpired, `key ${JSON.stringify(record.name)} expired at ${new Date(record.expiresAt).toISOString()}`);
    }
    return { name: record.name, scopes: record.scopes };
  }

  #info(r: KeyRecord, now: number): KeyInfo {
    const { hash: _hash, ...rest } = r;
    const status = r.revokedAt !== undefined ? "revoked" : r.expiresAt !== undefined && r.expiresAt <= now ? "expired" : "active";
    return { ...rest, status };
  }
}
