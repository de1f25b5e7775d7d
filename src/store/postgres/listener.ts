/**
 * Work wake-ups over LISTEN/NOTIFY: one dedicated connection per store that LISTENs on the schema's channel
 * and reconnects (with capped backoff) when the connection drops. A notification wakes all current waiters,
 * unless it came from one of this store's own pooled connections: every store call that notifies also wakes the
 * waiters itself once it resolves, so the echo would only cost each waiter a lease that finds nothing.
 */
import type { Client, ClientConfig } from "pg";
import { quoteIdent } from "./migrations.ts";

type ClientClass = new (config: ClientConfig) => Client;

export class WorkListener {
  readonly #Client: ClientClass;
  readonly #config: ClientConfig;
  readonly #channel: string;
  #client: Client | undefined;
  #waiters = new Set<() => void>();
  /** A wake-up arrived while nobody waited: the next waitForWork resolves at once (no lost wake-ups). */
  #pending = false;
  #closed = false;
  #everConnected = false;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #backoffMs = 50;
  #connecting: Promise<void> | undefined;
  /** Backend process ids of this store's pooled connections: their notifications are echoes of local wake-ups. */
  readonly ownBackends = new Set<number>();

  constructor(ClientCtor: ClientClass, config: ClientConfig, channel: string) {
    this.#Client = ClientCtor;
    this.#config = config;
    this.#channel = channel;
  }

  /** Connects and LISTENs. Rejects when the first connection fails (the store then fails to open). */
  start(): Promise<void> {
    return this.#connect();
  }

  get connected(): boolean {
    return this.#client !== undefined;
  }

  #connect(): Promise<void> {
    this.#connecting ??= (async () => {
      const client = new this.#Client(this.#config);
      client.on("error", () => this.#lost(client));
      client.on("end", () => this.#lost(client));
      client.on("notification", (msg) => {
        if (!this.ownBackends.has(msg.processId)) this.wake();
      });
      try {
        await client.connect();
        await client.query(`LISTEN ${quoteIdent(this.#channel)}`);
      } catch (err) {
        client.removeAllListeners("end");
        client.on("error", () => undefined);
        await client.end().catch(() => undefined);
        throw err;
      }
      if (this.#closed) {
        await client.end().catch(() => undefined);
        return;
      }
      const reconnect = this.#everConnected;
      this.#client = client;
      this.#everConnected = true;
      this.#backoffMs = 50;
      // Notifications sent while we were not listening are lost: let waiters look for work.
      if (reconnect) this.wake();
    })().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  #lost(client: Client): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    client.removeAllListeners("notification");
    client.on("error", () => undefined);
    client.end().catch(() => undefined);
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#reconnectTimer !== undefined) return;
    const delayMs = this.#backoffMs;
    this.#backoffMs = Math.min(this.#backoffMs * 2, 5000);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (this.#closed) return;
      this.#connect().catch(() => this.#scheduleReconnect());
    }, delayMs);
  }

  /** Wakes every waiter (a notification, a local append, a reconnect, close). */
  wake(): void {
    if (this.#waiters.size === 0) {
      this.#pending = true;
      return;
    }
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const w of waiters) w();
  }

  wait(signal: AbortSignal): Promise<void> {
    if (this.#closed || signal.aborted || this.#pending) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener("abort", done);
        this.#waiters.delete(done);
        resolve();
      };
      this.#waiters.add(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#reconnectTimer !== undefined) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    await this.#connecting?.catch(() => undefined);
    const client = this.#client;
    this.#client = undefined;
    this.wake();
    if (client) {
      client.removeAllListeners("end");
      await client.end().catch(() => undefined);
    }
  }
}
