/** Options of the outbox relay sources, validated without I/O. */
import { parseDuration } from "../../util/duration.ts";
import type { SluiceError } from "../../errors.ts";
import type { ProblemSink } from "../source.ts";

export interface OutboxOptions {
  /** `postgres://…` for postgres-outbox, a file path for sqlite-outbox. */
  target: string;
  table: string;
  bus: string;
  /** How often the table is read when no wakeup came (PostgreSQL: LISTEN/NOTIFY wakes it sooner). */
  pollMs: number;
  /** Rows published per round. */
  batchSize: number;
}

const tableName = /^[a-z_][a-z0-9_]{0,62}$/;

export function validateOutbox(flavour: "postgres" | "sqlite") {
  const targetKey = flavour === "postgres" ? "url" : "path";
  const keys = [targetKey, "table", "bus", "pollInterval", "batchSize"];
  return (_name: string, o: Record<string, unknown>, key: string, problems: ProblemSink): OutboxOptions | undefined => {
    let bad = false;
    const add = (k: string, message: string, fix?: string) => {
      bad = true;
      problems.add(k, message, fix);
    };
    problems.unknownKeys(o, keys, key);
    const target = o[targetKey];
    if (flavour === "postgres" && (typeof target !== "string" || !/^postgres(?:ql)?:\/\//.test(target))) {
      add(`${key}.url`, target === undefined ? "is missing" : "must be a postgres:// URL", 'write url: "postgres://user@host:5432/app"');
    }
    if (flavour === "sqlite" && (typeof target !== "string" || target === "")) {
      add(`${key}.path`, target === undefined ? "is missing" : "must be a file path", 'write path: "./data/app.db"');
    }
    if (o.table !== undefined && (typeof o.table !== "string" || !tableName.test(o.table))) add(`${key}.table`, "must be 1-63 lower-case letters, digits or _");
    if (o.bus !== undefined) problems.busRef(o.bus, `${key}.bus`);
    let pollMs = flavour === "postgres" ? 1_000 : 100;
    if (o.pollInterval !== undefined) {
      try {
        pollMs = parseDuration(o.pollInterval, `${key}.pollInterval`);
        if (pollMs < 10) add(`${key}.pollInterval`, "must be at least 10ms");
      } catch (err) {
        add((err as SluiceError).path ?? `${key}.pollInterval`, (err as Error).message);
      }
    }
    const batchSize = o.batchSize ?? 500;
    if (typeof batchSize !== "number" || !Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) add(`${key}.batchSize`, "must be a whole number from 1 to 10000");
    if (bad) return undefined;
    return {
      target: target as string,
      table: typeof o.table === "string" ? o.table : "sluice_outbox",
      bus: typeof o.bus === "string" ? o.bus : "default",
      pollMs,
      batchSize: batchSize as number,
    };
  };
}
