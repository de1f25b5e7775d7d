/** `sluice dev [dir]`: everything in one process with an embedded SQLite store, hot reload and readable logs. */
import type { Command } from "commander";
import type { RegisterCommand } from "./main.ts";
import { action } from "./client.ts";
import { serve, type ServeFlags } from "./serve.ts";

export const register: RegisterCommand = (program: Command, setExitCode) => {
  program
    .command("dev [dir]")
    .description("Run an app locally: SQLite store in <dir>/.sluice, HTTP on port 8787, hot reload, readable logs")
    .option("--port <port>", "HTTP port (0 picks a free one; env SLUICE_PORT)")
    .option("--host <host>", "address to listen on (default 127.0.0.1)")
    .option("--data-dir <dir>", "where the SQLite store lives (default <dir>/.sluice)")
    .option("--store <url>", "sqlite:PATH or postgres://… instead of the data dir")
    .option("--log-level <level>", "trace, debug, info, warn, error")
    .addHelpText("after", `\nExamples:\n  $ sluice dev examples/shop\n  $ sluice dev . --port 3000`)
    .action(action(setExitCode, (dir: string | undefined, opts: ServeFlags) => serve("dev", dir ?? ".", opts)));
};
