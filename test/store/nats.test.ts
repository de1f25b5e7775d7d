import { test } from "node:test";
import { randomUUID } from "node:crypto";
import { runStoreConformance } from "../../src/store/conformance/index.ts";
import { skipUnless, services } from "../helpers/services.ts";

const skip = await skipUnless("nats");

if (skip) {
  test("store conformance - nats", { skip }, () => {});
} else {
  const { createNatsStore } = await import("../../src/store/nats/index.ts");
  const servers = [`${services.nats.host}:${services.nats.port}`];
  runStoreConformance({
    name: "nats",
    async open() {
      // One deployment per test: its own streams, consumers and buckets, deleted afterwards.
      const deployment = `t${randomUUID().replaceAll("-", "").slice(0, 20)}`;
      const store = await createNatsStore({ servers, deployment });
      return {
        store,
        reopen: () => createNatsStore({ servers, deployment }),
        cleanup: async () => {
          const last = await createNatsStore({ servers, deployment });
          await last.destroy();
        },
      };
    },
  });
}
