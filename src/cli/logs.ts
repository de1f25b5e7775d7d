/** `sluice logs`: recent log lines of a running server, optionally following and filtered by function. */
import type { Command } from "commander";
import type { RegisterCommand } from "./main.ts";
import { action, authHeaders, clientOptions } from "./client.ts";

const levels: Record<number, string> = { 10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL" };

/** One line for humans: time, level, function, message, then the other fields. */
export function formatLine(line: Record<string, unknown>): string {
  const { time, level, msg, functionName, pid: _pid, hostname: _h, ...rest } = line;
  const t = typeof time === "number" ? new Date(time).toISOString().slice(11, 23) : "";
  const fields = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : "";
  return `${t} ${(levels[level as number] ?? String(level)).padEnd(5)} ${functionName ? `[${String(functionName)}] ` : ""}${String(msg ?? "")}${fields}`;
}

export const register: RegisterCommand = (program: Command, setExitCode) => {
  clientOptions(
    program
      .command("logs")
      .description("Print the server's recent log lines; --follow keeps streaming")
      .option("-f, --follow", "keep streaming new lines")
      .option("--function <name>", "only lines of this function")
      .option("--limit <n>", "how many recent lines", "100")
      .addHelpText("after", `\nExample:\n  $ sluice logs --follow --function charge-payment`),
  ).action(
    action(setExitCode, async (opts: { url: string; key?: string; json?: boolean; follow?: boolean; function?: string; limit: string }) => {
      const q = new URLSearchParams({ limit: opts.limit, ...(opts.follow ? { follow: "1" } : {}), ...(opts.function ? { function: opts.function } : {}) });
      // Ctrl-C is how a user ends --follow: close the stream and exit 0 instead of dying by the signal.
      const stop = new AbortController();
      const onSigint = () => stop.abort();
      process.once("SIGINT", onSigint);
      try {
        let res: Response;
        try {
          res = await fetch(new URL(`admin/logs?${q}`, opts.url.endsWith("/") ? opts.url : `${opts.url}/`), { signal: stop.signal, headers: authHeaders(opts) });
        } catch (err) {
          if (stop.signal.aborted) return;
          throw new Error(`no Sluice server answers at ${opts.url}; start one with \`sluice dev\` or pass --url`, { cause: err });
        }
        if (!res.ok || !res.body) throw new Error(`the server answered ${res.status}: ${await res.text()}`);
        const decoder = new TextDecoder();
        let buf = "";
        try {
          for await (const chunk of res.body) {
            buf += decoder.decode(chunk as Uint8Array, { stream: true });
            let i: number;
            while ((i = buf.indexOf("\n")) >= 0) {
              const text = buf.slice(0, i);
              buf = buf.slice(i + 1);
              if (!text) continue;
              process.stdout.write(opts.json ? `${text}\n` : `${formatLine(JSON.parse(text) as Record<string, unknown>)}\n`);
            }
          }
        } catch (err) {
          if (!stop.signal.aborted) throw err;
        }
      } finally {
        process.off("SIGINT", onSigint);
      }
    }),
  );
};
