/**
 * `sluice/testing`: what a storage backend outside this package runs to prove it keeps the contract. The
 * conformance suite (node:test cases for every guarantee of the contract) and the crash harness (child processes
 * SIGKILLed mid-write). Nothing here is loaded by `import "sluice"`.
 *
 * @example
 * ```ts
 * import { runStoreConformance, publisherCrash } from "sluice/testing";
 * runStoreConformance({ name: "mystore", open: async () => ({ store: await openMine(), reopen: openMine }) });
 * test("mystore - acknowledged appends survive SIGKILL", () =>
 *   publisherCrash({ url: "mystore://x", open: openMine, childImports: ["mystore/register"] }));
 * ```
 */
export { runStoreConformance } from "./store/conformance/index.ts";
export type { Capability, StoreConformanceOptions, StoreUnderTest } from "./store/conformance/index.ts";
export { consumerCrash, crashBus, crashChildArgs, crashQueues, drain, publisherCrash, runChildUntilKilled } from "./store/crash/harness.ts";
export type { CrashTarget } from "./store/crash/harness.ts";
