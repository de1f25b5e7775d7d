import { test } from "node:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSqliteStore } from "../../src/store/sqlite/index.ts";
import { consumerCrash, publisherCrash, type CrashTarget } from "../../src/store/crash/harness.ts";

const sqliteTarget = (t: { after(fn: () => void): void }): CrashTarget => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-crash-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "data.db");
  return { url: `sqlite:${path}`, open: () => createSqliteStore({ path }) };
};

test("sqlite store crash - every acknowledged append survives SIGKILL of the publisher, with its deliveries", async (t) => {
  const result = await publisherCrash(sqliteTarget(t), { iterations: 5 });
  t.diagnostic(`acknowledged ${result.acked} events, ${result.stored} in the log`);
});

test("sqlite store crash - SIGKILLed consumers leave every delivery acked or leasable again", async (t) => {
  const result = await consumerCrash(sqliteTarget(t), { iterations: 3 });
  t.diagnostic(`acked ${result.acked}, in flight at the kills ${result.inFlightAtKill}, leasable after ${result.drained}`);
});
