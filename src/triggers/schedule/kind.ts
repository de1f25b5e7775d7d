/**
 * The `schedule` source kind: `sources: { nightly: { kind: "schedule", cron: "0 2 * * *", emit: { … } } }` takes
 * the fields of a `schedules` entry. The `schedules` key itself runs as one implicit source, `schedules`.
 */
import type { ScheduleSpec } from "../schedules.ts";
import type { SourceKind } from "../source.ts";
import { validateSchedule } from "./validate.ts";

export const scheduleSource: SourceKind<readonly ScheduleSpec[]> = {
  kind: "schedule",
  validate(name, options, key, problems) {
    const spec = validateSchedule(name, options, key, problems);
    return spec === undefined ? undefined : [spec];
  },
  async create(name, specs) {
    const { ScheduleSource } = await import("./source.ts");
    return new ScheduleSource(name, specs);
  },
};
