/**
 * A three-server JetStream cluster (R3 streams) under three `sluice start` nodes, while events flow: one Sluice node
 * is SIGKILLed, and separately one NATS server is stopped and started again. Every acknowledged event reaches its
 * function at least once, nothing stays pending past its lease, and each schedule tick fires once.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { ensureBuilt, eventually, startSluice, type SluiceProcess } from "../helpers/sluice-process.ts";

const natsServer = "/usr/sbin/nats-server";
const skip = existsSync(natsServer) ? false : `${natsServer} is not installed`;
if (skip && process.env.CI === "true") throw new Error(`${skip} (CI=true: a missing service is a failure)`);

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

class NatsNode {
  proc: ChildProcess | undefined;
  constructor(readonly args: string[]) {}
  start(): void {
    this.proc = spawn(natsServer, this.args, { stdio: "ignore" });
  }
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const proc = this.proc;
    if (proc === undefined || proc.exitCode !== null) return;
    const exited = new Promise((resolve) => proc.once("exit", resolve));
    proc.kill(signal);
    await exited;
  }
}

const app = {
  config: `export default {
  name: "cluster",
  rules: [{ name: "flow", pattern: { type: ["cluster.flow"] }, targets: [{ function: "sink" }] }],
  schedules: { tick: { rate: "1 second", emit: { type: "tick.fired", source: "cluster" } } },
};
`,
  sink: `import { appendFileSync } from "node:fs";
import { defineFunction } from "sluice";
export default defineFunction({ name: "sink", handler(event) { appendFileSync(process.env.CLUSTER_SINK, event.id + "\\n"); } });
`,
};

test("nats cluster - SIGKILL of a Sluice node and a restarted NATS server lose no acknowledged event", { skip, timeout: 240_000 }, async (t) => {
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), "sluice-nats-cluster-"));
  const clientPorts = [await freePort(), await freePort(), await freePort()];
  const routePorts = [await freePort(), await freePort(), await freePort()];
  const servers = clientPorts.map((port, i) => {
    const routes = routePorts.filter((_, j) => j !== i).map((p) => `nats://127.0.0.1:${p}`);
    const args = ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", join(dir, `n${i}`), "-n", `n${i}`, "--cluster_name", "sluicetest"];
    args.push("--cluster", `nats://127.0.0.1:${routePorts[i]}`, "--routes", routes.join(","));
    return new NatsNode(args);
  });
  const nodes: SluiceProcess[] = [];
  t.after(async () => {
    for (const n of nodes) n.proc.kill("SIGKILL");
    for (const s of servers) await s.stop("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });
  for (const s of servers) s.start();

  const deployment = `cl${randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const hosts = clientPorts.map((p) => `127.0.0.1:${p}`);
  const { createNatsStore } = await import("../../src/store/nats/index.ts");
  // The cluster is usable once a stream with three replicas can be created (JetStream meta leader elected).
  const probe = await eventually(
    async () => createNatsStore({ servers: hosts, deployment, replicas: 3, connectTimeoutMs: 2000 }).catch(() => undefined),
    "the JetStream cluster",
    60_000,
  );
  await probe.close();

  const appDir = join(dir, "app");
  mkdirSync(join(appDir, "functions"), { recursive: true });
  writeFileSync(join(appDir, "sluice.config.ts"), app.config);
  writeFileSync(join(appDir, "functions", "sink.ts"), app.sink);
  const sink = join(dir, "sink.txt");
  writeFileSync(sink, "");
  const url = `nats://${hosts.join(",")}/${deployment}?replicas=3`;
  const args = ["start", appDir, "--port", "0", "--store", url, "--no-auth"];
  for (let i = 0; i < 3; i++) nodes.push(await startSluice([...args, "--data-dir", join(dir, `data${i}`)], { CLUSTER_SINK: sink }, 60_000));

  const acked = new Set<string>();
  const alive = new Set([0, 1, 2]);
  let publishing = true;
  const publisher = (async () => {
    for (let n = 0; publishing; n++) {
      const live = [...alive];
      const node = nodes[live[n % live.length] as number] as SluiceProcess;
      const id = `ev-${n}`;
      try {
        const res = await fetch(`${node.url}/events`, {
          method: "POST",
          headers: { "content-type": "application/cloudevents+json" },
          body: JSON.stringify({ specversion: "1.0", id, source: "cluster-test", type: "cluster.flow", data: { n } }),
          signal: AbortSignal.timeout(5000),
        });
        if (res.status >= 200 && res.status < 300) acked.add(id);
        await res.body?.cancel();
      } catch {
        // Not acknowledged (the node died, or the cluster was electing a leader): not promised either.
      }
      await sleep(20);
    }
  })();

  await sleep(3000);
  nodes[1]?.proc.kill("SIGKILL");
  alive.delete(1);
  await sleep(3000);
  await servers[2]?.stop("SIGTERM");
  await sleep(4000);
  servers[2]?.start();
  await sleep(4000);
  publishing = false;
  await publisher;
  assert.ok(acked.size > 50, `only ${acked.size} events were acknowledged`);

  const delivered = () => new Set(readFileSync(sink, "utf8").split("\n").filter((l) => l.startsWith("ev-")));
  // A delivery the killed node held comes back when its lease (30 s by default) expires.
  await eventually(async () => ([...acked].every((id) => delivered().has(id)) ? true : undefined), "every acknowledged event delivered", 120_000).catch(() => {
    const missing = [...acked].filter((id) => !delivered().has(id));
    assert.fail(`${missing.length} of ${acked.size} acknowledged events never reached the function: ${missing.slice(0, 10).join(", ")}`);
  });

  const store = await createNatsStore({ servers: hosts, deployment, replicas: 3 });
  try {
    const stats = await eventually(async () => {
      const s = await store.admin.stats();
      return s.every((q) => q.ready + q.delayed + q.leased === 0) ? s : undefined;
    }, "no delivery pending past its lease", 60_000);
    t.diagnostic(`acknowledged ${acked.size}, delivered ${delivered().size} distinct; queues ${JSON.stringify(stats)}`);
  } finally {
    await store.close();
  }

  const fired = nodes.flatMap((n) =>
    n
      .output()
      .split("\n")
      .filter((l) => l.includes('"msg":"schedule fired"'))
      .map((l) => (JSON.parse(l) as { scheduledTime: string }).scheduledTime),
  );
  assert.ok(fired.length >= 5, `only ${fired.length} ticks fired`);
  assert.equal(fired.length, new Set(fired).size, `a tick fired twice: ${fired.sort().join(", ")}`);
  for (const n of nodes) if (n.proc.exitCode === null) n.proc.kill("SIGTERM");
});
