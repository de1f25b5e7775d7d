/** `sluice runs list|show|cancel` against a real server: tables, --json, a cancel that compensates, exit codes. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ensureBuilt, eventually, spawnSluice } from "../helpers/sluice-process.ts";
import { publish, start, writeApp } from "./app.ts";

/** The CLI as a child process, awaited (the server runs in this process: a blocking spawn would stall it). */
async function sluiceCli(args: string[], env: Record<string, string>) {
  const child = spawnSluice(args, env);
  const code = await child.exited;
  return { code, stdout: child.stdout(), stderr: child.stderr() };
}

test("workflows - sluice runs list, show and cancel", { timeout: 120_000 }, async () => {
  ensureBuilt();
  const app = writeApp({
    "hold.ts": `import { defineWorkflow } from \${API};
import { appendFileSync } from "node:fs";
export default defineWorkflow({
  name: "hold",
  on: { type: ["hold.start"] },
  async run(event, step) {
    await step.run("take", () => "taken", { compensate: () => { appendFileSync(\${LOG}, "given back\\n"); } });
    return step.waitForEvent("never", { type: "hold.never" });
  },
});
`,
  });
  const server = await start(app);
  try {
    await publish(server, { source: "test", type: "hold.start", data: { x: 1 } });
    const run = await eventually(async () => (await server.workflows.list({ workflow: "hold" })).find((r) => r.status === "waiting"), "a waiting run");
    const env = { SLUICE_URL: server.url };

    const list = await sluiceCli(["runs", "list", "--workflow", "hold", "--status", "waiting", "--json"], env);
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(JSON.parse(list.stdout).map((r: { runId: string }) => r.runId), [run.runId]);
    const table = await sluiceCli(["runs", "list"], env);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, new RegExp(`${run.runId}\\s+hold\\s+waiting`));

    const show = await sluiceCli(["runs", "show", run.runId], env);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /take\s+run\s+completed\s+1\s+\d+\s+"taken"\s+declared/);
    assert.match(show.stdout, /never\s+wait\s+waiting/);
    const shown = JSON.parse((await sluiceCli(["runs", "show", run.runId, "--json"], env)).stdout);
    assert.equal(shown.memo.take, "taken");

    const cancel = await sluiceCli(["runs", "cancel", run.runId], env);
    assert.equal(cancel.code, 0, cancel.stderr);
    await eventually(async () => ((await server.workflows.get(run.runId)).status === "cancelled" ? true : undefined), "cancelled");
    assert.deepEqual(app.effects(), ["given back"]);

    const missing = await sluiceCli(["runs", "show", "nope"], env);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /E_NOT_FOUND: no workflow run nope/);
    const bad = await sluiceCli(["runs", "list", "--status", "sleepy"], env);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /status "sleepy" is not one of/);
  } finally {
    await server.close();
  }
});
