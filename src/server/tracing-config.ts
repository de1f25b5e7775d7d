/**
 * Whether and where traces are exported: the app's `telemetry.otlp`, or the standard OpenTelemetry variables
 * (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL,
 * OTEL_SERVICE_NAME), which override the file as every environment setting does. Neither: tracing is off.
 * OTEL_TRACES_EXPORTER=none makes spans (and traceparents) without exporting them.
 */
import type { TracingOptions } from "../telemetry/tracing.ts";
import { otlpProtocols, validateTelemetry, type OtlpProtocol } from "./config-telemetry.ts";
import { ConfigError, type ConfigProblem } from "./config.ts";

export function resolveTracing(
  rawTelemetry: unknown,
  env: Record<string, string | undefined>,
  appName: string,
  file: string,
): TracingOptions | undefined {
  const problems: ConfigProblem[] = [];
  const add = (key: string, message: string, fix?: string) => problems.push(fix === undefined ? { key, message } : { key, message, fix });
  const fromFile = validateTelemetry(rawTelemetry, add, () => undefined).otlp;
  const envEndpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const envProtocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || env.OTEL_EXPORTER_OTLP_PROTOCOL;
  if (envEndpoint !== undefined) {
    try {
      const u = new URL(envEndpoint);
      if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error("not http");
    } catch {
      add("OTEL_EXPORTER_OTLP_ENDPOINT", `must be an http: or https: URL, got ${JSON.stringify(envEndpoint)}`);
    }
  }
  if (envProtocol !== undefined && !otlpProtocols.includes(envProtocol as OtlpProtocol)) {
    add("OTEL_EXPORTER_OTLP_PROTOCOL", `must be one of ${otlpProtocols.join(", ")} (grpc is not supported), got ${JSON.stringify(envProtocol)}`);
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
  const endpoint = envEndpoint ?? fromFile?.endpoint;
  if (endpoint === undefined) return undefined;
  return {
    endpoint,
    protocol: (envProtocol as OtlpProtocol | undefined) ?? fromFile?.protocol ?? "http/protobuf",
    ...(fromFile?.headers === undefined ? {} : { headers: { ...fromFile.headers } }),
    serviceName: env.OTEL_SERVICE_NAME || fromFile?.serviceName || appName,
    ...(env.OTEL_TRACES_EXPORTER === "none" ? { noExport: true } : {}),
  };
}
