/**
 * `sluice test-pattern --pattern <json|@file> --event <json|@file>`: does the event match the pattern?
 * Exit 0 on a match, 1 on no match (the failing field is printed), 2 on bad input (bad JSON, invalid pattern).
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { ErrorCode, SluiceError } from "../errors.ts";
import { compilePattern } from "../pattern/compile.ts";

/** Reads a flag value that is inline JSON or `@path` to a JSON file. */
function readJsonArg(flag: string, value: string): unknown {
  let text = value;
  let where = "the value";
  if (value.startsWith("@")) {
    where = value.slice(1);
    try {
      text = readFileSync(where, "utf8");
    } catch (err) {
      throw new SluiceError(ErrorCode.BadRequest, `--${flag}: cannot read ${where}: ${(err as Error).message}`, { cause: err });
    }
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new SluiceError(ErrorCode.JsonInvalid, `--${flag}: ${where} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

export function register(program: Command, setExitCode: (code: number) => void): void {
  program
    .command("test-pattern")
    .description("Test an EventBridge event pattern against an event (exit 0 match, 1 no match, 2 bad input)")
    .requiredOption("--pattern <json|@file>", "the event pattern, as JSON or @path/to/file.json")
    .requiredOption("--event <json|@file>", "the event (a CloudEvent's JSON form), as JSON or @path/to/file.json")
    .action((opts: { pattern: string; event: string }) => {
      const pattern = compilePattern(readJsonArg("pattern", opts.pattern));
      const event = readJsonArg("event", opts.event);
      const why = pattern.explain(event);
      if (why === null) {
        process.stdout.write("match\n");
        setExitCode(0);
        return;
      }
      process.stdout.write(
        `no match: ${why.path}\n  expected: ${why.expected}\n  actual:   ${why.actual}\n  ${why.message}\n`,
      );
      setExitCode(1);
    });
}
