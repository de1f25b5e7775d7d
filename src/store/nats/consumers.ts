/**
 * One durable pull consumer per queue on the deliveries stream (2.9 has one filter subject per consumer), with the
 * queue's lease time as `ack_wait`. Its description holds the queue's name, so every node finds the queues others
 * declared by listing consumers. A consumer found missing (deleted, lost with a server) is created again.
 */
import { AckPolicy, DeliverPolicy, ReplayPolicy } from "@nats-io/jetstream";
import { defaultLeaseMs } from "../shared/absolute-time-queues.ts";
import { nanos, type NatsContext } from "./context.ts";

/** How often a node lists the consumers to learn queues that other nodes declared. */
const discoverEveryMs = 5000;

export class Consumers {
  readonly #ctx: NatsContext;
  /** queue -> lease time of the consumer as created or found. */
  readonly #leaseMs = new Map<string, number>();
  readonly #creating = new Map<string, Promise<void>>();
  #discoveredAt = 0;

  constructor(ctx: NatsContext) {
    this.#ctx = ctx;
  }

  known(queue: string): boolean {
    return this.#leaseMs.has(queue);
  }

  leaseMs(queue: string): number {
    return this.#leaseMs.get(queue) ?? defaultLeaseMs;
  }

  /** Every queue this node knows, after listing the consumers when the last listing is old. */
  async all(): Promise<string[]> {
    if (Date.now() - this.#discoveredAt > discoverEveryMs) await this.discover();
    return [...this.#leaseMs.keys()];
  }

  async discover(): Promise<void> {
    const { jsm, names } = this.#ctx;
    for await (const info of jsm.consumers.list(names.deliveries)) {
      const queue = info.config.description;
      if (queue === undefined || !info.name.startsWith("q_")) continue;
      if (!this.#leaseMs.has(queue)) this.#leaseMs.set(queue, Math.round((info.config.ack_wait ?? nanos(defaultLeaseMs)) / 1e6));
    }
    this.#discoveredAt = Date.now();
  }

  /** Creates the queue's consumer, or updates its lease time; concurrent calls for one queue share the work. */
  ensure(queue: string, leaseMs?: number): Promise<void> {
    const current = this.#leaseMs.get(queue);
    if (current !== undefined && (leaseMs === undefined || leaseMs === current)) return Promise.resolve();
    const running = this.#creating.get(queue);
    if (running !== undefined) return running;
    const wanted = leaseMs ?? defaultLeaseMs;
    const p = this.#create(queue, wanted).finally(() => this.#creating.delete(queue));
    this.#creating.set(queue, p);
    return p;
  }

  /** Forgets the consumer and makes it again (after a 503 or "consumer deleted"). */
  async recreate(queue: string): Promise<void> {
    const leaseMs = this.leaseMs(queue);
    this.#leaseMs.delete(queue);
    await this.ensure(queue, leaseMs);
  }

  async #create(queue: string, leaseMs: number): Promise<void> {
    const { jsm, names, maxAckPending, replicas } = this.#ctx;
    const config = {
      durable_name: names.consumer(queue),
      description: queue,
      filter_subject: names.queueFilter(queue),
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      replay_policy: ReplayPolicy.Instant,
      ack_wait: nanos(leaseMs),
      max_deliver: -1,
      max_ack_pending: maxAckPending,
      max_waiting: 512,
      num_replicas: replicas,
    };
    try {
      await jsm.consumers.add(names.deliveries, config);
    } catch (err) {
      // It exists with another lease time (declared again with a new one): update it in place.
      if (!/already (exists|in use)/i.test(String(err))) throw err;
      await jsm.consumers.update(names.deliveries, config.durable_name, { ack_wait: config.ack_wait, description: queue, max_ack_pending: maxAckPending });
    }
    this.#leaseMs.set(queue, leaseMs);
  }
}
