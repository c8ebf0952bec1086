/**
 * `report.html`: the run on one page that opens anywhere, offline. Everything is inside the file:
 * the plots as inline SVG, the gallery's thumbnails as `data:` URIs, the styles in one <style>, no
 * script. A Content-Security-Policy forbids every fetch (`default-src 'none'`) so a page that
 * would reach the network fails loudly in a browser instead of quietly depending on it.
 *
 * All text from the data (keys, labels, reasons) is HTML-escaped: label folders are named by
 * whoever uploads images. The SVGs come from Vega's renderer, which escapes its own text.
 */
import { classifierName, type ClassificationReport } from '../analysis/classification';
import type { RunReport } from './run-report';

export interface GalleryImage {
  key: string;
  label: string;
  /** JPEG data URI; absent when the image could not be read or decoded. */
  image?: string;
  /** Why there is no image. */
  problem?: string;
}

export interface GalleryEntry {
  query: GalleryImage;
  predicted: string;
  /** The classifier's confidence in `predicted`. */
  confidence: number;
  /** Distance to the nearest reference (k-NN) or prototype (LDA); absent for logistic regression. */
  distance?: number;
  /** The Training image that decided it: the nearest reference, or the one nearest the LDA's prototype; absent for logistic regression. */
  nearest?: GalleryImage;
}

export interface ReportHtmlInput {
  report: RunReport;
  /** Run settings shown in the header (k, threshold, classifier k...). */
  settings: Record<string, string | number | boolean | null>;
  screeSvg: string;
  scatterSvg: string;
  gallery: readonly GalleryEntry[];
}

const CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'";

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const percent = (value: number | null | undefined, digits = 1) => (value === null || value === undefined ? 'n/a' : `${(100 * value).toFixed(digits)}%`);

function table(headers: readonly string[], rows: readonly (readonly string[])[], numeric: readonly number[] = []): string {
  const head = headers.map((h, i) => `<th${numeric.includes(i) ? ' class="num"' : ''}>${escapeHtml(h)}</th>`).join('');
  const body = rows
    .map((row) => `<tr>${row.map((cell, i) => `<td${numeric.includes(i) ? ' class="num"' : ''}>${escapeHtml(cell)}</td>`).join('')}</tr>`)
    .join('\n');
  return `<table><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

function figure(image: GalleryImage, caption: string): string {
  const picture = image.image
    ? `<img src="${image.image}" alt="${escapeHtml(image.label)}" width="112" height="112">`
    : `<div class="missing">${escapeHtml(image.problem ?? 'no image')}</div>`;
  return `<figure>${picture}<figcaption>${caption}<br><span class="key" title="${escapeHtml(image.key)}">${escapeHtml(shortKey(image.key))}</span></figcaption></figure>`;
}

function shortKey(key: string): string {
  const parts = key.split('/');
  return parts.slice(-3).join('/');
}

function classificationSection(classification: ClassificationReport | undefined): string {
  if (!classification) return '';
  if (classification.status === 'skipped') {
    return `<section><h2>Classification</h2><p class="note">Not classified: ${escapeHtml(classification.reason)}</p></section>`;
  }
  const c = classification;
  const worst = [...c.perClass].sort((a, b) => a.accuracy - b.accuracy || b.support - a.support).slice(0, 15);
  return `<section><h2>Classification</h2>
<p class="big">${percent(c.accuracy)} <span>accuracy on ${c.scored} ${escapeHtml(c.scope)} (${c.correct} right), ${classifierName(c)} over ${c.components} components, ${c.references} Training references</span></p>
<p class="note">Mean confidence ${percent(c.confidence.mean)}: ${percent(c.confidence.meanCorrect)} when right, ${percent(c.confidence.meanWrong)} when wrong (predictions.csv has each image's).</p>
<p class="note">${escapeHtml(c.method)}. ${c.unscored} images ${c.scope === 'Test rows' ? 'outside Training/ and Test/' : 'of other labels'} were predicted but not scored (predictions.csv).</p>
<div class="cols"><div><h3>Most confused pairs</h3>
${
  c.mostConfused.length
    ? table(
        ['true label', 'predicted', 'images', 'share of true label'],
        c.mostConfused.slice(0, 12).map((p) => [p.actual, p.predicted, String(p.count), percent(p.shareOfActual)]),
        [2, 3],
      )
    : '<p class="note">No Test image was misclassified.</p>'
}
</div><div><h3>Lowest per-class accuracy</h3>
${table(
  ['label', 'Test images', 'accuracy'],
  worst.map((k) => [k.label, String(k.support), percent(k.accuracy)]),
  [1, 2],
)}
</div></div></section>`;
}

function gallerySection(gallery: readonly GalleryEntry[], scope: string | undefined): string {
  if (gallery.length === 0) return '';
  const title = scope === undefined || scope === 'Test rows' ? 'Misclassified Test images' : 'Misclassified images';
  const items = gallery
    .map(
      (entry) =>
        `<div class="pair">${figure(entry.query, `<b>${escapeHtml(entry.query.label)}</b> predicted <b class="wrong">${escapeHtml(entry.predicted)}</b> (confidence ${percent(entry.confidence)})`)}${
          entry.nearest
            ? figure(
                entry.nearest,
                `Training image behind it: <b>${escapeHtml(entry.nearest.label)}</b>${entry.distance === undefined ? '' : ` (distance ${entry.distance.toFixed(2)})`}`,
              )
            : ''
        }</div>`,
    )
    .join('\n');
  return `<section><h2>${title}</h2><p class="note">Each beside the Training image behind its prediction (k-NN: the nearest one; LDA: the one nearest the prototype that won; logistic regression has none), one per confused pair, most confused first.</p><div class="gallery">\n${items}\n</div></section>`;
}

export function reportHtml({ report, settings, screeSvg, scatterSvg, gallery }: ReportHtmlInput): string {
  const counts = report.counts;
  const featurizer = Object.keys(report.featurizer.ids).join(', ') || 'none';
  const classification = (report as RunReport & { classification?: ClassificationReport }).classification;
  const failures = report.failed.byReason.slice(0, 15).map((r) => [r.reason, String(r.count)]);
  const skipped = report.skipped.byReason.slice(0, 5).map((r) => [r.reason, String(r.count)]);
  const settingRows = Object.entries(settings).map(([name, value]) => [name, value === null ? 'unset' : String(value)]);
  const pca = report.pca as { source?: string; model?: string; modelRunId?: string } | undefined;
  const projected = pca?.source === 'model' ? ` · components of the model of run ${escapeHtml(String(pca.modelRunId))}, not refitted` : '';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Run ${escapeHtml(report.runId)}: fruits-pipeline report</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1240px; padding: 16px 24px; color: #222; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; } h3 { font-size: 15px; margin: 8px 0; }
.sub { color: #555; margin: 0 0 12px; } .note { color: #555; } .status { font-weight: bold; } .SUCCEEDED { color: #2a7d2a; } .FAILED { color: #b22; }
.tiles { display: flex; gap: 12px; flex-wrap: wrap; } .tile { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.tile b { display: block; font-size: 20px; } .big { font-size: 28px; font-weight: bold; margin: 4px 0; } .big span { font-size: 14px; font-weight: normal; color: #555; }
table { border-collapse: collapse; margin: 4px 0 8px; } th, td { border-bottom: 1px solid #eee; padding: 3px 10px 3px 0; text-align: left; vertical-align: top; } .num { text-align: right; }
.cols { display: flex; gap: 40px; flex-wrap: wrap; } .plots { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; } .plots svg { max-width: 100%; height: auto; }
.gallery { display: flex; flex-wrap: wrap; gap: 14px; } .pair { display: flex; gap: 6px; border: 1px solid #ddd; border-radius: 6px; padding: 6px; }
figure { margin: 0; width: 150px; } figure img, .missing { width: 112px; height: 112px; display: block; border: 1px solid #eee; }
.missing { background: #f4f4f4; color: #777; font-size: 11px; padding: 4px; box-sizing: border-box; }
figcaption { font-size: 12px; } .key { color: #777; word-break: break-all; } .wrong { color: #b22; }
</style>
</head>
<body>
<h1>Run ${escapeHtml(report.runId)}</h1>
<p class="sub"><span class="status ${report.status}">${report.status}</span> · featurizer ${escapeHtml(featurizer)} · input s3://${escapeHtml(report.bucket)}/${escapeHtml(report.inputPrefix)}${projected} · generated ${escapeHtml(report.generatedAt)}</p>
<div class="tiles">
<div class="tile"><b>${counts.images}</b>objects listed</div>
<div class="tile"><b>${counts.processed}</b>featurized</div>
<div class="tile"><b>${counts.failed}</b>failed</div>
<div class="tile"><b>${counts.skipped}</b>skipped</div>
<div class="tile"><b>${counts.batches}</b>batches (${counts.failedBatches} failed)</div>
${report.pca ? `<div class="tile"><b>k = ${escapeHtml(String(report.pca.k))}</b>components, ${percent(report.pca.explainedVariance as number)} variance</div>` : ''}
${classification?.status === 'classified' ? `<div class="tile"><b>${percent(classification.accuracy)}</b>${classifierName(classification)} Test accuracy</div>` : ''}
</div>
${classificationSection(classification)}
<section><h2>Principal components</h2><div class="plots">
<div>${screeSvg}</div>
<div>${scatterSvg}</div>
</div></section>
${gallerySection(gallery, classification?.status === 'classified' ? classification.scope : undefined)}
<section><h2>Failures</h2>
${failures.length ? table(['reason', 'images'], failures, [1]) : '<p class="note">No image failed.</p>'}
${skipped.length ? `<h3>Skipped</h3>${table(['reason', 'objects'], skipped, [1])}` : ''}
${report.warnings.length ? `<h3>Warnings</h3><ul>${report.warnings.map((w) => `<li>${escapeHtml(w)}</li>`).join('')}</ul>` : ''}
</section>
<section><h2>Settings</h2>${table(['setting', 'value'], settingRows)}</section>
</body>
</html>
`;
}
