/** A publish result's first refused entry as an error, for callers that publish and need all-or-nothing. */
import { type ErrorCode, SluiceError } from "../errors.ts";

/** A publish result (the broker's, or the server's chunked one): entries with `errorCode` failed. */
export interface PublishOutcomeLike {
  entries: readonly object[];
}

/** The first failed entry of a publish result as an error (the other entries were stored). */
export function publishError(out: PublishOutcomeLike): SluiceError | undefined {
  const failed = out.entries.find((e) => "errorCode" in e) as { errorCode: ErrorCode; errorMessage: string; path?: string } | undefined;
  return failed ? new SluiceError(failed.errorCode, failed.errorMessage, failed.path === undefined ? {} : { path: failed.path }) : undefined;
}
