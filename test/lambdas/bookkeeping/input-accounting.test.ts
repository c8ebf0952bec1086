import { describeIncompleteAccounting, InputAccounting } from '../../../lambdas/bookkeeping/input-accounting';

describe('InputAccounting', () => {
  it('is complete when every listed key comes out exactly once', () => {
    const accounting = new InputAccounting();
    accounting.list(['a', 'b', 'c']);
    accounting.account(['c', 'a']);
    accounting.account(['b']);
    expect(accounting.report()).toMatchObject({ complete: true, listed: 3, accounted: 3, problems: [] });
  });

  it('names keys lost, counted twice, listed twice or never listed, in byte order', () => {
    const accounting = new InputAccounting();
    accounting.list(['Peach 2/x', 'Peach/x', 'twice', 'twice', 'lost']);
    accounting.account(['Peach/x', 'Peach/x', 'Peach 2/x', 'twice', 'twice', 'stranger']);
    const report = accounting.report();
    expect(report.complete).toBe(false);
    expect(report.unaccounted).toEqual({ count: 1, keys: ['lost'] });
    expect(report.listedTwice).toEqual({ count: 1, keys: ['twice'] });
    expect(report.overcounted).toEqual({ count: 2, keys: ['Peach/x', 'stranger'] });
    expect(describeIncompleteAccounting(report)).toMatch(/cannot account for all 5 listed objects: 1 never processed.*"lost"/);
  });

  it('is never complete when something prevented the proof', () => {
    const accounting = new InputAccounting();
    accounting.cannotProve('a batch record has no input');
    expect(accounting.report()).toMatchObject({ complete: false, problems: ['a batch record has no input'] });
  });
});

describe('accountForInputFolder (the local run, held against the folder, not the store listing)', () => {
  // Imported here so the pure tests above do not load the local runner.
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a lazy import, typed by the typeof below
  const { accountForInputFolder } = require('../../../local/local-run') as typeof import('../../../local/local-run');
  const report = (failed: string[], skipped: string[] = [], complete = true) =>
    ({
      failed: { items: failed.map((key) => ({ key, reason: 'bad' })), complete },
      skipped: { items: skipped.map((key) => ({ key, reason: 'not an image' })), complete: true },
    }) as never;

  it('is complete when each file is one row, one failure, one skip or one refused upload', () => {
    const result = accountForInputFolder(['p/a', 'p/b', 'p/c', 'p/d'], [{ key: 'p/d', reason: 'key too long' }], [{ key: 'p/a' }], report(['p/b'], ['p/c']));
    expect(result).toMatchObject({ complete: true, listed: 4, accounted: 4 });
  });

  it('names the files a listing lost and the ones it produced twice', () => {
    // What s3rver's listing did to Fruits-360: `Peach 2/` never listed, `Peach/` keys listed twice.
    const result = accountForInputFolder(['p/Peach/1.jpg', 'p/Peach 2/1.jpg'], [], [{ key: 'p/Peach/1.jpg' }], report([], ['p/Peach/1.jpg']));
    expect(result.complete).toBe(false);
    expect(result.unaccounted.keys).toEqual(['p/Peach 2/1.jpg']);
    expect(result.overcounted.keys).toEqual(['p/Peach/1.jpg']);
  });

  it('cannot prove anything without features.csv and report.json, or with capped lists', () => {
    expect(accountForInputFolder(['p/a'], [], undefined, undefined).problems).toEqual(['the run wrote no features.csv', 'the run wrote no report.json']);
    expect(accountForInputFolder(['p/a'], [], [{ key: 'p/a' }], report([], [], false)).complete).toBe(false);
  });
});
