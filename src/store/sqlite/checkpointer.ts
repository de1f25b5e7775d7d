/**
 * WAL checkpoints off the writer's thread.
 *
 * SQLite's automatic checkpoint runs inside the COMMIT that crosses `wal_autocheckpoint`: it copies the WAL back into
 * the database file and fsyncs it, synchronously, on the writing connection's thread (the event loop: W2's 3-76 ms p99
 * tails). The store disables it on its writing connection and runs this checkpointer instead: a worker thread with
 * its own read-only-in-practice connection that, every `intervalMs`,
 *
 * - runs `wal_checkpoint(PASSIVE)`: copies committed frames back without taking the write lock, so writers go on;
 * - when the WAL holds more than `walMaxBytes`, runs `wal_checkpoint(RESTART)`: waits (busy handler) for a gap
 *   between two write transactions, finishes the copy and makes the next writer start the WAL from its beginning.
 *   (A writer rewinds the WAL only when it starts at a moment when every frame is copied back: under load another
 *   commit always slips in after a PASSIVE checkpoint, so that moment never comes without RESTART.)
 *   Under sustained load a PASSIVE checkpoint never catches up completely (the writer appends while it copies), and
 *   SQLite only rewinds the WAL once every frame is copied back, so without this the file would grow without bound;
 * - when the WAL has not changed for `idleTicks` ticks and still has frames, runs `wal_checkpoint(TRUNCATE)` to
 *   give the file's space back (the write lock is taken while nobody writes).
 *
 * The writing connection sets `journal_size_limit` to `walMaxBytes`, so a rewound WAL is also cut back to that size,
 * and holds its group commits back for a few ms at a time while the file is past 4 × `walMaxBytes` (engine.ts
 * `#walTooLarge`): the bound holds even when this thread is starved of CPU.
 * The worker is started from source (`eval`) with no exec flags: it loads only better-sqlite3, not TypeScript tooling.
 */
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

export interface CheckpointOptions {
  /** How often the checkpointer looks at the WAL. Default 100 ms. */
  intervalMs?: number;
  /** WAL size beyond which the checkpointer restarts the WAL (taking the write lock briefly). Default 64 MiB. */
  walMaxBytes?: number;
}

export interface CheckpointStats {
  passive: number;
  restart: number;
  truncate: number;
  /** Checkpoints that found a lock held (another connection checkpointing or a RESTART timing out). */
  busy: number;
  /** Times a group commit waited because the WAL was past 4 × walMaxBytes (the checkpointer fell behind). */
  writerWaits?: number;
  /** The last unexpected error, if any. */
  lastError?: string;
}

interface WorkerInit {
  driver: string;
  path: string;
  intervalMs: number;
  walMaxBytes: number;
  busyTimeoutMs: number;
}

const source = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const stats = { passive: 0, restart: 0, truncate: 0, busy: 0 };
let db;
try {
  db = new Database(workerData.path, { timeout: workerData.busyTimeoutMs, fileMustExist: true });
} catch (err) {
  parentPort.postMessage({ type: "error", message: String(err && err.message || err) });
  process.exit(0);
}
const pageSize = db.pragma("page_size", { simple: true });
const maxFrames = Math.max(1, Math.floor(workerData.walMaxBytes / (pageSize + 24)));
const idleTicks = 5;
let lastLog = -1;
let sameFor = 0;
function checkpoint(mode) {
  const [r] = db.pragma("wal_checkpoint(" + mode + ")");
  if (r.busy) stats.busy++;
  else stats[mode.toLowerCase()]++;
  return r;
}
function tick() {
  try {
    const r = checkpoint("PASSIVE");
    // Not again while the WAL stands still (idle after a RESTART: the next writer rewinds it).
    if (r.log > maxFrames && (r.log !== lastLog || r.checkpointed < r.log)) {
      checkpoint("RESTART");
      lastLog = r.log;
      sameFor = 0;
      return;
    }
    sameFor = r.log === lastLog ? sameFor + 1 : 0;
    lastLog = r.log;
    if (r.log > 0 && sameFor >= idleTicks) {
      checkpoint("TRUNCATE");
      lastLog = -1;
      sameFor = 0;
    }
  } catch (err) {
    if (err && /^SQLITE_(BUSY|LOCKED)/.test(err.code)) stats.busy++;
    else stats.lastError = String(err && err.message || err);
  }
}
const timer = setInterval(tick, workerData.intervalMs);
parentPort.on("message", (m) => {
  if (m === "stats") parentPort.postMessage({ type: "stats", stats });
  else if (m === "close") {
    clearInterval(timer);
    db.close();
    parentPort.close();
  }
});
`;

/** Default `walMaxBytes`; the writer's `journal_size_limit` too. */
export const defaultWalMaxBytes = 64 * 1024 * 1024;

let driverPath: string | undefined;

/** A running checkpointer worker for one database file. Create with `startCheckpointer`. */
export class Checkpointer {
  readonly #worker: Worker;
  readonly #exited: Promise<void>;
  #closing: Promise<void> | undefined;
  #onStats: ((stats: CheckpointStats) => void)[] = [];
  #lastError: string | undefined;

  constructor(init: WorkerInit, onExit: (unexpected: boolean) => void) {
    this.#worker = new Worker(source, { eval: true, workerData: init, execArgv: [] });
    // A helper: it must not keep the process alive when its store is left open.
    this.#worker.unref();
    this.#worker.on("message", (m: { type: string; stats?: CheckpointStats; message?: string }) => {
      if (m.type === "stats" && m.stats) {
        const waiting = this.#onStats;
        this.#onStats = [];
        if (this.#closing === undefined) this.#worker.unref();
        for (const f of waiting) f({ ...m.stats, ...(this.#lastError === undefined ? {} : { lastError: this.#lastError }) });
      } else if (m.type === "error") {
        this.#lastError = m.message;
      }
    });
    this.#worker.on("error", (err) => {
      this.#lastError = err.message;
    });
    this.#exited = new Promise<void>((resolve) => {
      this.#worker.once("exit", () => {
        onExit(this.#closing === undefined);
        for (const f of this.#onStats) f({ passive: 0, restart: 0, truncate: 0, busy: 0, lastError: this.#lastError ?? "exited" });
        this.#onStats = [];
        resolve();
      });
    });
  }

  /** Counters of the checkpoints run so far (for tests and metrics). */
  stats(): Promise<CheckpointStats> {
    if (this.#closing) return Promise.resolve({ passive: 0, restart: 0, truncate: 0, busy: 0, lastError: "closed" });
    return new Promise((resolve) => {
      this.#onStats.push(resolve);
      this.#worker.ref();
      this.#worker.postMessage("stats");
    });
  }

  /** Stops the timer, waits for a running checkpoint, closes the connection. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (() => {
      // Held by its owner while closing: an unref'd worker would let the process exit with close() pending.
      this.#worker.ref();
      this.#worker.postMessage("close");
      return this.#exited;
    })();
    return this.#closing;
  }
}

/**
 * Starts a checkpointer for `path` (an existing WAL-mode database). `onExit(true)` is called when the worker
 * dies without being closed, so the owner can fall back to automatic checkpoints.
 */
export function startCheckpointer(
  path: string,
  options: CheckpointOptions & { busyTimeoutMs: number },
  onExit: (unexpected: boolean) => void,
): Checkpointer {
  driverPath ??= createRequire(import.meta.url).resolve("better-sqlite3");
  return new Checkpointer(
    {
      driver: driverPath,
      path,
      intervalMs: options.intervalMs ?? 100,
      walMaxBytes: options.walMaxBytes ?? defaultWalMaxBytes,
      busyTimeoutMs: options.busyTimeoutMs,
    },
    onExit,
  );
}
