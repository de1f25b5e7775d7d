import { after, before } from "node:test";
import { randomUUID } from "node:crypto";
import { createTestDatabase, skipUnless } from "../helpers/services.ts";
import { runBusSuite } from "./bus-suite.ts";

const skip = await skipUnless("postgres");
let db: Awaited<ReturnType<typeof createTestDatabase>> | undefined;
if (!skip) {
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db?.drop();
  });
}

runBusSuite({
  name: "postgres",
  async location() {
    const { createPostgresStore } = await import("../../src/store/postgres/index.ts");
    // One database per file, one schema per test: tests never share tables.
    const schema = `bus_${randomUUID().replaceAll("-", "").slice(0, 20)}`;
    return {
      open: () => createPostgresStore({ url: db!.url, schema, poolSize: 4 }),
      cleanup: async () => {},
    };
  },
  skip: skip
    ? [{ reason: skip, tests: ["*"] }]
    : [
        {
          // Known gap of feat-pg (src/store/postgres/event-log.ts): a key stored exactly `dedupeWindowMs` ago is still
          // reported duplicate (>=), while the contract says the window is strictly less than dedupeWindowMs.
          reason: "postgres store: dedupe window is inclusive at its edge (contract: exclusive); reported to the lead",
          tests: ["dedupe ends with the window (injectable clock)"],
        },
      ],
});
