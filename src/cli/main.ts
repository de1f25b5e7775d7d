/**
 * The `sluice` CLI. One file per command in this folder; each exports `register(program)`.
 * Exit codes: 0 success, 1 a negative answer (e.g. no match) or a failed operation, 2 bad input or usage.
 */
import { Command, CommanderError } from "commander";
import { SluiceError } from "../errors.ts";
import { register as testPattern } from "./test-pattern.ts";
import { register as dev } from "./dev.ts";
import { register as dlq } from "./dlq.ts";
import { register as init } from "./init.ts";
import { register as invoke } from "./invoke.ts";
import { register as logs } from "./logs.ts";
import { register as publish } from "./publish.ts";
import { register as replay } from "./replay.ts";
import { register as runs } from "./runs.ts";
import { register as start } from "./start.ts";
import { register as status } from "./status.ts";

/** A command module registers itself on the program; `setExitCode` sets the code `main` returns. */
export type RegisterCommand = (program: Command, setExitCode: (code: number) => void) => void;

// One line per command module.
const commands: RegisterCommand[] = [
  testPattern,
  init,
  dev,
  start,
  publish,
  invoke,
  dlq,
  replay,
  runs,
  status,
  logs,
];

export async function main(argv: string[]): Promise<number> {
  const program = new Command("sluice")
    .description("Sluice: event buses, rules, functions and durable delivery in one program.")
    .exitOverride()
    .showHelpAfterError()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  let exitCode = 0;
  const setExitCode = (code: number) => {
    exitCode = code;
  };
  for (const register of commands) register(program, setExitCode);

  try {
    await program.parseAsync(argv, { from: "user" });
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and version exit with 0; usage errors with 2
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof SluiceError) {
      process.stderr.write(`sluice: ${err.code}: ${err.message}${err.path ? ` (at ${err.path})` : ""}\n`);
      return 2;
    }
    process.stderr.write(`sluice: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  return exitCode;
}
