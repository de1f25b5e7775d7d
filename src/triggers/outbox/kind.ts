/**
 * The outbox relay source kinds: `{ kind: "postgres-outbox", url }` and `{ kind: "sqlite-outbox", path }`
 * publish what `sluice/outbox`'s `enqueue` wrote, after its transaction committed.
 */
import type { SourceKind } from "../source.ts";
import { validateOutbox, type OutboxOptions } from "./options.ts";

export const pgOutboxSource: SourceKind<OutboxOptions> = {
  kind: "postgres-outbox",
  validate: validateOutbox("postgres"),
  async create(name, options) {
    const [{ OutboxRelay }, { openPgOutbox }] = await Promise.all([import("./relay.ts"), import("./pg-reader.ts")]);
    return new OutboxRelay(name, "postgres-outbox", options, () => openPgOutbox(options.target, options.table));
  },
};

export const sqliteOutboxSource: SourceKind<OutboxOptions> = {
  kind: "sqlite-outbox",
  validate: validateOutbox("sqlite"),
  async create(name, options) {
    const [{ OutboxRelay }, { openSqliteOutbox }] = await Promise.all([import("./relay.ts"), import("./sqlite-reader.ts")]);
    return new OutboxRelay(name, "sqlite-outbox", options, () => openSqliteOutbox(options.target, options.table));
  },
};
