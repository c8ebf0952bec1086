#!/usr/bin/env -S npx tsx
/** `npm start -- <command>` / `fruits <command>`: see cli/program.ts. */
import { CommanderError } from 'commander';
import { buildProgram } from '../cli/program';

buildProgram()
  .parseAsync(process.argv)
  .catch((error: unknown) => {
    if (error instanceof CommanderError) {
      process.exitCode = error.exitCode;
      return;
    }
    process.stderr.write(`fruits: ${(error as Error).message ?? error}\n`);
    process.exitCode = 1;
  });
