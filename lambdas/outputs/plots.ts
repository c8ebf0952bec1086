/**
 * The run's two charts, as Vega-Lite specs rendered to SVG headlessly (Vega's SVG renderer needs
 * no canvas; text widths are estimated): a scree plot of explained variance with the chosen k
 * marked, and a scatter of the first two principal components coloured by label (up to 20 labels;
 * above that, a few highlighted labels on grey) and shaped by split (Training, Test, none).
 *
 * vega 5 / vega-lite 5 are used because they still ship CommonJS builds: 6.x are ESM-only and do
 * not load in the CommonJS Lambda bundle or under jest.
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { seededRandom } from '../common/seeded-random';

/** Points drawn in the scatter: more only makes a larger SVG, not a clearer picture. */
const SCATTER_POINT_LIMIT = 5000;
/** Bars drawn in the scree plot. */
const SCREE_BAR_LIMIT = 60;

async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export interface ScreePlotInput {
  /** Explained variance ratio of every component, descending. */
  ratios: ArrayLike<number>;
  /** Components kept. */
  kept: number;
  title?: string;
  /** Second title line: which run and featurizer the plot belongs to. */
  subtitle?: string;
}

/** Bars: each component's share of variance (kept ones highlighted); line: the cumulative share. */
function screePlotSpec({ ratios, kept, title = 'Explained variance by principal component', subtitle }: ScreePlotInput): TopLevelSpec {
  const shown = Math.min(ratios.length, Math.max(kept, Math.min(SCREE_BAR_LIMIT, ratios.length)));
  const values: { component: number; ratio: number; cumulative: number; kept: string }[] = [];
  let cumulative = 0;
  for (let c = 0; c < ratios.length; c++) {
    cumulative += ratios[c];
    if (c < shown) values.push({ component: c + 1, ratio: ratios[c], cumulative: Math.min(1, cumulative), kept: c < kept ? 'kept' : 'dropped' });
  }
  const x = { field: 'component', type: 'ordinal' as const, title: 'principal component', axis: { labelAngle: 0, labelOverlap: true } };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: {
      text: shown < ratios.length ? `${title} (first ${shown} of ${ratios.length})` : title,
      ...(subtitle ? { subtitle } : {}),
    },
    width: 560,
    height: 320,
    data: { values },
    layer: [
      // The chosen k: a rule at the last kept component, labelled with k and its cumulative share.
      {
        data: { values: [{ component: kept, label: `k = ${kept} (${(100 * (values[kept - 1]?.cumulative ?? 1)).toFixed(1)}%)` }] },
        mark: { type: 'rule', color: '#222', strokeDash: [4, 3] },
        encoding: { x },
      },
      {
        data: { values: [{ component: kept, label: `k = ${kept} (${(100 * (values[kept - 1]?.cumulative ?? 1)).toFixed(1)}%)` }] },
        mark: { type: 'text', align: 'left', dx: 4, dy: -4, fontSize: 11, fontWeight: 'bold' },
        encoding: { x, y: { value: 0 }, text: { field: 'label' } },
      },
      {
        mark: 'bar',
        encoding: {
          x,
          y: { field: 'ratio', type: 'quantitative', title: 'explained variance ratio', axis: { format: '.0%' } },
          color: { field: 'kept', type: 'nominal', scale: { domain: ['kept', 'dropped'], range: ['#4c78a8', '#bab0ac'] }, title: null },
        },
      },
      {
        mark: { type: 'line', point: true, color: '#e45756' },
        encoding: { x, y: { field: 'cumulative', type: 'quantitative', title: 'cumulative', axis: { format: '.0%', orient: 'right' } } },
      },
    ],
    resolve: { scale: { y: 'independent' } },
  };
}

export interface ScatterPoint {
  x: number;
  y: number;
  label: string;
  /** `train`, `test`, or undefined when the key names no split. */
  split?: string;
}

export interface ScatterPlotInput {
  points: readonly ScatterPoint[];
  /** Images the sample was drawn from, for the subtitle. */
  total: number;
  /** Explained variance ratio of the two axes. */
  xRatio: number;
  yRatio?: number;
  /** Which run and featurizer the plot belongs to. */
  subtitle?: string;
  /**
   * Above `DISTINCT_COLOUR_LIMIT` labels no palette keeps every class apart: these labels (the
   * most confused ones, say) get their own colours and every other class is drawn in grey.
   * @default the most frequent labels of the sample
   */
  highlight?: readonly string[];
}

/** Labels that each get a colour of their own (tableau20); above it, only highlighted ones do. */
export const DISTINCT_COLOUR_LIMIT = 20;
/** Highlighted labels above DISTINCT_COLOUR_LIMIT (tableau10: ten colours far apart). */
const HIGHLIGHT_LIMIT = 10;
const OTHER_CLASSES = 'other classes';
const SPLIT_NAMES: Record<string, string> = { train: 'Training', test: 'Test' };

function scatterPlotSpec({ points, total, xRatio, yRatio, subtitle, highlight }: ScatterPlotInput): TopLevelSpec {
  const percent = (r: number) => `${(r * 100).toFixed(1)}%`;
  const counts = new Map<string, number>();
  for (const p of points) counts.set(p.label, (counts.get(p.label) ?? 0) + 1);
  const many = counts.size > DISTINCT_COLOUR_LIMIT;
  const highlighted = many
    ? (highlight?.filter((label) => counts.has(label)) ?? [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([label]) => label)).slice(
        0,
        HIGHLIGHT_LIMIT,
      )
    : [];
  const shown = new Set(highlighted);
  const values = points.map((p) => ({
    x: p.x,
    y: p.y,
    label: p.label,
    colour: !many || shown.has(p.label) ? p.label : OTHER_CLASSES,
    split: p.split ? (SPLIT_NAMES[p.split] ?? p.split) : 'no split',
  }));
  // Grey points first, so the highlighted classes are drawn on top of them.
  values.sort((a, b) => Number(b.colour === OTHER_CLASSES) - Number(a.colour === OTHER_CLASSES));
  const sampled = points.length < total ? `${points.length} of ${total} images, sampled uniformly` : `${total} images`;
  const colourNote = many ? `; ${counts.size} classes: ${highlighted.length} highlighted, the rest grey` : '';
  const splits = [...new Set(values.map((v) => v.split))].sort();
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: {
      text: yRatio === undefined ? 'Images on the first principal component' : 'Images on the first two principal components',
      subtitle: [...(subtitle ? [subtitle] : []), `${sampled}${colourNote}`],
    },
    width: 560,
    height: 420,
    data: { values },
    mark: { type: 'point', size: 22, opacity: 0.75, filled: true },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: `PC 1 (${percent(xRatio)})`, scale: { zero: false } },
      y:
        yRatio === undefined
          ? { field: 'y', type: 'quantitative', axis: null }
          : { field: 'y', type: 'quantitative', title: `PC 2 (${percent(yRatio)})`, scale: { zero: false } },
      color: {
        field: 'colour',
        type: 'nominal',
        title: many ? 'label (highlighted)' : 'label',
        scale: many
          ? { domain: [...highlighted, OTHER_CLASSES], range: [...TABLEAU10.slice(0, highlighted.length), '#c8c8c8'] }
          : { scheme: counts.size <= 10 ? 'tableau10' : 'tableau20' },
        legend: { symbolLimit: 40, columns: counts.size > 20 && !many ? 2 : 1 },
      },
      shape: {
        field: 'split',
        type: 'nominal',
        title: 'split',
        scale: { domain: splits, range: splits.map((split) => SPLIT_SHAPES[split] ?? 'square') },
      },
      tooltip: [{ field: 'label' }, { field: 'split' }],
    },
  };
}

const TABLEAU10 = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
const SPLIT_SHAPES: Record<string, string> = { Training: 'circle', Test: 'triangle-up', 'no split': 'square' };

export const screePlotSvg = (input: ScreePlotInput): Promise<string> => renderSvg(screePlotSpec(input));
export const scatterPlotSvg = (input: ScatterPlotInput): Promise<string> => renderSvg(scatterPlotSpec(input));

/**
 * A uniform sample of at most `limit` points from a stream of unknown length (reservoir
 * sampling, Algorithm R) with a fixed seed, so the same run draws the same picture.
 */
export class ScatterSample {
  readonly points: ScatterPoint[] = [];
  private seen = 0;
  private readonly random: () => number;

  constructor(
    readonly limit: number = SCATTER_POINT_LIMIT,
    seed = 0x5eed,
  ) {
    this.random = seededRandom(seed);
  }

  get total(): number {
    return this.seen;
  }

  /**
   * One sample of the rows of several samples (each uniform over its own rows): slots are dealt
   * to the parts in proportion to the rows each saw, so every row keeps the same chance.
   */
  static merged(parts: readonly { points: ScatterPoint[]; total: number }[], limit: number = SCATTER_POINT_LIMIT, seed = 0x5eed): ScatterSample {
    const merged = new ScatterSample(limit, seed);
    const random = seededRandom(seed ^ 0x9e37);
    const pools = parts.map((part) => ({ points: [...part.points], left: part.total }));
    let left = pools.reduce((sum, pool) => sum + pool.left, 0);
    merged.seen = left;
    while (merged.points.length < limit && left > 0) {
      let pick = Math.floor(random() * left);
      const pool = pools.find((candidate) => (pick -= candidate.left) < 0)!;
      pool.left--;
      left--;
      if (pool.points.length === 0) continue;
      const at = Math.floor(random() * pool.points.length);
      merged.points.push(pool.points[at]);
      pool.points[at] = pool.points[pool.points.length - 1];
      pool.points.pop();
    }
    return merged;
  }

  offer(point: ScatterPoint): void {
    this.seen++;
    if (this.points.length < this.limit) {
      this.points.push(point);
      return;
    }
    const j = Math.floor(this.random() * this.seen);
    if (j < this.limit) this.points[j] = point;
  }
}
