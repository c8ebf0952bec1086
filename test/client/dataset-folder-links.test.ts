/**
 * A dataset folder made of symbolic links (real links in a temp folder): the walk follows links to
 * files and folders, names a loop and a dangling link; the store serves linked files in place as
 * plain ones, the copy uploads them, and the local run counts the links and fails the unfollowed
 * ones with their reason.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { formatRunSummary } from '../../cli/run-command';
import { readDatasetFolder, walkDatasetFolder } from '../../client/dataset-folder';
import { uploadFolder } from '../../client/folder-upload';
import { mapWithConcurrency } from '../../lambdas/common/concurrency';
import { generateDemoDataset } from '../../local/demo-dataset';
import { startLocalS3Server } from '../../local/emulator/s3/s3-server';
import { copyInputFolder, serveInputFolder } from '../../local/input-folder';
import { runLocallyIn } from '../support/local-run-in';

function write(path: string, body: string | Buffer): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, body);
}

describe('symbolic links in a dataset folder', () => {
  let work: string;
  let dataset: string;
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'fruits-links-'));
    // The photos live elsewhere; the dataset is links to them.
    const photos = join(work, 'photos');
    write(join(photos, 'kiwis', 'k1.jpg'), 'kiwi 1');
    write(join(photos, 'kiwis', 'k2.jpg'), 'kiwi 2');
    write(join(photos, 'lemon.jpg'), 'lemon');
    dataset = join(work, 'dataset');
    mkdirSync(join(dataset, 'Lemon'), { recursive: true });
    symlinkSync(join(photos, 'kiwis'), join(dataset, 'Kiwi')); // a label folder that is a link
    symlinkSync(join(photos, 'lemon.jpg'), join(dataset, 'Lemon', 'l1.jpg')); // a link to a file
    write(join(dataset, 'Lemon', 'l2.jpg'), 'a plain file beside the links');
    symlinkSync('../../dataset', join(photos, 'kiwis', 'back-to-dataset')); // a loop, reached through Kiwi
    symlinkSync(join(photos, 'gone.jpg'), join(dataset, 'Lemon', 'dangling.jpg')); // a dangling link
    symlinkSync('self.jpg', join(dataset, 'Lemon', 'self.jpg')); // a link to itself
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('the walk follows links to files and folders, once per path; a loop and a dangling link are named, not followed', () => {
    expect(walkDatasetFolder(dataset)).toEqual({
      files: [join(dataset, 'Kiwi', 'k1.jpg'), join(dataset, 'Kiwi', 'k2.jpg'), join(dataset, 'Lemon', 'l1.jpg'), join(dataset, 'Lemon', 'l2.jpg')],
      problems: [
        { path: 'Kiwi/back-to-dataset', reason: 'a symbolic link loop: it leads back to the dataset folder, which holds it' },
        { path: 'Lemon/dangling.jpg', reason: `a symbolic link to ${join(work, 'photos', 'gone.jpg')}, which does not exist` },
        { path: 'Lemon/self.jpg', reason: 'a symbolic link loop (self.jpg leads back to itself)' },
      ],
      linksFollowed: 2,
    });
    // Sizes are the targets'.
    expect(readDatasetFolder(dataset).files.map((file) => [file.path, file.size])).toEqual([
      ['Kiwi/k1.jpg', 6],
      ['Kiwi/k2.jpg', 6],
      ['Lemon/l1.jpg', 5],
      ['Lemon/l2.jpg', 29],
    ]);
  });

  it('served in place, linked files list and read as plain ones (and as their uploaded copy); a changed target is a new version', async () => {
    const server = await startLocalS3Server({ buckets: ['served', 'copied'] });
    try {
      const { files } = readDatasetFolder(dataset);
      await mapWithConcurrency(files, 4, (file) => file.digests());
      const served = await serveInputFolder(server, { bucket: 'served', prefix: 'input/dataset/', root: dataset, files });
      const copied = await copyInputFolder(server.client, { bucket: 'copied', prefix: 'input/dataset/', files }, { concurrency: 4 });
      expect(served).toMatchObject({ served: 4, refused: [] });
      expect(copied).toMatchObject({ uploaded: 4, refused: [] });
      const listing = async (Bucket: string) =>
        ((await server.client.send(new ListObjectsV2Command({ Bucket, Prefix: 'input/' }))).Contents ?? []).map(({ Key, Size, ETag }) => ({ Key, Size, ETag }));
      expect(await listing('served')).toEqual(await listing('copied'));
      const read = async (Bucket: string, Key: string) => {
        const object = await server.client.send(new GetObjectCommand({ Bucket, Key }));
        return { body: await object.Body!.transformToString(), etag: object.ETag };
      };
      expect((await read('served', 'input/dataset/Kiwi/k2.jpg')).body).toBe('kiwi 2');
      expect((await read('served', 'input/dataset/Lemon/l1.jpg')).body).toBe('lemon');
      // The link's target changes: read through the link, it is an overwritten object.
      write(join(work, 'photos', 'lemon.jpg'), 'a riper lemon');
      utimesSync(join(work, 'photos', 'lemon.jpg'), new Date(), new Date(Date.now() + 5000));
      const changed = await read('served', 'input/dataset/Lemon/l1.jpg');
      expect(changed.body).toBe('a riper lemon');
      expect(changed.etag).not.toBe((await read('copied', 'input/dataset/Lemon/l1.jpg')).etag);
      write(join(work, 'photos', 'lemon.jpg'), 'lemon');
    } finally {
      await server.close();
    }
  });

  it("submit's upload follows the links and refuses what it cannot follow, with the reason", async () => {
    const server = await startLocalS3Server({ buckets: ['bucket'] });
    try {
      const upload = await uploadFolder(server.client, { bucket: 'bucket', prefix: 'input/dataset/', dir: dataset });
      expect(upload).toMatchObject({ uploaded: 4, linksFollowed: 2 });
      expect(upload.refused.map((problem) => problem.key)).toEqual([
        'input/dataset/Kiwi/back-to-dataset',
        'input/dataset/Lemon/dangling.jpg',
        'input/dataset/Lemon/self.jpg',
      ]);
      expect(upload.refused[1].reason).toMatch(/^not uploaded: a symbolic link to .*gone.jpg, which does not exist$/);
    } finally {
      await server.close();
    }
  });

  it('a run on a folder of links: the links followed counted in the summary, the unfollowed ones failed inputs with their reason, every file accounted', async () => {
    // Real images this time, every label folder a link.
    const images = join(work, 'images');
    for (const image of await generateDemoDataset({ trainingPerClass: 2, testPerClass: 1 })) write(join(images, image.path), image.body);
    const linked = join(work, 'linked');
    for (const split of ['Training', 'Test']) {
      mkdirSync(join(linked, split), { recursive: true });
      for (const label of readdirSync(join(images, split))) symlinkSync(join(images, split, label), join(linked, split, label));
    }
    symlinkSync(join(work, 'nowhere'), join(linked, 'Test', 'Gone'));
    const { summary } = await runLocallyIn(work, { inputDir: linked, config: { featurizer: 'pixels', pcaComponents: 2 }, workers: 1 });
    expect(summary.processed).toBeGreaterThan(0);
    expect(summary).toMatchObject({
      status: 'SUCCEEDED',
      failed: 1,
      linksFollowed: expect.any(Number),
      notUploaded: [{ key: 'input/linked/Test/Gone', reason: `not read: a symbolic link to ${join(work, 'nowhere')}, which does not exist` }],
      accounting: { complete: true },
    });
    expect(summary.linksFollowed).toBe(readdirSync(join(images, 'Training')).length + readdirSync(join(images, 'Test')).length);
    expect(formatRunSummary(summary)).toMatch(
      /input {7}s3:\/\/\S+\/input\/linked\/ \(\d+ files served from the folder in place, read-only, none copied; \d+ symbolic link\(s\) followed\)/,
    );
    expect(formatRunSummary(summary)).toContain(`1 x not read: a symbolic link to ${join(work, 'nowhere')}, which does not exist`);
  });
});
