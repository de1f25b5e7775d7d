import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createRuntime } from "../../src/runtime/runtime.ts";
import type { Runtime } from "../../src/runtime/runtime-types.ts";
import { event, noEmit, tempDir, within, writeFunction } from "./helpers.ts";

test("runtime reload - new invocations get the new code, in-flight ones finish on the old, none dropped", async () => {
  const dir = tempDir();
  const file = writeFunction(dir, "versioned", "concurrency: 4,", `await sleep(data.ms ?? 0); return "v1";`);
  const runtime = await createRuntime({ functions: [{ file }], emit: noEmit });
  try {
    assert.equal(await runtime.invoke("versioned", event("x")), "v1");
    // Slow v1 invocations are in flight while the file changes.
    const inflight = Array.from({ length: 3 }, () => runtime.invoke("versioned", event("x", { ms: 400 })));
    writeFileSync(file, readFileSync(file, "utf8").replace('return "v1"', 'return "v2"'));
    await runtime.reload(file);
    assert.equal(runtime.metrics().functions.versioned!.version, 2);
    // A steady stream across the switch: every event answered, first by v1 (in flight), then by v2.
    const after = await Promise.all(Array.from({ length: 20 }, () => runtime.invoke("versioned", event("x"))));
    assert.deepEqual(await Promise.all(inflight), ["v1", "v1", "v1"]);
    assert.deepEqual(after, Array(20).fill("v2"));
    const m = runtime.metrics().functions.versioned!;
    assert.equal(m.failures, 0);
    assert.equal(m.successes, 24);
    // Old-version instances are gone once their work finished.
    await within(
      new Promise<void>((resolve) => {
        const check = () => (runtime.metrics().functions.versioned!.instances.busy === 0 ? resolve() : setImmediate(check));
        check();
      }),
      5000,
    );
  } finally {
    await runtime.close();
  }
});

test("runtime reload - a file watcher reloads on change; a broken new version keeps the old one serving", async () => {
  const dir = tempDir();
  const file = writeFunction(dir, "watched", "", `return "one";`);
  const runtime = await createRuntime({ functions: [{ file }], emit: noEmit, watch: true });
  try {
    assert.equal(await runtime.invoke("watched", event("x")), "one");
    const reloaded = new Promise<void>((resolve) => {
      const check = () => (runtime.metrics().functions.watched!.version === 2 ? resolve() : setTimeout(check, 20));
      check();
    });
    writeFileSync(file, readFileSync(file, "utf8").replace('return "one"', 'return "two"'));
    await within(reloaded, 10_000, "the watcher to reload");
    assert.equal(await runtime.invoke("watched", event("x")), "two");

    writeFileSync(file, readFileSync(file, "utf8").replace('return "two";', 'return "three" +;'));
    await assert.rejects(runtime.reload(file), { code: "E_CONFIG_INVALID" });
    assert.equal(await runtime.invoke("watched", event("x")), "two", "still the last good version");
  } finally {
    await runtime.close();
  }
});

/** Saves as editors that save atomically do: a temporary file renamed over the original (a new inode each time). */
function saveAtomically(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

function versionReaches(runtime: Runtime, name: string, version: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const check = () => ((runtime.metrics().functions[name]?.version ?? 0) >= version ? resolve() : setTimeout(check, 20));
    check();
  });
}

test("runtime reload - the watcher survives atomic saves, one after another", async () => {
  const dir = tempDir();
  const file = writeFunction(dir, "atomic", "", `return "one";`);
  const runtime = await createRuntime({ functions: [{ file }], emit: noEmit, watch: true });
  try {
    for (const [n, word] of [[2, "two"], [3, "three"], [4, "four"]] as const) {
      const before = readFileSync(file, "utf8");
      saveAtomically(file, before.replace(/return "\w+"/, `return "${word}"`));
      await within(versionReaches(runtime, "atomic", n), 10_000, `reload after atomic save ${n - 1}`);
      assert.equal(await runtime.invoke("atomic", event("x")), word);
    }
  } finally {
    await runtime.close();
  }
});

test("runtime reload - editing a file the function imports reloads it", async () => {
  const dir = tempDir();
  mkdirSync(join(dir, "lib"));
  const lib = join(dir, "lib", "greeting.ts");
  writeFileSync(lib, `export const greeting = "hello";\n`);
  const file = writeFunction(dir, "imports", "", `const { greeting } = await import("./lib/greeting.ts"); return greeting;`);
  const runtime = await createRuntime({ functions: [{ file }], emit: noEmit, watch: true });
  try {
    assert.equal(await runtime.invoke("imports", event("x")), "hello");
    saveAtomically(lib, `export const greeting = "bonjour";\n`);
    await within(versionReaches(runtime, "imports", 2), 10_000, "the reload after the imported file changed");
    assert.equal(await runtime.invoke("imports", event("x")), "bonjour");
  } finally {
    await runtime.close();
  }
});
