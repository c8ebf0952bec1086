#!/usr/bin/env -S npx tsx
/** `npm start -- <command>` / `fruits <command>`: see cli/program.ts. */
import { nodeVersionProblem, requiredNodeRange } from '../cli/node-version';

// Before the program and its dependencies load: on an older Node they fail deep inside a run.
const tooOld = nodeVersionProblem(process.versions.node, requiredNodeRange());
if (tooOld) {
  process.stderr.write(`fruits: ${tooOld}\n`);
  process.exitCode = 1;
} else {
  void import('../cli/program').then(({ buildProgram }) =>
    buildProgram()
      .parseAsync(process.argv)
      .catch(async (error: unknown) => {
        const { CommanderError } = await import('commander');
        if (error instanceof CommanderError) {
          process.exitCode = error.exitCode;
          return;
        }
        process.stderr.write(`fruits: ${(error as Error).message ?? error}\n`);
        process.exitCode = 1;
      }),
  );
}
