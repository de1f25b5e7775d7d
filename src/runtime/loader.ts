/**
 * Loading function files without a build step: the host bundles each function file (TypeScript or JavaScript)
 * with esbuild into one module in a cache folder, and instances import that plain file. Bundles are named by
 * their content and listed in a manifest per file with a hash of every source they were built from, so a
 * restart (or another process on the same folder) reuses them without running esbuild; files nobody used for
 * a week are pruned. All files to build go through one esbuild call, and one child process reads all
 * definitions (`describeBundles`): a child process per file cost ~150 ms each on a 2-core machine.
 * This keeps TypeScript tooling out of every instance (measured: a worker that registers tsx itself takes
 * ~265 ms to start; one importing the pre-bundled module ~30 ms).
 *
 * Packages (`import "pino"`) stay external, rewritten to the absolute path esbuild resolved from the
 * function's folder, so the bundle works from the cache folder and process mode knows what to allow reading.
 */
import { build, version as esbuildVersion, type Plugin } from "esbuild";
import { fork } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { basename, dirname, extname, isAbsolute, join, resolve, sep } from "node:path";
import { pathToFileURL } from "node:url";
import { ErrorCode, SluiceError } from "../errors.ts";

export interface Bundle {
  /** file URL of the bundled module. */
  moduleUrl: string;
  outFile: string;
  /** Folders an instance must be able to read: the function's folder and each external package's root. */
  readPaths: string[];
  /** Every source file bundled in (absolute paths): what hot reload watches. */
  sources: string[];
}

function packageRoot(file: string): string {
  let dir = dirname(file);
  while (dir !== dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return dir;
    dir = dirname(dir);
  }
  return dirname(file);
}

/**
 * esbuild plugin: packages stay external by absolute path, `import.meta` keeps pointing at the source files, and
 * "sluice" becomes `sluice`: a file bundled in (the function-side API, by default) or, with `external`, a module
 * imported by absolute path (an app config uses the running Sluice's own `defineApp`).
 */
export function externalPackages(found: Set<string>, sluice: { bundle: string } | { external: string } = { bundle: functionApi() }): Plugin {
  return {
    name: "sluice-external-packages",
    setup(b) {
      // import.meta of a function's own files keeps pointing at them, not at the bundle in the cache folder.
      b.onLoad({ filter: /\.[cm]?[jt]sx?$/ }, async (args) => {
        if (args.path.includes(`${sep}node_modules${sep}`)) return undefined;
        const url = pathToFileURL(args.path).href;
        const contents = (await readFile(args.path, "utf8"))
          .replaceAll("import.meta.url", JSON.stringify(url))
          .replaceAll("import.meta.filename", JSON.stringify(args.path))
          .replaceAll("import.meta.dirname", JSON.stringify(dirname(args.path)));
        const ext = extname(args.path).replace(/^\.[cm]?/, "");
        return { contents, loader: ext === "ts" || ext === "tsx" || ext === "jsx" ? ext : "js", resolveDir: dirname(args.path) };
      });
      // "sluice" itself: the small function-side API, bundled in (not the host's index with esbuild and drivers).
      b.onResolve({ filter: /^sluice$/ }, async (args) => {
        if (args.pluginData === "sluice-resolving") return undefined;
        if ("bundle" in sluice) return { path: sluice.bundle };
        // A config may use a "sluice" installed in its app; otherwise (tsconfig paths included) the running one.
        const r = await b.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, pluginData: "sluice-resolving" });
        const installed = r.errors.length === 0 && r.path.includes(`${sep}node_modules${sep}`);
        return { path: installed ? r.path : sluice.external, external: true };
      });
      b.onResolve({ filter: /^[^./]/ }, async (args) => {
        if (args.pluginData === "sluice-resolving" || args.path.startsWith("node:")) return undefined;
        const r = await b.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, pluginData: "sluice-resolving" });
        if (r.errors.length > 0 || r.external || !r.path.includes("node_modules")) return undefined;
        found.add(packageRoot(r.path));
        return { path: r.path, external: true };
      });
    },
  };
}

function functionApi(): string {
  const here = new URL(".", import.meta.url);
  const found = ["function-api.ts", "function-api.js"].map((n) => new URL(n, here).pathname).find((p) => existsSync(p));
  if (!found) throw new SluiceError(ErrorCode.ConfigInvalid, "sluice: function-api is missing from the runtime folder");
  return found;
}

/** Bumped when the bundle format changes, so cached bundles of an older Sluice are not reused. */
const cacheFormat = `1-${esbuildVersion}`;
/** Cached bundles not used for this long are deleted when a runtime next loads from the folder. */
const cacheKeepMs = 7 * 24 * 3600_000;

const sha = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

interface Manifest {
  format: string;
  /** Every source file the bundle was built from (absolute path -> sha256 of its content). */
  inputs: Record<string, string>;
  outFile: string;
  readPaths: string[];
}

const manifestFile = (cacheDir: string, entry: string) => join(cacheDir, `manifest-${sha(entry).slice(0, 20)}.json`);

/** The cached bundle of `entry` when none of its source files changed since it was built. */
async function cached(entry: string, cacheDir: string): Promise<Bundle | undefined> {
  try {
    const m = JSON.parse(await readFile(manifestFile(cacheDir, entry), "utf8")) as Manifest;
    if (m.format !== cacheFormat || !existsSync(m.outFile) || !m.readPaths.every((p) => existsSync(p))) return undefined;
    for (const [path, hash] of Object.entries(m.inputs)) {
      if (sha(await readFile(path)) !== hash) return undefined;
    }
    const now = new Date(); // file times are wall-clock times, whatever clock the runtime runs on
    await utimes(m.outFile, now, now).catch(() => undefined);
    return { moduleUrl: pathToFileURL(m.outFile).href, outFile: m.outFile, readPaths: m.readPaths, sources: Object.keys(m.inputs) };
  } catch {
    return undefined;
  }
}

/** Writes `path` atomically (several processes may share a cache folder). */
async function writeAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.${process.pid}-${randomUUID().slice(0, 8)}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

async function pruneCache(cacheDir: string): Promise<void> {
  const cutoff = Date.now() - cacheKeepMs; // compared with file mtimes: wall-clock time
  for (const name of await readdir(cacheDir).catch(() => [] as string[])) {
    if (!/^(fn-|manifest-)/.test(name)) continue;
    const path = join(cacheDir, name);
    const st = await stat(path).catch(() => undefined);
    if (st && st.mtimeMs < cutoff) await rm(path, { force: true });
  }
}

type BuildFormat = "cjs" | "esm";

/**
 * One esbuild call for all `entries`: per entry, its output text, the source files it was built from, and the
 * package roots it imports (external, by absolute path).
 */
async function buildAll(entries: string[], format: BuildFormat): Promise<Map<string, { text: string; inputs: string[]; packages: string[] }>> {
  const cwd = process.cwd();
  const outdir = join(cwd, ".sluice-bundle-out");
  // Outputs named by entry index, not path: esbuild reports real paths, which differ from ours under a symlink.
  const result = await build({
    entryPoints: Object.fromEntries(entries.map((e, i) => [`e${i}`, e])),
    outdir,
    write: false,
    metafile: true,
    bundle: true,
    format,
    platform: "node",
    target: "node20",
    sourcemap: "inline",
    logLevel: "silent",
    plugins: [externalPackages(new Set())],
  });
  const out = new Map<string, { text: string; inputs: string[]; packages: string[] }>();
  const texts = new Map(result.outputFiles.map((f) => [basename(f.path), f.text]));
  for (const [outPath, meta] of Object.entries(result.metafile.outputs)) {
    const name = basename(outPath);
    const entry = entries[Number(/^e(\d+)\.js$/.exec(name)?.[1] ?? NaN)];
    const text = texts.get(name);
    if (entry === undefined || text === undefined) continue;
    const inputs = Object.keys(meta.inputs).map((p) => resolve(cwd, p));
    const packages = [...new Set(meta.imports.filter((i) => i.external && isAbsolute(i.path)).map((i) => packageRoot(i.path)))];
    out.set(entry, { text, inputs, packages });
  }
  return out;
}

async function store(entry: string, cacheDir: string, format: BuildFormat, built: { text: string; inputs: string[]; packages: string[] }): Promise<Bundle> {
  const name = basename(entry).replace(/\.[^.]+$/, "").replace(/[^A-Za-z0-9_-]/g, "_");
  const outFile = join(cacheDir, `fn-${name}-${sha(built.text).slice(0, 20)}.${format === "cjs" ? "cjs" : "mjs"}`);
  if (!existsSync(outFile)) await writeAtomic(outFile, built.text);
  const inputs: Record<string, string> = {};
  for (const path of built.inputs) inputs[path] = sha(await readFile(path));
  const readPaths = [dirname(entry), ...built.packages];
  const manifest: Manifest = { format: cacheFormat, inputs, outFile, readPaths };
  await writeAtomic(manifestFile(cacheDir, entry), JSON.stringify(manifest));
  return { moduleUrl: pathToFileURL(outFile).href, outFile, readPaths, sources: built.inputs };
}

function compileError(file: string, err: unknown): SluiceError {
  return new SluiceError(ErrorCode.ConfigInvalid, `function file ${file} does not compile: ${(err as Error).message}`, { path: file, cause: err });
}

/**
 * Bundles each of `files` into `cacheDir`, reusing the bundle of an earlier run (this process or another) when
 * none of a file's sources changed. All files that need building go through one esbuild call (two when some
 * import packages); a file that does not compile gets its own E_CONFIG_INVALID (esbuild's message) in its slot.
 *
 * CommonJS when it can be: a worker loads a CommonJS module about twice as fast as an ES module (no ESM
 * loader to start), which is most of a cold start. ES modules when the code needs them (top-level await)
 * or imports packages (which may be ESM-only and so not require()-able on Node 20).
 */
export async function bundleFunctions(files: string[], cacheDir: string): Promise<(Bundle | SluiceError)[]> {
  const entries = files.map((f) => resolve(f));
  await mkdir(cacheDir, { recursive: true });
  const results: (Bundle | SluiceError | undefined)[] = await Promise.all(entries.map((e) => cached(e, cacheDir)));
  const missing = entries.filter((_, i) => results[i] === undefined);
  if (missing.length > 0) {
    const built = new Map<string, Bundle | SluiceError>();
    try {
      const cjs = await buildAll(missing, "cjs");
      const needEsm = missing.filter((e) => (cjs.get(e)?.packages.length ?? 1) > 0);
      const esm = needEsm.length > 0 ? await buildAll(needEsm, "esm") : new Map<string, never>();
      for (const e of missing) {
        const b = esm.get(e) ?? cjs.get(e);
        if (!b) throw new Error(`esbuild produced no output for ${e}`);
        built.set(e, await store(e, cacheDir, esm.has(e) ? "esm" : "cjs", b));
      }
    } catch {
      // One file does not compile (or needs ES modules for top-level await): each file on its own, so every
      // error names its file.
      built.clear();
      await Promise.all(
        missing.map(async (e) => {
          built.set(e, await bundleOne(e, cacheDir).catch((err: unknown) => (err instanceof SluiceError ? err : compileError(e, err))));
        }),
      );
    }
    entries.forEach((e, i) => {
      if (results[i] === undefined) results[i] = built.get(e);
    });
    void pruneCache(cacheDir).catch(() => undefined);
  }
  return results.map((r, i) => r ?? compileError(entries[i]!, new Error("no bundle was produced")));
}

async function bundleOne(entry: string, cacheDir: string): Promise<Bundle> {
  let format: BuildFormat = "cjs";
  let b: { text: string; inputs: string[]; packages: string[] } | undefined;
  try {
    b = (await buildAll([entry], "cjs")).get(entry);
    if (b && b.packages.length > 0) b = undefined;
  } catch {
    b = undefined;
  }
  if (!b) {
    format = "esm";
    try {
      b = (await buildAll([entry], "esm")).get(entry);
    } catch (err) {
      throw compileError(entry, err);
    }
  }
  if (!b) throw compileError(entry, new Error("esbuild produced no output"));
  return store(entry, cacheDir, format, b);
}

/** Bundles one file (see `bundleFunctions`). Throws E_CONFIG_INVALID (with esbuild's message) when it does not compile. */
export async function bundleFunction(file: string, cacheDir: string): Promise<Bundle> {
  const [r] = await bundleFunctions([file], cacheDir);
  if (!r || r instanceof SluiceError) throw r ?? compileError(file, new Error("no bundle was produced"));
  return r;
}

/**
 * Reads each bundle's definition in ONE throwaway child process, limited by Node's permission model to read
 * the bundles and their folders (no writes, no child processes), so loading a function file cannot touch
 * anything before its isolation is known. A slot holds the definition without its handler, or why it failed.
 * Rejects (for the caller to retry file by file) when the child itself fails: a crash, a timeout.
 */
export async function describeBundles(bundles: Bundle[], cacheDir: string, timeoutMs: number): Promise<({ config: unknown } | { error: string })[]> {
  const script = join(cacheDir, `describe-${sha(describeSource).slice(0, 12)}.cjs`);
  if (!existsSync(script)) await writeAtomic(script, describeSource);
  const allow = [...new Set([script, ...bundles.map((b) => b.outFile), ...bundles.flatMap((b) => b.readPaths).map((p) => (p.endsWith(sep) ? p : p + sep))])];
  const child = fork(script, [JSON.stringify(bundles.map((b) => b.moduleUrl))], {
    execArgv: ["--max-old-space-size=256", "--experimental-permission", ...allow.map((p) => `--allow-fs-read=${p}`), "--no-warnings"],
    serialization: "advanced",
    stdio: ["ignore", "ignore", "pipe", "ipc"],
    env: { NODE_OPTIONS: "" },
  });
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (s: string) => {
    stderr = (stderr + s).slice(-2048);
  });
  try {
    return await new Promise((resolveAll, reject) => {
      const timer = setTimeout(() => reject(new Error(`did not load within ${timeoutMs} ms`)), timeoutMs);
      child.once("message", (m) => {
        clearTimeout(timer);
        resolveAll(m as ({ config: unknown } | { error: string })[]);
      });
      child.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`the loader exited with ${signal ? `signal ${signal}` : `code ${code}`}${stderr ? `: ${stderr.trim().slice(-300)}` : ""}`));
      });
    });
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
}

/** The describe child: plain CommonJS, no dependencies, so it starts without TypeScript tooling or a build. */
const describeSource = `"use strict";
const { fileURLToPath } = require("node:url");
const brand = Symbol.for("sluice.function");
const urls = JSON.parse(process.argv[2] || "[]");
(async () => {
  const out = [];
  for (const url of urls) {
    try {
      const mod = url.endsWith(".cjs") ? require(fileURLToPath(url)) : await import(url);
      const def = mod && mod.default;
      if (typeof def !== "object" || def === null || def[brand] !== true || typeof def.handler !== "function") {
        throw new Error("the module's default export is not a defineFunction(...) result");
      }
      const { handler, ...config } = def;
      out.push({ config });
    } catch (err) {
      out.push({ error: err && typeof err.message === "string" ? err.message : String(err) });
    }
  }
  process.send(out, () => process.disconnect());
})();
`;

const entries = new Map<string, Promise<string>>();
const entryUsers = new Map<string, number>();

/**
 * The instance entry point as one plain JS file in `cacheDir` (built once per cache folder), so instances
 * start without TypeScript tooling whether Sluice runs from `src/` (tests) or `dist/`.
 */
export function instanceEntry(cacheDir: string): Promise<string> {
  let p = entries.get(cacheDir);
  if (!p) {
    p = (async () => {
      const here = new URL(".", import.meta.url);
      const source = ["instance-main.ts", "instance-main.js"]
        .map((name) => new URL(name, here).pathname)
        .find((path) => existsSync(path));
      if (!source) throw new SluiceError(ErrorCode.ConfigInvalid, "sluice: instance-main is missing from the runtime folder");
      await mkdir(cacheDir, { recursive: true });
      // CommonJS: no ESM loader to start in every instance.
      const outFile = join(cacheDir, `instance-${process.pid}.cjs`);
      await build({ entryPoints: [source], outfile: outFile, bundle: true, format: "cjs", platform: "node", target: "node20", logLevel: "silent" });
      return outFile;
    })();
    entries.set(cacheDir, p);
    p.catch(() => entries.delete(cacheDir));
  }
  return p;
}

/** Counts a runtime as a user of the cache folder's instance entry (see `releaseInstanceEntry`). */
export function acquireInstanceEntry(cacheDir: string): Promise<string> {
  entryUsers.set(cacheDir, (entryUsers.get(cacheDir) ?? 0) + 1);
  return instanceEntry(cacheDir);
}

/** The last runtime of this process using the cache folder deletes the instance entry. */
export async function releaseInstanceEntry(cacheDir: string): Promise<void> {
  const users = (entryUsers.get(cacheDir) ?? 1) - 1;
  if (users > 0) {
    entryUsers.set(cacheDir, users);
    return;
  }
  entryUsers.delete(cacheDir);
  const entry = entries.get(cacheDir);
  entries.delete(cacheDir);
  const path = await entry?.catch(() => undefined);
  if (path) await rm(path, { force: true });
}
