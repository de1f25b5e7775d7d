/**
 * The SQLite store thread: runs a `LocalSqliteStore` (the group-commit engine of store.ts) for the proxy in
 * thread-client.ts. Every request of a message is started at once, so a message's writes (and those of every other
 * message received before the next `setImmediate`) share one group commit; replies go back in one message per
 * settled batch, after the commit. better-sqlite3 is synchronous, so this thread is where the database's CPU time goes.
 */
import { parentPort, workerData } from "node:worker_threads";
import { SluiceError } from "../../errors.ts";
import type { Lease } from "../contract.ts";
import {
  packAppendResults,
  packLeases,
  unpackEntries,
  unpackLeaseRequest,
  type Reply,
  type Request,
  type SerializedError,
  type ThreadMessage,
} from "./protocol.ts";
import { openLocalSqliteStore, type LocalSqliteStore, type SqliteStoreOptions } from "./store.ts";

const port = parentPort;
if (port === null) throw new Error("store-thread.ts runs as a worker thread");

function serialize(err: unknown): SerializedError {
  if (err instanceof SluiceError) return err.toJSON();
  return { code: "E_STORE_UNAVAILABLE", message: `sqlite store thread: ${err instanceof Error ? err.message : String(err)}`, retryable: false };
}

function post(message: ThreadMessage): void {
  (port as NonNullable<typeof port>).postMessage(message);
}

let store: LocalSqliteStore;
try {
  store = openLocalSqliteStore({ ...(workerData as SqliteStoreOptions), thread: false });
} catch (err) {
  post({ openError: serialize(err) });
  port.close();
  process.exit(0);
}

// Wake-ups: the local store signals work one turn after a commit that created some; pass it on.
const stopWatching = new AbortController();
void (async () => {
  while (!stopWatching.signal.aborted) {
    await store.queues.waitForWork(stopWatching.signal);
    if (!stopWatching.signal.aborted) post({ work: true });
  }
})();

let outbox: Reply[] = [];
let sendScheduled = false;

function send(): void {
  sendScheduled = false;
  const replies = outbox;
  outbox = [];
  post({ replies });
}

function settle(id: number, promise: Promise<unknown>, pack?: (value: never) => unknown): void {
  promise.then(
    (value) => reply([id, 1, pack === undefined ? value : pack(value as never)]),
    (err: unknown) => reply([id, 0, serialize(err)]),
  );
}

function reply(r: Reply): void {
  outbox.push(r);
  if (!sendScheduled) {
    sendScheduled = true;
    // After the other replies settled by the same commit (their reactions are already queued).
    queueMicrotask(send);
  }
}

type Call = (args: unknown[]) => Promise<unknown>;
const s = store;
const calls: Record<string, Call> = {
  append: (a) => s.events.append(unpackEntries(a[0] as unknown[]), { now: a[1] as number, dedupeWindowMs: a[2] as number }),
  read: (a) => s.events.read(a[0] as string, a[1] as never),
  trim: (a) => s.events.trim(a[0] as string, a[1] as number),
  enqueue: (a) => s.queues.enqueue(a[0] as never, a[1] as never),
  lease: (a) => s.queues.lease(unpackLeaseRequest(a)),
  ack: (a) => {
    const ids = a[0] as string[];
    const tokens = a[1] as string[];
    return s.queues.ack(ids.map((deliveryId, i) => ({ deliveryId, token: tokens[i] as string })));
  },
  retry: (a) => s.queues.retry(a[0] as never, a[1] as never),
  deadLetter: (a) => s.queues.deadLetter(a[0] as never, a[1] as never),
  extend: (a) => s.queues.extend(a[0] as never, a[1] as never),
  stats: (a) => s.queues.stats(a[0] as never, a[1] as never),
  listDead: (a) => s.queues.listDead(a[0] as string, a[1] as never),
  getDead: (a) => s.queues.getDead(a[0] as string),
  redrive: (a) => s.queues.redrive(a[0] as string, a[1] as never),
  purgeDead: (a) => s.queues.purgeDead(a[0] as string, a[1] as never),
  get: (a) => s.state.get(a[0] as string, a[1] as string, a[2] as never),
  put: (a) => s.state.put(a[0] as string, a[1] as string, a[2] as string, a[3] as never),
  putIfAbsent: (a) => s.state.putIfAbsent(a[0] as string, a[1] as string, a[2] as string, a[3] as never),
  compareAndSet: (a) => s.state.compareAndSet(a[0] as string, a[1] as string, a[2] as string, a[3] as string, a[4] as never),
  delete: (a) => s.state.delete(a[0] as string, a[1] as string),
  list: (a) => s.state.list(a[0] as string, a[1] as never),
  checkpointStats: () => s.checkpointStats(),
};
const packers: Record<string, (value: never) => unknown> = {
  append: packAppendResults,
  lease: (leases: Lease[]) => packLeases(leases),
};

let closing = false;

port.on("message", (requests: Request[]) => {
  for (const [id, op, ...args] of requests) {
    if (op === "close") {
      if (closing) continue;
      closing = true;
      stopWatching.abort();
      // Waits for this thread's queued writes (every request before this one), then closes the connections.
      void store.close().then(
        () => {
          reply([id, 1, undefined]);
          queueMicrotask(() => {
            post({ closed: true });
            port.close();
          });
        },
        (err: unknown) => reply([id, 0, serialize(err)]),
      );
      continue;
    }
    const call = calls[op];
    if (call === undefined) {
      reply([id, 0, { code: "E_STORE_UNAVAILABLE", message: `sqlite store thread: unknown operation ${op}`, retryable: false }]);
      continue;
    }
    let promise: Promise<unknown>;
    try {
      promise = call(args);
    } catch (err) {
      promise = Promise.reject(err);
    }
    settle(id, promise, packers[op]);
  }
});

post({ ready: true });
