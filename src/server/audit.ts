/**
 * The audit log of admin writes: who (the key's name), what (action), on what (target), how many, when. Kept in
 * the store's state (namespace `sluice.audit`, 90 days), so every node sharing the store sees one log, and
 * published as a `sluice.audit.<action>` event on the default bus, so rules can route it like any event.
 *
 * Actions: dlq.redrive, dlq.purge, replay.start, replay.cancel, function.invoke, key.create, key.revoke, target.enable.
 */
import { newEventId } from "../event/ids.ts";
import type { StateStore } from "../store/contract.ts";

export const AUDIT_NAMESPACE = "sluice.audit";
export const AUDIT_SOURCE = "sluice/admin";
const retentionMs = 90 * 24 * 60 * 60 * 1000;

export interface AuditEntry {
  id: string;
  /** ISO time. */
  time: string;
  /** The key's name; `anonymous` when auth is off (`sluice dev`, `--no-auth`). */
  key: string;
  action: string;
  target: string;
  count?: number;
}

export interface AuditLogOptions {
  state: StateStore;
  /** Publishes the `sluice.audit.*` event (absent: the CLI writing to a store directly, with no bus running). */
  publish?(bus: string, events: unknown[]): Promise<unknown>;
  onError(err: unknown, entry: AuditEntry): void;
  now?: () => number;
}

export class AuditLog {
  constructor(readonly options: AuditLogOptions) {}

  async record(key: string | undefined, action: string, target: string, count?: number): Promise<AuditEntry> {
    const at = (this.options.now ?? Date.now)();
    const entry: AuditEntry = { id: newEventId(at), time: new Date(at).toISOString(), key: key ?? "anonymous", action, target, ...(count === undefined ? {} : { count }) };
    try {
      await this.options.state.put(AUDIT_NAMESPACE, entry.id, JSON.stringify(entry), { now: at, ttlMs: retentionMs });
      await this.options.publish?.("default", [
        { specversion: "1.0", id: entry.id, source: AUDIT_SOURCE, type: `sluice.audit.${action}`, subject: target, time: entry.time, datacontenttype: "application/json", data: entry },
      ]);
    } catch (err) {
      this.options.onError(err, entry);
    }
    return entry;
  }

  /** Newest first. */
  async list(options: { limit?: number; action?: string; key?: string } = {}): Promise<AuditEntry[]> {
    const rows = await this.options.state.list(AUDIT_NAMESPACE, { now: (this.options.now ?? Date.now)() });
    const out: AuditEntry[] = [];
    for (const r of rows) {
      try {
        out.push(JSON.parse(r.value) as AuditEntry);
      } catch {
        // a damaged entry is skipped
      }
    }
    return out
      .filter((e) => (options.action === undefined || e.action === options.action) && (options.key === undefined || e.key === options.key))
      .sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0))
      .slice(0, options.limit ?? 100);
  }
}
