/**
 * Options of a `postgres-changes` source, validated without I/O. Publication and slot names default to the
 * source's name (`sluice_<name>` with "-" and "." as "_"), so two sources of one app never share a slot.
 */
import { parseDuration } from "../../util/duration.ts";
import type { SluiceError } from "../../errors.ts";
import type { ProblemSink } from "../source.ts";

export interface PgChangesOptions {
  url: string;
  /** Qualified `schema.table` names, in the order given. */
  tables: { schema: string; table: string }[];
  bus: string;
  snapshot: boolean;
  slot: string;
  publication: string;
  /** How often a `pg_logical_emit_message` heartbeat is written, so an idle slot advances. */
  heartbeatMs: number;
  /** How often the confirmed position is sent and the slot's lag read. */
  statusIntervalMs: number;
  /** Slot lag above which the source is `degraded` (shown by `sluice status`). */
  lagWarnBytes: number;
}

const keys = ["url", "tables", "bus", "snapshot", "slot", "publication", "heartbeat", "statusInterval", "lagWarnBytes"];
const identifier = /^[a-z_][a-z0-9_]{0,62}$/;
const tableName = /^(?:([A-Za-z_][A-Za-z0-9_$]{0,62})\.)?([A-Za-z_][A-Za-z0-9_$]{0,62})$/;

/** `sluice_<name>`, lower case, within PostgreSQL's 63-byte identifier limit. */
export function defaultSlotName(source: string): string {
  return `sluice_${source.toLowerCase().replace(/[^a-z0-9_]/g, "_")}`.slice(0, 63);
}

export function validatePgChanges(name: string, o: Record<string, unknown>, key: string, problems: ProblemSink): PgChangesOptions | undefined {
  let bad = false;
  const add = (k: string, message: string, fix?: string) => {
    bad = true;
    problems.add(k, message, fix);
  };
  problems.unknownKeys(o, keys, key);
  if (typeof o.url !== "string" || !/^postgres(?:ql)?:\/\//.test(o.url)) {
    add(`${key}.url`, o.url === undefined ? "is missing" : "must be a postgres:// URL", 'write url: "postgres://user@host:5432/db"');
  }
  const tables: { schema: string; table: string }[] = [];
  if (!Array.isArray(o.tables) || o.tables.length === 0) {
    add(`${key}.tables`, "must be a non-empty list of table names", 'write tables: ["public.orders"]');
  } else {
    o.tables.forEach((t, i) => {
      const m = typeof t === "string" ? tableName.exec(t) : null;
      if (!m) add(`${key}.tables[${i}]`, `must be "schema.table" or "table", got ${JSON.stringify(t)}`);
      else tables.push({ schema: m[1] ?? "public", table: m[2]! });
    });
  }
  if (o.bus !== undefined) problems.busRef(o.bus, `${key}.bus`);
  if (o.snapshot !== undefined && typeof o.snapshot !== "boolean") add(`${key}.snapshot`, "must be true or false");
  for (const k of ["slot", "publication"] as const) {
    if (o[k] !== undefined && (typeof o[k] !== "string" || !identifier.test(o[k]))) {
      add(`${key}.${k}`, "must be 1-63 lower-case letters, digits or _, not starting with a digit", `write ${k}: "${defaultSlotName(name)}"`);
    }
  }
  const duration = (k: string, fallback: number, min: number): number => {
    if (o[k] === undefined) return fallback;
    try {
      const ms = parseDuration(o[k], `${key}.${k}`);
      if (ms >= min) return ms;
      add(`${key}.${k}`, `must be at least ${min}ms`);
    } catch (err) {
      add((err as SluiceError).path ?? `${key}.${k}`, (err as Error).message);
    }
    return fallback;
  };
  const heartbeatMs = duration("heartbeat", 10_000, 100);
  const statusIntervalMs = duration("statusInterval", 1_000, 50);
  const lagWarnBytes = o.lagWarnBytes ?? 1024 ** 3;
  if (typeof lagWarnBytes !== "number" || !Number.isInteger(lagWarnBytes) || lagWarnBytes < 1) add(`${key}.lagWarnBytes`, "must be a positive whole number of bytes");
  if (bad || typeof o.url !== "string") return undefined;
  return {
    url: o.url,
    tables,
    bus: typeof o.bus === "string" ? o.bus : "default",
    snapshot: o.snapshot === true,
    slot: typeof o.slot === "string" ? o.slot : defaultSlotName(name),
    publication: typeof o.publication === "string" ? o.publication : defaultSlotName(name),
    heartbeatMs,
    statusIntervalMs,
    lagWarnBytes: lagWarnBytes as number,
  };
}
