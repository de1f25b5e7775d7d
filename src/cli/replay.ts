/** `sluice replay`: replays a bus's archived events from a time range, with a progress bar. */
import { randomUUID } from "node:crypto";
import type { Command } from "commander";
import { ErrorCode, SluiceError } from "../errors.ts";
import type { RegisterCommand } from "./main.ts";
import { action, clientOptions, jsonArg, print, progress, progressDone, request, timeArg } from "./client.ts";

interface Replay {
  name: string;
  state: string;
  fromAt: number;
  toAt: number;
  lastAt?: number;
  eventsRead: number;
  eventsReplayed: number;
  error?: string;
}

function rateArg(value: string): number {
  const rate = Number(value);
  if (!Number.isFinite(rate) || rate <= 0) throw new SluiceError(ErrorCode.BadRequest, `--rate must be a positive number of events per second, not "${value}"`);
  return rate;
}

export const register: RegisterCommand = (program: Command, setExitCode) => {
  clientOptions(
    program
      .command("replay")
      .description("Replay archived events of a bus from a time range (into the bus, or one rule's targets)")
      // Required unless --cancel is given (checked below: commander cannot make them conditional).
      .option("--bus <bus>", "the bus whose archive is read (required)")
      .option("--from <time>", "start: 2026-01-01T00:00:00Z, epoch ms, or relative like -1h (required)")
      .option("--to <time>", "end (exclusive)", "now")
      .option("--pattern <pattern>", "only events matching this event pattern: JSON or @file")
      .option("--rule <rule>", "deliver only to this rule's targets (default: republish into the bus)")
      .option("--name <name>", "the replay's name (default generated)")
      .option("--rate <events/s>", "replay at most this many events per second (default: as fast as the bus takes them)")
      .option("--no-wait", "start it and return at once")
      .option("--cancel <name>", "cancel a running replay instead")
      .addHelpText(
        "after",
        `\nExamples:\n  $ sluice replay --bus default --from -1h --pattern '{"type":["order.created"]}'\n  $ sluice replay --bus default --from 2026-05-01T00:00:00Z --to 2026-05-02T00:00:00Z --rule function.ship-order\n  $ sluice replay --cancel cli-1a2b3c4d`,
      ),
  ).action(
    action(setExitCode, async (opts: { url: string; json?: boolean; bus?: string; from?: string; to: string; pattern?: string; rule?: string; name?: string; rate?: string; wait: boolean; cancel?: string }) => {
      if (opts.cancel) {
        const r = await request<Replay>(opts.url, "POST", `admin/replays/${encodeURIComponent(opts.cancel)}/cancel`, {});
        print(opts, r, () => `replay ${r.name}: ${r.state}\n`);
        return;
      }
      if (opts.bus === undefined || opts.from === undefined) {
        throw new SluiceError(ErrorCode.BadRequest, "replay needs --bus and --from (or --cancel <name> to stop a running replay)");
      }
      const bus = opts.bus;
      const fromAt = timeArg(opts.from, "--from");
      const toAt = timeArg(opts.to, "--to");
      let r = await request<Replay>(opts.url, "POST", "admin/replays", {
        name: opts.name ?? `cli-${randomUUID().slice(0, 8)}`,
        bus,
        fromAt,
        toAt,
        ...(opts.pattern ? { pattern: jsonArg(opts.pattern, "--pattern") } : {}),
        destination: opts.rule ? { rule: opts.rule } : { bus },
        ...(opts.rate === undefined ? {} : { maxPerSecond: rateArg(opts.rate) }),
      });
      while (opts.wait && r.state === "running") {
        const span = Math.max(1, r.toAt - r.fromAt);
        progress(((r.lastAt ?? r.fromAt) - r.fromAt) / span, `${r.eventsReplayed} replayed of ${r.eventsRead} read`);
        await new Promise((res) => setTimeout(res, 200));
        r = await request<Replay>(opts.url, "GET", `admin/replays/${encodeURIComponent(r.name)}`);
      }
      if (opts.wait) {
        progress(r.state === "completed" ? 1 : 0, `${r.eventsReplayed} replayed of ${r.eventsRead} read`);
        progressDone();
      }
      print(opts, r, () => `replay ${r.name}: ${r.state}, ${r.eventsReplayed} events replayed (${r.eventsRead} read)${r.error ? `: ${r.error}` : ""}\n`);
      return r.state === "failed" || r.state === "cancelled" ? 1 : 0;
    }),
  );
};
