/**
 * The entry point of an instance: a worker thread or a child process that loads one function module and runs
 * its handler for the invocations the host sends. Kept import-light (it is bundled into one file) because
 * every cold start loads it.
 */
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { parentPort, workerData } from "node:worker_threads";
import { isFunctionDefinition, type FunctionDefinition } from "./define.ts";
import { Batcher, toWireError, type HostMessage, type InstanceInit, type InstanceMessage, type StandbyInit } from "./protocol.ts";
import { createRunner } from "./runner.ts";

type Post = (batch: InstanceMessage[]) => void;

function transport(): { init: InstanceInit | StandbyInit; post: Post; listen(onBatch: (batch: HostMessage[]) => void): void } {
  if (parentPort) {
    const port = parentPort;
    return {
      init: workerData as InstanceInit | StandbyInit,
      post: (batch) => port.postMessage(batch),
      listen: (onBatch) => port.on("message", onBatch),
    };
  }
  const send = process.send?.bind(process);
  if (!send) throw new Error("sluice instance: started without a parent port or an IPC channel");
  return {
    init: JSON.parse(process.argv[2] ?? "{}") as InstanceInit,
    post: (batch) => send(batch),
    listen: (onBatch) => process.on("message", (m) => onBatch(m as HostMessage[])),
  };
}

const t = transport();
// A message that cannot be copied (a handler returned or logged a function, or nesting too deep) becomes an
// error instead of being lost.
const out = new Batcher<InstanceMessage>(t.post, (message, err) => {
  const reason = `could not be copied to the host: ${(err as Error).message}`;
  if (message.t === "done") out.send({ t: "done", id: message.id, error: { name: "DataCloneError", message: `the result ${reason}` } });
  else if (message.t === "log") out.send({ ...message, fields: { unserializable: true } });
  else if (message.t === "emit") deliver?.({ t: "emitted", reqId: message.reqId, error: { name: "DataCloneError", message: `the emitted events ${reason}` } });
});

/** Where the host's messages go: nowhere until the function is loaded (the host sends no work before `ready`). */
let deliver: ((m: HostMessage) => void) | undefined;

async function main(init: InstanceInit): Promise<void> {
  let def: FunctionDefinition;
  try {
    const mod = (
      init.moduleUrl.endsWith(".cjs") ? createRequire(init.moduleUrl)(fileURLToPath(init.moduleUrl)) : await import(init.moduleUrl)
    ) as { default?: unknown };
    if (!isFunctionDefinition(mod.default)) {
      throw new Error("the module's default export is not a defineFunction(...) result");
    }
    def = mod.default;
    if (init.functionName !== undefined && def.name !== init.functionName) {
      throw new Error(`the module now defines function "${def.name}", not "${init.functionName}"`);
    }
  } catch (err) {
    out.send({ t: "load-error", error: toWireError(err) });
    out.flush();
    return;
  }
  const { handler: _handler, ...config } = def;
  const runner = createRunner(def, (m) => out.send(m));
  deliver = (m) => runner.handle(m);
  out.send({ t: "ready", config });
}

let loading = false;
t.listen((batch) => {
  for (const m of batch) {
    if (deliver) deliver(m);
    else if (m.t === "load" && !loading) {
      // A standby worker: the thread is up and this entry loaded; now it becomes an instance of one function.
      loading = true;
      void main(m.init);
    }
  }
});
if ("standby" in t.init) out.send({ t: "standby" });
else {
  loading = true;
  void main(t.init);
}
