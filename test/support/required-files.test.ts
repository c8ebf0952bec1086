import { join } from 'node:path';
import { requireFiles } from './required-files';

describe('requireFiles: real-data checks never skip silently, and never under CI', () => {
  const absent = join(__dirname, 'no-such-file');
  const saved = process.env.CI;
  let stderr: jest.SpiedFunction<typeof process.stderr.write>;
  beforeEach(() => {
    stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  });
  afterEach(() => {
    stderr.mockRestore();
    if (saved === undefined) delete process.env.CI;
    else process.env.CI = saved;
  });

  it('is true, silently, when every file is there', () => {
    process.env.CI = 'true';
    expect(requireFiles('a check', [__filename, __dirname])).toBe(true);
    expect(stderr).not.toHaveBeenCalled();
  });

  it('under CI=true, throws naming the check and the missing path', () => {
    process.env.CI = 'true';
    expect(() => requireFiles('the sample check', [__filename, absent])).toThrow(`CI=true and the sample check cannot run: ${absent} absent`);
    expect(stderr).not.toHaveBeenCalled();
  });

  it('elsewhere, returns false after one stderr line naming what is skipped and why', () => {
    delete process.env.CI;
    expect(requireFiles('the sample check', [absent], 'fetch it')).toBe(false);
    expect(stderr.mock.calls).toEqual([[`SKIPPED the sample check: ${absent} absent (fetch it)\n`]]);
    process.env.CI = 'false';
    expect(requireFiles('the sample check', [absent])).toBe(false);
    expect(stderr).toHaveBeenCalledTimes(2);
  });
});
