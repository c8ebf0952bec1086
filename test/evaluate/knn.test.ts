import { knnAccuracy, readFeaturesCsv, splitOfKey } from '../../evaluate/knn';

describe('5-NN evaluator', () => {
  it('splits by the innermost Training/Test folder of the key', () => {
    expect(splitOfKey('input/fruits/Training/Apple Red 1/0_100.jpg')).toBe('train');
    expect(splitOfKey('input/fruits/Test/Kiwi/1.jpg')).toBe('test');
    expect(splitOfKey('input/train-set/Test/Kiwi/1.jpg')).toBe('test');
    expect(splitOfKey('input/fruits/Kiwi/1.jpg')).toBeUndefined();
  });

  it('scores Test rows against Training rows from features.csv', () => {
    const csv = [
      'key,label,pc_1,pc_2',
      ...['a', 'b', 'c'].map((s, i) => `input/d/Training/A/${s}.jpg,A,${i * 0.1},0`),
      ...['a', 'b', 'c'].map((s, i) => `input/d/Training/B/${s}.jpg,B,${10 + i * 0.1},10`),
      '"input/d/Test/A/x,1.jpg",A,0.05,0.1',
      'input/d/Test/B/y.jpg,B,9.9,10',
      'input/d/Test/B/wrong.jpg,B,0.2,0',
      'input/d/notes/z.jpg,B,0,0',
    ].join('\r\n');
    const rows = readFeaturesCsv(csv);
    expect(rows[6].key).toBe('input/d/Test/A/x,1.jpg');
    const result = knnAccuracy(rows, { k: 3 });
    expect(result).toEqual({ k: 3, accuracy: 2 / 3, correct: 2, scored: 3, references: 6, unsplit: 1 });
  });
});
