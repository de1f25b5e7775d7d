/**
 * Loads an app's `sluice.config.ts` (or `.mts`, `.js`, `.mjs`) through tsx (no build step) and lists the function
 * files it names. The runtime loads those files in isolation; the server then validates the whole app once.
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { extname, join, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { ConfigError, type ConfigProblem } from "./config.ts";

export const configFileNames = ["sluice.config.ts", "sluice.config.mts", "sluice.config.js", "sluice.config.mjs"];
const functionExtensions = new Set([".ts", ".mts", ".js", ".mjs"]);

/** Imports a TypeScript or JavaScript module afresh (a new tsx namespace per call, so edits are picked up). */
export async function importFresh(file: string): Promise<Record<string, unknown>> {
  const { tsImport } = await import("tsx/esm/api");
  return (await tsImport(pathToFileURL(file).href, import.meta.url)) as Record<string, unknown>;
}

export function findConfigFile(appDir: string): string | undefined {
  for (const name of configFileNames) {
    const file = join(appDir, name);
    if (existsSync(file)) return file;
  }
  return undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The default export, unwrapping a CommonJS-style `{ default: { default } }` double wrap. */
function defaultExport(mod: Record<string, unknown>): unknown {
  const d = mod.default;
  if (isObject(d) && "default" in d && Object.keys(d).length === 1) return d.default;
  return d;
}

/** Function files of a folder (recursively), skipping tests, declarations and names starting with `_` or `.`. */
export function listFunctionFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (name.startsWith(".") || name.startsWith("_") || name === "node_modules") continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...listFunctionFiles(path));
    else if (functionExtensions.has(extname(name)) && !/\.(test|spec|d)\.[mc]?[tj]s$/.test(name)) out.push(path);
  }
  return out;
}

/** The config module's default export, the config file and the function files it names (not yet loaded). */
export interface AppModule {
  exported: unknown;
  configFile: string;
  functionFiles: string[];
}

/**
 * Imports `sluice.config.*` and lists the function files it names. Problems with the file itself or with missing
 * function files throw a `ConfigError`; the content is validated later (`validateApp`), once functions are known.
 */
export async function loadAppModule(appDir: string): Promise<AppModule> {
  const dir = resolve(appDir);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new ConfigError(dir, [{ key: "app folder", message: "does not exist", fix: `create it with: sluice init ${appDir}` }]);
  }
  const configFile = findConfigFile(dir);
  if (configFile === undefined) {
    throw new ConfigError(join(dir, "sluice.config.ts"), [
      { key: "file", message: `no ${configFileNames.join(", ")} in ${dir}`, fix: `create one with: sluice init ${appDir}` },
    ]);
  }
  await registerSluiceResolver();
  let exported: unknown;
  try {
    exported = defaultExport(await importFresh(configFile));
  } catch (err) {
    throw new ConfigError(configFile, [
      { key: "file", message: `could not be loaded: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`, fix: "fix the error in that file" },
    ]);
  }
  const { files, problems } = functionFilesOf(dir, exported);
  if (problems.length > 0) throw new ConfigError(configFile, problems);
  return { exported, configFile, functionFiles: files };
}

function functionFilesOf(dir: string, exported: unknown): { files: string[]; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const spec = isObject(exported) ? (exported.functions ?? "./functions") : undefined;
  let files: string[] = [];
  if (typeof spec === "string" && spec) {
    const folder = resolve(dir, spec);
    if (!existsSync(folder)) {
      if (isObject(exported) && exported.functions !== undefined) {
        problems.push({ key: "functions", message: `folder ${spec} does not exist`, fix: "create it or point functions at the right folder" });
      }
    } else if (statSync(folder).isDirectory()) files = listFunctionFiles(folder);
    else files = [folder];
  } else if (Array.isArray(spec)) {
    spec.forEach((f, i) => {
      if (typeof f !== "string" || !f) return;
      const file = resolve(dir, f);
      if (existsSync(file)) files.push(file);
      else problems.push({ key: `functions[${i}]`, message: `file ${f} does not exist`, fix: "fix the path (relative to the config file)" });
    });
  }
  return { files, problems };
}

let resolverRegistered: Promise<void> | undefined;

/**
 * Lets an app outside this package `import { defineApp } from "sluice"` without installing it: when Node cannot
 * resolve the bare specifier "sluice", it resolves to the running Sluice's own entry point.
 */
export function registerSluiceResolver(): Promise<void> {
  resolverRegistered ??= (async () => {
    const { register } = await import("node:module");
    const self = import.meta.url.endsWith(".ts") ? new URL("../index.ts", import.meta.url) : new URL("../index.js", import.meta.url);
    const hook = `export async function resolve(specifier, context, next) {
  if (specifier !== "sluice") return next(specifier, context);
  try { return await next(specifier, context); } catch { return { url: ${JSON.stringify(self.href)}, shortCircuit: true }; }
}`;
    register(`data:text/javascript,${encodeURIComponent(hook)}`);
  })();
  return resolverRegistered;
}
