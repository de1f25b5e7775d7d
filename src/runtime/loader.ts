/**
 * Loading function files without a build step: the host bundles each function file (TypeScript or JavaScript)
 * with esbuild into one ES module in a cache folder, once per version, and instances import that plain file.
 * This keeps TypeScript tooling out of every instance (measured: a worker that registers tsx itself takes
 * ~265 ms to start; one importing the pre-bundled module ~30 ms).
 *
 * Packages (`import "pino"`) stay external, rewritten to the absolute path esbuild resolved from the
 * function's folder, so the bundle works from the cache folder and process mode knows what to allow reading.
 */
import { build, type Plugin } from "esbuild";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import { dirname, extname, join, resolve, sep } from "node:path";
import { pathToFileURL } from "node:url";
import { ErrorCode, SluiceError } from "../errors.ts";

export interface Bundle {
  /** file URL of the bundled module. */
  moduleUrl: string;
  outFile: string;
  /** Folders an instance must be able to read: the function's folder and each external package's root. */
  readPaths: string[];
}

function packageRoot(file: string): string {
  let dir = dirname(file);
  while (dir !== dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return dir;
    dir = dirname(dir);
  }
  return dirname(file);
}

function externalPackages(found: Set<string>): Plugin {
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
      b.onResolve({ filter: /^sluice$/ }, () => ({ path: functionApi() }));
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

let seq = 0;

/** Bundles `file` into `cacheDir`. Throws E_CONFIG_INVALID (with esbuild's message) when it does not compile. */
export async function bundleFunction(file: string, cacheDir: string): Promise<Bundle> {
  const entry = resolve(file);
  await mkdir(cacheDir, { recursive: true });
  const base = join(cacheDir, `fn-${process.pid}-${Date.now().toString(36)}-${++seq}`);
  const packages = new Set<string>();
  const bundleAs = async (format: "cjs" | "esm", outFile: string) => {
    packages.clear();
    await build({
      entryPoints: [entry],
      outfile: outFile,
      bundle: true,
      format,
      platform: "node",
      target: "node20",
      sourcemap: "inline",
      logLevel: "silent",
      plugins: [externalPackages(packages)],
    });
  };
  // CommonJS when it can be: a worker loads a CommonJS module about twice as fast as an ES module (no ESM
  // loader to start), which is most of a cold start. ES modules when the code needs them (top-level await)
  // or imports packages (which may be ESM-only and so not require()-able on Node 20).
  let outFile = `${base}.cjs`;
  try {
    try {
      await bundleAs("cjs", outFile);
      if (packages.size > 0) throw new Error("packages: bundle as ESM");
    } catch {
      await rm(outFile, { force: true });
      outFile = `${base}.mjs`;
      await bundleAs("esm", outFile);
    }
  } catch (err) {
    throw new SluiceError(ErrorCode.ConfigInvalid, `function file ${file} does not compile: ${(err as Error).message}`, {
      path: file,
      cause: err,
    });
  }
  return { moduleUrl: pathToFileURL(outFile).href, outFile, readPaths: [dirname(entry), ...packages] };
}

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

export async function removeCacheFile(path: string): Promise<void> {
  await rm(path, { force: true });
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
