import { createProgressDisplay, formatSeconds } from '../../cli/progress';

describe('progress display', () => {
  it('prints plain lines off a terminal, one per tenth of the work, with failures', () => {
    const lines: string[] = [];
    const stream = { isTTY: false, write: (text: string) => lines.push(text) } as unknown as NodeJS.WriteStream;
    const display = createProgressDisplay({ stream });
    for (let done = 0; done <= 100; done++) display.update({ phase: 'featurize', total: 100, done, failed: done >= 50 ? 2 : 0 });
    display.stop();
    expect(lines).toHaveLength(11);
    expect(lines[10]).toMatch(/^featurize: 100\/100 \(.*\/s, ETA .*\), failures 2\n$/);
  });

  it('stays silent for --json', () => {
    const stream = { isTTY: true, write: jest.fn() } as unknown as NodeJS.WriteStream;
    const display = createProgressDisplay({ stream, silent: true });
    display.update({ phase: 'upload', total: 1, done: 1, failed: 0 });
    display.log('x');
    expect(stream.write).not.toHaveBeenCalled();
  });

  it('formats an ETA', () => {
    expect(formatSeconds(undefined)).toBe('--');
    expect(formatSeconds(42.4)).toBe('42s');
    expect(formatSeconds(125)).toBe('2m05s');
  });
});
