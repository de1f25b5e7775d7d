/**
 * The path every broker message takes into a bus: convert, publish, and resolve only once the event is durable
 * (or the message is durably dead-lettered), so the kind acknowledges upstream after that and not before.
 *
 * Never drops: when the bus answers E_BACKPRESSURE, or the store fails, the message waits and is published again
 * with backoff while the kind's prefetch/credit keeps the broker from sending more. Only a shutdown ends the
 * wait, with `IntakeStopped`: the kind then leaves the message unacknowledged and the broker redelivers it.
 */
import { ErrorCode } from "../../errors.ts";
import type { SourceContext } from "../source.ts";
import { conversionReason, messageToEvent, type BrokerMessage, type WrapAttributes } from "./message.ts";
import { sleep } from "../../util/sleep.ts";

export type IntakeOutcome = "stored" | "duplicate" | "dead-lettered";

/** The server is shutting down: do not acknowledge, the broker will redeliver. */
export class IntakeStopped extends Error {
  constructor() {
    super("the source is stopping; the message stays unacknowledged");
  }
}

/** Entry errors that no retry can fix: the message is dead-lettered. */
const permanent = new Set<string>([ErrorCode.EventInvalid, ErrorCode.EventTooLarge, ErrorCode.JsonTooDeep, ErrorCode.JsonInvalid, ErrorCode.BadRequest, ErrorCode.RecursiveLoop]);

export interface IntakeOptions {
  bus: string;
  /** Largest encoded event; larger messages are dead-lettered. */
  maxEventBytes?: number;
  /** First and longest wait between publish attempts. */
  retryMinMs?: number;
  retryMaxMs?: number;
}

export class Intake {
  readonly #ctx: SourceContext;
  readonly #o: IntakeOptions;
  #waiting = 0;

  constructor(ctx: SourceContext, options: IntakeOptions) {
    this.#ctx = ctx;
    this.#o = options;
  }

  /** Messages waiting for the bus to take them (back-pressure or store failure). */
  get waiting(): number {
    return this.#waiting;
  }

  /**
   * Takes one message: resolves when its event is durable (or a duplicate of one), or it is durably
   * dead-lettered. `attributes` describe it in a dead letter (topic, routing key, headers).
   */
  async accept(message: BrokerMessage, wrap: WrapAttributes, attributes: Record<string, unknown>): Promise<IntakeOutcome> {
    const converted = messageToEvent(message, wrap, this.#o.maxEventBytes);
    if (!converted.ok) return this.#deadLetter(conversionReason(converted), message, attributes);
    let delay = this.#o.retryMinMs ?? 50;
    let counted = false;
    for (;;) {
      if (this.#ctx.signal.aborted) throw new IntakeStopped();
      let failure: string;
      try {
        const out = await this.#ctx.publishNormalized(this.#o.bus, [{ event: converted.event, encoded: converted.encoded, sizeBytes: converted.sizeBytes }]);
        const entry = out.entries[0];
        if (entry !== undefined && !("errorCode" in entry)) {
          const outcome = entry.duplicate ? "duplicate" : "stored";
          this.#ctx.count(outcome);
          if (counted) this.#waiting--;
          return outcome;
        }
        const code = entry && "errorCode" in entry ? entry.errorCode : ErrorCode.BadRequest;
        const text = entry && "errorCode" in entry ? entry.errorMessage : "not accepted";
        if (permanent.has(code)) {
          if (counted) this.#waiting--;
          return this.#deadLetter(`${code}: ${text}`, message, attributes);
        }
        failure = `${code}: ${text}`;
      } catch (err) {
        failure = `${(err as { code?: string }).code ?? "error"}: ${(err as Error).message}`;
      }
      if (!counted) {
        counted = true;
        this.#waiting++;
        this.#ctx.count("error");
      }
      this.#ctx.health("degraded", `publishing to bus ${this.#o.bus} waits: ${failure}`);
      await sleep(delay, this.#ctx.signal);
      if (this.#ctx.signal.aborted) {
        this.#waiting--;
        throw new IntakeStopped();
      }
      delay = Math.min(delay * 2, this.#o.retryMaxMs ?? 2000);
    }
  }

  async #deadLetter(reason: string, message: BrokerMessage, attributes: Record<string, unknown>): Promise<IntakeOutcome> {
    let delay = this.#o.retryMinMs ?? 50;
    for (;;) {
      try {
        await this.#ctx.deadLetter({ reason, body: message.body, attributes: { ...attributes, headers: message.headers, contentType: message.contentType } });
        this.#ctx.count("dead-lettered");
        this.#ctx.logger.warn({ reason, ...attributes }, "message dead-lettered: it cannot become an event");
        return "dead-lettered";
      } catch (err) {
        this.#ctx.health("degraded", `dead-lettering a message failed: ${(err as Error).message}`);
        await sleep(delay, this.#ctx.signal);
        if (this.#ctx.signal.aborted) throw new IntakeStopped();
        delay = Math.min(delay * 2, this.#o.retryMaxMs ?? 2000);
      }
    }
  }
}
