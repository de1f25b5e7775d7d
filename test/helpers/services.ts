/**
 * Real external services for tests (PostgreSQL, NATS, Redis, RabbitMQ, MQTT).
 *
 * On a developer machine without a service, the suites that need it are skipped with a printed reason.
 * With CI=true a missing service is a failure, never a skip.
 */
import { connect } from "node:net";
import { randomUUID } from "node:crypto";

export const services = {
  postgres: { host: "127.0.0.1", port: 5432 },
  nats: { host: "127.0.0.1", port: 4222 },
  redis: { host: "127.0.0.1", port: 6379 },
  rabbitmq: { host: "127.0.0.1", port: 5672 },
  mqtt: { host: "127.0.0.1", port: 1883 },
} as const;
export type ServiceName = keyof typeof services;

function reachable(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/**
 * Resolves to `false` when the service answers, or to a skip reason when it does not.
 * Throws under CI=true, where every service must run.
 * Use as `test("…", { skip: await skipUnless("postgres") }, …)`.
 */
export async function skipUnless(name: ServiceName): Promise<false | string> {
  const { host, port } = services[name];
  if (await reachable(host, port)) return false;
  const reason = `${name} is not reachable at ${host}:${port}`;
  if (process.env.CI === "true") throw new Error(`${reason} (CI=true: a missing service is a failure)`);
  console.log(`# skipping ${name} suites: ${reason}`);
  return reason;
}

/** The admin connection string of the machine's PostgreSQL (trust auth, database `test`). */
export const postgresAdminUrl = process.env.SLUICE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";

/**
 * Creates a database with a unique name for one test file, and returns its URL and a `drop()`.
 * Tests never share a database, so parallel runs never collide.
 */
export async function createTestDatabase(prefix = "sluice_test_"): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const { default: pg } = await import("pg");
  const name = `${prefix}${randomUUID().replaceAll("-", "")}`.slice(0, 63);
  const admin = new pg.Client({ connectionString: postgresAdminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(postgresAdminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    async drop() {
      const c = new pg.Client({ connectionString: postgresAdminUrl });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

/** A unique name for a stream, queue, bus or topic in one test. */
export function uniqueName(prefix = "t"): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}
