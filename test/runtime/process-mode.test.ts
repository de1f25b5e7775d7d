import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createRuntime } from "../../src/runtime/runtime.ts";
import { event, noEmit, tempDir, writeFunction } from "./helpers.ts";

const reader = `
  const { readFileSync } = await import("node:fs");
  try { return { ok: readFileSync(data.path, "utf8"), pid: process.pid }; }
  catch (err) { return { denied: (err as any).code, pid: process.pid }; }`;

test("runtime process mode - the permission model lets a function read its own folder only", async () => {
  const root = tempDir();
  const secretDir = join(root, "elsewhere");
  mkdirSync(secretDir);
  writeFileSync(join(secretDir, "secret.txt"), "top secret");
  const fnFile = writeFunction(root, "sandboxed", `isolation: "process",`, reader, { subdir: "sandboxed" });
  writeFileSync(join(root, "sandboxed", "own.txt"), "mine");
  const openFile = writeFunction(root, "open", `isolation: "worker",`, reader, { subdir: "open" });
  const runtime = await createRuntime({ functions: [{ file: fnFile }, { file: openFile }], emit: noEmit });
  try {
    const own = (await runtime.invoke("sandboxed", event("x", { path: join(root, "sandboxed", "own.txt") }))) as { ok?: string; pid: number };
    assert.equal(own.ok, "mine");
    assert.notEqual(own.pid, process.pid, "it ran in a child process");
    const outside = (await runtime.invoke("sandboxed", event("x", { path: join(secretDir, "secret.txt") }))) as { denied?: string };
    assert.equal(outside.denied, "ERR_ACCESS_DENIED");
    const etc = (await runtime.invoke("sandboxed", event("x", { path: "/etc/hostname" }))) as { denied?: string };
    assert.equal(etc.denied, "ERR_ACCESS_DENIED");
    // The same read from a worker-mode function succeeds: the restriction is the process mode's doing.
    const fromWorker = (await runtime.invoke("open", event("x", { path: join(secretDir, "secret.txt") }))) as { ok?: string; pid: number };
    assert.equal(fromWorker.ok, "top secret");
    assert.equal(fromWorker.pid, process.pid);
  } finally {
    await runtime.close();
  }
});

test("runtime process mode - a child process cannot spawn processes or write files", async () => {
  const root = tempDir();
  const file = writeFunction(
    root,
    "confined",
    `isolation: "process",`,
    `const { writeFileSync } = await import("node:fs");
     const { execSync } = await import("node:child_process");
     const out: Record<string, string> = {};
     try { writeFileSync(data.path, "x"); out.write = "allowed"; } catch (err) { out.write = (err as any).code; }
     try { execSync("true"); out.spawn = "allowed"; } catch (err) { out.spawn = (err as any).code; }
     return out;`,
  );
  const runtime = await createRuntime({ functions: [{ file }], emit: noEmit });
  try {
    assert.deepEqual(await runtime.invoke("confined", event("x", { path: join(root, "written.txt") })), {
      write: "ERR_ACCESS_DENIED",
      spawn: "ERR_ACCESS_DENIED",
    });
  } finally {
    await runtime.close();
  }
});
