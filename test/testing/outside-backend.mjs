// A backend's test file as it would be written outside this repository: plain JavaScript on the compiled package,
// importing `sluice` and `sluice/testing` through the package's exports (self-reference), no TypeScript loader.
// Run by test/testing/exports.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as testing from "sluice/testing";
import { createSqliteStore } from "sluice";

function tempFile() {
  const dir = mkdtempSync(join(tmpdir(), "sluice-outside-"));
  return { path: join(dir, "data.db"), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

test("outside - sluice/testing exports the conformance suite and the crash harness", () => {
  for (const name of ["runStoreConformance", "publisherCrash", "consumerCrash", "drain", "crashChildArgs", "runChildUntilKilled"]) {
    assert.equal(typeof testing[name], "function", name);
  }
  assert.deepEqual(testing.crashQueues, ["crash-a", "crash-b"]);
  assert.ok(testing.crashChildArgs({ url: "sqlite:x" }, "publish")[0].endsWith("/dist/store/crash/child.js"), "the child runs from dist");
});

testing.runStoreConformance({
  name: "outside",
  async open() {
    const { path, remove } = tempFile();
    return { store: await createSqliteStore({ path }), reopen: () => createSqliteStore({ path }), cleanup: async () => remove() };
  },
});

test("outside - the crash harness runs a publisher from dist and finds every acknowledged append", async (t) => {
  const { path, remove } = tempFile();
  t.after(remove);
  const result = await testing.publisherCrash({ url: `sqlite:${path}`, open: () => createSqliteStore({ path }) }, { iterations: 1 });
  assert.ok(result.acked > 0 && result.stored >= result.acked);
});
