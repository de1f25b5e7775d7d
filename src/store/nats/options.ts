/** Options of the NATS JetStream store, and the `nats://` URL that carries them. */
import { ErrorCode, SluiceError } from "../../errors.ts";

export interface NatsStoreOptions {
  /** Servers of one NATS cluster, `host:port` each (a client fails over between them). */
  servers: string[];
  /**
   * The deployment's name: every stream, consumer and bucket is named after it, so two deployments on one NATS
   * never see each other's data. Letters, digits and `_`, at most 32 characters. Default `sluice`.
   */
  deployment?: string;
  /** Replicas of every stream and bucket (1 on a single server, 3 on a three-server cluster). Default 1. */
  replicas?: number;
  token?: string;
  user?: string;
  pass?: string;
  /** A `.creds` file (JWT and NKey seed). */
  credsFile?: string;
  /** Most deliveries a queue's consumer hands out before an ack (`max_ack_pending`). Default 20 000. */
  maxAckPending?: number;
  /** How long a connect attempt waits before E_STORE_UNAVAILABLE. Default 5000. */
  connectTimeoutMs?: number;
}

export const deploymentPattern = /^[A-Za-z0-9_]{1,32}$/;

function invalid(message: string, path: string): SluiceError {
  return new SluiceError(ErrorCode.ConfigInvalid, message, { path });
}

/**
 * Parses `nats://[user:pass@|token@]host:port[,host:port…][/deployment][?deployment=…&replicas=…&creds=…]`.
 * Throws E_CONFIG_INVALID naming the part that is wrong.
 */
export function parseNatsUrl(url: string): NatsStoreOptions {
  const match = /^nats:\/\/([^/?]*)(\/[^?]*)?(\?.*)?$/i.exec(url);
  if (match === null) throw invalid(`store URL ${JSON.stringify(url)}: write nats://host:4222[,host:4223]`, "$.store");
  let hosts = match[1] ?? "";
  const options: NatsStoreOptions = { servers: [] };
  const at = hosts.lastIndexOf("@");
  if (at >= 0) {
    const auth = decodeURIComponent(hosts.slice(0, at));
    hosts = hosts.slice(at + 1);
    const colon = auth.indexOf(":");
    if (colon >= 0) {
      options.user = auth.slice(0, colon);
      options.pass = auth.slice(colon + 1);
    } else options.token = auth;
  }
  options.servers = hosts.split(",").filter((h) => h !== "");
  if (options.servers.length === 0) throw invalid(`store URL ${JSON.stringify(url)}: no server named; write nats://host:4222`, "$.store");
  for (const s of options.servers) {
    if (!/^[A-Za-z0-9_.\-[\]:]+$/.test(s)) throw invalid(`store URL ${JSON.stringify(url)}: "${s}" is not a host:port`, "$.store");
  }
  const path = (match[2] ?? "").replace(/^\/+|\/+$/g, "");
  if (path !== "") options.deployment = decodeURIComponent(path);
  const params = new URLSearchParams((match[3] ?? "").slice(1));
  for (const [name, value] of params) {
    if (name === "deployment") options.deployment = value;
    else if (name === "replicas") options.replicas = Number(value);
    else if (name === "creds") options.credsFile = value;
    else if (name === "token") options.token = value;
    else if (name === "maxAckPending") options.maxAckPending = Number(value);
    else throw invalid(`store URL ${JSON.stringify(url)}: unknown parameter "${name}" (accepted: deployment, replicas, creds, token, maxAckPending)`, "$.store");
  }
  return options;
}

/** Validates options once; every problem names its key. */
export function checkNatsOptions(options: NatsStoreOptions): Required<Pick<NatsStoreOptions, "deployment" | "replicas" | "maxAckPending" | "connectTimeoutMs">> {
  const deployment = options.deployment ?? "sluice";
  if (!deploymentPattern.test(deployment)) {
    throw invalid(`nats deployment "${deployment}" is invalid: use A-Z, a-z, 0-9 and _ (at most 32)`, "$.deployment");
  }
  const replicas = options.replicas ?? 1;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) throw invalid(`nats replicas must be 1 to 5, got ${replicas}`, "$.replicas");
  const maxAckPending = options.maxAckPending ?? 20_000;
  if (!Number.isInteger(maxAckPending) || maxAckPending < 1) throw invalid(`nats maxAckPending must be a positive integer, got ${maxAckPending}`, "$.maxAckPending");
  const connectTimeoutMs = options.connectTimeoutMs ?? 5000;
  return { deployment, replicas, maxAckPending, connectTimeoutMs };
}
