/**
 * Runs the built `sluice` binary as a child process, as a user would, and reads what it prints.
 * `startSluice` resolves once the server prints its ready line (with the URL of its ephemeral port).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

export const root = new URL("../..", import.meta.url).pathname;

/** The newest modification time of a file under `dir`. */
function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

/**
 * `npm test` builds first; a lone run of an e2e file builds when dist/ lacks the server or is older than a
 * source file, so an e2e test never runs stale code.
 */
export function ensureBuilt(): void {
  // Written by `npm run build` after tsc, which leaves unchanged outputs untouched.
  const built = join(root, "dist/.build-stamp");
  const fresh = existsSync(built) && statSync(built).mtimeMs >= newestMtime(join(root, "src"));
  if (fresh && process.env.SLUICE_TEST_REBUILD !== "1") return;
  const r = spawnSync("npm", ["run", "build"], { cwd: root, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`npm run build failed:\n${r.stdout}\n${r.stderr}`);
}

/** A `sluice` child process and what it printed. */
export interface SluiceChild {
  proc: ChildProcess;
  /** Everything printed so far (stdout and stderr). */
  output(): string;
  /** What it printed on stdout only. */
  stdout(): string;
  /** What it printed on stderr only. */
  stderr(): string;
  /** Resolves with the first output line matching `re` (already printed or printed later). */
  waitForLine(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves with the exit code once it exited (null when a signal ended it). */
  exited: Promise<number | null>;
  /** Sends `signal` and resolves with the exit code. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
}

export interface SluiceProcess extends SluiceChild {
  url: string;
}

const readyLine = /sluice ready at (http:\/\/[0-9.:]+)/;

/** Starts `sluice <args>` without waiting for anything (a server, `logs --follow`, a waiting `replay`). */
export function spawnSluice(args: string[], env: Record<string, string> = {}): SluiceChild {
  const proc = spawn(process.execPath, [join(root, "bin/sluice.mjs"), ...args], {
    cwd: root,
    env: { ...process.env, NODE_NO_WARNINGS: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let stdout = "";
  let stderr = "";
  const waiters: { re: RegExp; resolve(line: string): void }[] = [];
  const onData = (chunk: Buffer) => {
    out += chunk.toString();
    for (const w of [...waiters]) {
      const line = out.split("\n").find((l) => w.re.test(l));
      if (line !== undefined) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };
  proc.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
    onData(chunk);
  });
  proc.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
    onData(chunk);
  });
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));

  const waitForLine = (re: RegExp, ms = 20_000) =>
    new Promise<string>((resolve, reject) => {
      const line = out.split("\n").find((l) => re.test(l));
      if (line !== undefined) return resolve(line);
      const timer = setTimeout(() => reject(new Error(`no line matching ${re} within ${ms} ms; output:\n${out}`)), ms);
      const w = { re, resolve: (l: string) => {
        clearTimeout(timer);
        resolve(l);
      } };
      waiters.push(w);
      void exited.then((code) => {
        if (waiters.includes(w)) {
          clearTimeout(timer);
          reject(new Error(`sluice exited (${code}) before printing ${re}; output:\n${out}`));
        }
      });
    });

  return {
    proc,
    output: () => out,
    stdout: () => stdout,
    stderr: () => stderr,
    waitForLine,
    exited,
    async stop(signal = "SIGKILL", ms = 15_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill("SIGKILL"), ms);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Starts `sluice dev|start …` and resolves once it printed its ready line (with the URL of its port). */
export async function startSluice(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<SluiceProcess> {
  const child = spawnSluice(args, env);
  let ready: string;
  try {
    ready = await child.waitForLine(readyLine, timeoutMs);
  } catch (err) {
    child.proc.kill("SIGKILL");
    throw err;
  }
  return { ...child, url: readyLine.exec(ready)?.[1] ?? "" };
}

/** Runs a CLI command to completion. */
export function sluiceCli(args: string[], env: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(root, "bin/sluice.mjs"), ...args], {
    cwd: root,
    encoding: "utf8",
    timeout: 30_000,
    env: { ...process.env, NODE_NO_WARNINGS: "1", ...env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Polls `probe` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
