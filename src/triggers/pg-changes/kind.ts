/**
 * The `postgres-changes` source kind: change data capture from PostgreSQL's logical replication (pgoutput).
 * `sources: { shopdb: { kind: "postgres-changes", url, tables: ["public.orders"], snapshot: true } }`.
 */
import type { SourceKind } from "../source.ts";
import { validatePgChanges, type PgChangesOptions } from "./options.ts";

export const pgChangesSource: SourceKind<PgChangesOptions> = {
  kind: "postgres-changes",
  validate: validatePgChanges,
  async create(name, options) {
    const { PgChangesSource } = await import("./source.ts");
    return new PgChangesSource(name, options);
  },
};
