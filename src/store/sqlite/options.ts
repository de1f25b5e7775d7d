/** The SQLite store's options and public type. */
import type { StorageBackend } from "../contract.ts";
import type { CheckpointOptions, CheckpointStats } from "./checkpointer.ts";

export interface SqliteStoreOptions {
  /** Database file; its directory is created when missing. */
  path: string;
  /**
   * `normal` (default): acknowledged writes survive a crash of the process, not a power loss.
   * `full`: fsync on every (group) commit, acknowledged writes survive a power loss too.
   */
  synchronous?: "normal" | "full";
  /** How long a write waits for another connection's lock before failing with E_STORE_UNAVAILABLE. Default 5000. */
  busyTimeoutMs?: number;
  /**
   * WAL checkpoints run on a worker thread with its own connection (see checkpointer.ts); `false` leaves them to
   * SQLite's automatic checkpoint inside the committing call (every ~40 MB of WAL), on the writer's thread.
   */
  checkpoint?: CheckpointOptions | false;
}

/** The SQLite `StorageBackend`. Create it with `createSqliteStore`. */
export interface SqliteStore extends StorageBackend {
  readonly kind: "sqlite";
  /** Absolute path of the database file. */
  readonly path: string;
  /** Counters of the checkpointer thread; undefined with `checkpoint: false`. */
  checkpointStats(): Promise<CheckpointStats | undefined>;
}
