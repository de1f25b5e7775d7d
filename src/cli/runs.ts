/** `sluice runs list|show|cancel`: the workflow runs of a running server. */
import type { Command } from "commander";
import type { RegisterCommand } from "./main.ts";
import { action, clientOptions, print, request, table } from "./client.ts";

const iso = (ms: unknown) => (typeof ms === "number" ? new Date(ms).toISOString() : undefined);

interface StepView {
  id: string;
  kind: string;
  status: string;
  attempts: number;
  startedAt: number;
  endedAt?: number;
  until?: number | null;
  error?: { message: string };
  compensate?: { closure: true } | { function: string };
  compensation?: { status: string; attempts: number; error?: { message: string } };
}

interface RunView {
  runId: string;
  workflow: string;
  status: string;
  createdAt: number;
  endedAt?: number;
  trigger: { id: string; type: string };
  memo: Record<string, unknown>;
  steps: StepView[];
  output?: unknown;
  error?: { message: string };
}

function showRun(r: RunView): string {
  const result = (s: StepView) => {
    if (s.error) return `error: ${s.error.message}`;
    if (!Object.hasOwn(r.memo, s.id)) return s.until ? `until ${iso(s.until)}` : undefined;
    const text = JSON.stringify(r.memo[s.id]);
    return text.length > 60 ? `${text.slice(0, 57)}...` : text;
  };
  const rows = r.steps.map((s) => ({
    step: s.id,
    kind: s.kind,
    status: s.status,
    attempts: s.attempts,
    ms: s.endedAt === undefined ? undefined : s.endedAt - s.startedAt,
    result: result(s),
    compensation: s.compensation
      ? `${s.compensation.status} (${s.compensation.attempts} attempts)${s.compensation.error ? `: ${s.compensation.error.message}` : ""}`
      : s.compensate
        ? "declared"
        : undefined,
  }));
  return [
    `${r.runId}  ${r.workflow}  ${r.status}\n`,
    `trigger ${r.trigger.type} ${r.trigger.id}, started ${iso(r.createdAt)}${r.endedAt ? `, ended ${iso(r.endedAt)}` : ""}\n`,
    r.error ? `error: ${r.error.message}\n` : "",
    r.output !== undefined ? `output: ${JSON.stringify(r.output)}\n` : "",
    "\n",
    table(rows, ["step", "kind", "status", "attempts", "ms", "result", "compensation"]),
  ].join("");
}

export const register: RegisterCommand = (program: Command, setExitCode) => {
  const runs = program
    .command("runs")
    .description("List, inspect and cancel workflow runs")
    .addHelpText("after", `\nExamples:\n  $ sluice runs list --workflow fulfil-order --status waiting\n  $ sluice runs show <runId>\n  $ sluice runs cancel <runId>`);

  clientOptions(runs.command("list").description("Workflow runs, newest first"))
    .option("--workflow <name>", "only the runs of this workflow")
    .option("--status <status>", "only runs in this status (running, sleeping, waiting, completed, failed, compensating, compensated, compensation-failed, cancelled)")
    .option("--limit <n>", "at most this many", "100")
    .action(
      action(setExitCode, async (opts: { url: string; key?: string; json?: boolean; workflow?: string; status?: string; limit: string }) => {
        const q = new URLSearchParams({ limit: String(Number(opts.limit) || 100) });
        if (opts.workflow) q.set("workflow", opts.workflow);
        if (opts.status) q.set("status", opts.status);
        const rows = await request<Record<string, unknown>[]>(opts, "GET", `admin/runs?${q}`);
        print(opts, rows, () => table(rows.map((r) => ({ ...r, createdAt: iso(r.createdAt) })), ["runId", "workflow", "status", "steps", "createdAt", "error"]));
      }),
    );

  clientOptions(runs.command("show").description("One run: each step with its status, attempts, timing, result or error, and compensation").argument("<runId>"))
    .action(
      action(setExitCode, async (runId: string, opts: { url: string; key?: string; json?: boolean }) => {
        const run = await request<RunView>(opts, "GET", `admin/runs/${encodeURIComponent(runId)}`);
        print(opts, run, () => showRun(run));
      }),
    );

  clientOptions(runs.command("cancel").description("Cancel a run: the compensations of its completed steps run, newest first").argument("<runId>"))
    .action(
      action(setExitCode, async (runId: string, opts: { url: string; key?: string; json?: boolean }) => {
        const run = await request<RunView>(opts, "POST", `admin/runs/${encodeURIComponent(runId)}/cancel`, {});
        print(opts, run, () => `${run.runId}: ${run.status}\n`);
      }),
    );
};
