/**
 * The `server` key of `sluice.config.ts` and its validation, shared by every layer that sets server settings
 * (the config file, `SLUICE_*` variables, CLI flags; settings.ts merges them).
 */
import { storeUrlExamples, storeUrlProblem } from "../store/registry.ts";
import { parseDuration } from "../util/duration.ts";
import { isObject } from "../util/validate.ts";

/** Server settings a config file may set; `SLUICE_*` variables and CLI flags override them. */
export interface ServerConfig {
  port?: number;
  host?: string;
  /** A store URL (src/store/registry.ts): `sqlite:PATH` or a file path, `postgres://…`. */
  store?: string;
  /** Where `sluice dev` keeps its SQLite file (default `.sluice` in the app). */
  dataDir?: string;
  logLevel?: "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent";
  /** How long a graceful shutdown waits for in-flight work, e.g. "10s". */
  shutdownGrace?: string | number;
  /** Largest request body, in bytes (default 1 MiB; a single event is still limited to 256 KiB). */
  bodyLimit?: number;
  /** Publishing answers 429 (E_BACKPRESSURE) while about this many deliveries are pending, all queues together (default 1 000 000). */
  maxPendingDeliveries?: number;
  /** Publishing answers 429 (E_BACKPRESSURE) while this many events wait to be stored (default 10 000). */
  maxQueuedEntries?: number;
  /** Host names the server answers besides loopback names (Host and Origin checks; docs/security.md). */
  allowedHosts?: readonly string[];
  /** Requests per window per API key (per address without one): `{ publish, admin, window }`; 0 turns one off. */
  rateLimit?: { publish?: number; admin?: number; window?: string | number };
  /** Webhook targets may call private, loopback and link-local addresses (default true in dev, false in start). */
  allowPrivateNetworks?: boolean;
  /** How long a request may take to arrive in full, headers and body (default 30s). */
  requestTimeout?: string | number;
  /** How long an idle keep-alive connection stays open (default 72s, as Fastify). */
  keepAliveTimeout?: string | number;
  /** Most open connections at once; more are refused (default 1024). */
  maxConnections?: number;
  /** Function instances on this node, all functions together (default 32). */
  maxInstances?: number;
  /** An idle instance above its function's `minInstances` stops after this long (default "60s"; scale to zero). */
  idleTimeout?: string | number;
}

export const serverKeys = [
  "port", "host", "store", "dataDir", "logLevel", "shutdownGrace", "bodyLimit", "maxPendingDeliveries", "maxQueuedEntries",
  "maxInstances", "idleTimeout", "allowedHosts", "rateLimit", "allowPrivateNetworks", "requestTimeout", "keepAliveTimeout",
  "maxConnections",
];
export const logLevels = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;

/** A duration's milliseconds, or the problem with it (the shared grammar of util/duration.ts). */
export function durationProblem(value: unknown): { ms: number } | { message: string } {
  try {
    return { ms: parseDuration(value, "") };
  } catch (err) {
    return { message: (err as Error).message.trim() };
  }
}

/**
 * Checks server settings from any layer (config file, environment, flags). `prefix` names the key in messages
 * (`server.` for the file, `SLUICE_` for the environment, `--` for flags). Valid values are copied into `out`.
 */
export function collectServerProblems(
  raw: Record<string, unknown>,
  prefix: string,
  add: (key: string, message: string, fix?: string) => void,
  out: ServerConfig,
  keyName: (k: string) => string = (k) => `${prefix}${k}`,
): void {
  if (raw.port !== undefined) {
    const port = typeof raw.port === "string" && /^\d+$/.test(raw.port) ? Number(raw.port) : raw.port;
    if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535) {
      add(keyName("port"), `${JSON.stringify(raw.port)} is not a port`, "use a whole number from 0 to 65535 (0 picks a free port)");
    } else out.port = port;
  }
  if (raw.host !== undefined) {
    if (typeof raw.host !== "string" || raw.host === "") add(keyName("host"), "must be a host name or address", 'e.g. "127.0.0.1" or "0.0.0.0"');
    else out.host = raw.host;
  }
  if (raw.store !== undefined) {
    const s = raw.store;
    const problem = typeof s === "string" ? storeUrlProblem(s) : "not a string";
    if (typeof s !== "string" || problem !== undefined) {
      add(keyName("store"), `${JSON.stringify(s)} is not a store: ${problem}`, `write ${storeUrlExamples().map((e) => JSON.stringify(e)).join(" or ")}`);
    } else out.store = s;
  }
  if (raw.dataDir !== undefined) {
    if (typeof raw.dataDir !== "string" || raw.dataDir === "") add(keyName("dataDir"), "must be a folder path");
    else out.dataDir = raw.dataDir;
  }
  if (raw.logLevel !== undefined) {
    if (typeof raw.logLevel !== "string" || !(logLevels as readonly string[]).includes(raw.logLevel)) {
      add(keyName("logLevel"), `${JSON.stringify(raw.logLevel)} is not a log level`, `use one of ${logLevels.join(", ")}`);
    } else out.logLevel = raw.logLevel as NonNullable<ServerConfig["logLevel"]>;
  }
  for (const key of ["shutdownGrace", "idleTimeout"] as const) {
    if (raw[key] === undefined) continue;
    const d = durationProblem(raw[key]);
    if ("message" in d) add(keyName(key), d.message, key === "idleTimeout" ? 'write e.g. "60s"' : 'write e.g. "10s"');
    else out[key] = raw[key] as string | number;
  }
  if (raw.bodyLimit !== undefined) {
    const n = typeof raw.bodyLimit === "string" && /^\d+$/.test(raw.bodyLimit) ? Number(raw.bodyLimit) : raw.bodyLimit;
    if (typeof n !== "number" || !Number.isInteger(n) || n < 1024) add(keyName("bodyLimit"), "must be a number of bytes, at least 1024");
    else out.bodyLimit = n;
  }
  if (raw.allowedHosts !== undefined) {
    const list = typeof raw.allowedHosts === "string" ? raw.allowedHosts.split(",").map((h) => h.trim()).filter(Boolean) : raw.allowedHosts;
    if (!Array.isArray(list) || list.some((h) => typeof h !== "string" || h === "" || /[\s/]/.test(h))) {
      add(keyName("allowedHosts"), "must be a list of host names", 'e.g. ["sluice.example.com"]');
    } else out.allowedHosts = list.map((h: string) => h.toLowerCase());
  }
  if (raw.rateLimit !== undefined) {
    const r = raw.rateLimit;
    if (!isObject(r)) add(keyName("rateLimit"), "must be { publish?, admin?, window? }", "e.g. { publish: 10000, admin: 100, window: \"1s\" }");
    else {
      const rl: NonNullable<ServerConfig["rateLimit"]> = {};
      for (const k of Object.keys(r)) if (!["publish", "admin", "window"].includes(k)) add(keyName(`rateLimit.${k}`), "is not a rate limit key", "use publish, admin or window");
      for (const k of ["publish", "admin"] as const) {
        if (r[k] === undefined) continue;
        if (typeof r[k] !== "number" || !Number.isInteger(r[k]) || (r[k] as number) < 0) add(keyName(`rateLimit.${k}`), "must be a whole number of requests (0 turns the limit off)");
        else rl[k] = r[k] as number;
      }
      if (r.window !== undefined) {
        const d = durationProblem(r.window);
        if ("message" in d) add(keyName("rateLimit.window"), d.message, 'write e.g. "1s"');
        else rl.window = r.window as string | number;
      }
      out.rateLimit = rl;
    }
  }
  if (raw.allowPrivateNetworks !== undefined) {
    const v = raw.allowPrivateNetworks === "true" ? true : raw.allowPrivateNetworks === "false" ? false : raw.allowPrivateNetworks;
    if (typeof v !== "boolean") add(keyName("allowPrivateNetworks"), "must be true or false");
    else out.allowPrivateNetworks = v;
  }
  for (const key of ["requestTimeout", "keepAliveTimeout"] as const) {
    if (raw[key] === undefined) continue;
    const d = durationProblem(raw[key]);
    if ("message" in d) add(keyName(key), d.message, 'write e.g. "30s"');
    else out[key] = raw[key] as string | number;
  }
  for (const key of ["maxPendingDeliveries", "maxQueuedEntries", "maxInstances", "maxConnections"] as const) {
    if (raw[key] === undefined) continue;
    const n = typeof raw[key] === "string" && /^\d+$/.test(raw[key]) ? Number(raw[key]) : raw[key];
    if (typeof n !== "number" || !Number.isInteger(n) || n < 1) add(keyName(key), `${JSON.stringify(raw[key])} is not a limit`, "use a whole number, at least 1");
    else out[key] = n;
  }
}
