import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSqliteStore } from "../../src/store/sqlite/index.ts";
import { runBusSuite } from "./bus-suite.ts";

runBusSuite({
  name: "sqlite",
  async location() {
    const dir = mkdtempSync(join(tmpdir(), "sluice-bus-"));
    const path = join(dir, "data.db");
    return {
      open: () => createSqliteStore({ path }),
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    };
  },
});
