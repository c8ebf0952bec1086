import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { fetchModel, ModelVerificationError } from '../../../tools/model/fetch-model';
import { loadModelManifest, ModelManifest, ModelManifestSchema, pinModelFiles } from '../../../tools/model/manifest';
import { requireFiles, SHARED_MODELS } from '../../support/required-files';

/** Serves files of `root` on loopback and counts requests per path. */
async function serveDirectory(root: string): Promise<{ url: string; requests: Map<string, number>; server: Server }> {
  const requests = new Map<string, number>();
  const server = createServer((request, response) => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://x').pathname).replace(/^\/+/, '');
    requests.set(path, (requests.get(path) ?? 0) + 1);
    const file = join(root, path);
    if (path.includes('..') || !existsSync(file)) {
      response.writeHead(404).end('not found');
      return;
    }
    response.writeHead(200, { 'content-type': 'application/octet-stream' }).end(readFileSync(file));
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/model/`, requests, server };
}

describe('fetchModel against a loopback HTTP server', () => {
  let work: string;
  let served: string;
  let manifest: ModelManifest;
  let http: Awaited<ReturnType<typeof serveDirectory>>;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'fetch-model-'));
    served = join(work, 'server', 'model');
    mkdirSync(served, { recursive: true });
    // A stand-in model: the fetcher only cares about files, sizes and hashes.
    writeFileSync(
      join(served, 'model.json'),
      JSON.stringify({ modelTopology: {}, weightsManifest: [{ paths: ['group1-shard1of2', 'group1-shard2of2'], weights: [] }] }),
    );
    writeFileSync(join(served, 'group1-shard1of2'), Buffer.alloc(4096, 7));
    writeFileSync(join(served, 'group1-shard2of2'), Buffer.alloc(1000, 9));
    http = await serveDirectory(join(work, 'server'));
    manifest = ModelManifestSchema.parse({
      defaultModel: 'tiny',
      models: { tiny: { baseUrl: http.url, format: 'tfjs-layers', pinnedFrom: 'test', files: pinModelFiles(served) } },
    });
  });
  afterAll(async () => {
    await new Promise((done) => http.server.close(done));
    rmSync(work, { recursive: true, force: true });
  });

  const leftovers = (parent: string) => (existsSync(parent) ? readdirSync(parent).filter((name) => /\.(partial|stale)-/.test(name)) : []);

  it('downloads and verifies every file, then finds them present', async () => {
    const dest = join(work, 'cache', 'tiny');
    const first = await fetchModel({ modelId: 'tiny', dest, manifest });
    expect(first).toMatchObject({ files: 3, bytes: 4096 + 1000 + readFileSync(join(served, 'model.json')).length, alreadyPresent: false });
    expect(readdirSync(dest).sort()).toEqual(['group1-shard1of2', 'group1-shard2of2', 'model.json']);
    expect(readFileSync(join(dest, 'group1-shard2of2'))).toEqual(readFileSync(join(served, 'group1-shard2of2')));
    const requestsBefore = [...http.requests.values()].reduce((a, b) => a + b, 0);
    expect((await fetchModel({ modelId: 'tiny', dest, manifest })).alreadyPresent).toBe(true);
    expect([...http.requests.values()].reduce((a, b) => a + b, 0)).toBe(requestsBefore);
    expect(leftovers(join(work, 'cache'))).toEqual([]);
  });

  it('refuses a corrupted file (same size, other bytes) and leaves nothing behind', async () => {
    const original = readFileSync(join(served, 'group1-shard1of2'));
    const corrupted = Buffer.from(original);
    corrupted[100] ^= 0xff;
    writeFileSync(join(served, 'group1-shard1of2'), corrupted);
    try {
      const dest = join(work, 'corrupt', 'tiny');
      const attempt = fetchModel({ modelId: 'tiny', dest, manifest });
      await expect(attempt).rejects.toThrow(ModelVerificationError);
      await expect(attempt).rejects.toThrow(/group1-shard1of2: SHA-256 [0-9a-f]{64} does not match the pinned/);
      expect(existsSync(dest)).toBe(false);
      expect(leftovers(join(work, 'corrupt'))).toEqual([]);
    } finally {
      writeFileSync(join(served, 'group1-shard1of2'), original);
    }
  });

  it('refuses a truncated file and keeps an existing good copy untouched', async () => {
    const dest = join(work, 'keep', 'tiny');
    await fetchModel({ modelId: 'tiny', dest, manifest });
    rmSync(join(dest, 'group1-shard2of2')); // forces a download...
    const original = readFileSync(join(served, 'group1-shard2of2'));
    writeFileSync(join(served, 'group1-shard2of2'), original.subarray(0, 10)); // ...of a bad file
    try {
      await expect(fetchModel({ modelId: 'tiny', dest, manifest })).rejects.toThrow(/got 10 bytes, the manifest pins 1000/);
      expect(readdirSync(dest).sort()).toEqual(['group1-shard1of2', 'model.json']);
      expect(leftovers(join(work, 'keep'))).toEqual([]);
    } finally {
      writeFileSync(join(served, 'group1-shard2of2'), original);
    }
  });

  it('fails on a missing file without retrying a 404', async () => {
    const missing = ModelManifestSchema.parse({
      ...manifest,
      models: { tiny: { ...manifest.models.tiny, files: [...manifest.models.tiny.files, { path: 'gone.bin', bytes: 1, sha256: '0'.repeat(64) }] } },
    });
    await expect(fetchModel({ modelId: 'tiny', dest: join(work, 'missing', 'tiny'), manifest: missing })).rejects.toThrow(/gone.bin: HTTP 404/);
    expect(http.requests.get('model/gone.bin')).toBe(1);
  });

  it('names an unknown model', async () => {
    await expect(fetchModel({ modelId: 'nope', dest: join(work, 'x'), manifest })).rejects.toThrow(/"nope" is not in the manifest/);
  });
});

describe('the pinned manifest', () => {
  const manifest = loadModelManifest();

  it('pins both MobileNet v1 models with their public base URLs', () => {
    for (const id of ['mobilenet_v1_0.25_224', 'mobilenet_v1_0.75_224']) {
      expect(manifest.models[id].baseUrl).toBe(`https://storage.googleapis.com/tfjs-models/tfjs/${id}/`);
      expect(manifest.models[id].files[0].path).toBe('model.json');
      expect(manifest.models[id].files).toHaveLength(56);
    }
    expect(manifest.models['mobilenet_v1_0.25_224'].files[0].sha256).toBe('47417a9a7318ac0de893ed738ae84c6c26c294a415f06c421ff1c6af45df84f1');
  });

  it('the default model ships in the repository: fetching copies it, verified, with no network', async () => {
    const id = manifest.defaultModel;
    expect(manifest.models[id]).toMatchObject({ format: 'tflite', shipped: `layers/model-weights/${id}/` });
    const dest = join(mkdtempSync(join(tmpdir(), 'fetch-shipped-')), id);
    const noNetwork = (() => Promise.reject(new Error('no network in this test'))) as unknown as typeof fetch;
    const result = await fetchModel({ modelId: id, dest, manifest, fetch: noNetwork });
    expect(result).toMatchObject({ files: 1, alreadyPresent: false });
    expect(pinModelFiles(dest)).toEqual(manifest.models[id].files);
    rmSync(dirname(dest), { recursive: true, force: true });
  });

  const withShared = requireFiles(
    'the model manifest against the reference copies',
    Object.keys(manifest.models).map((id) => join(SHARED_MODELS, id)),
  )
    ? it
    : it.skip;
  withShared('matches the reference copies byte for byte (needs ../shared)', () => {
    for (const [id, model] of Object.entries(manifest.models)) {
      expect(pinModelFiles(join(SHARED_MODELS, id))).toEqual(model.files);
    }
  });

  withShared('CLI: fetches the default model from a mirror into --dest (needs ../shared)', async () => {
    const work = mkdtempSync(join(tmpdir(), 'fetch-cli-'));
    const id = manifest.defaultModel;
    cpSync(join(SHARED_MODELS, id), join(work, 'server', 'model'), { recursive: true });
    const http = await serveDirectory(join(work, 'server'));
    try {
      const { stdout } = await promisify(execFile)(
        process.execPath,
        [
          require.resolve('tsx/cli'),
          join(__dirname, '..', '..', '..', 'tools', 'model', 'fetch-model.ts'),
          '--model',
          id,
          '--dest',
          join(work, 'dest'),
          '--base-url',
          http.url,
        ],
        { cwd: join(__dirname, '..', '..', '..') },
      );
      const file = manifest.models[id].files[0].path;
      expect(stdout).toMatch(new RegExp(`${manifest.models[id].files.length} files, \\d+ bytes verified into`));
      expect(readFileSync(join(work, 'dest', file))).toEqual(readFileSync(join(SHARED_MODELS, id, file)));
    } finally {
      await new Promise((done) => http.server.close(done));
      rmSync(work, { recursive: true, force: true });
    }
  });
});
