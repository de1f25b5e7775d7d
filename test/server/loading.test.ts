/**
 * Loading an app's functions: what `sluice dev` waits for before it is ready. The checks are structural (how many
 * processes and builds loading takes, which bundles a restart reuses), not timed, so a loaded machine cannot make
 * them flaky; the times are printed for the record.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import type { ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { listFunctionFiles } from "../../src/server/load-app.ts";
import { createRuntime, type Runtime } from "../../src/runtime/runtime.ts";

const shopFunctions = fileURLToPath(new URL("../../examples/shop/functions", import.meta.url));
const functionApi = fileURLToPath(new URL("../../src/runtime/function-api.ts", import.meta.url));

/** Child processes and worker threads started while `fn` runs (diagnostics channels of node:child_process and node:worker_threads). */
async function counting<T>(fn: () => Promise<T>): Promise<{ value: T; children: string[][]; workers: number; ms: number }> {
  const procs: ChildProcess[] = [];
  let workers = 0;
  // Published when the ChildProcess is constructed, before it spawns: read its arguments afterwards.
  const onChild = (m: unknown) => procs.push((m as { process: ChildProcess }).process);
  const onWorker = () => workers++;
  subscribe("child_process", onChild);
  subscribe("worker_threads", onWorker);
  const t0 = performance.now();
  try {
    const value = await fn();
    const ms = Math.round(performance.now() - t0);
    return { value, children: procs.map((p) => [...p.spawnargs]), workers, ms };
  } finally {
    unsubscribe("child_process", onChild);
    unsubscribe("worker_threads", onWorker);
  }
}

const cacheFiles = (dir: string, prefix: string) =>
  readdirSync(dir)
    .filter((n) => n.startsWith(prefix))
    .sort()
    .map((n) => `${n}@${statSync(join(dir, n)).mtimeMs}`);

const load = (files: string[], cacheDir: string) => createRuntime({ functions: files.map((file) => ({ file })), emit: async () => undefined, cacheDir });

test("server loading - the shop's 10 functions load with one describe process, and a restart reuses every bundle", async () => {
  const cacheDir = mkdtempSync(join(tmpdir(), "sluice-load-"));
  const files = listFunctionFiles(shopFunctions);
  assert.equal(files.length, 10);
  let runtime: Runtime | undefined;
  try {
    const cold = await counting(() => load(files, cacheDir));
    runtime = cold.value;
    assert.equal(runtime.functions().length, 10);
    const describers = cold.children.filter((args) => args.some((a) => a.includes("describe-")));
    const others = cold.children.filter((args) => !describers.includes(args) && !args.some((a) => a.includes("esbuild")));
    assert.equal(describers.length, 1, `one describe process for all files, got ${describers.length}`);
    assert.deepEqual(others, [], "no other child process while loading");
    // Functions scale from zero: loading starts no function instance. (The runtime's one standby worker, a
    // generic thread for the first cold start, is not an instance and is counted apart.)
    assert.equal(runtime.metrics().instances.total, 0, "no function instance starts while loading");
    assert.ok(cold.workers <= 1, `at most the standby worker thread starts while loading, got ${cold.workers}`);
    const bundles = cacheFiles(cacheDir, "fn-");
    const manifests = cacheFiles(cacheDir, "manifest-");
    assert.equal(bundles.length, 10);
    assert.equal(manifests.length, 10);
    await runtime.close();
    runtime = undefined;

    const warm = await counting(() => load(files, cacheDir));
    runtime = warm.value;
    assert.equal(runtime.functions().length, 10);
    assert.equal(warm.children.filter((args) => args.some((a) => a.includes("describe-"))).length, 1);
    assert.deepEqual(cacheFiles(cacheDir, "manifest-"), manifests, "a restart rewrites no manifest (no file was rebuilt)");
    assert.deepEqual(cacheFiles(cacheDir, "fn-").map((f) => f.split("@")[0]), bundles.map((f) => f.split("@")[0]), "the same bundles, none added");
    console.log(`# shop functions: cold load ${cold.ms} ms, warm load (cached bundles) ${warm.ms} ms`);
  } finally {
    await runtime?.close();
    rmSync(cacheDir, { recursive: true, force: true });
  }
});

function writeFn(dir: string, name: string, top = "", body = "return 1;"): string {
  const file = join(dir, `${name}.ts`);
  writeFileSync(file, `import { defineFunction } from ${JSON.stringify(functionApi)};\n${top}\nexport default defineFunction({ name: ${JSON.stringify(name)}, async handler() { ${body} } });\n`);
  return file;
}

test("server loading - an edited file is rebuilt and runs its new code; an unchanged one keeps its bundle", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-load-"));
  const cacheDir = join(dir, "cache");
  const a = writeFn(dir, "a", "", "return 'a1';");
  const b = writeFn(dir, "b", "", "return 'b1';");
  let runtime: Runtime | undefined;
  try {
    runtime = await load([a, b], cacheDir);
    const before = cacheFiles(cacheDir, "manifest-");
    await runtime.close();
    writeFn(dir, "a", "", "return 'a2';");
    runtime = await load([a, b], cacheDir);
    const ev = { specversion: "1.0" as const, id: "1", source: "t", type: "t" };
    assert.equal(await runtime.invoke("a", ev), "a2");
    assert.equal(await runtime.invoke("b", ev), "b1");
    const after = cacheFiles(cacheDir, "manifest-");
    assert.equal(after.filter((m) => before.includes(m)).length, 1, "b's manifest is untouched, a's rewritten");
    assert.equal(cacheFiles(cacheDir, "fn-a-").length, 2, "a has a new bundle (the old one stays for other processes)");
    assert.equal(cacheFiles(cacheDir, "fn-b-").length, 1);
  } finally {
    await runtime?.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("server loading - a file that kills the shared describe process or does not compile is named in the error", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-load-"));
  try {
    const good = writeFn(dir, "good");
    const exits = writeFn(dir, "exits", "process.exit(3);");
    await assert.rejects(load([good, exits, writeFn(dir, "other")], join(dir, "cache")), (err: Error) => {
      assert.match(err.message, /exits\.ts: function file failed to load: .*code 3/);
      return true;
    });
    const broken = join(dir, "broken.ts");
    writeFileSync(broken, "export default {{{;\n");
    await assert.rejects(load([good, broken], join(dir, "cache")), /function file .*broken\.ts does not compile/);
    const notFn = join(dir, "not-fn.ts");
    writeFileSync(notFn, "export default { name: 'x' };\n");
    await assert.rejects(load([good, notFn], join(dir, "cache")), /not-fn\.ts: function file failed to load: the module's default export is not a defineFunction/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("server loading - function files reached through a symlinked folder load (esbuild reports real paths)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-load-"));
  let runtime: Runtime | undefined;
  try {
    const real = join(dir, "real");
    mkdirSync(real);
    writeFn(real, "one", "", "return 'one';");
    writeFn(real, "two", "", "return 'two';");
    symlinkSync(real, join(dir, "link"));
    runtime = await load([join(dir, "link", "one.ts"), join(dir, "link", "two.ts")], join(dir, "cache"));
    assert.equal(await runtime.invoke("two", { specversion: "1.0", id: "1", source: "t", type: "t" }), "two");
  } finally {
    await runtime?.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
