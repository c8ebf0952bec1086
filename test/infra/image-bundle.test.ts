/**
 * The container image cannot be built here (no Docker), so this runs what goes into it: the
 * handlers bundled by the image's own bundling step, executed through the synthesized state
 * machine against S3 on loopback. A bundling problem (a module esbuild cannot inline, a dynamic
 * require, a missing external) fails here instead of in the first deployed run.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleHandlers, HANDLER_ENTRIES } from '../../layers/handlers/bundle-handlers';
import { readFeaturesCsv } from '../../evaluate/knn';
import { runLocally } from '../../local/local-run';

const PROJECT_ROOT = join(__dirname, '..', '..');

describe('image bundle (layers/handlers/bundle-handlers.ts, as the Dockerfile runs it)', () => {
  // Inside the project so the externals (sharp, onnxruntime-node, @tensorflow/*) resolve from node_modules, as they
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
      expect(bundle).not.toMatch(/\/\/ node_modules\/(sharp|onnxruntime-node|@cornerstonejs|@tensorflow)\//);
    }
    const featurize = bundles[HANDLER_ENTRIES.indexOf('lambdas/featurize/handler.ts')];
    expect(featurize).toContain('require("sharp")');
    // onnxruntime-node loads in the inference thread, from the path the bundle resolves.
    expect(featurize).toContain('require.resolve("onnxruntime-node")');
    expect(featurize).toContain('require("@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs")');
    expect(featurize).toContain('require("@tensorflow/tfjs-core")');
  });

  it('runs a whole local run with the bundled handlers and the shipped default model', async () => {
    // What the image runs: the default TFLite model (MODEL_DIR points at it), on onnxruntime-node.
    const { summary } = await runLocally({ bundledHandlersDir: bundleDir, dataDir: join(work, 's3'), outDir: join(work, 'out'), workers: 1 });
    expect(summary).toMatchObject({ status: 'SUCCEEDED', processed: 108, failed: 0 });
    expect(summary.featurizer).toMatch(/^mobilenet_v2_1\.0_224_quant@7aad0c74\//);
    expect(summary.backends.join()).toMatch(/^onnxruntime-node/);
    const rows = readFeaturesCsv(readFileSync(join(work, 'out', summary.runId, 'features.csv'), 'utf8'));
    expect(rows).toHaveLength(108);
  });
});
