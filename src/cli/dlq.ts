/** `sluice dlq list|show|redrive|purge`: the dead-letter queues of a running server. */
import type { Command } from "commander";
import { ErrorCode, SluiceError } from "../errors.ts";
import type { RegisterCommand } from "./main.ts";
import { action, clientOptions, jsonArg, print, progress, progressDone, request, table } from "./client.ts";

/** The implicit rule a function's `on` pattern becomes, and its target id. */
export function functionTarget(fn: string): string {
  return `default/function.${fn}/fn`;
}

interface TargetOpts {
  target?: string;
  function?: string;
}

/** `bus/rule/target` from --target or --function; undefined when neither was given. */
function targetPath(opts: TargetOpts, required: boolean): string | undefined {
  if (opts.target && opts.function) throw new SluiceError(ErrorCode.BadRequest, "give --target or --function, not both");
  const t = opts.function ? functionTarget(opts.function) : opts.target;
  if (t === undefined) {
    if (required) throw new SluiceError(ErrorCode.BadRequest, "name the queue with --function <name> or --target <bus/rule/target> (see `sluice dlq list`)");
    return undefined;
  }
  const parts = t.split("/");
  if (parts.length !== 3 || parts.some((p) => !p)) throw new SluiceError(ErrorCode.BadRequest, `--target ${JSON.stringify(t)} is not bus/rule/target, e.g. default/audit/webhook-0`);
  return parts.map(encodeURIComponent).join("/");
}

function withTarget(cmd: Command): Command {
  return cmd.option("--function <name>", "the dead letters of a function's own rule").option("--target <bus/rule/target>", "the dead letters of one rule target");
}

export const register: RegisterCommand = (program: Command, setExitCode) => {
  const dlq = program
    .command("dlq")
    .description("Inspect, redrive and purge dead-letter queues")
    .addHelpText("after", `\nExamples:\n  $ sluice dlq list\n  $ sluice dlq list --function charge-payment\n  $ sluice dlq redrive --function charge-payment`);

  clientOptions(withTarget(dlq.command("list").description("Targets with dead letters, or the dead letters of one target")))
    .option("--limit <n>", "at most this many", "50")
    .addHelpText("after", `\nExample:\n  $ sluice dlq list --function charge-payment --json`)
    .action(
      action(setExitCode, async (opts: TargetOpts & { url: string; json?: boolean; limit: string }) => {
        const path = targetPath(opts, false);
        if (path === undefined) {
          const rows = await request<Record<string, unknown>[]>(opts, "GET", "admin/dlq");
          print(opts, rows, () => table(rows, ["target", "dead", "ready", "leased"]));
          return;
        }
        const rows = await request<Record<string, unknown>[]>(opts, "GET", `admin/dlq/${path}?limit=${Number(opts.limit)}`);
        print(opts, rows, () =>
          table(
            rows.map((r) => ({ ...r, type: (r.event as { type?: string })?.type, deadAt: new Date(Number(r.deadAt)).toISOString() })),
            ["deliveryId", "type", "reason", "attempts", "deadAt", "lastError"],
          ),
        );
      }),
    );

  clientOptions(dlq.command("show <deliveryId>").description("One dead letter with its event, reason and last error"))
    .addHelpText("after", `\nExample:\n  $ sluice dlq show 42`)
    .action(
      action(setExitCode, async (id: string, opts: { url: string; json?: boolean }) => {
        const dl = await request<Record<string, unknown>>(opts, "GET", `admin/dlq/messages/${encodeURIComponent(id)}`);
        print(opts, dl, () => `${JSON.stringify(dl, null, 2)}\n`);
      }),
    );

  clientOptions(withTarget(dlq.command("redrive").description("Send dead letters back to their target (all, --id, or --filter)")), false)
    .option("--id <ids...>", "only these delivery ids")
    .option("--filter <pattern>", "only events matching this event pattern: JSON or @file")
    .option("--json", "print JSON")
    .addHelpText("after", `\nExample:\n  $ sluice dlq redrive --function charge-payment`)
    .action(
      action(setExitCode, async (opts: TargetOpts & { url: string; id?: string[]; filter?: string; json?: boolean }) => {
        const path = targetPath(opts, true);
        progress(0, "redriving");
        const res = await request<{ redriven: number }>(opts, "POST", `admin/dlq/${path}/redrive`, {
          ...(opts.id ? { ids: opts.id } : {}),
          ...(opts.filter ? { filter: jsonArg(opts.filter, "--filter") } : {}),
        });
        progress(1, `${res.redriven} redriven`);
        progressDone();
        print(opts, res, () => `redriven ${res.redriven} dead letter${res.redriven === 1 ? "" : "s"}\n`);
      }),
    );

  clientOptions(withTarget(dlq.command("purge").description("Delete dead letters (all of a target, or --id)")), false)
    .option("--id <ids...>", "only these delivery ids")
    .option("--json", "print JSON")
    .addHelpText("after", `\nExample:\n  $ sluice dlq purge --target default/audit/webhook-0`)
    .action(
      action(setExitCode, async (opts: TargetOpts & { url: string; id?: string[]; json?: boolean }) => {
        const path = targetPath(opts, true);
        const res = await request<{ purged: number }>(opts, "POST", `admin/dlq/${path}/purge`, opts.id ? { ids: opts.id } : {});
        print(opts, res, () => `purged ${res.purged} dead letter${res.purged === 1 ? "" : "s"}\n`);
      }),
    );
};
