/**
 * Store URLs to backends, by URL scheme: `sqlite:PATH` (or a plain file path), `postgres://…`/`postgresql://…`,
 * `nats://host:4222[,host:4223][/deployment]`.
 * Each backend's module (and so its driver) is loaded with `await import()` only when a URL of its scheme is
 * opened: a SQLite-only process never loads `pg`, a PostgreSQL-only one never loads better-sqlite3. A new backend
 * is one `registerStoreScheme` line.
 *
 * @example
 * ```ts
 * const store = await openStore("sqlite:./data/sluice.db");
 * registerStoreScheme("nats", { open: async (url) => (await import("./nats/index.ts")).createNatsStore({ url }) });
 * ```
 */
import { isAbsolute, join, resolve } from "node:path";
import { ErrorCode, SluiceError } from "../errors.ts";
import type { StorageBackend } from "./contract.ts";
import { parseNatsUrl as parseNatsUrlLazy } from "./nats/options.ts";

export interface StoreScheme {
  /** Opens a backend for a URL of this scheme. */
  open(url: string): Promise<StorageBackend>;
  /** Why the URL is unusable (checked before opening, e.g. while validating config), or undefined. */
  problem?(url: string): string | undefined;
  /** Makes the URL independent of the working directory (a relative file path becomes absolute). */
  resolve?(url: string, baseDir: string): string;
  /** An example URL, for error messages. */
  example: string;
}

/** A store URL whose scheme no backend registered. */
export class UnknownStoreSchemeError extends SluiceError {
  override readonly name = "UnknownStoreSchemeError";

  constructor(
    readonly scheme: string,
    readonly accepted: readonly string[],
  ) {
    super(ErrorCode.ConfigInvalid, `no store for the URL scheme "${scheme}:"; accepted: ${accepted.map((s) => `${s}:`).join(", ")}`);
  }
}

const schemes = new Map<string, StoreScheme>();

/** Registers (or replaces) the backend for URLs `scheme:…`. `scheme` is lower case, without the colon. */
export function registerStoreScheme(scheme: string, backend: StoreScheme): void {
  schemes.set(scheme, backend);
}

/** The registered schemes, in registration order. */
export function storeSchemes(): string[] {
  return [...schemes.keys()];
}

/** At least two characters, so that a Windows drive letter (`C:\…`) reads as a plain path. */
const schemePattern = /^([A-Za-z][A-Za-z0-9+.-]+):/;

/** The URL's scheme, lower case; a plain file path (no scheme) is `sqlite`. */
export function storeScheme(url: string): string {
  return schemePattern.exec(url)?.[1]?.toLowerCase() ?? "sqlite";
}

function schemeOf(url: string): StoreScheme {
  const scheme = storeScheme(url);
  const backend = schemes.get(scheme);
  if (backend === undefined) throw new UnknownStoreSchemeError(scheme, storeSchemes());
  return backend;
}

/** Why `url` names no usable store (unknown scheme, or a problem its backend reports), or undefined. */
export function storeUrlProblem(url: string): string | undefined {
  const backend = schemes.get(storeScheme(url));
  if (backend === undefined) return new UnknownStoreSchemeError(storeScheme(url), storeSchemes()).message;
  return backend.problem?.(url);
}

/** Example URLs of every registered scheme, for hints. */
export function storeUrlExamples(): string[] {
  return [...new Set([...schemes.values()].map((s) => s.example))];
}

/** `url` with relative file paths resolved against `baseDir`. Throws UnknownStoreSchemeError. */
export function resolveStoreUrl(url: string, baseDir: string): string {
  return schemeOf(url).resolve?.(url, baseDir) ?? url;
}

/** Opens the backend for `url`, loading its module first. Throws UnknownStoreSchemeError. */
export async function openStore(url: string): Promise<StorageBackend> {
  const backend = schemeOf(url);
  const problem = backend.problem?.(url);
  if (problem !== undefined) throw new SluiceError(ErrorCode.ConfigInvalid, `store URL ${JSON.stringify(url)}: ${problem}`);
  return backend.open(url);
}

/** The store of a deployment that names none: a SQLite file in its data folder. */
export function defaultStoreUrl(dataDir: string): string {
  return `sqlite:${join(dataDir, "sluice.db")}`;
}

/** The file of a `sqlite:PATH` URL or a plain path. */
function sqlitePath(url: string): string {
  return url.startsWith("sqlite:") ? url.slice("sqlite:".length) : url;
}

registerStoreScheme("sqlite", {
  example: "sqlite:./data/sluice.db",
  problem: (url) => (sqlitePath(url) === "" ? "the database file path is missing" : undefined),
  resolve: (url, baseDir) => {
    const path = sqlitePath(url);
    return `sqlite:${isAbsolute(path) ? path : resolve(baseDir, path)}`;
  },
  open: async (url) => (await import("./sqlite/index.ts")).createSqliteStore({ path: sqlitePath(url) }),
});

/** `?schema=NAME` picks the schema (deployments sharing a database); the rest is the driver's connection string. */
function postgresOptions(url: string): { url: string; schema?: string } {
  const parsed = new URL(url);
  const schema = parsed.searchParams.get("schema");
  if (schema === null) return { url };
  parsed.searchParams.delete("schema");
  return { url: parsed.toString(), schema };
}

const postgres: StoreScheme = {
  example: "postgres://user@host:5432/db",
  problem: (url) => (/^postgres(ql)?:\/\/.+/i.test(url) && URL.canParse(url) ? undefined : "write postgres://user@host:5432/db[?schema=NAME]"),
  open: async (url) => (await import("./postgres/index.ts")).createPostgresStore(postgresOptions(url)),
};
registerStoreScheme("postgres", postgres);
registerStoreScheme("postgresql", postgres);

registerStoreScheme("nats", {
  example: "nats://127.0.0.1:4222",
  problem: (url) => {
    try {
      void parseNatsUrlLazy(url);
      return undefined;
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
  },
  open: async (url) => {
    const { createNatsStore, parseNatsUrl } = await import("./nats/index.ts");
    return createNatsStore(parseNatsUrl(url));
  },
});
