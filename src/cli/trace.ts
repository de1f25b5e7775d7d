/** `sluice trace <eventId>`: what happened to an event and to every event emitted from it (its lineage). */
import type { Command } from "commander";
import type { LineageNode } from "../telemetry/lineage-tree.ts";
import { renderLineage } from "../telemetry/lineage-text.ts";
import type { RegisterCommand } from "./main.ts";
import { action, clientOptions, print, request } from "./client.ts";

export const register: RegisterCommand = (program: Command, setExitCode) => {
  clientOptions(
    program
      .command("trace <eventId>")
      .description("Show an event's lineage: rules matched, delivery attempts with outcome and error, function runs, and emitted events")
      .option("--depth <n>", "levels of emitted events to follow (default 32)")
      .addHelpText("after", `\nExample:\n  $ sluice trace 01927c1e-8f2a-7c3d-9b1e-2f4a5b6c7d8e\n  $ sluice trace 01927c1e-8f2a-7c3d-9b1e-2f4a5b6c7d8e --json`),
  ).action(
    action(setExitCode, async (eventId: string, opts: { url: string; key?: string; json?: boolean; depth?: string }) => {
      const query = opts.depth === undefined ? "" : `?depth=${encodeURIComponent(opts.depth)}`;
      const tree = await request<LineageNode>(opts, "GET", `admin/events/${encodeURIComponent(eventId)}/trace${query}`);
      print(opts, tree, () => `${renderLineage(tree)}\n`);
    }),
  );
};
