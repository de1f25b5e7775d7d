/** `sluice invoke <fn>`: runs a function synchronously on a running server and prints its result. */
import type { Command } from "commander";
import type { RegisterCommand } from "./main.ts";
import { action, clientOptions, jsonArg, request } from "./client.ts";

export const register: RegisterCommand = (program: Command, setExitCode) => {
  clientOptions(
    program
      .command("invoke <function>")
      .description("Invoke a function synchronously and print its result")
      .option("--data <json>", "the event's data: JSON or @file")
      .option("--event <json>", "a whole CloudEvent: JSON or @file")
      .option("--type <type>", "the event's type", "sluice.invoke")
      .addHelpText("after", `\nExample:\n  $ sluice invoke get-order --data '{"orderId":"o-1"}'`),
    false,
  ).action(
    action(setExitCode, async (fn: string, opts: { data?: string; event?: string; type: string; url: string }) => {
      const body = opts.event !== undefined ? { event: jsonArg(opts.event, "--event") } : { type: opts.type, ...(opts.data === undefined ? {} : { data: jsonArg(opts.data, "--data") }) };
      const res = await request<{ result: unknown }>(opts, "POST", `admin/functions/${encodeURIComponent(fn)}/invoke`, body);
      process.stdout.write(`${JSON.stringify(res.result ?? null, null, 2)}\n`);
    }),
  );
};
