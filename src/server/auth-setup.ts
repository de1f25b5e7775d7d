/**
 * How `sluice start` gets its keys: a bootstrap admin key from the environment (or a file), and a refusal to
 * start open by accident when the store holds no key either.
 */
import { readFileSync } from "node:fs";
import { bootstrapKeyProblem, type KeyStore } from "../auth/key-store.ts";
import { ConfigError } from "./config.ts";
import { redact } from "./redact.ts";

/** The bootstrap admin key: `SLUICE_ADMIN_KEY`, else the file `file` or `SLUICE_ADMIN_KEY_FILE` names. */
export function bootstrapKey(env: Record<string, string | undefined>, file?: string): string | undefined {
  let value = env.SLUICE_ADMIN_KEY;
  let from = "environment SLUICE_ADMIN_KEY";
  const path = file ?? env.SLUICE_ADMIN_KEY_FILE;
  if ((value === undefined || value === "") && path) {
    from = `admin key file ${path}`;
    try {
      value = readFileSync(path, "utf8").trim();
    } catch (err) {
      throw new ConfigError("the server settings", [{ key: from, message: `cannot be read: ${(err as Error).message}` }]);
    }
  }
  if (value === undefined || value === "") return undefined;
  const problem = bootstrapKeyProblem(value);
  if (problem) throw new ConfigError("the server settings", [{ key: from, message: problem, fix: "run `sluice keys generate` and use what it prints" }]);
  return value;
}

/** Refuses to start when no request could ever be authenticated. */
export async function requireKeys(keys: KeyStore, configFile: string, store: string): Promise<void> {
  if (keys.hasBootstrapKey || (await keys.activeCount()) > 0) return;
  throw new ConfigError(configFile, [
    {
      key: "auth",
      message: "sluice start checks API keys, and there is no key: the store holds none and SLUICE_ADMIN_KEY is not set",
      fix:
        `set SLUICE_ADMIN_KEY (e.g. SLUICE_ADMIN_KEY=$(sluice keys generate)), or create a key in the store with ` +
        `\`sluice keys create --name admin --scope admin:write --store ${String(redact(store))}\`, or pass --no-auth to run without keys`,
    },
  ]);
}
