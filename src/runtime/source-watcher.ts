/**
 * Hot reload's eyes: watches the folders of every source file a function was bundled from and calls back with
 * the function files whose sources changed.
 *
 * Folders, not files: an editor that saves atomically (writes a temporary file, renames it over the original:
 * `sed -i`, vim, many IDEs) replaces the file's inode, and a watcher on the file itself goes deaf after the first
 * save. A folder watcher sees the rename as a change of that name. Imported files (a shared `lib/`) are sources too,
 * so editing one reloads every function that bundles it.
 */
import { watch, type FSWatcher } from "node:fs";
import { basename, dirname, join, sep } from "node:path";
import type { Logger } from "../logger.ts";

/** How long a burst of file system events for one function settles before it is reloaded (real time). */
const settleMs = 50;

export class SourceWatcher {
  readonly #onChange: (file: string) => void;
  readonly #logger: Logger;
  /** Folder -> its watcher. */
  readonly #folders = new Map<string, FSWatcher>();
  /** Source path -> the function files bundled from it. */
  readonly #users = new Map<string, Set<string>>();
  /** Function file -> its sources. */
  readonly #sources = new Map<string, string[]>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  #closed = false;

  constructor(onChange: (file: string) => void, logger: Logger) {
    this.#onChange = onChange;
    this.#logger = logger;
  }

  /** Watches `file` (a function's entry) and its bundled `sources`, replacing what it watched for `file` before. */
  track(file: string, sources: readonly string[]): void {
    if (this.#closed) return;
    this.untrack(file);
    const all = [...new Set([file, ...sources])].filter((s) => !s.includes(`${sep}node_modules${sep}`));
    this.#sources.set(file, all);
    for (const source of all) {
      let users = this.#users.get(source);
      if (!users) this.#users.set(source, (users = new Set()));
      users.add(file);
      this.#watchFolder(dirname(source));
    }
  }

  untrack(file: string): void {
    for (const source of this.#sources.get(file) ?? []) {
      const users = this.#users.get(source);
      users?.delete(file);
      if (users?.size === 0) this.#users.delete(source);
    }
    this.#sources.delete(file);
    // Folders stay watched: cheap, and the next track of the same function most likely needs them again.
  }

  close(): void {
    this.#closed = true;
    for (const w of this.#folders.values()) w.close();
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#folders.clear();
    this.#timers.clear();
  }

  #watchFolder(folder: string): void {
    if (this.#folders.has(folder)) return;
    let watcher: FSWatcher;
    try {
      watcher = watch(folder, (_event, name) => {
        if (name === null) return;
        for (const file of this.#users.get(join(folder, basename(name.toString()))) ?? []) this.#changed(file);
      });
    } catch (err) {
      this.#logger.warn({ err, folder }, "hot reload cannot watch this folder");
      return;
    }
    // A folder that is deleted or unmounted must not take the process down.
    watcher.on("error", (err) => {
      this.#logger.warn({ err, folder }, "hot reload stopped watching this folder");
      watcher.close();
      this.#folders.delete(folder);
    });
    this.#folders.set(folder, watcher);
  }

  #changed(file: string): void {
    clearTimeout(this.#timers.get(file));
    this.#timers.set(
      file,
      setTimeout(() => {
        this.#timers.delete(file);
        if (!this.#closed) this.#onChange(file);
      }, settleMs),
    );
  }
}
