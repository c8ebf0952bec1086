/**
 * report.html in a real browser: two local runs write it, the default one (the shipped demo photos
 * through the shipped CNN, what `npm start` shows) and a raw-pixels run of the Fruits-360 sample
 * (720 images, Training and Test), and Debian's chromium, driven by playwright-core, opens each from disk. The page
 * must render with no console error, no failed or outgoing request (every image is a data: URI,
 * every plot inline SVG), with its plots, accuracy, confused pairs and gallery.
 *
 * .ci/run installs chromium. Without /usr/bin/chromium (or ../shared) the test fails under CI=true;
 * elsewhere it says so on one line and skips.
 * `FRUITS_DOCS_SCREENSHOT=1` also writes the screenshot to docs/report.png.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Page } from 'playwright-core';
import { runLocally } from '../../local/local-run';
import { runLocallyIn } from '../support/local-run-in';
import { CHROMIUM, describeRequiring, requireFiles, SHARED_SAMPLE } from '../support/required-files';
import { suiteWorkFolder } from '../support/work-folder';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/** A whole local run and a browser: generous, for a machine shared and loaded (no test asserts speed). */
const E2E_TIMEOUT_MS = 600_000;

const withChromium = describeRequiring('the report.html browser tests', [CHROMIUM], 'apt-get install -y chromium, as .ci/run does');

/** Opens report.html from disk in headless chromium; returns what went wrong (console, errors, requests) and the page checks. */
async function openReport(page: string, screenshot: string, check: (tab: Page) => Promise<void>): Promise<string[]> {
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
    await check(tab);
    const image = await tab.screenshot({ fullPage: true, path: screenshot });
    expect(image.byteLength).toBeGreaterThan(10_000);
    if (process.env.FRUITS_DOCS_SCREENSHOT === '1') await tab.screenshot({ fullPage: true, path: join(__dirname, '..', '..', 'docs', 'report.png') });
    return problems;
  } finally {
    await browser.close();
  }
}

/**
 * What every report shows: its title, the two plots, the classification with its confidence and
 * confused pairs, and when some image was misclassified a gallery of decoded thumbnails.
 */
async function expectWholeReport(tab: Page, runId: string, misclassified: number): Promise<void> {
  expect(await tab.title()).toBe(`Run ${runId}: fruits-pipeline report`);
  expect(await tab.locator('svg').count()).toBeGreaterThanOrEqual(2);
  expect(await tab.locator('h2', { hasText: 'Classification' }).count()).toBe(1);
  expect(await tab.locator('text=Most confused pairs').count()).toBe(1);
  expect(await tab.locator('text=Mean confidence').count()).toBe(1);
  const thumbnails = tab.locator('.gallery img');
  if (misclassified === 0) {
    expect(await tab.locator('text=No Test image was misclassified.').count()).toBe(1);
    expect(await thumbnails.count()).toBe(0);
    return;
  }
  expect(await thumbnails.count()).toBeGreaterThan(0);
  // Every thumbnail decoded (naturalWidth 0 is a broken image).
  const widths = await thumbnails.evaluateAll((images) => images.map((image) => (image as unknown as { naturalWidth: number }).naturalWidth));
  expect(widths.every((width) => width === 112)).toBe(true);
}

withChromium('report.html in headless chromium', () => {
  const work = suiteWorkFolder('fruits-report-html-');

  it(
    'the default run (shipped demo photos, shipped CNN) renders with no console error and no network',
    async () => {
      const { summary } = await runLocally({ dataDir: join(work, 'cnn-s3'), outDir: join(work, 'cnn-out'), workers: 2 });
      expect(summary.status).toBe('SUCCEEDED');
      expect(summary.featurizer).toMatch(/^mobilenet_v2_1\.0_224_quant@/);
      const page = join(work, 'cnn-out', summary.runId, 'report.html');
      const misclassified = summary.knn!.scored - summary.knn!.correct;
      const problems = await openReport(page, join(work, 'cnn-report.png'), (tab) => expectWholeReport(tab, summary.runId, misclassified));
      expect(problems).toEqual([]);
    },
    E2E_TIMEOUT_MS,
  );

  const withSample = requireFiles('the report.html browser test of the Fruits-360 sample', [SHARED_SAMPLE]) ? it : it.skip;
  withSample(
    'a raw-pixels run of the Fruits-360 sample (720 images) renders the same way, and is screenshotted',
    async () => {
      const { summary } = await runLocallyIn(work, { inputDir: SHARED_SAMPLE, config: { featurizer: 'pixels', pcaComponents: 12 }, workers: 2 });
      expect(summary.status).toBe('SUCCEEDED');
      const page = join(work, 'out', summary.runId, 'report.html');
      expect(readFileSync(page, 'utf8')).toContain(`Run ${summary.runId}`);
      // Raw pixels misclassify some images: the gallery shows each beside the Training image nearest the LDA's prototype.
      expect(summary.knn!.correct).toBeLessThan(summary.knn!.scored);
      const problems = await openReport(page, join(work, 'report.png'), (tab) =>
        expectWholeReport(tab, summary.runId, summary.knn!.scored - summary.knn!.correct),
      );
      expect(problems).toEqual([]);
    },
    E2E_TIMEOUT_MS,
  );
});
