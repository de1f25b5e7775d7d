/**
 * `sluice keys`: API keys. `create`, `list` and `revoke` talk to a running server (admin:write / admin:read), or,
 * with `--store URL`, to the store directly: that is how the first key of a `sluice start` deployment is made.
 * `generate` prints a fresh key that is stored nowhere (for SLUICE_ADMIN_KEY).
 */
import type { Command } from "commander";
import { KeyStore, checkKeyInput, type KeyInfo } from "../auth/key-store.ts";
import { generateKey } from "../auth/key-format.ts";
import { AuditLog } from "../server/audit.ts";
import { openStore, resolveStoreUrl } from "../store/registry.ts";
import { parseDuration } from "../util/duration.ts";
import type { RegisterCommand } from "./main.ts";
import { action, clientOptions, print, request, table } from "./client.ts";

interface KeyOpts {
  url: string;
  key?: string;
  json?: boolean;
  store?: string;
}

/** Runs `fn` on a store opened from `--store`, closing it after. */
async function withStore<T>(url: string, fn: (keys: KeyStore, audit: AuditLog) => Promise<T>): Promise<T> {
  const store = await openStore(resolveStoreUrl(url, process.cwd()));
  try {
    const audit = new AuditLog({ state: store.state, onError: (err) => process.stderr.write(`sluice: audit entry not recorded: ${String(err)}\n`) });
    return await fn(new KeyStore(store.state), audit);
  } finally {
    await store.close();
  }
}

const expiresText = (k: KeyInfo) => (k.expiresAt === undefined ? "never" : new Date(k.expiresAt).toISOString());
const storeOption = (cmd: Command) => cmd.option("--store <url>", "work on this store directly (sqlite:PATH, postgres://…) instead of a running server");

export const register: RegisterCommand = (program: Command, setExitCode) => {
  const keys = program.command("keys").description("API keys: create (shown once), list, revoke; scopes in docs/security.md");

  keys
    .command("generate")
    .description("Print a new random key, stored nowhere (for SLUICE_ADMIN_KEY)")
    .action(action(setExitCode, async () => void process.stdout.write(`${generateKey()}\n`)));

  storeOption(
    clientOptions(
      keys
        .command("create")
        .description("Create a key; it is printed once and only its hash is kept")
        .requiredOption("--name <name>", "the key's name (for listings, revoking and the audit log)")
        .requiredOption("--scope <scope...>", "publish, publish:<bus>, invoke, invoke:<function>, admin:read, admin:write, metrics")
        .option("--expires <duration>", "expire after this long, e.g. 90d")
        .addHelpText("after", `\nExamples:\n  $ sluice keys create --name ci --scope publish:orders --expires 90d\n  $ sluice keys create --name admin --scope admin:write --store postgres://sluice@db/sluice`),
    ),
  ).action(
    action(setExitCode, async (opts: KeyOpts & { name: string; scope: string[]; expires?: string }) => {
      checkKeyInput({ name: opts.name, scopes: opts.scope });
      const expiresInMs = opts.expires === undefined ? undefined : parseDuration(opts.expires, "--expires");
      const created: KeyInfo & { key: string } = opts.store
        ? await withStore(opts.store, async (ks, audit) => {
            const c = await ks.create({ name: opts.name, scopes: opts.scope, createdBy: "cli", ...(expiresInMs === undefined ? {} : { expiresInMs }) });
            await audit.record("cli", "key.create", c.info.name);
            return { key: c.key, ...c.info };
          })
        : await request(opts, "POST", "admin/keys", { name: opts.name, scopes: opts.scope, ...(opts.expires === undefined ? {} : { expires: opts.expires }) });
      print(opts, created, () => `${created.key}\n`);
      if (!opts.json) process.stderr.write(`key ${JSON.stringify(created.name)} (${created.scopes.join(", ")}, expires ${expiresText(created)}) created; it is not shown again\n`);
    }),
  );

  storeOption(clientOptions(keys.command("list").description("Keys with their scopes, expiry and status (never the keys themselves)"))).action(
    action(setExitCode, async (opts: KeyOpts) => {
      const list = opts.store ? await withStore(opts.store, (ks) => ks.list()) : await request<KeyInfo[]>(opts, "GET", "admin/keys");
      print(opts, list, () =>
        table(
          list.map((k) => ({ ...k, scopes: k.scopes.join(","), created: new Date(k.createdAt).toISOString(), expires: expiresText(k) })),
          ["name", "hint", "scopes", "status", "created", "expires"],
        ),
      );
    }),
  );

  storeOption(clientOptions(keys.command("revoke <name>").description("Revoke a key: every node refuses it within a second"), false)).action(
    action(setExitCode, async (name: string, opts: KeyOpts) => {
      const info = opts.store
        ? await withStore(opts.store, async (ks, audit) => {
            const i = await ks.revoke(name);
            await audit.record("cli", "key.revoke", name);
            return i;
          })
        : await request<KeyInfo>(opts, "POST", `admin/keys/${encodeURIComponent(name)}/revoke`, {});
      process.stdout.write(`key ${JSON.stringify(info.name)} revoked\n`);
    }),
  );
};
