/**
 * Event bus benchmark: W1 throughput, W2 latency, W3 fan-out, on the SQLite backend (and PostgreSQL when it runs),
 * with the peers of /work/shared/bench/peers measured in the same run (BullMQ, pg-boss, bare SQLite).
 *
 *   npm run bench -- bus
 *
 * Knobs (environment): BUS_N (events for W1/W3, default 100000), BUS_PEER_N (peers' N for bullmq/pgboss, default 30000;
 * bare SQLite always runs BUS_N), BUS_W2_SECONDS (10), BUS_BACKENDS (sqlite,postgres), BUS_PEERS (bullmq,pgboss,sqlite),
 * BUS_INFLIGHT (publish calls of 100 kept in flight by the W1/W3 producer, default 4), BUS_ROUNDS (rounds of every
 * system, interleaved; default 3: each figure is the median of the rounds, with the lowest-highest in brackets, and
 * peak RSS the highest).
 *
 * BUS_NO_BUILD=1 skips the build that comes first (src/ compiled to dist/).
 *
 * Every measurement of Sluice runs in a fresh Node process, bus-child.mjs on the compiled code (as `sluice start`
 * runs it, without a TypeScript loader), so peak RSS is per run; 200 warm-up events go through the whole path before
 * the clock starts.
 */
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "node:net";

const here = fileURLToPath(import.meta.url);
const root = join(here, "..", "..");
const peersSource = "/work/shared/bench/peers";

/** A system's figures on one workload over the rounds; `spread` is the headline figure's lowest-highest. */
type Summary = Result & { spread?: string; rounds?: number };
const withSpread = (text: string, r: Summary) => (r.spread === undefined ? text : `${text} (${r.spread})`);

interface Result {
  name: string;
  workload: string;
  N: number;
  eventsPerSec?: number;
  deliveriesPerSec?: number;
  p50?: number;
  p95?: number;
  p99?: number;
  max?: number;
  peakRssMb?: number;
  cpuUsPerEvent?: number;
  seconds?: number;
  error?: string;
}

// ---------------------------------------------------------------- parent: orchestration and tables
function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
  });
}

function parse(stdout: string, name: string, workload: string, N: number): Result {
  const line = stdout.split("\n").find((l) => l.startsWith("RESULT "));
  if (!line) return { name, workload, N, error: "no RESULT line" };
  const r = JSON.parse(line.slice(7)) as Record<string, unknown>;
  return {
    name,
    workload,
    N: Number(r.N ?? N),
    ...(typeof r.eventsPerSec === "number" ? { eventsPerSec: r.eventsPerSec } : {}),
    ...(typeof r.deliveriesPerSec === "number" ? { deliveriesPerSec: r.deliveriesPerSec } : {}),
    ...(typeof r.p50 === "number" ? { p50: r.p50, p95: r.p95 as number, p99: r.p99 as number, max: r.max as number } : {}),
    ...(typeof r.peakRssMb === "number" ? { peakRssMb: r.peakRssMb } : {}),
    ...(typeof r.cpuUsPerEvent === "number" ? { cpuUsPerEvent: r.cpuUsPerEvent } : {}),
    ...(typeof r.clientCpuS === "number" && typeof r.events === "number" ? { cpuUsPerEvent: +((r.clientCpuS * 1e6) / r.events).toFixed(1) } : {}),
    ...(typeof r.clientPeakRssMB === "number" ? { peakRssMb: r.clientPeakRssMB } : {}),
    ...(typeof r.error === "string" ? { error: r.error } : {}),
  };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

/** One row per system and workload: the median of each figure over the rounds, the highest peak RSS, the spread. */
function summarize(runs: Result[]): Summary[] {
  const groups = new Map<string, Result[]>();
  for (const r of runs) {
    const key = `${r.name}\u0000${r.workload}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups.values()].map((group) => {
    const ok = group.filter((r) => r.error === undefined);
    if (ok.length === 0) return group[0]!;
    const pick = (k: keyof Result) => {
      const xs = ok.map((r) => r[k]).filter((x): x is number => typeof x === "number");
      return xs.length === 0 ? {} : { [k]: k === "peakRssMb" ? Math.max(...xs) : median(xs) };
    };
    const workload = ok[0]!.workload;
    const headline = workload === "w2" ? "p99" : workload === "w3" ? "deliveriesPerSec" : "eventsPerSec";
    const all = ok.map((r) => r[headline]).filter((x): x is number => typeof x === "number");
    return {
      name: ok[0]!.name,
      workload: ok[0]!.workload,
      N: ok[0]!.N,
      ...pick("eventsPerSec"),
      ...pick("deliveriesPerSec"),
      ...pick("p50"),
      ...pick("p95"),
      ...pick("p99"),
      ...pick("max"),
      ...pick("peakRssMb"),
      ...pick("cpuUsPerEvent"),
      ...(ok.length < group.length ? { error: `${group.length - ok.length} of ${group.length} rounds failed` } : {}),
      rounds: ok.length,
      ...(all.length > 1 ? { spread: `${Math.round(Math.min(...all) * 100) / 100}-${Math.round(Math.max(...all) * 100) / 100}` } : {}),
    };
  });
}

/** Compiles src/ into dist/ (what bus-child.mjs measures), so the figures are of the code in the working tree. */
function build(): void {
  if (process.env.BUS_NO_BUILD === "1") return;
  const r = spawnSync(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.build.json"], {
    cwd: root,
    stdio: "inherit",
  });
  if (r.status !== 0) throw new Error("the build (tsc -p tsconfig.build.json) failed");
}

/**
 * `BUS_BASELINE=<folder>`: another checkout of Sluice, built (`npm ci` builds it), measured in the same rounds as
 * `baseline-<backend>` so a change is compared with the commit before it on the same machine at the same time.
 */
const baselineDir = process.env.BUS_BASELINE;

function runSluice(backend: string, workload: string, n: number, checkout = root, label = `sluice-${backend}`): Result {
  const p = spawnSync(process.execPath, ["--expose-gc", join(checkout, "bench", "bus-child.mjs"), backend, workload, String(n)], {
    cwd: checkout,
    encoding: "utf8",
    timeout: 600_000,
    env: { ...process.env, NODE_NO_WARNINGS: "1" },
  });
  if (p.status !== 0) return { name: label, workload, N: n, error: (p.stderr || p.stdout).slice(-500) };
  return parse(p.stdout, label, workload, n);
}

function preparePeers(): string {
  const dir = join(tmpdir(), "sluice-peer-bench");
  if (!existsSync(join(dir, "node_modules"))) {
    mkdirSync(dir, { recursive: true });
    cpSync(peersSource, dir, { recursive: true, filter: (src) => !src.includes("node_modules") });
    const r = spawnSync("npm", ["ci", "--no-audit", "--no-fund"], { cwd: dir, stdio: "inherit" });
    if (r.status !== 0) throw new Error("npm ci failed in the peers cache");
  }
  return dir;
}

function runPeer(dir: string, peer: string, workload: string, n: number): Result {
  const p = spawnSync(process.execPath, ["bench.mjs", peer, workload, String(n)], {
    cwd: dir,
    encoding: "utf8",
    timeout: 600_000,
    env: { ...process.env, W2_SECONDS: process.env.BUS_W2_SECONDS ?? "10" },
  });
  return parse(p.stdout, peer, workload, n);
}

const fmt = (x: number | undefined, d = 0) => (x === undefined ? "-" : x.toLocaleString("en-US", { maximumFractionDigits: d }));
const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || b === 0 ? "-" : `${(a / b).toFixed(2)}×`);

async function parent(): Promise<void> {
  build();
  const N = Number(process.env.BUS_N ?? 100_000);
  const peerN = Number(process.env.BUS_PEER_N ?? 30_000);
  const pgUp = await reachable(5432);
  const backends = (process.env.BUS_BACKENDS ?? "sqlite,postgres").split(",").filter((b) => b !== "postgres" || pgUp);
  const peers = (process.env.BUS_PEERS ?? "bullmq,pgboss,sqlite").split(",");
  let peerDir: string | undefined;
  try {
    peerDir = preparePeers();
  } catch (err) {
    console.log(`peers unavailable: ${(err as Error).message}`);
  }
  // Rounds interleave every system, so a slow stretch of the (shared, virtual) machine hits all of them alike;
  // each figure is then the median over the rounds, and peak RSS the highest of them.
  const rounds = Math.max(1, Number(process.env.BUS_ROUNDS ?? 3));
  const runs: Result[] = [];
  for (const w of ["w1", "w2", "w3"]) {
    for (let round = 1; round <= rounds; round++) {
      for (const b of backends) {
        const r = runSluice(b, w, N);
        console.error(`# round ${round} ${r.name} ${w}: ${JSON.stringify(r)}`);
        runs.push(r);
        if (baselineDir) {
          const old = runSluice(b, w, N, baselineDir, `baseline-${b}`);
          console.error(`# round ${round} ${old.name} ${w}: ${JSON.stringify(old)}`);
          runs.push(old);
        }
      }
      if (peerDir) {
        for (const p of peers) {
          if (w === "w3" && p === "pgboss") continue; // not in the peers' W3 set
          const r = runPeer(peerDir, p, w, p === "sqlite" ? N : peerN);
          console.error(`# round ${round} ${p} ${w}: ${JSON.stringify(r)}`);
          runs.push(r);
        }
      }
    }
  }
  const results = summarize(runs);
  const of = (name: string, w: string) => results.find((r) => r.name === name && r.workload === w);
  const base = (w: string) => of("sqlite", w);

  console.log(`\nMedians of ${rounds} interleaved rounds (lowest-highest in brackets); peak RSS is the highest round's.`);
  console.log(`\n### W1 throughput (publish ${N.toLocaleString("en-US")} events of ~300 B in batches of 100, one rule, one no-op function target, until the last ack)\n`);
  console.log("| system | N | events/s | client CPU µs/event | peak RSS MB | vs bare SQLite | vs BullMQ | vs pg-boss |");
  console.log("|---|---|---|---|---|---|---|---|");
  for (const r of results.filter((x) => x.workload === "w1")) {
    console.log(
      `| ${r.name} | ${fmt(r.N)} | ${r.error ? `error: ${r.error.slice(0, 80)}` : withSpread(fmt(r.eventsPerSec), r)} | ${fmt(r.cpuUsPerEvent, 1)} | ${fmt(r.peakRssMb, 1)} | ${ratio(r.eventsPerSec, base("w1")?.eventsPerSec)} | ${ratio(r.eventsPerSec, of("bullmq", "w1")?.eventsPerSec)} | ${ratio(r.eventsPerSec, of("pgboss", "w1")?.eventsPerSec)} |`,
    );
  }
  console.log(`\n### W2 latency (1 000 events/s for ${process.env.BUS_W2_SECONDS ?? 10} s, one publish per event; publish → handler start, ms)\n`);
  console.log("| system | p50 | p95 | p99 | max | peak RSS MB | p99 vs bare SQLite | p99 vs BullMQ |");
  console.log("|---|---|---|---|---|---|---|---|");
  for (const r of results.filter((x) => x.workload === "w2")) {
    console.log(
      `| ${r.name} | ${r.error ? `error: ${r.error.slice(0, 80)}` : fmt(r.p50, 2)} | ${fmt(r.p95, 2)} | ${withSpread(fmt(r.p99, 2), r)} | ${fmt(r.max, 2)} | ${fmt(r.peakRssMb, 1)} | ${ratio(r.p99, base("w2")?.p99)} | ${ratio(r.p99, of("bullmq", "w2")?.p99)} |`,
    );
  }
  console.log(`\n### W3 fan-out (${N.toLocaleString("en-US")} events, one rule with 3 function targets; deliveries/s until the last ack)\n`);
  console.log("| system | N events | deliveries/s | client CPU µs/event | peak RSS MB | vs bare SQLite | vs BullMQ |");
  console.log("|---|---|---|---|---|---|---|");
  for (const r of results.filter((x) => x.workload === "w3")) {
    console.log(
      `| ${r.name} | ${fmt(r.N)} | ${r.error ? `error: ${r.error.slice(0, 80)}` : withSpread(fmt(r.deliveriesPerSec), r)} | ${fmt(r.cpuUsPerEvent, 1)} | ${fmt(r.peakRssMb, 1)} | ${ratio(r.deliveriesPerSec, base("w3")?.deliveriesPerSec)} | ${ratio(r.deliveriesPerSec, of("bullmq", "w3")?.deliveriesPerSec)} |`,
    );
  }
  const s = (w: string) => of("sluice-sqlite", w);
  const p = (w: string) => of("sluice-postgres", w);
  const peakSqlite = Math.max(...["w1", "w2", "w3"].map((w) => s(w)?.peakRssMb ?? 0));
  const goal = (ok: boolean | undefined, text: string) => console.log(`- ${ok === undefined ? "not measured" : ok ? "met" : "NOT met"}: ${text}`);
  console.log("\n### Goals\n");
  const w1 = s("w1")?.eventsPerSec, w1b = base("w1")?.eventsPerSec;
  goal(w1 !== undefined && w1b !== undefined ? w1 >= w1b / 2 : undefined, `SQLite W1 ≥ half of bare SQLite (${fmt(w1)} vs ${fmt(w1b)}/s)`);
  goal(s("w2")?.p99 !== undefined ? s("w2")!.p99! < 2 : undefined, `SQLite W2 p99 < 2 ms (${fmt(s("w2")?.p99, 2)} ms)`);
  const w3 = s("w3")?.deliveriesPerSec, w3b = base("w3")?.deliveriesPerSec;
  goal(w3 !== undefined && w3b !== undefined ? w3 >= (2 * w3b) / 3 : undefined, `SQLite W3 ≥ 2/3 of bare SQLite (${fmt(w3)} vs ${fmt(w3b)} deliveries/s)`);
  goal(peakSqlite > 0 ? peakSqlite < 200 : undefined, `SQLite peak RSS < 200 MB (${fmt(peakSqlite, 1)} MB)`);
  const pw1 = p("w1")?.eventsPerSec, pb = of("pgboss", "w1")?.eventsPerSec;
  goal(pw1 !== undefined && pb !== undefined ? pw1 >= 3 * pb : undefined, `PostgreSQL W1 ≥ 3× pg-boss (${fmt(pw1)} vs ${fmt(pb)}/s)`);
  goal(p("w2")?.p99 !== undefined ? p("w2")!.p99! < 20 : undefined, `PostgreSQL W2 p99 < 20 ms (${fmt(p("w2")?.p99, 2)} ms)`);
  if (baselineDir) {
    // Within noise: rounds of one system spread by 10-20 % on this shared machine.
    for (const b of backends) {
      for (const [w, key] of [["w1", "eventsPerSec"], ["w3", "deliveriesPerSec"]] as const) {
        const now = of(`sluice-${b}`, w)?.[key], before = of(`baseline-${b}`, w)?.[key];
        goal(now !== undefined && before !== undefined ? now >= 0.9 * before : undefined, `${b} ${w.toUpperCase()} no regression against ${baselineDir} (${fmt(now)} vs ${fmt(before)}, ${ratio(now, before)})`);
      }
    }
  }
}

await parent();
