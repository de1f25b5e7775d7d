/**
 * The SQLite store on a thread of its own: `createSqliteStore({ thread: true })` starts store-thread.ts, which
 * runs the group-commit engine (`LocalSqliteStore`), and returns this proxy. Each method queues a request; the
 * requests of one tick go to the thread in ONE `postMessage` (queued on a microtask), and each call resolves when
 * the thread's reply arrives, which the thread sends only after the group commit that made its writes durable. So
 * the caller's thread (validation, routing, dispatch) and the store thread (SQLite) can each use a core.
 *
 * Hot paths cross as flat arrays of strings and numbers (protocol.ts). Wake-ups: the thread posts `work` after a
 * commit that created deliveries, and the proxy notifies every waiter of the same file in this process (one
 * `WorkSignal` per file, shared with `thread: false` stores). Errors cross as `{ code, message, retryable }` and
 * become `SluiceError`s again. The worker is unref'd while no call is pending, so an idle store never keeps the
 * process alive; a dead worker fails every pending and later call with E_STORE_UNAVAILABLE.
 */
import { Worker } from "node:worker_threads";
import { ErrorCode, SluiceError, type ErrorCode as ErrorCodeType } from "../../errors.ts";
import type { AppendEntry, DeliveryQueues, EventLog, Lease, StateStore } from "../contract.ts";
import { WorkSignal } from "../work-signal.ts";
import type { CheckpointStats } from "./checkpointer.ts";
import {
  packEntries,
  packLeaseRequest,
  unpackAppendResults,
  unpackLeases,
  type Request,
  type SerializedError,
  type ThreadMessage,
} from "./protocol.ts";
import type { SqliteStore, SqliteStoreOptions } from "./store.ts";

/** One WorkSignal per database file in this process, so store objects on one file wake each other. */
const signals = new Map<string, { signal: WorkSignal; refs: number }>();

export function acquireSignal(file: string): WorkSignal {
  let entry = signals.get(file);
  if (!entry) {
    entry = { signal: new WorkSignal(), refs: 0 };
    signals.set(file, entry);
  }
  entry.refs++;
  return entry.signal;
}

export function releaseSignal(file: string): void {
  const entry = signals.get(file);
  if (entry && --entry.refs === 0) signals.delete(file);
}

function toError(e: SerializedError): SluiceError {
  return new SluiceError(e.code as ErrorCodeType, e.message, {
    retryable: e.retryable,
    ...(e.path === undefined ? {} : { path: e.path }),
  });
}

/**
 * How the worker starts: the built store-thread.js directly; from source (tests, benches, `tsx`), a tiny bootstrap
 * that registers tsx's loader in the worker first (Node 20 does not apply `--import` to worker threads).
 */
function threadStart(): { entry: URL | string; eval: boolean; bootstrap?: { tsx: string; entry: string } } {
  if (!import.meta.url.endsWith(".ts")) return { entry: new URL("./store-thread.js", import.meta.url), eval: false };
  const bootstrap = { tsx: import.meta.resolve("tsx/esm/api"), entry: new URL("./store-thread.ts", import.meta.url).href };
  const source = `
    const { workerData } = require("node:worker_threads");
    import(workerData.bootstrap.tsx).then((api) => { api.register(); return import(workerData.bootstrap.entry); });
  `;
  return { entry: source, eval: true, bootstrap };
}

interface Pending {
  resolve(value: unknown): void;
  reject(err: unknown): void;
  unpack: ((value: never) => unknown) | undefined;
}

class ThreadedSqliteStore implements SqliteStore {
  readonly kind = "sqlite";
  readonly threaded = true;
  readonly path: string;
  readonly events: EventLog;
  readonly queues: DeliveryQueues;
  readonly state: StateStore;

  readonly #worker: Worker;
  readonly #signal: WorkSignal;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #outbox: Request[] = [];
  #sendScheduled = false;
  #referenced = false;
  #failure: SluiceError | undefined;
  #closing: Promise<void> | undefined;
  #closed = false;
  readonly #exited: Promise<void>;

  constructor(worker: Worker, path: string) {
    this.#worker = worker;
    this.path = path;
    this.#signal = acquireSignal(path);
    this.#worker.unref();
    this.#worker.on("message", (m: ThreadMessage) => this.#receive(m));
    this.#worker.on("error", (err) => this.#fail(err));
    this.#exited = new Promise<void>((resolve) => {
      this.#worker.once("exit", (code) => {
        this.#fail(new Error(`the store thread exited (code ${code})`));
        resolve();
      });
    });
    this.events = this.#eventLog();
    this.queues = this.#deliveryQueues();
    this.state = this.#stateStore();
  }

  #receive(m: ThreadMessage): void {
    if ("replies" in m) {
      for (const [id, ok, value] of m.replies) {
        const p = this.#pending.get(id);
        if (p === undefined) continue;
        this.#pending.delete(id);
        if (ok === 1) p.resolve(p.unpack === undefined ? value : p.unpack(value as never));
        else p.reject(toError(value as SerializedError));
      }
      if (this.#pending.size === 0 && this.#referenced && this.#closing === undefined) {
        this.#referenced = false;
        this.#worker.unref();
      }
    } else if ("work" in m) {
      // Deferred one turn so that a worker whose lease() just resolved empty is parked in waitForWork() by then.
      setImmediate(() => this.#signal.notify());
    }
  }

  /** The thread died (or exited after close): every pending call fails, later calls fail at once. */
  #fail(cause: Error): void {
    this.#failure ??= this.#closed
      ? new SluiceError(ErrorCode.Closed, `sqlite store ${this.path} is closed`)
      : new SluiceError(ErrorCode.StoreUnavailable, `sqlite store ${this.path}: ${cause.message}`, { cause });
    for (const p of this.#pending.values()) p.reject(this.#failure);
    this.#pending.clear();
    this.#signal.notify();
  }

  #call<T>(op: string, args: unknown[], unpack?: (value: never) => T): Promise<T> {
    if (this.#closing !== undefined || this.#failure !== undefined) {
      return Promise.reject(this.#failure ?? new SluiceError(ErrorCode.Closed, `sqlite store ${this.path} is closed`));
    }
    return this.#request(op, args, unpack);
  }

  #request<T>(op: string, args: unknown[], unpack?: (value: never) => T): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject, unpack });
      this.#outbox.push([id, op, ...args]);
      if (!this.#referenced) {
        // A pending call keeps the process alive, as an in-flight I/O would.
        this.#referenced = true;
        this.#worker.ref();
      }
      if (!this.#sendScheduled) {
        this.#sendScheduled = true;
        queueMicrotask(() => this.#send());
      }
    });
  }

  #send(): void {
    this.#sendScheduled = false;
    const requests = this.#outbox;
    this.#outbox = [];
    if (this.#failure !== undefined) return;
    this.#worker.postMessage(requests);
  }

  checkpointStats(): Promise<CheckpointStats | undefined> {
    if (this.#closing !== undefined) return Promise.resolve({ passive: 0, restart: 0, truncate: 0, busy: 0, lastError: "closed" });
    return this.#call("checkpointStats", []);
  }

  /** Waits for the thread to commit every queued write and close the database, then for it to exit. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      // Referenced until the thread has exited: close() is pending work.
      this.#referenced = true;
      this.#worker.ref();
      if (this.#failure === undefined) {
        try {
          await this.#request("close", []);
        } catch {
          // The thread died: nothing left to close but the worker.
        }
      }
      this.#closed = true;
      await this.#exited;
      releaseSignal(this.path);
      this.#signal.notify();
    })();
    return this.#closing;
  }

  #eventLog(): EventLog {
    return {
      append: (entries: AppendEntry[], { now, dedupeWindowMs }) => {
        if (entries.length === 0) return Promise.resolve([]);
        return this.#call("append", [packEntries(entries), now, dedupeWindowMs], unpackAppendResults);
      },
      read: (bus, range) => this.#call("read", [bus, range]),
      trim: (bus, beforeAt) => this.#call("trim", [bus, beforeAt]),
    };
  }

  #deliveryQueues(): DeliveryQueues {
    return {
      enqueue: (deliveries, options) => {
        if (deliveries.length === 0) return Promise.resolve();
        return this.#call("enqueue", [deliveries, options]);
      },
      lease: (request) => this.#call("lease", packLeaseRequest(request), unpackLeases),
      ack: (leases) => {
        if (leases.length === 0) return Promise.resolve({ lost: [] });
        const ids: string[] = new Array(leases.length);
        const tokens: string[] = new Array(leases.length);
        leases.forEach((l, i) => {
          ids[i] = l.deliveryId;
          tokens[i] = l.token;
        });
        return this.#call("ack", [ids, tokens]);
      },
      retry: (lease, options) => this.#call("retry", [ref(lease), options]),
      deadLetter: (lease, options) => this.#call("deadLetter", [ref(lease), options]),
      extend: (lease, options) => this.#call("extend", [ref(lease), options]),
      stats: (queues, options) => this.#call("stats", [queues, options]),
      listDead: (queue, options) => this.#call("listDead", [queue, options]),
      getDead: (deliveryId) => this.#call("getDead", [deliveryId]),
      redrive: (queue, options) => this.#call("redrive", [queue, options]),
      purgeDead: (queue, options) => this.#call("purgeDead", [queue, options]),
      waitForWork: (signal) => (this.#closing !== undefined || this.#failure !== undefined ? Promise.resolve() : this.#signal.wait(signal)),
    };
  }

  #stateStore(): StateStore {
    return {
      get: (namespace, key, options) => this.#call("get", [namespace, key, options]),
      put: (namespace, key, value, options) => this.#call("put", [namespace, key, value, options]),
      putIfAbsent: (namespace, key, value, options) => this.#call("putIfAbsent", [namespace, key, value, options]),
      compareAndSet: (namespace, key, expected, value, options) =>
        this.#call("compareAndSet", [namespace, key, expected, value, options]),
      delete: (namespace, key) => this.#call("delete", [namespace, key]),
      list: (namespace, options) => this.#call("list", [namespace, options]),
    };
  }
}

/** Only the two fields the thread needs: a caller's lease object may carry more (and need not be cloneable). */
function ref(lease: Pick<Lease, "deliveryId" | "token">): Pick<Lease, "deliveryId" | "token"> {
  return { deliveryId: lease.deliveryId, token: lease.token };
}

/** Starts the store thread on `options.path` (absolute) and resolves once it has opened and migrated the database. */
export function openThreadedSqliteStore(options: SqliteStoreOptions): Promise<SqliteStore> {
  return new Promise<SqliteStore>((resolve, reject) => {
    const start = threadStart();
    const worker = new Worker(start.entry, {
      eval: start.eval,
      workerData: { ...options, thread: false, ...(start.bootstrap === undefined ? {} : { bootstrap: start.bootstrap }) },
      execArgv: [],
    });
    const onExit = (code: number): void => {
      reject(new SluiceError(ErrorCode.StoreUnavailable, `sqlite store ${options.path}: the store thread exited while opening (code ${code})`));
    };
    const onError = (err: Error): void => {
      reject(new SluiceError(ErrorCode.StoreUnavailable, `sqlite store ${options.path}: ${err.message}`, { cause: err }));
    };
    worker.once("exit", onExit);
    worker.once("error", onError);
    worker.once("message", (m: ThreadMessage) => {
      worker.off("exit", onExit);
      worker.off("error", onError);
      if ("openError" in m) {
        reject(toError(m.openError));
        return;
      }
      resolve(new ThreadedSqliteStore(worker, options.path));
    });
  });
}
