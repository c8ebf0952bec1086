/**
 * Bundle the Lambda handlers the way the container image runs them:
 *
 *   npx tsx lambdas/image/bundle-handlers.ts <outdir>
 *
 * The Dockerfile calls this, and test/infra/image-bundle.test.ts runs the same bundles against a
 * local S3 server, so the bundling is exercised on machines without Docker.
 */
import { join } from 'node:path';
import { build } from 'esbuild';

/** Handler modules in the image; the CDK app sets CMD to `<entry without .ts>.handler`. */
export const HANDLER_ENTRIES = ['lambdas/featurize/handler.ts', 'lambdas/aggregate/handler.ts'] as const;

/**
 * Left out of the bundle and installed in the image instead (runtime-externals.json, which the
 * Dockerfile reads too): sharp, onnxruntime-node, the libjpeg-turbo wasm codec and tfjs load
 * native or wasm files next to their own modules, and every tfjs package must share one tfjs-core
 * instance for a backend registered by tfjs-node to be the one the model runs on.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports -- plain JSON, shared with the Dockerfile
export const RUNTIME_EXTERNALS: readonly string[] = require('./runtime-externals.json');

/** Writes `<outdir>/lambdas/<name>/handler.js` (CommonJS, Node 24, with source maps). */
export async function bundleHandlers(outdir: string, projectRoot = join(__dirname, '..', '..')): Promise<void> {
  await build({
    absWorkingDir: projectRoot,
    entryPoints: [...HANDLER_ENTRIES],
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'cjs',
    sourcemap: true,
    outbase: '.',
    outdir,
    external: [...RUNTIME_EXTERNALS],
    logLevel: 'warning',
  });
}

if (require.main === module) {
  const outdir = process.argv[2];
  if (!outdir) {
    console.error('usage: npx tsx lambdas/image/bundle-handlers.ts <outdir>');
    process.exit(2);
  }
  bundleHandlers(outdir).catch((error: Error) => {
    console.error(error.message);
    process.exit(1);
  });
}
