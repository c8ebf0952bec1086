import { describeIncompleteAccounting, InputAccounting } from '../lambdas/core/input-accounting';

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
