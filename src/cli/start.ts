/** `sluice start [dir]`: production mode, JSON logs, graceful shutdown on SIGTERM; several processes share one PostgreSQL. */
import type { Command } from "commander";
import type { RegisterCommand } from "./main.ts";
import { action } from "./client.ts";
import { serve, type ServeFlags } from "./serve.ts";

export const register: RegisterCommand = (program: Command, setExitCode) => {
  program
    .command("start [dir]")
    .description("Run an app in production: JSON logs, graceful shutdown on SIGTERM, shared PostgreSQL or SQLite store")
    .option("--port <port>", "HTTP port (0 picks a free one; env SLUICE_PORT)")
    .option("--host <host>", "address to listen on (default 0.0.0.0)")
    .option("--store <url>", "sqlite:PATH or postgres://user@host:5432/db (env SLUICE_STORE)")
    .option("--data-dir <dir>", "where the default SQLite store lives (default <dir>/.sluice)")
    .option("--log-level <level>", "trace, debug, info, warn, error")
    .option("--shutdown-grace <duration>", "how long SIGTERM waits for in-flight work, e.g. 10s")
    .option("--admin-key-file <file>", "a file holding the bootstrap admin key (env SLUICE_ADMIN_KEY, SLUICE_ADMIN_KEY_FILE)")
    .option("--no-auth", "do not check API keys: anyone who reaches the port may publish, invoke and administer")
    .addHelpText("after", `\nExamples:\n  $ sluice start examples/shop --store postgres://sluice@db:5432/sluice\n  $ SLUICE_ADMIN_KEY=$(sluice keys generate) sluice start .\n  $ SLUICE_PORT=8080 sluice start .`)
    .action(action(setExitCode, (dir: string | undefined, opts: ServeFlags) => serve("start", dir ?? ".", opts)));
};
