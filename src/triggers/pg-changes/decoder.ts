/**
 * pgoutput messages to transactions of change events. Changes are held until their transaction's commit, so
 * only committed changes are published (pgoutput sends nothing of a rolled-back transaction anyway, but a
 * transaction's changes are published, and confirmed, as one unit).
 */
import { changeEvent, commitTimeIso, type ChangeEvent, type Relation, type TxInfo } from "./events.ts";

export interface CommittedTx {
  events: ChangeEvent[];
  /** The end of the commit record: confirming it tells PostgreSQL this transaction is done. */
  endLsn: string;
}

/** The parts of pg-logical-replication's pgoutput message types used here. */
export type PgoutputMessage =
  | { tag: "begin"; commitLsn: string | null; commitTime: bigint; xid: number }
  | { tag: "commit"; commitLsn: string | null; commitEndLsn: string | null; commitTime: bigint }
  | { tag: "insert"; relation: Relation; new: Record<string, unknown> }
  | { tag: "update"; relation: Relation; key: Record<string, unknown> | null; old: Record<string, unknown> | null; new: Record<string, unknown> }
  | { tag: "delete"; relation: Relation; key: Record<string, unknown> | null; old: Record<string, unknown> | null }
  | { tag: "truncate"; relations: Relation[] }
  | { tag: "relation" | "type" | "origin" | "message" };

export class ChangeDecoder {
  #tx: (TxInfo & { events: ChangeEvent[] }) | undefined;

  constructor(readonly source: string) {}

  /** Feeds one message; returns the transaction its commit completes. */
  push(lsn: string, msg: PgoutputMessage): CommittedTx | undefined {
    switch (msg.tag) {
      case "begin":
        this.#tx = { commitLsn: msg.commitLsn ?? lsn, xid: msg.xid, commitTime: commitTimeIso(msg.commitTime), events: [] };
        return undefined;
      case "insert":
        this.#add("insert", msg.relation, lsn, null, msg.new);
        return undefined;
      case "update":
        this.#add("update", msg.relation, lsn, msg.old ?? msg.key, msg.new);
        return undefined;
      case "delete":
        this.#add("delete", msg.relation, lsn, msg.old ?? msg.key, null);
        return undefined;
      case "truncate":
        for (const relation of msg.relations) this.#add("truncate", relation, lsn, null, null);
        return undefined;
      case "commit": {
        const tx = this.#tx;
        this.#tx = undefined;
        if (!tx) throw new Error(`commit at ${lsn} without a begin`);
        return { events: tx.events, endLsn: msg.commitEndLsn ?? lsn };
      }
      default:
        return undefined;
    }
  }

  #add(op: "insert" | "update" | "delete" | "truncate", relation: Relation, lsn: string, before: Record<string, unknown> | null, after: Record<string, unknown> | null): void {
    const tx = this.#tx;
    if (!tx) throw new Error(`${op} at ${lsn} outside a transaction`);
    tx.events.push(changeEvent(this.source, tx, tx.events.length, op, relation, lsn, before, after));
  }
}
