/**
 * The `webhook` source kind: signed inbound webhooks at a path of the server's HTTP port,
 * `{ kind: "webhook", path: "/hooks/github", verify: { scheme: "github", secret }, type: "github.event" }`.
 * `verify.scheme` is `github`, `stripe`, `standard-webhooks` or `hmac` (see verify.ts); `verify.toleranceSeconds`
 * (default 300) bounds the age of signed timestamps; `verify.header` names the `hmac` signature header. `bus`
 * defaults to `default`.
 */
import type { SourceKind } from "../source.ts";
import { OptionReader } from "../broker/options.ts";
import { isObject } from "../../util/validate.ts";
import { webhookSchemes, type VerifySpec, type WebhookScheme } from "./verify.ts";

export interface WebhookSourceOptions {
  path: string;
  bus: string;
  type: string;
  verify: VerifySpec;
  maxEventBytes?: number;
}

export const webhookSource: SourceKind<WebhookSourceOptions> = {
  kind: "webhook",
  validate(_name, options, key, problems) {
    const r = new OptionReader(options, key, problems);
    problems.unknownKeys(options, ["path", "bus", "type", "verify", "maxEventBytes"], key);
    const path = r.string("path", true);
    if (path !== undefined && !/^\/[A-Za-z0-9._~\/-]*$/.test(path)) r.problem("path", "must be an absolute path of letters, digits and . _ ~ / -", 'e.g. "/hooks/github"');
    if (path !== undefined && /^\/(admin|events|buses|healthz|readyz|metrics)(\/|$)/.test(path)) r.problem("path", "is a path of the server itself");
    const bus = options.bus ?? "default";
    problems.busRef(bus, `${key}.bus`);
    const type = r.string("type", true);
    const maxEventBytes = r.int("maxEventBytes", 1, 16 * 1024 * 1024);
    const v = options.verify;
    let verify: VerifySpec | undefined;
    if (!isObject(v)) r.problem("verify", "is missing: an inbound webhook must be verified", 'write verify: { scheme: "github", secret: process.env.GH_SECRET }');
    else {
      const vr = new OptionReader(v, `${key}.verify`, problems);
      problems.unknownKeys(v, ["scheme", "secret", "toleranceSeconds", "header"], `${key}.verify`);
      const scheme = vr.string("scheme", true);
      if (scheme !== undefined && !webhookSchemes.includes(scheme as WebhookScheme)) vr.problem("scheme", `must be one of ${webhookSchemes.join(", ")}`);
      const secret = vr.string("secret", true);
      const toleranceSeconds = vr.int("toleranceSeconds", 1, 86_400) ?? 300;
      const header = vr.string("header") ?? "x-signature";
      if (vr.ok && scheme !== undefined && secret !== undefined) verify = { scheme: scheme as WebhookScheme, secret, toleranceSeconds, header };
      else r.ok = false;
    }
    if (!r.ok || path === undefined || type === undefined || typeof bus !== "string" || verify === undefined) return undefined;
    return { path, bus, type, verify, ...(maxEventBytes === undefined ? {} : { maxEventBytes }) };
  },
  async create(name, options) {
    const { WebhookSource } = await import("./source.ts");
    return new WebhookSource(name, options);
  },
};
