/**
 * The remoteBus sink, `{ remoteBus: { url, bus, key } }`: publishes the event to a bus of another Sluice
 * (`POST <url>/buses/<bus>/events`, structured mode, `Authorization: Bearer <key>`). The event travels with
 * its hop count plus one, so the other deployment's hop limit catches a loop that crosses deployments. Done
 * on the remote's 2xx (the event is durable there); failures retry or dead-letter like a webhook's.
 */
import { encodeEvent } from "../../../event/codec.ts";
import { SluiceExtension } from "../../../event/types.ts";
import { hopsOf } from "../../publisher.ts";
import type { TargetHandler } from "../target.ts";
import { deliverWebhook } from "../webhook.ts";
import { SpecReader } from "./spec.ts";

export interface RemoteBusSpec {
  url: string;
  bus: string;
  key: string;
}

export const remoteBusTarget: TargetHandler<RemoteBusSpec> = {
  kind: "remoteBus",
  compile(value, path) {
    const r = SpecReader.of("remoteBus", value, path, ["url", "bus", "key"], "{ url, bus, key }");
    const url = r.url(["http:", "https:"]);
    const bus = r.string("bus", true);
    const key = r.string("key", true);
    return { url, bus, key };
  },
  defaultId: (value) => `remote-${String((value as { bus?: unknown })?.bus ?? "")}`,
  open: (host) => ({
    async deliver(spec, event, context) {
      const next = { ...event, [SluiceExtension.Hops]: hopsOf(event) + 1 };
      const url = `${spec.url.replace(/\/+$/, "")}/buses/${encodeURIComponent(spec.bus)}/events`;
      await deliverWebhook({ url, headers: { authorization: `Bearer ${spec.key}` } }, encodeEvent(next), context.signal, {
        eventId: event.id,
        allowPrivateNetworks: host.allowPrivateNetworks,
        ...(context.traceparent === undefined ? {} : { traceparent: context.traceparent }),
      });
    },
  }),
};
