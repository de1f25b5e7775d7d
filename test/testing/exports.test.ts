import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const root = fileURLToPath(new URL("../..", import.meta.url));
const script = fileURLToPath(new URL("./outside-backend.mjs", import.meta.url));

// Runs on dist/ (npm test builds first): a few conformance cases, the export check and one crash round.
test("sluice/testing - an outside package imports the suite and the harness from dist and runs them", { timeout: 120_000 }, async () => {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_NO_WARNINGS: "1" };
  // Not a subtest of this runner: the child reports on its own.
  delete env.NODE_TEST_CONTEXT;
  const pattern = "^outside - |state - put, get and delete|capabilities - ";
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ["--test", "--test-reporter=tap", `--test-name-pattern=${pattern}`, script],
    { cwd: root, env },
  ).catch((err: { stdout?: string; stderr?: string }) => {
    assert.fail(`the outside package's tests failed:\n${err.stdout ?? ""}\n${err.stderr ?? ""}`);
  });
  const pass = Number(/^# pass (\d+)$/m.exec(stdout)?.[1]);
  const fail = Number(/^# fail (\d+)$/m.exec(stdout)?.[1]);
  assert.equal(fail, 0, stdout);
  // The export check, the crash round, and the two conformance cases.
  assert.equal(pass, 4, stdout);
});
