/**
 * Server settings: defaults < the config file's `server` key < `SLUICE_*` environment < CLI flags, validated once
 * into a read-only object. Every problem of every layer is reported at once, naming where it came from.
 */
import { isAbsolute, join, resolve } from "node:path";
import { defaultStoreUrl, resolveStoreUrl } from "../store/registry.ts";
import { parseDuration } from "../util/duration.ts";
import { collectServerProblems, ConfigError, type ConfigProblem, type ServerConfig } from "./config.ts";

export type Mode = "dev" | "start";

export interface Settings {
  readonly appDir: string;
  readonly mode: Mode;
  readonly port: number;
  readonly host: string;
  /** A store URL with file paths made absolute: `sqlite:/abs/path.db`, `postgres://…`. */
  readonly store: string;
  readonly dataDir: string;
  readonly logLevel: NonNullable<ServerConfig["logLevel"]>;
  readonly shutdownGraceMs: number;
  readonly bodyLimit: number;
  /** Backpressure limits handed to the broker (publish answers 429 past them); undefined keeps the broker's default. */
  readonly maxPendingDeliveries: number | undefined;
  readonly maxQueuedEntries: number | undefined;
  /** Runtime limits; undefined keeps the runtime's default. */
  readonly maxInstances: number | undefined;
  readonly idleTimeoutMs: number | undefined;
}

/** The port `sluice dev` and `sluice start` listen on unless told otherwise. */
export const DEFAULT_PORT = 8787;
/** The admin API URL CLI client commands use by default (`--url`, `SLUICE_URL`). */
export const DEFAULT_URL = `http://127.0.0.1:${DEFAULT_PORT}`;

/** `SLUICE_*` environment variables and the setting each one sets. */
export const envVars: Record<string, keyof ServerConfig> = {
  SLUICE_PORT: "port",
  SLUICE_HOST: "host",
  SLUICE_STORE: "store",
  SLUICE_DATA_DIR: "dataDir",
  SLUICE_LOG_LEVEL: "logLevel",
  SLUICE_SHUTDOWN_GRACE: "shutdownGrace",
  SLUICE_BODY_LIMIT: "bodyLimit",
  SLUICE_MAX_PENDING_DELIVERIES: "maxPendingDeliveries",
  SLUICE_MAX_QUEUED_ENTRIES: "maxQueuedEntries",
  SLUICE_MAX_INSTANCES: "maxInstances",
  SLUICE_IDLE_TIMEOUT: "idleTimeout",
};

export interface ResolveSettingsOptions {
  appDir: string;
  mode: Mode;
  /** The validated app's `server` key. */
  file?: ServerConfig;
  /** The config file's path, for messages. */
  fileName?: string;
  env?: Record<string, string | undefined>;
  /** CLI flags (`--port`, `--store`, `--data-dir`…), already named as settings. */
  flags?: ServerConfig;
}

export function resolveSettings(options: ResolveSettingsOptions): Settings {
  const problems: ConfigProblem[] = [];
  const addFrom = (where: string) => (key: string, message: string, fix?: string) =>
    problems.push(fix === undefined ? { key: `${where}${key}`, message } : { key: `${where}${key}`, message, fix });

  const merged: ServerConfig = {};
  Object.assign(merged, options.file ?? {});
  const envRaw: Record<string, unknown> = {};
  const envName = new Map<string, string>();
  for (const [name, key] of Object.entries(envVars)) {
    const v = options.env?.[name];
    if (v !== undefined && v !== "") {
      envRaw[key] = v;
      envName.set(key, name);
    }
  }
  const fromEnv: ServerConfig = {};
  collectServerProblems(envRaw, "", addFrom(""), fromEnv, (k) => `environment ${envName.get(k) ?? k}`);
  Object.assign(merged, fromEnv);
  const fromFlags: ServerConfig = {};
  collectServerProblems({ ...(options.flags ?? {}) }, "", addFrom(""), fromFlags, (k) => `flag --${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
  Object.assign(merged, fromFlags);
  if (problems.length > 0) throw new ConfigError("the server settings", problems);

  const appDir = resolve(options.appDir);
  const dataDir = merged.dataDir ? resolveFrom(appDir, merged.dataDir) : join(appDir, ".sluice");
  const store = resolveStoreUrl(merged.store ?? defaultStoreUrl(dataDir), appDir);
  return Object.freeze({
    appDir,
    mode: options.mode,
    port: merged.port ?? DEFAULT_PORT,
    host: merged.host ?? (options.mode === "dev" ? "127.0.0.1" : "0.0.0.0"),
    store,
    dataDir,
    logLevel: merged.logLevel ?? "info",
    // Every layer was checked above, so this does not throw.
    shutdownGraceMs: parseDuration(merged.shutdownGrace ?? "10s", "shutdownGrace"),
    bodyLimit: merged.bodyLimit ?? 1024 * 1024,
    maxPendingDeliveries: merged.maxPendingDeliveries,
    maxQueuedEntries: merged.maxQueuedEntries,
    maxInstances: merged.maxInstances,
    idleTimeoutMs: merged.idleTimeout === undefined ? undefined : parseDuration(merged.idleTimeout, "idleTimeout"),
  });
}

function resolveFrom(base: string, p: string): string {
  return isAbsolute(p) ? p : resolve(base, p);
}
