import { after } from "node:test";
import { createTestDatabase, skipUnless } from "../helpers/services.ts";
import { runWorkflowSuite } from "./suite.ts";

const skip = await skipUnless("postgres");
const dbs: Awaited<ReturnType<typeof createTestDatabase>>[] = [];
after(async () => {
  for (const db of dbs) await db.drop();
});

// One database per test: the server's store creates its tables there.
runWorkflowSuite({
  name: "postgres",
  async store() {
    const db = await createTestDatabase();
    dbs.push(db);
    return db.url;
  },
  skip,
});
