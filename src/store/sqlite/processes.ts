/**
 * Which processes have the file open, so a restart after a crash need not wait out the dead process's leases.
 *
 * Each store object registers `<host>/<pid>/<id>` in the state table when it opens and removes it on close. A
 * process killed with SIGKILL leaves its row behind; the next open on the same host finds that pid gone
 * (`process.kill(pid, 0)` answers ESRCH) and drops the row. When it found such a dead process and no live one
 * remains, every lease on the file belonged to a dead process: they are expired at once, keeping their attempt counts (so a delivery that
 * crashed its process still reaches its maximum attempts and the dead-letter queue). Rows of other hosts (a file on
 * a network share) count as alive: then leases are left to expire as usual.
 */
import type Database from "better-sqlite3";
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";

const namespace = "sluice.sqlite-processes";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM"; // exists, owned by another user
  }
}

export interface Registration {
  /** Leases of dead processes expired at open (0 when another live process has the file open). */
  reclaimedLeases: number;
  /** Removes this store object's row; call before closing the connection. */
  unregister(): void;
}

export function registerProcess(db: Database.Database, now: number): Registration {
  const host = hostname();
  const key = `${host}/${process.pid}/${randomUUID().slice(0, 8)}`;
  const open = db.transaction((): number => {
    const rows = db.prepare<[string], { key: string }>("SELECT key FROM state WHERE namespace = ?").all(namespace);
    let others = 0;
    let dead = 0;
    for (const row of rows) {
      const [rowHost, pid] = row.key.split("/");
      if (rowHost === host && pid !== undefined && !alive(Number(pid))) {
        db.prepare("DELETE FROM state WHERE namespace = ? AND key = ?").run(namespace, row.key);
        dead++;
      } else others++;
    }
    db.prepare("INSERT INTO state (namespace, key, value) VALUES (?, ?, ?)").run(namespace, key, String(now));
    // Only after a crash: leases left by a graceful close (which unregistered) are kept, as the contract says.
    if (dead === 0 || others > 0) return 0;
    // lease_until 0 is in the past on any clock: leasable now, attempt kept.
    return db.prepare("UPDATE deliveries SET lease_until = 0 WHERE token IS NOT NULL AND lease_until > 0").run().changes;
  });
  const reclaimedLeases = open.immediate();
  return {
    reclaimedLeases,
    unregister: () => {
      db.prepare("DELETE FROM state WHERE namespace = ? AND key = ?").run(namespace, key);
    },
  };
}
