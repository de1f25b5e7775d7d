/**
 * The loaded functions: bundles and describes function files (or takes definitions as given), checks what the
 * functions ask of the node, and holds the instance entry every worker and child process starts from.
 */
import { resolve } from "node:path";
import { ErrorCode, SluiceError } from "../errors.ts";
import { isFunctionDefinition, normalizeFunctionConfig, type FunctionConfig, type FunctionDefinition } from "./define.ts";
import { acquireInstanceEntry, bundleFunctions, describeBundles, releaseInstanceEntry, type Bundle } from "./loader.ts";
import { BudgetWindow, emptyCounters } from "./metering.ts";
import type { FunctionEntry } from "./records.ts";
import type { RuntimeLimits } from "./limits.ts";
import type { RuntimeOptions } from "./runtime-types.ts";

type Loaded = { config: FunctionConfig; bundle: Bundle };

export class FunctionRegistry {
  readonly #fns = new Map<string, FunctionEntry>();
  readonly #byFile = new Map<string, FunctionEntry>();
  readonly #cacheDir: string;
  readonly #startTimeoutMs: number;
  #entry: string | undefined;
  #entryAcquired = false;
  /** Instances set aside by reservedConcurrency, all functions together (the shared pool is the rest). */
  reservedTotal = 0;

  private constructor(cacheDir: string, startTimeoutMs: number) {
    this.#cacheDir = cacheDir;
    this.#startTimeoutMs = startTimeoutMs;
  }

  /** Loads every function of `options` (bundling each file and reading its definition in isolation). */
  static async load(options: RuntimeOptions, limits: RuntimeLimits, cacheDir: string): Promise<FunctionRegistry> {
    const registry = new FunctionRegistry(cacheDir, limits.startTimeoutMs);
    try {
      await registry.#loadAll(options, limits);
    } catch (err) {
      await registry.release();
      throw err;
    }
    if ([...registry.values()].some((f) => f.file)) registry.#entry = await registry.#useEntry();
    return registry;
  }

  /** The instance entry (a file), once a function file was loaded. */
  get entry(): string | undefined {
    return this.#entry;
  }

  get(name: string): FunctionEntry | undefined {
    return this.#fns.get(name);
  }

  has(name: string): boolean {
    return this.#fns.has(name);
  }

  values(): IterableIterator<FunctionEntry> {
    return this.#fns.values();
  }

  /** The function loaded from `path` (absolute), if any. */
  fromFile(path: string): FunctionEntry | undefined {
    return this.#byFile.get(path);
  }

  async loadFile(file: string): Promise<Loaded> {
    const [r] = await this.#loadFiles([file]);
    if (!r || r instanceof SluiceError) throw r ?? new SluiceError(ErrorCode.ConfigInvalid, `${file}: function file failed to load`);
    return r;
  }

  /** Lets go of the instance entry. */
  async release(): Promise<void> {
    if (this.#entryAcquired) await releaseInstanceEntry(this.#cacheDir);
  }

  async #loadAll(options: RuntimeOptions, limits: RuntimeLimits): Promise<void> {
    const files = options.functions.flatMap((source, i) => {
      if (isFunctionDefinition(source)) return [];
      if (typeof source !== "object" || source === null || typeof (source as { file?: unknown }).file !== "string") {
        throw new SluiceError(ErrorCode.ConfigInvalid, "runtime: each function must be { file } or a defineFunction result", { path: `$.functions[${i}]` });
      }
      return [resolve(source.file)];
    });
    const fromFiles = files.length > 0 ? await this.#loadFiles(files) : [];
    const failed = fromFiles.find((r): r is SluiceError => r instanceof SluiceError);
    if (failed) throw failed;
    let f = 0;
    const loaded = options.functions.map((source) => {
      if (isFunctionDefinition(source)) return { config: normalizeFunctionConfig(source), definition: source };
      const r = fromFiles[f] as Loaded;
      return { file: files[f++]!, ...r };
    });
    for (const l of loaded) this.#add(l.config, l);

    this.reservedTotal = [...this.values()].reduce((n, fn) => n + (fn.config.reservedConcurrency ?? 0), 0);
    if (this.reservedTotal > limits.maxInstances) {
      throw new SluiceError(
        ErrorCode.ConfigInvalid,
        `runtime: reservedConcurrency adds up to ${this.reservedTotal}, more than limits.maxInstances (${limits.maxInstances})`,
        { path: "$.limits.maxInstances" },
      );
    }
    if ([...this.values()].some((fn) => fn.config.idempotency) && !options.state) {
      throw new SluiceError(ErrorCode.ConfigInvalid, "runtime: a function sets idempotency but no state store was given", { path: "$.state" });
    }
  }

  #useEntry(): Promise<string> {
    if (!this.#entryAcquired) {
      this.#entryAcquired = true;
      return acquireInstanceEntry(this.#cacheDir);
    }
    return this.#entry ? Promise.resolve(this.#entry) : acquireInstanceEntry(this.#cacheDir).finally(() => releaseInstanceEntry(this.#cacheDir));
  }

  /**
   * Bundles and describes function files: one esbuild call (cached bundles reused), then one child process that
   * reads every definition. When that shared child fails as a whole (a file crashed it or hung), each file is
   * described in a child of its own so the error names the file that caused it.
   */
  async #loadFiles(files: string[]): Promise<(Loaded | SluiceError)[]> {
    const cacheDir = this.#cacheDir;
    const entryReady = this.#useEntry().then((e) => {
      this.#entry ??= e;
    });
    entryReady.catch(() => undefined);
    const bundles = await bundleFunctions(files, cacheDir);
    const ok = bundles.filter((b): b is Bundle => !(b instanceof SluiceError));
    let described: ({ config: unknown } | { error: string })[] | undefined;
    if (ok.length > 1) described = await describeBundles(ok, cacheDir, this.#startTimeoutMs).catch(() => undefined);
    if (!described) {
      described = await Promise.all(
        ok.map((b) => describeBundles([b], cacheDir, this.#startTimeoutMs).then((r) => r[0] ?? { error: "no answer" }, (err: Error) => ({ error: err.message }))),
      );
    }
    await entryReady;
    let k = 0;
    return bundles.map((b, i) => {
      const file = files[i]!;
      if (b instanceof SluiceError) return b;
      const d = described[k++] ?? { error: "no answer" };
      try {
        if ("error" in d) throw new SluiceError(ErrorCode.ConfigInvalid, `function file failed to load: ${d.error}`);
        return { config: normalizeFunctionConfig(d.config), bundle: b };
      } catch (err) {
        if (err instanceof SluiceError) {
          err.message = `${file}: ${err.message}`;
          return err;
        }
        throw err;
      }
    });
  }

  #add(config: FunctionConfig, source: { file?: string; definition?: FunctionDefinition; bundle?: Bundle }): void {
    if (this.#fns.has(config.name)) {
      throw new SluiceError(ErrorCode.AlreadyExists, `function "${config.name}" is defined twice`, { path: `$.functions` });
    }
    const fn: FunctionEntry = {
      name: config.name,
      file: source.file,
      definition: source.definition,
      config,
      version: 1,
      bundle: source.bundle,
      instances: new Set(),
      queue: [],
      counters: emptyCounters(),
      budget: config.budget ? new BudgetWindow(config.budget) : undefined,
      claims: new Map(),
    };
    this.#fns.set(config.name, fn);
    if (source.file) this.#byFile.set(source.file, fn);
  }
}
