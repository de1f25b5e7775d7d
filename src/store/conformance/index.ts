/**
 * The storage conformance suite: every backend's test file calls `runStoreConformance` and so proves every
 * guarantee written in `contract.ts`. Backend-neutral: it only uses the contract. Cases that move a manual clock
 * (exact lease expiry, delays, the dedupe window) run where `capabilities.callerClock` is declared and are
 * skipped with the reason elsewhere; `timing.case.ts` proves the same guarantees on real, short times on every
 * backend. Known gaps are skipped by title with the reason printed. Exported as `sluice/testing`, so a backend outside this repository runs the same suite.
 *
 * @example
 * ```ts
 * // test/store/sqlite.test.ts
 * runStoreConformance({
 *   name: "sqlite",
 *   async open() {
 *     const dir = mkdtempSync(join(tmpdir(), "sluice-"));
 *     const path = join(dir, "data.db");
 *     return {
 *       store: await createSqliteStore({ path }),
 *       reopen: () => createSqliteStore({ path }),
 *       cleanup: async () => rmSync(dir, { recursive: true, force: true }),
 *     };
 *   },
 * });
 * ```
 */
import { describe, test, type TestContext } from "node:test";
import type { StorageBackend } from "../contract.ts";
import { concurrencyCases } from "./concurrency.case.ts";
import { deadLetterCases } from "./dlq.case.ts";
import { eventCases } from "./events.case.ts";
import { fanOutCases } from "./fanout.case.ts";
import type { CaseContext, CaseOptions, Capability, It, Setup } from "./helpers.ts";
import { lifecycleCases } from "./lifecycle.case.ts";
import { queueCases } from "./queues.case.ts";
import { stateCases } from "./state.case.ts";
import { timingCases } from "./timing.case.ts";

export type { Capability } from "./helpers.ts";

/** What `open()` returns: a fresh, isolated backend, and a way to open the same data again. */
export interface StoreUnderTest {
  store: StorageBackend;
  /**
   * Opens another backend object over the same data. It is called both while `store` is still open (two
   * objects sharing data, e.g. two processes on one database) and after `store` was closed (durability).
   */
  reopen(): Promise<StorageBackend>;
  /** Removes the data (temp directory, database) once every backend object of the test is closed. */
  cleanup?(): Promise<void>;
}

export interface StoreConformanceOptions {
  /** Backend name, shown in the suite title. */
  name: string;
  /** A fresh, isolated backend per test. */
  open(): Promise<StoreUnderTest>;
  /** Known gaps, skipped by exact test title with the reason printed. */
  skip?: { reason: string; tests: string[] }[];
}

/** Thrown by `setup` when the backend lacks a capability the case needs; the case is then marked skipped. */
const lacksCapability = Symbol("lacks capability");

export function runStoreConformance(options: StoreConformanceOptions): void {
  const skipped = new Map<string, string>();
  for (const gap of options.skip ?? []) for (const title of gap.tests) skipped.set(title, gap.reason);
  const needed = new Map<string, Capability[]>();

  const setup: Setup = async (t: TestContext) => {
    const opened = await options.open();
    const stores: StorageBackend[] = [opened.store];
    t.after(async () => {
      for (const s of stores) await s.close();
      await opened.cleanup?.();
    });
    const missing = (needed.get(t.name) ?? []).filter((c) => !opened.store.capabilities[c]);
    if (missing.length > 0) {
      t.skip(`the backend does not declare ${missing.map((c) => `capabilities.${c}`).join(", ")}`);
      throw lacksCapability;
    }
    return {
      store: opened.store,
      async reopen() {
        const s = await opened.reopen();
        stores.push(s);
        return s;
      },
    };
  };

  const it: It = (title: string, ...rest: [CaseOptions, (t: TestContext) => Promise<void>] | [(t: TestContext) => Promise<void>]) => {
    const [caseOptions, body] = rest.length === 2 ? rest : [{}, rest[0]];
    if (caseOptions.needs !== undefined) needed.set(title, caseOptions.needs);
    const reason = skipped.get(title);
    if (reason !== undefined) {
      test(title, { skip: reason }, () => {});
      return;
    }
    test(title, async (t) => {
      try {
        await body(t);
      } catch (err) {
        if (err !== lacksCapability) throw err;
      }
    });
  };

  const context: CaseContext = { it, setup };
  describe(`store conformance - ${options.name}`, () => {
    eventCases(context);
    queueCases(context);
    deadLetterCases(context);
    concurrencyCases(context);
    fanOutCases(context);
    stateCases(context);
    lifecycleCases(context);
    timingCases(context);
  });
}
