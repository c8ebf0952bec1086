import { ScatterSample, scatterPlotSvg, screePlotSvg } from '../../../lambdas/outputs/plots';

describe('plots', () => {
  it('renders a scree plot to SVG with kept and dropped components and the cumulative line', async () => {
    const ratios = [0.4, 0.2, 0.15, 0.1, 0.08, 0.07];
    const svg = await screePlotSvg({ ratios, kept: 3 });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('Explained variance by principal component');
    expect(svg).toContain('kept');
    expect(svg).toContain('dropped');
    expect((svg.match(/<path[^>]*role="graphics-symbol"/g) ?? []).length).toBeGreaterThanOrEqual(6);
  });

  it('renders the first two components coloured by label, with odd label text escaped', async () => {
    const points = [
      { x: 1, y: 2, label: 'Apple <Red> & "1"' },
      { x: -1, y: 0.5, label: 'Kiwi' },
      { x: 0, y: -2, label: 'Kiwi' },
    ];
    const svg = await scatterPlotSvg({ points, total: 3, xRatio: 0.41, yRatio: 0.22 });
    expect(svg).toContain('PC 1 (41.0%)');
    expect(svg).toContain('PC 2 (22.0%)');
    expect(svg).toContain('Apple &lt;Red&gt; &amp; "1"');
    expect(svg).not.toContain('<Red>');
  });

  it('keeps a uniform, reproducible sample of at most limit points', () => {
    const draw = () => {
      const sample = new ScatterSample(100);
      for (let i = 0; i < 10000; i++) sample.offer({ x: i, y: 0, label: i < 5000 ? 'a' : 'b' });
      return sample;
    };
    const sample = draw();
    expect(sample.points).toHaveLength(100);
    expect(sample.total).toBe(10000);
    expect(draw().points).toEqual(sample.points);
    const late = sample.points.filter((p) => p.label === 'b').length;
    expect(late).toBeGreaterThan(30);
    expect(late).toBeLessThan(70);
  });

  it('marks the chosen k on the scree plot and names the run', async () => {
    const svg = await screePlotSvg({ ratios: [0.4, 0.2, 0.15, 0.1, 0.08, 0.07], kept: 3, subtitle: 'run demo-abc · pixels-16x16' });
    expect(svg).toContain('k = 3 (75.0%)');
    expect(svg).toContain('run demo-abc · pixels-16x16');
  });

  it('above 20 classes colours only the highlighted ones, greys the rest, and shapes points by split', async () => {
    const points = Array.from({ length: 600 }, (_, i) => ({
      x: Math.sin(i),
      y: Math.cos(i * 3),
      label: `Class ${i % 120}`,
      split: i % 3 === 0 ? 'test' : 'train',
    }));
    const svg = await scatterPlotSvg({ points, total: 600, xRatio: 0.3, yRatio: 0.2, highlight: ['Class 7', 'Class 8', 'Not in the sample'] });
    expect(svg).toContain('120 classes: 2 highlighted, the rest grey');
    expect(svg).toContain('Class 7');
    expect(svg).toContain('other classes');
    expect(svg).not.toContain('Class 9<');
    expect(svg).toContain('Training');
    expect(svg).toContain('Test');
    // Grey for the others, tableau10's first two for the highlighted.
    expect(svg).toContain('#c8c8c8');
    expect(svg).toContain('#4e79a7');
    expect(svg).toContain('#f28e2b');
  });
});
