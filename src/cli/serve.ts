/**
 * Runs a server in the foreground for `sluice dev` and `sluice start`: prints config problems, and on SIGTERM or
 * SIGINT shuts down gracefully (a second signal forces the exit).
 */
import { ConfigError, type ServerConfig } from "../server/config.ts";
import type { Mode } from "../server/settings.ts";

export interface ServeFlags {
  port?: string;
  host?: string;
  store?: string;
  dataDir?: string;
  logLevel?: string;
  shutdownGrace?: string;
  /** Commander's `--no-auth`: false when given. */
  auth?: boolean;
  adminKeyFile?: string;
}

export async function serve(mode: Mode, dir: string, flags: ServeFlags): Promise<number> {
  const { startServer } = await import("../server/server.ts");
  const settingsFlags: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(flags)) if (v !== undefined && k in { port: 1, host: 1, store: 1, dataDir: 1, logLevel: 1, shutdownGrace: 1 }) settingsFlags[k] = v;
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer({
      appDir: dir,
      mode,
      flags: settingsFlags as ServerConfig,
      ...(flags.auth === false ? { noAuth: true } : {}),
      ...(flags.adminKeyFile ? { adminKeyFile: flags.adminKeyFile } : {}),
    });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`sluice: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  return new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        process.stderr.write(`sluice: ${signal} again, exiting without waiting\n`);
        process.exit(1);
      }
      server.close().then(
        () => {
          process.off("SIGTERM", onSignal);
          process.off("SIGINT", onSignal);
          // Anything still holding the event loop past this point is a leak; do not hang on it.
          setTimeout(() => process.exit(0), 2000).unref();
          resolve(0);
        },
        (err: unknown) => {
          process.stderr.write(`sluice: shutdown failed: ${String(err)}\n`);
          resolve(1);
        },
      );
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
}
