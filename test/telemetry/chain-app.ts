/**
 * The app of the telemetry tests: a route's function (ingest) emits order.created, which the bill function takes,
 * failing its first attempt and then emitting invoice.created, which the mail function takes.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** `extraConfig` is appended inside the defineApp object (start it with a comma). */
export function writeChainApp(dir: string, extraConfig = ""): void {
  mkdirSync(join(dir, "functions"), { recursive: true });
  writeFileSync(join(dir, "sluice.config.ts"), `export default { name: "chain", routes: { "POST /orders": "ingest" }${extraConfig} };\n`);
  writeFileSync(
    join(dir, "functions", "ingest.ts"),
    `import { defineFunction } from "sluice";
export default defineFunction({
  name: "ingest",
  async handler(event, ctx) {
    await ctx.emit({ type: "order.created", source: "/shop", data: { order: 1 } });
    return { statusCode: 202, body: JSON.stringify({ eventId: event.id }) };
  },
});
`,
  );
  writeFileSync(
    join(dir, "functions", "bill.ts"),
    `import { defineFunction } from "sluice";
export default defineFunction({
  name: "bill",
  on: { type: ["order.created"] },
  retry: { attempts: 3, backoff: { initial: "20ms", max: "20ms" } },
  async handler(event, ctx) {
    if (ctx.attempt === 1) throw new Error("card declined");
    await ctx.emit({ type: "invoice.created", source: "/billing", data: { order: 1, tracedBy: ctx.traceparent ?? null } });
  },
});
`,
  );
  writeFileSync(
    join(dir, "functions", "mail.ts"),
    `import { defineFunction } from "sluice";
export default defineFunction({ name: "mail", on: { type: ["invoice.created"] }, async handler() {} });
`,
  );
}

