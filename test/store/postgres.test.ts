import { after, before, test } from "node:test";
import { randomUUID } from "node:crypto";
import { runStoreConformance } from "../../src/store/conformance/index.ts";
import { createPostgresStore } from "../../src/store/postgres/index.ts";
import { createTestDatabase, skipUnless } from "../helpers/services.ts";

const skip = await skipUnless("postgres");

if (skip) {
  test("store conformance - postgres", { skip }, () => {});
} else {
  // One database per run, dropped at the end; one schema per test, so tests never see each other's rows.
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  before(async () => {
    db = await createTestDatabase();
  });
  after(() => db.drop());

  runStoreConformance({
    name: "postgres",
    async open() {
      const schema = `c_${randomUUID().replaceAll("-", "").slice(0, 20)}`;
      return {
        store: await createPostgresStore({ url: db.url, schema, poolSize: 4 }),
        reopen: () => createPostgresStore({ url: db.url, schema, poolSize: 4 }),
      };
    },
  });
}
