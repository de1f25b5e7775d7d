/** `sluice audit`: the audit log of admin writes (who, what, on what, how many, when), newest first. */
import type { Command } from "commander";
import type { AuditEntry } from "../server/audit.ts";
import type { RegisterCommand } from "./main.ts";
import { action, clientOptions, print, request, table } from "./client.ts";

export const register: RegisterCommand = (program: Command, setExitCode) => {
  clientOptions(
    program
      .command("audit")
      .description("Show the audit log of admin writes: redrive, purge, replay, invoke, key changes")
      .option("--limit <n>", "how many entries", "50")
      .option("--action <action>", "only this action, e.g. dlq.purge")
      .option("--by <key>", "only writes made with this key name"),
  ).action(
    action(setExitCode, async (opts: { url: string; key?: string; json?: boolean; limit: string; action?: string; by?: string }) => {
      const q = new URLSearchParams({ limit: opts.limit, ...(opts.action ? { action: opts.action } : {}), ...(opts.by ? { key: opts.by } : {}) });
      const entries = await request<AuditEntry[]>(opts, "GET", `admin/audit?${q}`);
      print(opts, entries, () => table(entries as unknown as Record<string, unknown>[], ["time", "key", "action", "target", "count"]));
    }),
  );
};
