/**
 * Rule targets by kind. A target names its kind by its key: `{ id, function: "billing" }`, `{ id, bus: "audit" }`,
 * `{ id, webhook: { url } }`. Each kind is one `TargetHandler`: it validates the value under its key (for
 * `putRule` and for `sluice.config.ts` alike), names the buses and functions it refers to, and delivers.
 * A new kind is one file or folder next to this one and one line in registry.ts.
 */
import type { CloudEvent } from "../../event/types.ts";
import type { Logger } from "../../logger.ts";
import type { StateStore } from "../../store/contract.ts";
import type { DeliveryContext, FunctionHandler } from "../types.ts";

/**
 * One kind of rule target.
 * @example
 * const logTarget: TargetHandler<string> = {
 *   kind: "log",
 *   compile: (value, path) => { if (typeof value !== "string") throw new SluiceError(ErrorCode.BadRequest, "log must be a label", { path }); return value; },
 *   open: (host) => ({ deliver: async (label, event) => host.logger.info({ label, eventId: event.id }, "event") }),
 * };
 * await createBroker({ store, targets: [logTarget] });
 */
export interface TargetHandler<Spec = unknown> {
  /** The key that names the kind in a target: lower-case letters, digits and "-". */
  readonly kind: string;
  /**
   * Validates the value under the kind's key, when the rule is put or the config is loaded; no I/O. Throws a
   * SluiceError (E_BAD_REQUEST) naming `path` or a key below it. Returns the value in its normal form, which is
   * what the config hands to `putRule`, so `compile` must accept its own output.
   */
  compile(value: unknown, path: string): Spec;
  /** Buses and functions it delivers to: a missing bus fails `putRule`, a missing function fails the config. */
  references?(spec: Spec): readonly TargetReference[];
  /** The id of a config target that sets none; default `<kind>-<index in the rule>`. */
  defaultId?(value: unknown, index: number): string;
  /** Binds the kind to one broker, at its first delivery. Does not connect: drivers load on first use (`await import()`). */
  open(host: TargetHost): TargetSender<Spec>;
}

/**
 * A kind bound to one broker. Failures are classified by code (see handler-errors.ts): a SluiceError with
 * `retryable: true` or any plain error is retried with backoff; `NonRetriableError` or another SluiceError with
 * `retryable: false` dead-letters at once; `RetryAfterError(delayMs)` retries after that delay.
 */
export interface TargetSender<Spec = unknown> {
  /**
   * One attempt; resolves on success. `encoded` is the event's JSON encoding when the stored payload is exactly
   * the delivered event (no input transformer), so a sender that sends JSON need not encode it again.
   */
  deliver(spec: Spec, event: CloudEvent, context: DeliveryContext, encoded: string | undefined): Promise<void>;
  /** Releases connections; `broker.close()` calls it after the last delivery ended. */
  close?(): Promise<void>;
}

/** What the broker gives a target kind. */
export interface TargetHost {
  /** The function handler set with `setFunctionHandler` (the runtime), if any yet. */
  functionHandler(): FunctionHandler | undefined;
  /**
   * Publishes `event` into bus `bus` of this broker as the next hop of its chain; resolves when durable. Past the
   * hop limit the delivery is dead-lettered (`recursive-loop`); a missing bus is a retryable E_BUS_NOT_FOUND.
   */
  forward(bus: string, event: CloudEvent): Promise<void>;
  readonly logger: Logger;
  /** The store's key/value state, shared by every node (e.g. a webhook target disabled by a 410). */
  readonly state?: StateStore;
  /** Outgoing calls may reach private, loopback and link-local addresses (network-guard.ts). Default true. */
  readonly allowPrivateNetworks: boolean;
}

export interface TargetReference {
  kind: "bus" | "function";
  name: string;
}
