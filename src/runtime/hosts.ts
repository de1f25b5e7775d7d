/**
 * The two instance hosts behind one interface: a worker thread (default) and a child process restricted by
 * Node's permission model to the function's own folder. Both speak protocol.ts in batches. Plus standby
 * workers: threads started before they are needed, which a worker-mode cold start adopts.
 */
import { fork, type ChildProcess } from "node:child_process";
import { sep } from "node:path";
import { Worker } from "node:worker_threads";
import type { FunctionDefinition } from "./define.ts";
import { Batcher, type HostMessage, type InstanceInit, type InstanceMessage, type StandbyInit } from "./protocol.ts";
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
  /** A message could not be copied to the instance (an event nested too deep, say); the instance never saw it. */
  onSendFailed(message: HostMessage, err: unknown): void;
}

export interface HostOptions {
  entry: string;
  init: InstanceInit;
  memoryMb: number;
  /** Process mode: folders the child may read (plus the entry and the bundle). */
  readPaths: string[];
  bundleFile: string;
}

function spawnWorker(entry: string, workerData: InstanceInit | StandbyInit, memoryMb: number): Worker {
  return new Worker(entry, {
    workerData,
    // Not the parent's flags: a test runner's `--import tsx` would load TypeScript tooling into every instance.
    execArgv: [],
    resourceLimits: {
      maxOldGenerationSizeMb: memoryMb,
      maxYoungGenerationSizeMb: Math.max(1, Math.min(16, Math.floor(memoryMb / 8))),
      stackSizeMb: 4,
    },
  });
}

/** Speaks protocol.ts with a worker thread on behalf of one instance. */
function workerHost(worker: Worker, events: HostEvents): InstanceHost {
  const out = new Batcher<HostMessage>((batch) => worker.postMessage(batch), events.onSendFailed);
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

export function startWorkerHost(options: HostOptions, events: HostEvents): InstanceHost {
  return workerHost(spawnWorker(options.entry, options.init, options.memoryMb), events);
}

/**
 * A worker thread started ahead of need: it has loaded the instance entry but no function, and becomes an
 * instance of the first function that adopts it (which skips the thread start of a cold start). Its
 * resourceLimits are fixed at creation, so only a function with the same memory setting may adopt it.
 * It does not keep the process alive until adopted.
 */
export interface StandbyWorker {
  readonly memoryMb: number;
  /** True once the thread runs and has loaded the entry. */
  readonly ready: boolean;
  /** Makes it an instance of the function in `init`: it loads the bundle and answers `ready` like a new one. */
  adopt(init: InstanceInit, events: HostEvents): InstanceHost;
  terminate(): Promise<void>;
}

export interface StandbyEvents {
  onReady(): void;
  /** The standby stopped before it was adopted (`terminated` when the host asked for it). */
  onExit(kind: ExitKind, detail: string): void;
}

export function startStandbyWorker(entry: string, memoryMb: number, events: StandbyEvents): StandbyWorker {
  const worker = spawnWorker(entry, { standby: true }, memoryMb);
  let ready = false;
  let adopted = false;
  let terminating = false;
  let lastError: Error | undefined;
  const onMessage = (batch: InstanceMessage[]) => {
    if (batch.some((m) => m.t === "standby")) {
      ready = true;
      events.onReady();
    }
  };
  const onError = (err: Error) => {
    lastError = err;
  };
  const onExit = (code: number) => {
    if (terminating) events.onExit("terminated", "terminated by the host");
    else events.onExit("crashed", lastError ? `uncaught ${lastError.name}: ${lastError.message}` : `the standby worker exited with code ${code}`);
  };
  worker.on("message", onMessage);
  worker.on("error", onError);
  worker.on("exit", onExit);
  worker.unref(); // after the listeners, which would hold the process otherwise
  return {
    memoryMb,
    get ready() {
      return ready;
    },
    adopt(init, hostEvents) {
      if (adopted) throw new Error("sluice: a standby worker was adopted twice");
      adopted = true;
      worker.off("message", onMessage);
      worker.off("error", onError);
      worker.off("exit", onExit);
      // An instance keeps the process alive like one started fresh.
      worker.ref();
      const host = workerHost(worker, hostEvents);
      host.send({ t: "load", init });
      return host;
    },
    async terminate() {
      if (adopted) return;
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
  }, events.onSendFailed);
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
