/**
 * Row changes as CloudEvents. One event per changed row (one per table for a truncate):
 * type `pg.<table>.<op>`, subject and partitionkey `<schema>.<table>/<primary key>` (so one row's changes reach
 * each target in commit order), id `<commit LSN>:<position in the transaction>` (a change streamed again after a
 * restart gets the same id and the bus dedupes it).
 */

export type ChangeOp = "insert" | "update" | "delete" | "truncate" | "snapshot";

export interface ChangeData {
  op: ChangeOp;
  schema: string;
  table: string;
  /** The old row as REPLICA IDENTITY allows: key columns by default, every column with FULL, null for inserts. */
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  /** The change's own WAL position (the snapshot's consistent point for snapshot rows). */
  lsn: string;
  txid: number | null;
  commitTime: string | null;
}

export interface ChangeEvent {
  specversion: "1.0";
  id: string;
  source: string;
  type: string;
  subject: string;
  partitionkey: string;
  time?: string;
  datacontenttype: "application/json";
  data: ChangeData;
}

/** What the pgoutput decoder gives for a relation (the parts used here). */
export interface Relation {
  schema: string;
  name: string;
  keyColumns: string[];
}

/** `schema.table/<key>`; a composite key joins its values with ","; a table without a key is `schema.table`. */
export function rowSubject(relation: Relation, row: Record<string, unknown> | null): string {
  const base = `${relation.schema}.${relation.name}`;
  if (!row || relation.keyColumns.length === 0) return base;
  return `${base}/${relation.keyColumns.map((c) => keyText(row[c])).join(",")}`;
}

function keyText(value: unknown): string {
  if (value instanceof Date) return value.toISOString();
  if (value === null || value === undefined) return "";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

/** Commit times come as microseconds since the Unix epoch. */
export function commitTimeIso(micros: bigint): string {
  return new Date(Number(micros / 1000n)).toISOString();
}

export interface TxInfo {
  commitLsn: string;
  xid: number;
  commitTime: string;
}

export function changeEvent(
  source: string,
  tx: TxInfo,
  position: number,
  op: ChangeOp,
  relation: Relation,
  lsn: string,
  before: Record<string, unknown> | null,
  after: Record<string, unknown> | null,
): ChangeEvent {
  const subject = op === "truncate" ? `${relation.schema}.${relation.name}` : rowSubject(relation, after ?? before);
  return {
    specversion: "1.0",
    id: `${tx.commitLsn}:${position}`,
    source,
    type: `pg.${relation.name}.${op}`,
    subject,
    partitionkey: subject,
    time: tx.commitTime,
    datacontenttype: "application/json",
    data: { op, schema: relation.schema, table: relation.name, before: plain(before), after: plain(after), lsn, txid: tx.xid, commitTime: tx.commitTime },
  };
}

/** A snapshot row: id from the snapshot's consistent point and the row's key. */
export function snapshotEvent(source: string, consistentPoint: string, relation: Relation, row: Record<string, unknown>, ordinal?: number): ChangeEvent {
  const subject = rowSubject(relation, row);
  return {
    specversion: "1.0",
    // A table without a key has one subject for all rows: its rows are told apart by their read order.
    id: `snapshot:${consistentPoint}:${subject}${ordinal === undefined ? "" : `#${ordinal}`}`,
    source,
    type: `pg.${relation.name}.snapshot`,
    subject,
    partitionkey: subject,
    datacontenttype: "application/json",
    data: { op: "snapshot", schema: relation.schema, table: relation.name, before: null, after: plain(row), lsn: consistentPoint, txid: null, commitTime: null },
  };
}

/** The decoder builds rows with a null prototype and leaves unchanged TOAST values undefined: both dropped here. */
function plain(row: Record<string, unknown> | null): Record<string, unknown> | null {
  if (!row) return null;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) {
    if (v === undefined) continue;
    out[k] = Buffer.isBuffer(v) ? `\\x${v.toString("hex")}` : v;
  }
  return out;
}
