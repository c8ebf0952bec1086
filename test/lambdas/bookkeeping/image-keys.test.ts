import { classifyKey } from '../../../lambdas/bookkeeping/image-keys';

describe('classifyKey', () => {
  const prefix = 'input/d/';

  it.each([
    ['input/d/Training/Kiwi/1.jpg', 'Kiwi'],
    ['input/d/Kiwi/1.JPG', 'Kiwi'],
    ['input/d/Training/Apple Red 1/r_12_100.jpg', 'Apple Red 1'],
    ['input/d/Training/Pomme rôtie/été 1.png', 'Pomme rôtie'],
    ['input/d/Training/C++ 100%/a+b%20c.webp', 'C++ 100%'],
    ['input/d/x/y/z/深い/1.tiff', '深い'],
  ])('labels %s as %s', (key, label) => {
    expect(classifyKey(key, prefix)).toEqual({ kind: 'image', label });
  });

  it.each([
    ['input/d/_START', 'run start marker'],
    ['input/d/1.jpg', 'not inside a label folder'],
    ['input/d/Kiwi/notes.txt', 'not an image extension (.txt)'],
    ['input/d/Kiwi/meta.json', 'not an image extension (.json)'],
    ['input/d/Kiwi/vector.svg', 'not an image extension (.svg)'],
    ['input/d/Kiwi/README', 'no image extension'],
    ['input/d/Kiwi/', 'folder placeholder'],
    ['input/other/Kiwi/1.jpg', 'outside the input prefix'],
    ['input/d/Kiwi//1.jpg', 'empty-named folder'],
  ])('skips %s (%s)', (key, reason) => {
    const result = classifyKey(key, prefix);
    expect(result.kind).toBe('skip');
    expect(result.kind === 'skip' && result.reason).toContain(reason);
  });

  it('never decodes keys: %2F and + stay as they are', () => {
    expect(classifyKey('input/d/a%2Fb/1+2.jpg', prefix)).toEqual({ kind: 'image', label: 'a%2Fb' });
  });
});
