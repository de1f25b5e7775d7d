/**
 * Child process of the crash harness (harness.ts): it works against a real store until the parent SIGKILLs it,
 * and prints one line to stdout for every write the store acknowledged (the line is written after the promise
 * resolved, so a printed line proves an acknowledged write).
 *
 * Usage: node child.js <mode> <url> [runId | workMs] [--child-import MODULE]…
 *   mode      `publish`: appends batches of 1..50 events in a loop, each event with a delivery to queue `crash-a`
 *             and one (keyed on 5 keys) to `crash-b`; prints `ack <seq> <eventId>` per stored event.
 *             `consume`: leases up to 10 deliveries at a time (lease 1 s), "works" 0-3 ms, acks; prints
 *             `lease <queue> <eventId>` per leased delivery, `ack <queue> <eventId>` per acked one (`lost …` when
 *             the ack found its lease lost). With `workMs` it works workMs/2..workMs ms instead: a victim that
 *             still holds its leases when the parent, reading its output late on a loaded machine, kills it.
 *   url       the store URL, opened through the store registry.
 *   runId     prefix of the event ids (publish), so runs on the same data never collide.
 *   --child-import MODULE   imported first (a module that registers a store scheme).
 * Prints `ready` once the store is open.
 */
import type { StorageBackend } from "../contract.ts";
import { openStore } from "../registry.ts";
import { crashBus, crashDeclaration, crashQueues } from "./harness.ts";

function write(line: string): Promise<void> {
  return new Promise((resolve) => {
    if (process.stdout.write(`${line}\n`)) resolve();
    else process.stdout.once("drain", resolve);
  });
}

async function publish(store: StorageBackend, runId: string): Promise<never> {
  for (let batch = 0; ; batch++) {
    const size = 1 + Math.floor(Math.random() * 50);
    const entries = Array.from({ length: size }, (_, i) => {
      const eventId = `${runId}-${batch}-${i}`;
      return {
        bus: crashBus,
        eventId,
        dedupeKey: `crash\n${eventId}`,
        encoded: JSON.stringify({ specversion: "1.0", id: eventId, source: "crash", type: "crash.test", data: { batch, i } }),
        deliveries: [{ queue: crashQueues[0] }, { queue: crashQueues[1], partitionKey: `k${i % 5}` }],
      };
    });
    const results = await store.events.append(entries, { now: Date.now(), dedupeWindowMs: 300_000 });
    const lines = results.map((r, i) => {
      if (r.status !== "stored") throw new Error(`crash child: unexpected ${r.status} for ${entries[i]?.eventId}`);
      return `ack ${r.seq} ${entries[i]?.eventId}`;
    });
    await write(lines.join("\n"));
  }
}

async function consume(store: StorageBackend, workMs: number | undefined): Promise<never> {
  for (;;) {
    const leases = await store.queues.lease({ max: 10, leaseMs: 1000, now: Date.now() });
    if (leases.length === 0) {
      const timer = AbortSignal.timeout(20);
      await store.queues.waitForWork(timer);
      continue;
    }
    const ids = leases.map((l) => `${l.queue} ${(JSON.parse(l.payload) as { id: string }).id}`);
    await write(ids.map((id) => `lease ${id}`).join("\n"));
    // The handler's work: a few milliseconds, so that kills land between lease and ack too.
    const work = workMs === undefined ? Math.random() * 4 : workMs / 2 + (Math.random() * workMs) / 2;
    await new Promise((resolve) => setTimeout(resolve, Math.floor(work)));
    const { lost } = await store.queues.ack(leases);
    const lostIds = new Set(lost);
    await write(
      leases
        .map((l, i) => (lostIds.has(l.deliveryId) ? `lost ${ids[i]}` : `ack ${ids[i]}`))
        .join("\n"),
    );
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const imports: string[] = [];
  for (let i = args.indexOf("--child-import"); i >= 0; i = args.indexOf("--child-import")) {
    imports.push(...args.splice(i, 2).slice(1));
  }
  const [mode, url, extra] = args;
  if (mode === undefined || url === undefined) throw new Error("usage: child <publish|consume> <url> [runId | workMs]");
  for (const specifier of imports) await import(specifier);
  const store = await openStore(url);
  await store.declare(crashDeclaration);
  await write("ready");
  if (mode === "publish") await publish(store, extra ?? "run");
  else if (mode === "consume") await consume(store, extra === undefined ? undefined : Number(extra));
  else throw new Error(`crash child: unknown mode ${mode}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
