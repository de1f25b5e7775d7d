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
  skip: skip ? [{ reason: skip, tests: ["*"] }] : [],
});
