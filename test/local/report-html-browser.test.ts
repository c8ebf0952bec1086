/**
 * report.html in a real browser: a local run of the Fruits-360 sample (720 images, Training and
 * Test) writes it, and Debian's chromium, driven by playwright-core, opens it from disk. The page
 * must render with no console error, no failed or outgoing request (every image is a data: URI,
 * every plot inline SVG), with its plots, accuracy, confused pairs and gallery.
 *
 * .ci/run installs chromium; without /usr/bin/chromium the test says so and skips.
 * `FRUITS_DOCS_SCREENSHOT=1` also writes the screenshot to docs/report.png.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { runLocally } from '../../local/local-run';

const CHROMIUM = '/usr/bin/chromium';
const SAMPLE = join(__dirname, '..', '..', '..', 'shared', 'datasets', 'fruits-360-sample');
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

const withChromium = existsSync(CHROMIUM) ? describe : describe.skip;
if (!existsSync(CHROMIUM)) console.warn(`report.html browser test SKIPPED: ${CHROMIUM} is missing (apt-get install -y chromium; .ci/run does it)`);

withChromium('report.html in headless chromium', () => {
  let work: string;
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'fruits-report-html-'));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('renders the run with no console error and no network, and is screenshotted', async () => {
    const withSample = existsSync(SAMPLE);
    if (!withSample) console.warn(`${SAMPLE} absent: the report is made from the generated demo set`);
    const { summary } = await runLocally({
      inputDir: withSample ? SAMPLE : undefined,
      dataDir: join(work, 's3'),
      outDir: join(work, 'out'),
      config: { featurizer: 'pixels', pcaComponents: 12 },
      workers: 2,
    });
    expect(summary.status).toBe('SUCCEEDED');
    const page = join(work, 'out', summary.runId, 'report.html');
    expect(readFileSync(page, 'utf8')).toContain(`Run ${summary.runId}`);

    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    try {
      const tab = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const problems: string[] = [];
      tab.on('console', (message) => {
        if (message.type() === 'error' || message.type() === 'warning') problems.push(`console ${message.type()}: ${message.text()}`);
      });
      tab.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
      tab.on('requestfailed', (request) => problems.push(`request failed: ${request.url()}`));
      tab.on('request', (request) => {
        const url = request.url();
        if (!url.startsWith('data:') && url !== pathToFileURL(page).href) problems.push(`request: ${url}`);
      });
      await tab.goto(pathToFileURL(page).href, { waitUntil: 'load' });
      expect(await tab.title()).toBe(`Run ${summary.runId}: fruits-pipeline report`);
      expect(await tab.locator('svg').count()).toBeGreaterThanOrEqual(2);
      expect(await tab.locator('h2', { hasText: 'Classification' }).count()).toBe(1);
      if (withSample) {
        expect(await tab.locator('text=Most confused pairs').count()).toBe(1);
        const thumbnails = tab.locator('.gallery img');
        expect(await thumbnails.count()).toBeGreaterThan(0);
        // Every thumbnail decoded (naturalWidth 0 is a broken image).
        const widths = await thumbnails.evaluateAll((images) => images.map((image) => (image as unknown as { naturalWidth: number }).naturalWidth));
        expect(widths.every((width) => width === 112)).toBe(true);
      }
      const screenshot = await tab.screenshot({ fullPage: true, path: join(work, 'report.png') });
      expect(screenshot.byteLength).toBeGreaterThan(10_000);
      if (process.env.FRUITS_DOCS_SCREENSHOT === '1') await tab.screenshot({ fullPage: true, path: join(__dirname, '..', '..', 'docs', 'report.png') });
      expect(problems).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
