/**
 * The real stack in-process, wired as the server wires it (src/server/wire.ts): a SQLite store in a temp folder,
 * a broker, a runtime running function files from that folder in worker threads, the runtime as the broker's
 * function handler and the functions' implicit rules. Every invocation record and delivery event is kept and
 * fires a change, so tests wait for conditions instead of sleeping.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { createBroker, type Broker, type BrokerLimits } from "../../src/bus/broker.ts";
import type { Clock } from "../../src/clock.ts";
import type { DeliveryEvents, TargetRef } from "../../src/bus/types.ts";
import type { InvocationRecord } from "../../src/runtime/metering.ts";
import { createRuntime, type Runtime, type RuntimeLimits } from "../../src/runtime/runtime.ts";
import { functionQueue, functionRuleName, runtimeEmit, runtimeFunctionHandler, wireRuntime } from "../../src/server/wire.ts";
import { createSqliteStore } from "../../src/store/sqlite/index.ts";
import type { StorageBackend } from "../../src/store/contract.ts";
import { Changes } from "../bus/harness.ts";
import { tempDir } from "../runtime/helpers.ts";

export interface StackOptions {
  /** Writes the function files into `dir` and returns their paths. */
  functions: (dir: string) => string[];
  clock?: Clock;
  limits?: BrokerLimits;
  runtimeLimits?: Partial<RuntimeLimits>;
}

export interface Stack {
  dir: string;
  store: StorageBackend;
  broker: Broker;
  runtime: Runtime;
  changes: Changes;
  records: InvocationRecord[];
  seen: { [K in keyof DeliveryEvents]: DeliveryEvents[K][] };
  /** Invocation records of one function. */
  of(fn: string): InvocationRecord[];
  /** Delivery events of one function's implicit-rule queue. */
  deliveries<K extends keyof DeliveryEvents>(kind: K, fn: string): DeliveryEvents[K][];
  /** The dead-letter reference of a function's implicit rule. */
  ref(fn: string): TargetRef;
  /** Closes the current runtime and starts a new one on the same store and files (a restart of the runtime). */
  restartRuntime(): Promise<void>;
  close(): Promise<void>;
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const dir = tempDir("sluice-int-");
  const files = options.functions(dir);
  const store = await createSqliteStore({ path: join(dir, "sluice.db") });
  const broker = await createBroker({
    store,
    ...(options.clock ? { clock: options.clock } : {}),
    limits: { closeGraceMs: 2000, ...options.limits },
    startDispatcher: false,
  });
  const changes = new Changes();
  const records: InvocationRecord[] = [];
  const seen: Stack["seen"] = { delivered: [], retry: [], dead: [] };
  const track = <K extends keyof DeliveryEvents>(kind: K) =>
    broker.on(kind, (e) => {
      seen[kind].push(e);
      changes.emit("change");
    });
  track("delivered");
  track("retry");
  track("dead");
  const newRuntime = async (): Promise<Runtime> => {
    const runtime = await createRuntime({
      functions: files.map((file) => ({ file })),
      state: store.state,
      emit: runtimeEmit((bus, events) => broker.publish(bus, events)),
      cacheDir: join(dir, "functions"),
      ...(options.runtimeLimits ? { limits: options.runtimeLimits } : {}),
    });
    runtime.on("invocation", (r) => {
      records.push(r);
      changes.emit("change");
    });
    return runtime;
  };
  let runtime = await newRuntime();
  await wireRuntime(broker, runtime);
  let closing: Promise<void> | undefined;
  return {
    dir,
    store,
    broker,
    get runtime() {
      return runtime;
    },
    changes,
    records,
    seen,
    of: (fn) => records.filter((r) => r.functionName === fn),
    deliveries: (kind, fn) => seen[kind].filter((e) => e.queue === functionQueue(fn)),
    ref: (fn) => ({ rule: functionRuleName(fn), target: "fn" }),
    async restartRuntime() {
      await runtime.close();
      runtime = await newRuntime();
      broker.setFunctionHandler(runtimeFunctionHandler(runtime));
    },
    close() {
      closing ??= (async () => {
        await broker.close();
        await runtime.close();
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      })();
      return closing;
    },
  };
}
