/**
 * Crash proof of the PostgreSQL backend with real child processes (src/store/crash/child.ts) and SIGKILL:
 * the shared harness's publisher and consumer crashes, and three consumers working one database at once
 * while a publisher runs, one consumer SIGKILLed with deliveries in flight.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createPostgresStore } from "../../src/store/postgres/index.ts";
import type { StorageBackend } from "../../src/store/contract.ts";
import { createTestDatabase, skipUnless } from "../helpers/services.ts";
import { consumerCrash, crashBus, crashChildArgs, crashQueues, drain, publisherCrash, type CrashTarget } from "../../src/store/crash/harness.ts";

const skip = await skipUnless("postgres");

async function postgresTarget(t: { after(fn: () => Promise<void>): void }): Promise<CrashTarget> {
  const db = await createTestDatabase();
  t.after(() => db.drop());
  return { url: db.url, open: () => createPostgresStore({ url: db.url }) };
}

test("postgres store crash - every acknowledged append survives SIGKILL of the publisher, with its deliveries", { skip }, async (t) => {
  const result = await publisherCrash(await postgresTarget(t), { iterations: 4 });
  t.diagnostic(`acknowledged ${result.acked} events, ${result.stored} in the log`);
});

test("postgres store crash - SIGKILLed consumers leave every delivery acked or leasable again", { skip }, async (t) => {
  // Kills no earlier than 300 ms after `ready`: under load a consumer needs a while for its first ack.
  const result = await consumerCrash(await postgresTarget(t), { iterations: 3, killAfterMs: [300, 900] });
  t.diagnostic(`acked ${result.acked}, in flight at the kills ${result.inFlightAtKill}, leasable after ${result.drained}`);
});

/** A crash-child process whose stdout lines are delivered as they arrive. */
class Child {
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly ready: Promise<void>;
  #stderr = "";
  #kill: () => void;

  constructor(args: string[], onLine: (line: string) => void) {
    const child = spawn(process.execPath, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NODE_NO_WARNINGS: "1" },
    });
    this.#kill = () => child.kill("SIGKILL");
    let buffered = "";
    let markReady: () => void = () => undefined;
    this.ready = new Promise((resolve) => {
      markReady = resolve;
    });
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines) {
        if (line === "ready") markReady();
        else onLine(line);
      }
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      this.#stderr += chunk;
    });
    this.exited = new Promise((resolve) => child.on("close", (code, signal) => resolve({ code, signal })));
  }

  get stderr(): string {
    return this.#stderr;
  }

  kill(): void {
    this.#kill();
  }
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]);
}

async function readLog(store: StorageBackend): Promise<Set<string>> {
  const ids = new Set<string>();
  let afterSeq = 0;
  for (;;) {
    const page = await store.events.read(crashBus, { afterSeq, limit: 1000 });
    if (page.length === 0) return ids;
    for (const e of page) ids.add(e.eventId);
    afterSeq = page[page.length - 1]?.seq ?? afterSeq;
  }
}

test(
  "postgres store crash - three consumer processes on one database, one SIGKILLed mid-flight: every acknowledged event delivered, none stuck",
  { skip, timeout: 120_000 },
  async (t) => {
    const target = await postgresTarget(t);
    const publisherAcked = new Set<string>();
    /** `queue eventId` leased / acked, per consumer. */
    const leased = [new Set<string>(), new Set<string>(), new Set<string>()];
    const acked = [new Set<string>(), new Set<string>(), new Set<string>()];
    let victimInFlightAtKill = new Set<string>();
    let victimKilled = false;
    let onProgress: () => void = () => undefined;

    const publisher = new Child(crashChildArgs(target, "publish", "p"), (line) => {
      const [word, , eventId] = line.split(" ");
      assert.equal(word, "ack", `publisher printed ${line}`);
      publisherAcked.add(eventId as string);
    });
    let victim: Child | undefined;
    const consumers = [0, 1, 2].map(
      (n) =>
        // The victim works 150-300 ms per batch, so it still holds the leases of the line that gets it killed.
        new Child(crashChildArgs(target, "consume", n === 0 ? "300" : undefined), (line) => {
          const space = line.indexOf(" ");
          const [word, key] = [line.slice(0, space), line.slice(space + 1)];
          if (word === "lease") leased[n]?.add(key);
          else if (word === "ack") acked[n]?.add(key);
          // Consumer 0 is the victim: killed the moment it holds leases it has not acked, after some work.
          if (n === 0 && !victimKilled && word === "lease" && (acked[0]?.size ?? 0) >= 50) {
            victimKilled = true;
            victim?.kill();
          }
          onProgress();
        }),
    );
    victim = consumers[0];
    try {
      await within(Promise.all([publisher.ready, ...consumers.map((c) => c.ready)]), 30_000, "the children to open the store");
      // The publisher runs for a while, then is killed too (its acknowledged events must all arrive).
      await within(
        new Promise<void>((resolve) => {
          const check = () => {
            if (victimKilled && publisherAcked.size >= 500) resolve();
          };
          onProgress = check;
          check();
        }),
        60_000,
        "the victim's kill and 500 published events",
      );
      publisher.kill();
      await publisher.exited;
      assert.equal((await consumers[0]?.exited)?.signal, "SIGKILL");
      // Everything the victim printed as leased and not as acked was in its hands when it died.
      victimInFlightAtKill = new Set([...(leased[0] ?? [])].filter((k) => !acked[0]?.has(k)));

      // Everything the publisher stored (acknowledged or not) must now be delivered by the two survivors,
      // including what the victim held: its leases expire after 1 s and are leased again.
      const store = await target.open();
      try {
        const logged = await readLog(store);
        for (const id of publisherAcked) assert.ok(logged.has(id), `acknowledged event ${id} is not in the log`);
        const expected = [...logged].flatMap((id) => crashQueues.map((q) => `${q} ${id}`));
        // Done when every stored delivery was acked by someone (or was in the victim's hands) and nothing
        // is pending any more; checked on every consumer line and every 100 ms.
        const done = async () =>
          expected.every((k) => acked.some((s) => s.has(k)) || victimInFlightAtKill.has(k)) &&
          (await store.admin.stats([...crashQueues], { now: Date.now() })).every((s) => s.ready + s.leased + s.delayed === 0);
        await within(
          new Promise<void>((resolve, reject) => {
            let checking = false;
            const check = () => {
              if (checking) return;
              checking = true;
              done().then(
                (ok) => {
                  checking = false;
                  if (ok) {
                    clearInterval(tick);
                    resolve();
                  }
                },
                (err: unknown) => {
                  clearInterval(tick);
                  reject(err);
                },
              );
            };
            const tick = setInterval(check, 100);
            onProgress = check;
            check();
          }),
          60_000,
          "the survivors to deliver every stored event",
        );
        onProgress = () => undefined;
        // The victim's in-flight deliveries were re-leased by a survivor after their lease expired, unless the
        // victim's ack committed in the instant before the kill (then they are gone, as drain() checks).
        const redelivered = [...victimInFlightAtKill].filter((k) => acked[1]?.has(k) || acked[2]?.has(k));
        for (const k of expected) {
          assert.ok(leased.some((s) => s.has(k)), `delivery ${k} was never leased`);
        }
        assert.ok(victimInFlightAtKill.size > 0, "the victim held leases when it was killed");
        // Nothing left: no delivery stuck, leased or pending, even once every lease has expired.
        assert.deepEqual(await drain(store), []);
        const stats = await store.admin.stats([...crashQueues], { now: Date.now() + 3_600_000 });
        for (const s of stats) assert.deepEqual([s.ready, s.delayed, s.leased, s.dead], [0, 0, 0, 0], `queue ${s.queue}`);
        t.diagnostic(
          `published ${publisherAcked.size} acknowledged (${logged.size} stored), deliveries acked per consumer ` +
            `${acked.map((s) => s.size).join("/")}, victim in flight at kill ${victimInFlightAtKill.size}, ` +
            `re-delivered by survivors ${redelivered.length}`,
        );
      } finally {
        await store.close();
      }
    } finally {
      for (const c of [publisher, ...consumers]) c.kill();
      await Promise.all([publisher, ...consumers].map((c) => c.exited));
    }
  },
);
