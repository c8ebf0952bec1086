/**
 * The container image cannot be built here (no Docker), so this runs what goes into it: the
 * handlers bundled by the image's own bundling step, executed through the synthesized state
 * machine against S3 on loopback. A bundling problem (a module esbuild cannot inline, a dynamic
 * require, a missing external) fails here instead of in the first deployed run.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleHandlers, HANDLER_ENTRIES } from '../../lambdas/image/bundle-handlers';
import { readFeaturesCsv } from '../../evaluate/knn';
import { runLocally } from '../../local/local-run';

const PROJECT_ROOT = join(__dirname, '..', '..');
const MODEL_DIR = join(PROJECT_ROOT, '..', 'shared', 'models', 'mobilenet_v1_0.25_224');

describe('image bundle (lambdas/image/bundle-handlers.ts, as the Dockerfile runs it)', () => {
  // Inside the project so the externals (sharp, @tensorflow/*) resolve from node_modules, as they
  // resolve from the image's own node_modules.
  const bundleDir = join(PROJECT_ROOT, '.cache', `image-bundle-${process.pid}`);
  let work: string;
  beforeAll(async () => {
    mkdirSync(bundleDir, { recursive: true });
    work = mkdtempSync(join(tmpdir(), 'fruits-image-bundle-'));
    await bundleHandlers(bundleDir);
  });
  afterAll(() => {
    rmSync(bundleDir, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });

  it('writes one CommonJS bundle per handler, with the native/wasm packages left external', () => {
    const bundles = HANDLER_ENTRIES.map((entry) => readFileSync(join(bundleDir, entry.replace(/\.ts$/, '.js')), 'utf8'));
    for (const bundle of bundles) {
      // esbuild marks every inlined module with a `// node_modules/<path>` comment.
      expect(bundle).not.toMatch(/\/\/ node_modules\/(sharp|@tensorflow)\//);
    }
    const featurize = bundles[HANDLER_ENTRIES.indexOf('lambdas/featurize/handler.ts')];
    expect(featurize).toContain('require("sharp")');
    expect(featurize).toContain('require("@tensorflow/tfjs-core")');
  });

  it('runs a whole local run with the bundled handlers', async () => {
    const withModel = existsSync(join(MODEL_DIR, 'model.json'));
    if (!withModel) console.warn(`image bundle: ${MODEL_DIR} absent, the bundle runs with the pixels featurizer`);
    const { summary } = await runLocally({
      bundledHandlersDir: bundleDir,
      dataDir: join(work, 's3'),
      outDir: join(work, 'out'),
      modelDir: withModel ? MODEL_DIR : undefined,
      config: withModel ? {} : { featurizer: 'pixels' },
      workers: 1,
    });
    expect(summary).toMatchObject({ status: 'SUCCEEDED', processed: 120, failed: 0 });
    if (withModel) expect(summary.featurizer).toMatch(/^mobilenet_v1_0\.25_224\//);
    const rows = readFeaturesCsv(readFileSync(join(work, 'out', summary.runId, 'features.csv'), 'utf8'));
    expect(rows).toHaveLength(120);
  });
});
