/**
 * The two instance hosts behind one interface: a worker thread (default) and a child process restricted by
 * Node's permission model to the function's own folder. Both speak protocol.ts in batches.
 */
import { fork, type ChildProcess } from "node:child_process";
import { sep } from "node:path";
import { Worker } from "node:worker_threads";
import type { FunctionDefinition } from "./define.ts";
import { Batcher, type HostMessage, type InstanceInit, type InstanceMessage } from "./protocol.ts";
import { createRunner } from "./runner.ts";

/** Why an instance stopped: `terminated` when the host asked for it, otherwise what went wrong. */
export type ExitKind = "terminated" | "crashed" | "out-of-memory";

export interface InstanceHost {
  readonly kind: "worker" | "process" | "inline";
  send(message: HostMessage): void;
  /** Stops the instance now (infinite loops included). Resolves when it is gone. */
  terminate(): Promise<void>;
}

export interface HostEvents {
  onMessage(message: InstanceMessage): void;
  /** Called once when the instance is gone, whoever stopped it. */
  onExit(kind: ExitKind, detail: string): void;
}

export interface HostOptions {
  entry: string;
  init: InstanceInit;
  memoryMb: number;
  /** Process mode: folders the child may read (plus the entry and the bundle). */
  readPaths: string[];
  bundleFile: string;
}

export function startWorkerHost(options: HostOptions, events: HostEvents): InstanceHost {
  const worker = new Worker(options.entry, {
    workerData: options.init,
    // Not the parent's flags: a test runner's `--import tsx` would load TypeScript tooling into every instance.
    execArgv: [],
    resourceLimits: {
      maxOldGenerationSizeMb: options.memoryMb,
      maxYoungGenerationSizeMb: Math.max(1, Math.min(16, Math.floor(options.memoryMb / 8))),
      stackSizeMb: 4,
    },
  });
  const out = new Batcher<HostMessage>((batch) => worker.postMessage(batch));
  let terminating = false;
  let lastError: (Error & { code?: string }) | undefined;
  worker.on("message", (batch: InstanceMessage[]) => {
    for (const m of batch) events.onMessage(m);
  });
  worker.on("error", (err) => {
    lastError = err;
  });
  worker.on("exit", (code) => {
    if (lastError?.code === "ERR_WORKER_OUT_OF_MEMORY") events.onExit("out-of-memory", lastError.message);
    else if (terminating) events.onExit("terminated", "terminated by the host");
    else events.onExit("crashed", lastError ? `uncaught ${lastError.name}: ${lastError.message}` : `the instance exited with code ${code}`);
  });
  return {
    kind: "worker",
    send: (m) => out.send(m),
    async terminate() {
      terminating = true;
      await worker.terminate();
    },
  };
}

export function startProcessHost(options: HostOptions, events: HostEvents): InstanceHost {
  // Files exactly; folders need a trailing slash to cover what is inside them.
  const allow = [...new Set([options.entry, options.bundleFile, ...options.readPaths.map((p) => (p.endsWith(sep) ? p : p + sep))])];
  const child: ChildProcess = fork(options.entry, [JSON.stringify(options.init)], {
    execArgv: [
      `--max-old-space-size=${options.memoryMb}`,
      "--experimental-permission",
      // One flag per path: Node 20.20 reads a comma-separated list as one path.
      ...allow.map((p) => `--allow-fs-read=${p}`),
      "--no-warnings",
    ],
    serialization: "advanced",
    stdio: ["ignore", "ignore", "pipe", "ipc"],
    env: { NODE_OPTIONS: "" },
  });
  const out = new Batcher<HostMessage>((batch) => {
    if (child.connected) child.send(batch);
  });
  let terminating = false;
  let stderrTail = "";
  child.stderr?.setEncoding("utf8").on("data", (s: string) => {
    stderrTail = (stderrTail + s).slice(-4096);
  });
  child.on("message", (batch: InstanceMessage[]) => {
    for (const m of batch) events.onMessage(m);
  });
  child.on("error", (err) => {
    stderrTail += `\n${err.message}`;
  });
  const exited = new Promise<void>((resolve) => {
    child.on("exit", (code, signal) => {
      if (/heap out of memory|Allocation failed/i.test(stderrTail)) events.onExit("out-of-memory", stderrTail.trim().split("\n").slice(-3).join(" "));
      else if (terminating) events.onExit("terminated", "terminated by the host");
      else events.onExit("crashed", `the instance exited with ${signal ? `signal ${signal}` : `code ${code}`}${stderrTail ? `: ${stderrTail.trim().slice(-300)}` : ""}`);
      resolve();
    });
  });
  return {
    kind: "process",
    send: (m) => out.send(m),
    async terminate() {
      terminating = true;
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

/**
 * Runs a definition passed as an object (no file) in the host's own thread. Errors, rejections and timeouts
 * fail the invocation as in the other hosts, but nothing isolates the code: a timed-out handler keeps running
 * and memory is not limited. For tests and embedding; functions loaded from files never use it.
 */
export function startInlineHost(def: FunctionDefinition, events: HostEvents): InstanceHost {
  let gone = false;
  const runner = createRunner(def, (m) => {
    if (!gone) events.onMessage(m);
  });
  queueMicrotask(() => {
    const { handler: _handler, ...config } = def;
    if (!gone) events.onMessage({ t: "ready", config });
  });
  return {
    kind: "inline",
    send: (m) => {
      if (!gone) queueMicrotask(() => runner.handle(m));
    },
    async terminate() {
      if (gone) return;
      gone = true;
      await Promise.resolve();
      events.onExit("terminated", "terminated by the host");
    },
  };
}
