/**
 * The request guard, installed once at the root of the HTTP server before any route:
 * 1. Host and Origin (every request in dev, admin requests in start): a page on another site cannot drive the
 *    server through the browser (DNS rebinding sends a foreign Host, a cross-site request a foreign Origin).
 * 2. API keys: a route whose config names a `scope` needs `Authorization: Bearer <key>` holding it (401/403).
 * 3. Rate limits per key (per address without one) on publish and admin routes, 429 with Retry-After.
 *
 * Routes name the scope they need in their Fastify config (`config: { scope }`); a route without one is public.
 */
import rateLimit from "@fastify/rate-limit";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ErrorCode, SluiceError } from "../errors.ts";
import type { KeyStore, Principal } from "./key-store.ts";
import { allows } from "./scopes.ts";

/** What a route needs: a scope, or one computed from the request (`publish:<bus>`). */
export type ScopeRule = string | ((req: FastifyRequest) => string);

declare module "fastify" {
  interface FastifyContextConfig {
    /** The scope a key needs for this route; absent: public. */
    scope?: ScopeRule;
    /** Host/Origin are checked on this route even where they are not checked everywhere (admin in start). */
    sameOrigin?: boolean;
  }
  interface FastifyRequest {
    /** The key that made the request, once the guard checked it. */
    principal?: Principal;
  }
}

export interface RateLimits {
  /** Requests per window per key on publish routes; 0 turns the limit off. */
  publish: number;
  /** Requests per window per key on admin and invoke routes; 0 turns the limit off. */
  admin: number;
  windowMs: number;
}

export interface GuardOptions {
  /** Undefined: no keys are checked (`sluice dev`, `--no-auth`). */
  keys: KeyStore | undefined;
  /** Check Host and Origin on every request (dev), not only where a route asks (admin). */
  checkAllOrigins: boolean;
  /** Host names answered besides loopback ones (`server.allowedHosts`). */
  allowedHosts: readonly string[];
  /** Refuse a Host that is neither a loopback name nor in `allowedHosts` (dev always; start when allowedHosts is set). */
  enforceHost: boolean;
  rateLimits: RateLimits | undefined;
}

const loopbackHosts = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

/** `Example.com:8080` -> `example.com`; `[::1]:80` -> `[::1]`. */
export function hostName(hostHeader: string): string {
  const h = hostHeader.trim().toLowerCase();
  if (h.startsWith("[")) return h.slice(0, h.indexOf("]") + 1);
  const colon = h.lastIndexOf(":");
  return colon === -1 ? h : h.slice(0, colon);
}

function hostAllowed(name: string, options: GuardOptions): boolean {
  return loopbackHosts.has(name) || name.endsWith(".localhost") || options.allowedHosts.includes(name);
}

/** Throws E_ORIGIN_REFUSED when Host or Origin is foreign. */
export function checkOrigin(req: FastifyRequest, options: GuardOptions): void {
  const host = req.headers.host;
  if (options.enforceHost && (!host || !hostAllowed(hostName(host), options))) {
    throw new SluiceError(ErrorCode.OriginRefused, `Host ${JSON.stringify(host ?? "")} is not answered here; add it to server.allowedHosts if it is yours`);
  }
  const origin = req.headers.origin;
  if (origin === undefined) return;
  let originHost: string;
  try {
    originHost = new URL(origin).host;
  } catch {
    throw new SluiceError(ErrorCode.OriginRefused, `Origin ${JSON.stringify(origin)} is refused`);
  }
  const name = hostName(originHost);
  // Same origin as the request, or a host the server answers.
  if (options.enforceHost ? hostAllowed(name, options) : host !== undefined && originHost.toLowerCase() === host.toLowerCase()) return;
  throw new SluiceError(ErrorCode.OriginRefused, `cross-site request from Origin ${JSON.stringify(origin)} refused`);
}

function scopeOf(req: FastifyRequest): string | undefined {
  const rule = req.routeOptions.config?.scope;
  return typeof rule === "function" ? rule(req) : rule;
}

function limitClass(scope: string | undefined): "publish" | "admin" | undefined {
  if (scope === undefined) return undefined;
  if (scope.startsWith("publish")) return "publish";
  if (scope.startsWith("admin") || scope.startsWith("invoke")) return "admin";
  return undefined;
}

export async function installGuard(app: FastifyInstance, options: GuardOptions): Promise<void> {
  app.addHook("onRequest", (req, _reply, done) => {
    try {
      if (options.checkAllOrigins || req.routeOptions.config?.sameOrigin) checkOrigin(req, options);
    } catch (err) {
      return done(err as Error);
    }
    const keys = options.keys;
    const scope = keys ? scopeOf(req) : undefined;
    if (!keys || scope === undefined) return done();
    keys.authenticate(req.headers.authorization).then(
      (principal) => {
        if (!allows(principal.scopes, scope)) {
          return done(new SluiceError(ErrorCode.ScopeMissing, `key ${JSON.stringify(principal.name)} lacks scope ${JSON.stringify(scope)}`));
        }
        req.principal = principal;
        done();
      },
      (err: unknown) => done(err as Error),
    );
  });

  const limits = options.rateLimits;
  if (!limits) return;
  await app.register(rateLimit, {
    global: true,
    // After the guard's onRequest (the key is known), before the body is read.
    hook: "preParsing",
    timeWindow: limits.windowMs,
    allowList: (req) => {
      const c = limitClass(scopeOf(req));
      return c === undefined || limits[c] === 0;
    },
    keyGenerator: (req) => `${limitClass(scopeOf(req))}:${req.principal ? `key:${req.principal.name}` : `ip:${req.ip}`}`,
    max: (req) => limits[limitClass(scopeOf(req)) ?? "admin"] || Number.MAX_SAFE_INTEGER,
    errorResponseBuilder: (req, ctx) =>
      new SluiceError(
        ErrorCode.RateLimited,
        `${req.principal ? `key ${JSON.stringify(req.principal.name)}` : "this address"} sent more than ${ctx.max} requests in ${limits.windowMs} ms; retry ${ctx.after.startsWith("in") ? ctx.after : `in ${ctx.after}`}`,
        { retryable: true },
      ),
  });
}
