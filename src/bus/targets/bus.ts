/** The bus target, `{ bus: "audit" }`: the event is published into another bus of the same broker (one more hop). */
import { checkName } from "../../util/validate.ts";
import type { TargetHandler } from "./target.ts";

export const busTarget: TargetHandler<string> = {
  kind: "bus",
  compile: (value, path) => checkName("bus", value, path),
  references: (bus) => [{ kind: "bus", name: bus }],
  defaultId: (value) => `bus-${String(value)}`,
  open: (host) => ({ deliver: (bus, event) => host.forward(bus, event) }),
};
