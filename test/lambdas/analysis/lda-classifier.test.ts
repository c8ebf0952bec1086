/**
 * @jest-environment ./tools/jest-native-typed-arrays-environment.js
 */
import { ClassStatisticsAccumulator, decodeClassStatistics, encodeClassStatistics, mergeClassStatistics } from '../../../lambdas/analysis/class-statistics';
import { fitLdaClassifier, LDA_CLASSIFIER_FORMAT, ldaClassifierFromStatistics, loadLdaClassifier } from '../../../lambdas/analysis/lda-classifier';
import { seededRandom } from '../../../lambdas/common/seeded-random';
import { PrototypeSample, sampleRankLimit } from '../../../lambdas/analysis/prototype-sample';

/** Gaussian-ish blobs: class c centred at 6 along axis c, unit spread, in `dim` dimensions. */
function blobs(classes: number, perClass: number, dim: number, seed: number): { rows: number[][]; labels: string[] } {
  const random = seededRandom(seed);
  const noise = () => (random() + random() + random() - 1.5) * 2;
  const rows: number[][] = [];
  const labels: string[] = [];
  for (let i = 0; i < classes * perClass; i++) {
    const c = i % classes;
    rows.push(Array.from({ length: dim }, (_, d) => (d === c ? 6 : 0) + noise()));
    labels.push(`class ${c}`);
  }
  return { rows, labels };
}

/** The pooled within-class scatter straight from its definition. */
function directWithin(rows: number[][], labels: string[]): number[][] {
  const dim = rows[0].length;
  const means = new Map<string, { n: number; sum: number[] }>();
  rows.forEach((row, i) => {
    const entry = means.get(labels[i]) ?? { n: 0, sum: new Array(dim).fill(0) };
    entry.n++;
    row.forEach((v, d) => (entry.sum[d] += v));
    means.set(labels[i], entry);
  });
  const within = Array.from({ length: dim }, () => new Array(dim).fill(0));
  rows.forEach((row, i) => {
    const { n, sum } = means.get(labels[i])!;
    const deviation = row.map((v, d) => v - sum[d] / n);
    for (let a = 0; a < dim; a++) for (let b = 0; b < dim; b++) within[a][b] += deviation[a] * deviation[b];
  });
  return within;
}

/** Each row into the accumulator `into(i)` chooses (the statistics' rows are float32, as a run's features are). */
async function addRows(rows: number[][], labels: string[], into: (i: number) => ClassStatisticsAccumulator): Promise<void> {
  for (const [i, row] of rows.entries()) await into(i).add(labels[i], row);
}

describe('class statistics (lambdas/analysis/class-statistics.ts)', () => {
  const blob = blobs(4, 50, 6, 1);
  // Float32 values, so the direct computation sees the rows the accumulator holds.
  const rows = blob.rows.map((row) => row.map(Math.fround));
  const { labels } = blob;

  it('holds each class count and mean and the pooled within-class scatter', async () => {
    const accumulator = new ClassStatisticsAccumulator(6);
    await addRows(rows, labels, () => accumulator);
    const stats = await accumulator.statistics();
    expect(stats.classes.map((c) => [c.label, c.count])).toEqual([0, 1, 2, 3].map((c) => [`class ${c}`, 50]));
    const expected = directWithin(rows, labels);
    for (let a = 0; a < 6; a++) for (let b = 0; b < 6; b++) expect(stats.within[a * 6 + b]).toBeCloseTo(expected[a][b], 8);
  });

  it('merges groups to the statistics of all their rows, however the rows were split', async () => {
    const whole = new ClassStatisticsAccumulator(6);
    await addRows(rows, labels, () => whole);
    // Three uneven groups, one of them without class 3.
    const groups = [new ClassStatisticsAccumulator(6), new ClassStatisticsAccumulator(6), new ClassStatisticsAccumulator(6)];
    await addRows(rows, labels, (i) => groups[labels[i] === 'class 3' ? i % 2 : i % 3]);
    const merged = (await Promise.all(groups.map((g) => g.statistics()))).reduce(mergeClassStatistics);
    const expected = await whole.statistics();
    const byLabel = new Map(merged.classes.map((c) => [c.label, c]));
    for (const c of expected.classes) {
      expect(byLabel.get(c.label)!.count).toBe(c.count);
      c.mean.forEach((v, d) => expect(byLabel.get(c.label)!.mean[d]).toBeCloseTo(v, 10));
    }
    expected.within.forEach((v, i) => expect(merged.within[i]).toBeCloseTo(v, 8));
  });

  it('round-trips through its bytes exactly, with labels of any script, and rejects malformed bytes', async () => {
    const accumulator = new ClassStatisticsAccumulator(6);
    await addRows(rows, labels, () => accumulator);
    await accumulator.add('Pomme \u00e9toil\u00e9e \u{1f34e}', rows[0]);
    const stats = await accumulator.statistics();
    const bytes = encodeClassStatistics(stats);
    expect(decodeClassStatistics(bytes, 'here')).toEqual(stats);
    // The numbers need not be 8-byte aligned in what is handed in.
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    expect(decodeClassStatistics(shifted.subarray(1), 'here')).toEqual(stats);
    const header = JSON.parse(Buffer.from(bytes).toString('utf8', 8, 8 + Buffer.from(bytes).readUInt32LE(4)));
    const withHeader = (changed: object) => {
      const text = JSON.stringify({ ...header, ...changed }).padEnd(Buffer.from(bytes).readUInt32LE(4), ' ');
      const copy = Buffer.from(bytes);
      copy.write(text, 8, 'utf8');
      return copy;
    };
    const bad: [Uint8Array, RegExp][] = [
      [Buffer.from('{"dim":6}'), /at x: not class statistics \(bad magic\)/],
      [bytes.subarray(0, bytes.length - 8), /bytes of numbers, expected/],
      [withHeader({ labels: [...header.labels.slice(1), header.labels[1]] }), /listed twice/],
      [withHeader({ counts: header.counts.map(() => 0) }), /unreadable header/],
      [withHeader({ counts: header.counts.slice(1), labels: header.labels }), /counts for/],
      [Buffer.concat([bytes.subarray(0, bytes.length - 8), Buffer.from(Float64Array.of(Number.NaN).buffer)]), /not finite/],
    ];
    for (const [input, message] of bad) expect(() => decodeClassStatistics(input, 'at x')).toThrow(message);
  });
});

async function statisticsOf({ rows, labels }: { rows: number[][]; labels: string[] }) {
  const accumulator = new ClassStatisticsAccumulator(rows[0].length);
  await addRows(rows, labels, () => accumulator);
  return accumulator.statistics();
}

describe('prototype sample (lambdas/analysis/prototype-sample.ts)', () => {
  const rows = Array.from({ length: 300 }, (_, i) => ({ key: `input/d/Training/c${i % 3}/${i}.jpg`, label: `c${i % 3}`, scores: [i, -i] }));

  it('keeps the same rows per class whichever groups they came in, in key order', () => {
    const whole = new PrototypeSample(20);
    rows.forEach((row) => whole.offer(row.key, row.label, row.scores));
    const groups = [new PrototypeSample(20), new PrototypeSample(20), new PrototypeSample(20)];
    rows.forEach((row, i) => groups[Math.floor(i / 100)].offer(row.key, row.label, row.scores));
    const merged = new PrototypeSample(20);
    groups.forEach((group) => merged.absorb(group.rows()));
    expect(merged.rows()).toEqual(whole.rows());
    const kept = whole.rows();
    expect(kept).toHaveLength(60);
    expect(new Set(kept.map((row) => row.label))).toEqual(new Set(['c0', 'c1', 'c2']));
    const c0 = kept.filter((row) => row.label === 'c0').map((row) => row.key);
    expect(c0).toEqual([...c0].sort());
    expect(kept[0].scores).toBeInstanceOf(Float32Array);
  });

  it('gives, of a larger sample, the rows a smaller one keeps (logistic regression takes its half of the LDA sample)', () => {
    const large = new PrototypeSample(40);
    const small = new PrototypeSample(20);
    rows.forEach((row) => [large, small].forEach((sample) => sample.offer(row.key, row.label, row.scores)));
    expect(large.rows(20)).toEqual(small.rows());
    expect(large.rows()).toHaveLength(120);
  });

  it("keeps, below a class's rank limit, the same sample from far fewer rows per group", () => {
    const many = Array.from({ length: 6000 }, (_, i) => ({ key: `input/d/Training/big/${i}.jpg`, label: 'big', scores: [i] }));
    const whole = new PrototypeSample(256);
    many.forEach((row) => whole.offer(row.key, row.label, row.scores));
    const limit = sampleRankLimit(256, many.length);
    expect(limit).toBe(Math.ceil(((2 * 256 + 64) / 6000) * 2 ** 32));
    expect(sampleRankLimit(256, 500)).toBe(2 ** 32);
    const groups = Array.from({ length: 6 }, () => new PrototypeSample(256, () => limit));
    many.forEach((row, i) => groups[i % 6].offer(row.key, row.label, row.scores));
    const merged = new PrototypeSample(256);
    groups.forEach((group) => merged.absorb(group.rows()));
    expect(merged.rows()).toEqual(whole.rows());
    // Without the limit each group would hold 256 of its 1,000 rows; with it, what falls below: about 576 in all.
    expect(groups.reduce((sum, group) => sum + group.rows().length, 0)).toBeLessThan(800);
  });

  it('keeps every row of a class below the bound', () => {
    const sample = new PrototypeSample(256);
    rows.forEach((row) => sample.offer(row.key, row.label, row.scores));
    expect(sample.rows()).toHaveLength(300);
    expect(() => new PrototypeSample(0)).toThrow(RangeError);
  });
});

describe('LDA classifier (lambdas/analysis/lda-classifier.ts)', () => {
  const training = blobs(5, 40, 8, 2);
  const queries = blobs(5, 30, 8, 3);

  it('classifies a separable set perfectly, confidently', async () => {
    const model = await fitLdaClassifier(training.rows, training.labels);
    const predictions = model.predict(queries.rows);
    expect(predictions.map((p) => p.label)).toEqual(queries.labels);
    for (const p of predictions) expect(p.confidence).toBeGreaterThan(0.9);
    expect(model.labels).toEqual(['class 0', 'class 1', 'class 2', 'class 3', 'class 4']);
    // C - 1 discriminant directions.
    expect(model.transform(queries.rows.slice(0, 2)).columns).toBe(4);
  });

  it('keeps more than the discriminant directions when asked, which changes no decision of the class means', async () => {
    const stats = await statisticsOf(training);
    const discriminant = ldaClassifierFromStatistics(stats);
    const whitened = ldaClassifierFromStatistics(stats, { directions: 8 });
    expect(whitened.transform(queries.rows.slice(0, 2)).columns).toBe(8);
    // The class means differ only along the C - 1 discriminant directions: the others add the same to every class's distance.
    const near = blobs(5, 30, 8, 4).rows.map((row) => row.map((v) => v / 2));
    expect(whitened.predict(near).map((p) => p.label)).toEqual(discriminant.predict(near).map((p) => p.label));
  });

  it('gives confidences in (0, 1] that fall between classes', async () => {
    const model = await fitLdaClassifier(training.rows, training.labels);
    const between = new Array(8).fill(0).map((_, d) => (d < 2 ? 3 : 0));
    const [middle] = model.predict([between]);
    expect(['class 0', 'class 1']).toContain(middle.label);
    expect(middle.confidence).toBeGreaterThan(0.3);
    expect(middle.confidence).toBeLessThan(0.9);
  });

  it('predicts identically once saved as JSON and loaded', async () => {
    const model = await fitLdaClassifier(training.rows, training.labels, { shrinkage: 0.3 });
    const text = JSON.stringify(model.toJSON());
    const loaded = loadLdaClassifier(JSON.parse(text));
    expect(loaded.predict(queries.rows)).toEqual(model.predict(queries.rows));
    expect(JSON.stringify(loaded.toJSON())).toBe(text);
    expect(model.toJSON().format).toBe(LDA_CLASSIFIER_FORMAT);
  });

  it("gives each prediction its distance to the prototype that won, and that prototype's nearest Training key", async () => {
    const keys = training.rows.map((_, i) => `input/d/Training/${training.labels[i]}/${i}.jpg`);
    const model = await ldaClassifierFromStatistics(await statisticsOf(training)).withPrototypes(training.rows, training.labels, 3, keys);
    const json = model.toJSON();
    expect(json.prototypeKeys).toHaveLength(json.prototypes.length);
    json.prototypeKeys!.forEach((key, p) => expect(key).toContain(`/${json.labels[json.prototypeLabels[p]]}/`));
    const projected = model.transform(queries.rows);
    model.predict(queries.rows).forEach((prediction, q) => {
      expect(json.labels[json.prototypeLabels[prediction.prototype]]).toBe(prediction.label);
      const direct = Math.sqrt(json.prototypes[prediction.prototype].reduce((sum, v, d) => sum + (projected.get(q, d) - v) ** 2, 0));
      expect(prediction.distance).toBeCloseTo(direct, 6);
    });
    expect(loadLdaClassifier(JSON.parse(JSON.stringify(json))).predict(queries.rows)).toEqual(model.predict(queries.rows));
    expect(() => loadLdaClassifier({ ...json, prototypeKeys: ['one'] })).toThrow(/prototypeKeys holds 1 values/);
  });

  it('predicts a block on the native kernel as predict does: labels, prototypes and confidences, distances to rounding', async () => {
    const model = await ldaClassifierFromStatistics(await statisticsOf(training)).withPrototypes(training.rows, training.labels, 3);
    const dim = model.dim;
    const data = Float32Array.from(queries.rows.flatMap((row) => Array.from(row, Math.fround)));
    const expected = model.predict(Array.from({ length: queries.rows.length }, (_, r) => data.subarray(r * dim, (r + 1) * dim)));
    const native = await model.predictBlock({ data, rows: queries.rows.length, dims: dim });
    expect(native.map((p) => [p.label, p.prototype])).toEqual(expected.map((p) => [p.label, p.prototype]));
    native.forEach((prediction, q) => {
      expect(prediction.confidence).toBeCloseTo(expected[q].confidence, 9);
      expect(prediction.distance).toBeCloseTo(expected[q].distance, 9);
    });
    expect(await model.predictBlock({ data: new Float32Array(0), rows: 0, dims: dim })).toEqual([]);
    await expect(model.predictBlock({ data, rows: 1, dims: dim + 1 })).rejects.toThrow(RangeError);
  });

  it('clusters the same prototypes from a block projected on the native kernel as from rows', async () => {
    const discriminant = ldaClassifierFromStatistics(await statisticsOf(training));
    const keys = training.rows.map((_, i) => `k${i}`);
    const dim = discriminant.dim;
    const data = Float32Array.from(training.rows.flatMap((row) => Array.from(row, Math.fround)));
    const rows = Array.from({ length: training.rows.length }, (_, r) => data.subarray(r * dim, (r + 1) * dim));
    const expected = (await discriminant.withPrototypes(rows, training.labels, 3, keys)).toJSON();
    const native = (await discriminant.withPrototypesBlock({ data, rows: rows.length, dims: dim }, training.labels, 3, keys)).toJSON();
    expect(native.prototypeLabels).toEqual(expected.prototypeLabels);
    expect(native.prototypeKeys).toEqual(expected.prototypeKeys);
    native.prototypes.flat().forEach((value, i) => expect(value).toBeCloseTo(expected.prototypes.flat()[i], 9));
  });

  it('fits the same classifier from merged group statistics as from the rows', async () => {
    const groups = [new ClassStatisticsAccumulator(8), new ClassStatisticsAccumulator(8)];
    await addRows(training.rows, training.labels, (i) => groups[i % 2]);
    const fromStats = await ldaClassifierFromStatistics(mergeClassStatistics(await groups[0].statistics(), await groups[1].statistics())).withPrototypes(
      training.rows,
      training.labels,
    );
    const fromRows = await fitLdaClassifier(training.rows, training.labels);
    expect(fromStats.predict(queries.rows).map((p) => p.label)).toEqual(fromRows.predict(queries.rows).map((p) => p.label));
  });

  it('classifies a class made of two clusters with prototypes, where one mean per class cannot', async () => {
    // Class a is two blobs, (-6, 0) and (6, 0): its mean (0, 0) is farther from the (6, 0) blob
    // than b's (3, 5) and c's (3, -5) are. Shrinkage 1 keeps the geometry Euclidean.
    const random = seededRandom(4);
    const centres: [number, number, string][] = [
      [-6, 0, 'a'],
      [6, 0, 'a'],
      [3, 5, 'b'],
      [3, -5, 'c'],
    ];
    const draw = (n: number) =>
      Array.from({ length: n }, (_, i) => {
        const [x, y, label] = centres[i % 4];
        return { row: [x + random() - 0.5, y + random() - 0.5], label };
      });
    const train = draw(80);
    const test = draw(40);
    const rows = train.map((t) => t.row);
    const labels = train.map((t) => t.label);
    const single = await fitLdaClassifier(rows, labels, { shrinkage: 1, prototypes: 1 });
    const several = await fitLdaClassifier(rows, labels, { shrinkage: 1, prototypes: 2 });
    const accuracy = (model: typeof single) => model.predict(test.map((t) => t.row)).filter((p, i) => p.label === test[i].label).length / test.length;
    expect(accuracy(single)).toBeLessThan(0.8);
    expect(accuracy(several)).toBe(1);
    expect(several.toJSON().prototypes).toHaveLength(6);
    expect([...several.toJSON().prototypeLabels].sort()).toEqual([0, 0, 1, 1, 2, 2]);
  });

  it('puts augmentation rows in the statistics only, never in the prototypes', async () => {
    // A "background" moves a photo along one direction, half-way towards class 0 on axis 0: the
    // copies teach the discriminant to ignore that direction.
    const shift = (row: number[]) => row.map((v, d) => (d === 0 ? v + 3 : d === 7 ? v + 20 : v));
    const shifted = training.rows.map(shift);
    const plain = await fitLdaClassifier(training.rows, training.labels, { prototypes: 2 });
    const robust = await fitLdaClassifier(training.rows, training.labels, { prototypes: 2, augmentation: { rows: shifted, labels: training.labels } });
    expect(robust.toJSON().count).toBe(2 * training.rows.length);
    expect(robust.toJSON().prototypes).toHaveLength(10);
    const altered = queries.rows.map(shift);
    const correct = (model: typeof plain) => model.predict(altered).filter((p, i) => p.label === queries.labels[i]).length;
    expect(correct(robust)).toBe(queries.rows.length);
    expect(correct(plain)).toBeLessThan(correct(robust));
    await expect(fitLdaClassifier(training.rows, training.labels, { augmentation: { rows: shifted, labels: [] } })).rejects.toThrow(
      /augmentation rows but 0 labels/,
    );
  });

  it('handles one reference per class (no within-class spread) and uses only the leading dims of longer rows', async () => {
    const model = await fitLdaClassifier(
      [
        [0, 0],
        [10, 0],
        [0, 10],
      ],
      ['a', 'b', 'c'],
    );
    expect(
      model
        .predict([
          [1, 1, 99],
          [9, 1],
          [1, 8],
        ])
        .map((p) => p.label),
    ).toEqual(['a', 'b', 'c']);
  });

  it('rejects malformed JSON', async () => {
    const good = JSON.parse(JSON.stringify((await fitLdaClassifier(training.rows, training.labels)).toJSON()));
    const bad: [string, unknown, RegExp][] = [
      ['not an object', 'model', /expected object/i],
      ['another format', { ...good, format: 'fruits-pipeline/pca-model@1' }, /format/],
      ['a missing field', { ...good, prototypes: undefined }, /prototypes/],
      ['a centre of the wrong length', { ...good, centre: good.centre.slice(1) }, /centre holds 7 values, expected dim = 8/],
      ['ragged projection', { ...good, projection: [...good.projection.slice(1), [1]] }, /projection rows differ/],
      ['a prototype without its label', { ...good, prototypes: [...good.prototypes, good.prototypes[0]] }, /expected one per prototype/],
      [
        'a prototype of the wrong length',
        { ...good, prototypes: [good.prototypes[0].slice(1), ...good.prototypes.slice(1)] },
        /a prototype does not hold 4 values/,
      ],
      ['a label with no prototype', { ...good, prototypeLabels: good.prototypeLabels.map(() => 0) }, /a label has no prototype/],
      ['a prototype label out of range', { ...good, prototypeLabels: good.prototypeLabels.map(() => 9) }, /not an index of labels/],
      ['a label twice', { ...good, labels: good.labels.map(() => 'same') }, /listed twice/],
      ['a non-finite number', { ...good, centre: [Number.NaN, ...good.centre.slice(1)] }, /centre/],
      ['shrinkage above 1', { ...good, shrinkage: 2 }, /shrinkage/],
    ];
    for (const [, json, message] of bad) expect(() => loadLdaClassifier(json)).toThrow(message);
  });

  it('refuses what it cannot fit', async () => {
    await expect(fitLdaClassifier([[1], [2]], ['a', 'a'])).rejects.toThrow(/at least 2 classes/);
    await expect(fitLdaClassifier([[1], [2]], ['a', 'b'], { shrinkage: 1.5 })).rejects.toThrow(/shrinkage/);
    await expect(fitLdaClassifier([[1]], ['a', 'b'])).rejects.toThrow(/1 rows but 2 labels/);
    const model = await fitLdaClassifier(training.rows, training.labels);
    expect(() => model.predict([[1, 2]])).toThrow(/needs 8/);
    await expect(fitLdaClassifier(training.rows, training.labels, { prototypes: 0 })).rejects.toThrow(/positive integer/);
  });
});
