/**
 * Admin routes for API keys (admin:write to change, admin:read to list):
 * POST /admin/keys                { name, scopes, expires? } -> { key, ...info }   (the key is shown this once)
 * GET  /admin/keys                -> KeyInfo[] (no hashes)
 * POST /admin/keys/:name/revoke   -> KeyInfo
 */
import type { FastifyInstance } from "fastify";
import type { KeyStore } from "../auth/key-store.ts";
import { ErrorCode, SluiceError } from "../errors.ts";
import { durationProblem } from "./config.ts";
import { isObject } from "../util/validate.ts";

export interface KeyRoutesDeps {
  keys: KeyStore;
  /** Records an admin write (the audit log). */
  audit(req: { principal?: { name: string } }, action: string, target: string, count?: number): Promise<void>;
}

export function registerKeyRoutes(app: FastifyInstance, deps: KeyRoutesDeps): void {
  app.post<{ Body: unknown }>("/keys", async (req, reply) => {
    const b = isObject(req.body) ? req.body : {};
    let expiresInMs: number | undefined;
    if (b.expires !== undefined) {
      const d = durationProblem(b.expires);
      if ("message" in d) throw new SluiceError(ErrorCode.BadRequest, `expires: ${d.message}`, { path: "$.expires" });
      expiresInMs = d.ms;
    }
    const created = await deps.keys.create({
      name: b.name as string,
      scopes: b.scopes as string[],
      ...(expiresInMs === undefined ? {} : { expiresInMs }),
      createdBy: req.principal?.name ?? "anonymous",
    });
    await deps.audit(req, "key.create", created.info.name);
    return reply.code(201).send({ key: created.key, ...created.info });
  });
  app.get("/keys", async () => deps.keys.list());
  app.post<{ Params: { name: string } }>("/keys/:name/revoke", async (req) => {
    const info = await deps.keys.revoke(req.params.name);
    await deps.audit(req, "key.revoke", info.name);
    return info;
  });
}
