/** `sluice status`: functions, instances, backlog, error rates, schedules and event sources of a running server. */
import type { Command } from "commander";
import type { RegisterCommand } from "./main.ts";
import { action, clientOptions, print, request, table } from "./client.ts";

interface Status {
  app: string;
  mode: string;
  store: string;
  uptimeMs: number;
  functions: Record<string, unknown>[];
  schedules: Record<string, unknown>[];
  sources?: Record<string, unknown>[];
  deadLetters: number;
}

/** One source as a row: messages in (every outcome), errors (dead-lettered or failed), lag when the broker reports it. */
function sourceRow(s: Record<string, unknown>): Record<string, unknown> {
  const m = (s.messages ?? {}) as Record<string, number>;
  const total = Object.values(m).reduce((a, b) => a + b, 0);
  return { ...s, in: total, errors: (m["dead-lettered"] ?? 0) + (m.error ?? 0), lag: s.lag ?? "-" };
}

export const register: RegisterCommand = (program: Command, setExitCode) => {
  clientOptions(
    program
      .command("status")
      .description("Show functions (instances, backlog, error rate), schedules, event sources and dead letters of a running server")
      .addHelpText("after", `\nExample:\n  $ sluice status --url http://127.0.0.1:8787`),
  ).action(
    action(setExitCode, async (opts: { url: string; json?: boolean }) => {
      const s = await request<Status>(opts, "GET", "admin/status");
      print(opts, s, () =>
        [
          `${s.app} (${s.mode}, store ${s.store}, up ${Math.round(s.uptimeMs / 1000)}s, ${s.deadLetters} dead letters)\n\n`,
          table(s.functions, ["name", "instances", "busy", "backlog", "invocations", "errors", "errorRate"]),
          s.schedules.length ? `\n${table(s.schedules, ["name", "expression", "next", "lastFired", "fired"])}` : "",
          s.sources?.length ? `\n${table(s.sources.map(sourceRow), ["name", "kind", "status", "published", "in", "errors", "lag", "detail"])}` : "",
        ].join(""),
      );
    }),
  );
};
