/** `sluice publish`: publishes one event (or a batch) to a bus of a running server. */
import type { Command } from "commander";
import { ErrorCode, SluiceError } from "../errors.ts";
import type { RegisterCommand } from "./main.ts";
import { action, clientOptions, jsonArg, print, request, table } from "./client.ts";

export const register: RegisterCommand = (program: Command, setExitCode) => {
  clientOptions(
    program
      .command("publish")
      .description("Publish an event (or a JSON array of events) to a bus")
      .option("--bus <bus>", "the bus", "default")
      .option("--type <type>", "the event's type, e.g. order.created")
      .option("--source <source>", "the event's source", "sluice-cli")
      .option("--subject <subject>", "the event's subject")
      .option("--data <json>", "the event's data: JSON or @file")
      .option("--event <json>", "a whole CloudEvent (or an array of them): JSON or @file")
      .addHelpText("after", `\nExamples:\n  $ sluice publish --type order.created --data '{"orderId":"o-1","total":42}'\n  $ sluice publish --bus orders --event @events.json`),
    false,
  )
    .option("--json", "print the server's JSON answer")
    .action(
      action(setExitCode, async (opts: { bus: string; type?: string; source: string; subject?: string; data?: string; event?: string; url: string; json?: boolean }) => {
        let body: unknown;
        if (opts.event !== undefined) body = jsonArg(opts.event, "--event");
        else {
          if (!opts.type) throw new SluiceError(ErrorCode.BadRequest, "publish needs --type (or --event); e.g. --type order.created");
          body = {
            specversion: "1.0",
            type: opts.type,
            source: opts.source,
            ...(opts.subject ? { subject: opts.subject } : {}),
            ...(opts.data === undefined ? {} : { datacontenttype: "application/json", data: jsonArg(opts.data, "--data") }),
          };
        }
        const batch = Array.isArray(body);
        const res = await request<{ ids: string[]; failedEntryCount?: number; entries?: Record<string, unknown>[] }>(
          opts,
          "POST",
          `buses/${encodeURIComponent(opts.bus)}/events`,
          JSON.stringify(body),
          { "content-type": batch ? "application/cloudevents-batch+json" : "application/cloudevents+json" },
        );
        print(opts, res, () =>
          batch ? table((res.entries ?? []).map((e, i) => ({ index: i, ...e })), ["index", "id", "code", "message"]) : `${res.ids.join("\n")}\n`,
        );
        return (res.failedEntryCount ?? 0) > 0 ? 1 : 0;
      }),
    );
};
