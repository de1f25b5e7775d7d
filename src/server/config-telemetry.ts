/** The `telemetry` key of defineApp: lineage and OpenTelemetry trace export (docs/telemetry.md). */
import { isObject } from "../util/validate.ts";

export const otlpProtocols = ["http/protobuf", "http/json"] as const;
export type OtlpProtocol = (typeof otlpProtocols)[number];

export interface OtlpConfig {
  /** Base URL of an OTLP/HTTP receiver (`http://collector:4318`); traces go to `<endpoint>/v1/traces`. */
  endpoint: string;
  /** Default `http/protobuf`, as the OpenTelemetry default. */
  protocol?: OtlpProtocol;
  /** Extra request headers (an API key for a hosted backend). */
  headers?: Readonly<Record<string, string>>;
  /** `service.name` of the spans. Default the app's name. */
  serviceName?: string;
}

export interface TelemetryConfig {
  /** Record each event's lineage for `sluice trace` and the dashboard. Default true. */
  lineage?: boolean;
  /** Export OpenTelemetry traces over OTLP/HTTP. Off unless set here or by OTEL_EXPORTER_OTLP_ENDPOINT. */
  otlp?: OtlpConfig;
}

export interface ValidatedTelemetry {
  lineage: boolean;
  otlp?: OtlpConfig;
}

type Add = (key: string, message: string, fix?: string) => void;

function validUrl(value: string): boolean {
  try {
    const u = new URL(value);
    return u.protocol === "http:" || u.protocol === "https:";
  } catch {
    return false;
  }
}

/** Checks the `telemetry` key; problems go to `add` with their key (`telemetry.otlp.endpoint`). */
export function validateTelemetry(raw: unknown, add: Add, unknownKeys: (obj: Record<string, unknown>, known: readonly string[], prefix: string) => void): ValidatedTelemetry {
  const out: ValidatedTelemetry = { lineage: true };
  if (raw === undefined) return out;
  if (!isObject(raw)) {
    add("telemetry", "must be an object", 'write telemetry: { otlp: { endpoint: "http://127.0.0.1:4318" } }');
    return out;
  }
  unknownKeys(raw, ["lineage", "otlp"], "telemetry");
  if (raw.lineage !== undefined) {
    if (typeof raw.lineage !== "boolean") add("telemetry.lineage", "must be true or false");
    else out.lineage = raw.lineage;
  }
  if (raw.otlp !== undefined) {
    const o = raw.otlp;
    if (!isObject(o)) {
      add("telemetry.otlp", "must be an object", 'write otlp: { endpoint: "http://127.0.0.1:4318" }');
      return out;
    }
    unknownKeys(o, ["endpoint", "protocol", "headers", "serviceName"], "telemetry.otlp");
    let ok = true;
    if (typeof o.endpoint !== "string" || !validUrl(o.endpoint)) {
      add("telemetry.otlp.endpoint", "must be an http: or https: URL", 'e.g. "http://127.0.0.1:4318"');
      ok = false;
    }
    if (o.protocol !== undefined && !otlpProtocols.includes(o.protocol as OtlpProtocol)) {
      add("telemetry.otlp.protocol", `must be one of ${otlpProtocols.join(", ")}`);
      ok = false;
    }
    if (o.headers !== undefined && (!isObject(o.headers) || Object.values(o.headers).some((v) => typeof v !== "string"))) {
      add("telemetry.otlp.headers", "must be an object of string values");
      ok = false;
    }
    if (o.serviceName !== undefined && (typeof o.serviceName !== "string" || o.serviceName === "")) {
      add("telemetry.otlp.serviceName", "must be a non-empty string");
      ok = false;
    }
    if (ok) {
      out.otlp = {
        endpoint: o.endpoint as string,
        ...(o.protocol === undefined ? {} : { protocol: o.protocol as OtlpProtocol }),
        ...(o.headers === undefined ? {} : { headers: o.headers as Record<string, string> }),
        ...(o.serviceName === undefined ? {} : { serviceName: o.serviceName as string }),
      };
    }
  }
  return out;
}
