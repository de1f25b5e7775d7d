/** `sluice init [dir]`: scaffolds a working app with one function, a route and a test. */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import { ErrorCode, SluiceError } from "../errors.ts";
import type { RegisterCommand } from "./main.ts";
import { action } from "./client.ts";

/**
 * How the new app depends on sluice: the running package's own version when it was installed from a registry,
 * or a `file:` link to it when it runs from a checkout (an unpublished version would not install).
 */
export function sluiceDependency(): string {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
  const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
  return root.split(sep).includes("node_modules") ? `^${version}` : `file:${root}`;
}

export function scaffold(name: string, sluice = sluiceDependency()): Record<string, string> {
  return {
    "package.json": `${JSON.stringify(
      {
        name,
        private: true,
        type: "module",
        scripts: { dev: "sluice dev .", start: "sluice start .", test: "node --import tsx --test test/*.test.ts" },
        dependencies: { sluice },
        devDependencies: { tsx: "^4.0.0" },
      },
      null,
      2,
    )}\n`,
    "sluice.config.ts": `import { defineApp } from "sluice";

export default defineApp({
  name: ${JSON.stringify(name)},
  functions: "./functions",
  routes: { "POST /hello": "hello" },
});
`,
    "functions/hello.ts": `import { defineFunction } from "sluice";

/** Answers POST /hello, and also runs for every "hello.requested" event published to the default bus. */
export default defineFunction({
  name: "hello",
  on: { type: ["hello.requested"] },
  timeout: "5s",
  async handler(event, ctx) {
    const who = event.data?.body?.name ?? event.data?.name ?? "world";
    ctx.log.info({ who }, "saying hello");
    await ctx.emit({ type: "hello.said", source: "${name}", data: { who } });
    return { statusCode: 200, body: { message: \`hello, \${who}\` } };
  },
});
`,
    "test/hello.test.ts": `import { test } from "node:test";
import assert from "node:assert/strict";
import hello from "../functions/hello.ts";

test("hello - greets by name and emits hello.said", async () => {
  const emitted: unknown[] = [];
  const log = { info() {}, warn() {}, error() {}, debug() {}, trace() {}, fatal() {}, child: () => log };
  const ctx = { emit: async (e: unknown) => void emitted.push(e), log, attempt: 1, deadline: Date.now() + 5000, invocationId: "t", functionName: "hello", signal: new AbortController().signal };
  const event = { specversion: "1.0" as const, id: "1", source: "test", type: "hello.requested", data: { name: "Ada" } };
  const res = (await hello.handler(event, ctx as never)) as { statusCode: number; body: { message: string } };
  assert.equal(res.statusCode, 200);
  assert.equal(res.body.message, "hello, Ada");
  assert.equal(emitted.length, 1);
});
`,
    ".gitignore": ".sluice/\nnode_modules/\n",
    "README.md": `# ${name}

A Sluice app: \`sluice.config.ts\` names its routes, and each file in \`functions/\` is one function.

\`\`\`sh
npm install
npx sluice dev .
curl -s localhost:8787/hello -H 'content-type: application/json' -d '{"name":"Ada"}'
curl -s localhost:8787/events -H 'content-type: application/cloudevents+json' \\
  -d '{"specversion":"1.0","type":"hello.requested","source":"curl","data":{"name":"Bob"}}'
npm test
\`\`\`
`,
  };
}

export const register: RegisterCommand = (program: Command, setExitCode) => {
  program
    .command("init [dir]")
    .description("Create a new app: sluice.config.ts, one function with a route, and a test")
    .option("--name <name>", "the app's name (default: the folder's name)")
    .option("--force", "write into a folder that is not empty")
    .addHelpText("after", `\nExample:\n  $ sluice init my-app && sluice dev my-app`)
    .action(
      action(setExitCode, async (dir: string | undefined, opts: { name?: string; force?: boolean }) => {
        const target = resolve(dir ?? ".");
        if (existsSync(target) && readdirSync(target).length > 0 && !opts.force) {
          throw new SluiceError(ErrorCode.AlreadyExists, `${target} is not empty; pick a new folder or pass --force`);
        }
        const name = (opts.name ?? basename(target)).toLowerCase().replace(/[^a-z0-9._-]+/g, "-").replace(/^[^a-z0-9]+/, "") || "app";
        for (const [file, text] of Object.entries(scaffold(name))) {
          const path = join(target, file);
          mkdirSync(join(path, ".."), { recursive: true });
          if (existsSync(path) && !opts.force) continue;
          writeFileSync(path, text);
        }
        process.stdout.write(
          `Created ${name} in ${target}\n\nNext:\n  sluice dev ${dir ?? "."}\n  curl -s localhost:8787/hello -H 'content-type: application/json' -d '{"name":"Ada"}'\n`,
        );
      }),
    );
};
