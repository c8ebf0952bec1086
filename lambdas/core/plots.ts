/**
 * The run's two charts, as Vega-Lite specs rendered to SVG headlessly (Vega's SVG renderer needs
 * no canvas; text widths are estimated): a scree plot of explained variance and a scatter of the
 * first two principal components coloured by label.
 *
 * vega 5 / vega-lite 5 are used because they still ship CommonJS builds: 6.x are ESM-only and do
 * not load in the CommonJS Lambda bundle or under jest.
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { seededRandom } from './seeded-random';

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
}

/** Bars: each component's share of variance (kept ones highlighted); line: the cumulative share. */
function screePlotSpec({ ratios, kept, title = 'Explained variance by principal component' }: ScreePlotInput): TopLevelSpec {
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
    title: shown < ratios.length ? `${title} (first ${shown} of ${ratios.length})` : title,
    width: 560,
    height: 320,
    data: { values },
    layer: [
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
}

export interface ScatterPlotInput {
  points: readonly ScatterPoint[];
  /** Images the sample was drawn from, for the subtitle. */
  total: number;
  /** Explained variance ratio of the two axes. */
  xRatio: number;
  yRatio?: number;
}

function scatterPlotSpec({ points, total, xRatio, yRatio }: ScatterPlotInput): TopLevelSpec {
  const percent = (r: number) => `${(r * 100).toFixed(1)}%`;
  const labels = new Set(points.map((p) => p.label)).size;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: {
      text: yRatio === undefined ? 'Images on the first principal component' : 'Images on the first two principal components',
      subtitle: points.length < total ? `${points.length} of ${total} images, sampled uniformly` : `${total} images`,
    },
    width: 560,
    height: 420,
    data: { values: points.map((p) => ({ ...p })) },
    mark: { type: 'circle', size: 18, opacity: 0.7 },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: `PC 1 (${percent(xRatio)})`, scale: { zero: false } },
      y:
        yRatio === undefined
          ? { field: 'y', type: 'quantitative', axis: null }
          : { field: 'y', type: 'quantitative', title: `PC 2 (${percent(yRatio)})`, scale: { zero: false } },
      color: {
        field: 'label',
        type: 'nominal',
        title: 'label',
        scale: { scheme: labels <= 10 ? 'tableau10' : 'tableau20' },
        legend: { symbolLimit: 40, columns: labels > 20 ? 2 : 1 },
      },
    },
  };
}

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
