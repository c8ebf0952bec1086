import { readdirSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Every file of a dataset folder, depth first in name order (stable keys, stable run ids).
 * Hidden entries (.DS_Store, .git, editor droppings) are not part of a dataset a user would
 * upload, so they and everything below them are left out.
 */
export function* datasetFiles(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* datasetFiles(path);
    else if (entry.isFile()) yield path;
  }
}
