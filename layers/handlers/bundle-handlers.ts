/**
 * The handlers image layer: the Lambda handlers bundled the way the container image runs them.
 *
 *   npx tsx layers/handlers/bundle-handlers.ts <outdir>
 *
 * The Dockerfile calls this, and test/infra/image-bundle.test.ts runs the same bundles against a
 * local S3 server, so the bundling is exercised on machines without Docker.
 */
import { join } from 'node:path';
import { build } from 'esbuild';
import { RUNTIME_EXTERNALS } from '../runtime-packages/runtime-packages';

/** Handler modules in the image; the CDK app sets CMD to `<entry without .ts>.handler`. */
export const HANDLER_ENTRIES = ['lambdas/featurize/handler.ts', 'lambdas/aggregate/handler.ts'] as const;

/** Writes `<outdir>/lambdas/<name>/handler.js` (CommonJS, Node 22, with source maps). */
export async function bundleHandlers(outdir: string, projectRoot = join(__dirname, '..', '..')): Promise<void> {
  await build({
    absWorkingDir: projectRoot,
    entryPoints: [...HANDLER_ENTRIES],
    bundle: true,
    platform: 'node',
    target: 'node22',
    format: 'cjs',
    sourcemap: true,
    outbase: '.',
    outdir,
    // The runtime-packages layer installs these; the bundles require them from its node_modules.
    external: [...RUNTIME_EXTERNALS],
    logLevel: 'warning',
  });
}

if (require.main === module) {
  const outdir = process.argv[2];
  if (!outdir) {
    console.error('usage: npx tsx layers/handlers/bundle-handlers.ts <outdir>');
    process.exit(2);
  }
  bundleHandlers(outdir).catch((error: Error) => {
    console.error(error.message);
    process.exit(1);
  });
}
