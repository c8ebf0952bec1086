/**
 * The local run at a scale where listing pages, folder names that are prefixes of one another and
 * odd keys all matter: over 3,000 images under label folders such as `Peach`, `Peach 2` and
 * `Peach Flat` (a space sorts before `/`), unicode, a 240-byte file name and a key longer than S3
 * allows. Every file must come out exactly once, a re-run must upload nothing, and the folder
 * served in place (the default) must give the same run as its uploaded copy.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { restoreTextField } from '../../lambdas/outputs/features-csv';
import { readFeaturesCsv } from '../../evaluate/knn';
import { generateDemoDataset } from '../../local/demo-dataset';
import { runLocally } from '../../local/local-run';
import { readFileSync } from 'node:fs';
import type { RunReport } from '../../lambdas/outputs/run-report';
import { suiteWorkFolder } from '../support/work-folder';

// One per demo shape (5): prefixes of one another, a space, unicode.
const LABELS = ['Peach', 'Peach 2', 'Peach Flat', 'Grape White', 'Grape White 2 été 🍇'];

describe('local run at scale (3,000+ images, prefix-named folders)', () => {
  const work = suiteWorkFolder('fruits-scale-');

  it('accounts for every file exactly once, a re-run uploads nothing, and serving the folder in place gives the same run', async () => {
    const dataset = join(work, 'scale');
    const images = await generateDemoDataset({ trainingPerClass: 520, testPerClass: 100 });
    const labelOf = new Map<string, string>();
    const written: string[] = [];
    const write = (path: string, body: Buffer) => {
      mkdirSync(dirname(join(dataset, path)), { recursive: true });
      writeFileSync(join(dataset, path), body);
      written.push(path);
    };
    for (const image of images) {
      const [split, demoLabel, file] = image.path.split('/');
      if (!labelOf.has(demoLabel)) labelOf.set(demoLabel, LABELS[labelOf.size]);
      write(`${split}/${labelOf.get(demoLabel)}/${file}`, image.body);
    }
    const longName = `${'n'.repeat(236)}.jpg`; // 240 bytes: the longest file names filesystems take are 255
    write(`Training/Peach/${longName}`, images[0].body);
    const tooLong = `Training/Peach/${Array.from({ length: 5 }, (_, i) => `${i}${'d'.repeat(219)}`).join('/')}/x.jpg`;
    write(tooLong, images[1].body);
    expect(written.length).toBeGreaterThan(3000);

    const options = { inputDir: dataset, dataDir: join(work, 's3'), outDir: join(work, 'out'), workers: 2, config: { featurizer: 'pixels' as const } };
    const first = (await runLocally({ ...options, copyInput: true })).summary;
    expect({ status: first.status, error: first.error }).toEqual({ status: 'SUCCEEDED', error: undefined });
    expect(first.accounting).toMatchObject({ complete: true, listed: written.length, accounted: written.length });
    expect(first).toMatchObject({ uploaded: written.length - 1, processed: written.length - 1, failed: 1, skipped: 0 });
    expect(first.notUploaded).toEqual([{ key: `input/scale/${tooLong}`, reason: expect.stringMatching(/longer than the 1024 bytes S3 allows/) }]);

    const features = readFileSync(join(first.outDir!, 'features.csv'), 'utf8');
    const rows = readFeaturesCsv(features);
    const keys = rows.map((row) => row.key);
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys.sort()).toEqual(
      written
        .filter((path) => path !== tooLong)
        .map((path) => `input/scale/${path}`)
        .sort(),
    );
    expect(new Set(rows.map((row) => restoreTextField(row.label)))).toEqual(new Set(LABELS));
    const report = JSON.parse(readFileSync(join(first.outDir!, 'report.json'), 'utf8')) as RunReport;
    expect(report.accounting).toMatchObject({ complete: true, listed: written.length - 1 });

    const second = (await runLocally({ ...options, copyInput: true })).summary;
    expect(second).toMatchObject({ status: 'SUCCEEDED', runId: first.runId, uploaded: 0, alreadyPresent: written.length - 1, processed: written.length - 1 });

    // Served in place: the same listing (keys, ETags), so the same run id, shards and rows; the
    // key S3 would refuse is reported and counted exactly as the upload reported it.
    const served = (await runLocally(options)).summary;
    expect({ status: served.status, error: served.error }).toEqual({ status: 'SUCCEEDED', error: undefined });
    expect(served).toMatchObject({ runId: first.runId, served: written.length - 1, uploaded: 0, processed: written.length - 1, failed: 1, skipped: 0 });
    expect(served.notUploaded).toEqual(first.notUploaded);
    expect(served.accounting).toMatchObject({ complete: true, listed: written.length, accounted: written.length });
    expect(readFileSync(join(served.outDir!, 'features.csv'), 'utf8')).toBe(features);
  }, 600_000);
});
