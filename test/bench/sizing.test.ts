import { costModel, RECORDED } from '../../bench/cost';
import { chooseSetting, FIGURES_HEADING, GOAL, goalSearch, GoalCandidate, meetsGoal, renderFigures, SPARE_MINUTES } from '../../bench/sizing';
import { defaultConfig } from '../../lib/config';

const candidate = (featurizeMemoryMb: number, maxConcurrency: number, wallMinutes: number, totalUsd: number): GoalCandidate => {
  const row = { ...costModel(RECORDED.featurize, GOAL.images, 'x86_64', defaultConfig()), wallMinutes, totalUsd, limits: [] };
  return { featurizeMemoryMb, maxConcurrency, rows: { x86_64: row, arm64: { ...row, architecture: 'arm64' } } };
};

describe('sizing for the goal', () => {
  test('a run meets the goal within both budgets and its limits', () => {
    const row = candidate(1769, 100, 4, 0.9).rows.x86_64;
    expect(meetsGoal(row)).toBe(true);
    expect(meetsGoal({ ...row, wallMinutes: GOAL.minutes + 0.1 })).toBe(false);
    expect(meetsGoal({ ...row, totalUsd: GOAL.usd + 0.01 })).toBe(false);
    expect(meetsGoal({ ...row, limits: ['too big'] })).toBe(false);
    expect(meetsGoal({ ...row, images: 10 })).toBe(false);
  });

  test('the choice: the cheapest with a minute spare, at one vCPU or more; else the cheapest that meets the goal', () => {
    const slow = candidate(3008, 50, GOAL.minutes - SPARE_MINUTES + 0.1, 0.8);
    const small = candidate(1024, 100, 3, 0.85);
    const cheapest = candidate(1769, 200, 3.5, 0.9);
    const dearer = candidate(3008, 200, 3, 0.95);
    const late = candidate(1769, 50, GOAL.minutes + 0.1, 0.7);
    expect(chooseSetting([slow, small, dearer, cheapest])).toBe(cheapest);
    expect(chooseSetting([slow, small, late])).toBe(slow);
    expect(chooseSetting([small, late])).toBeUndefined();
  });

  test('the search covers every memory and concurrency, both architectures at the goal size', () => {
    const candidates = goalSearch();
    expect(candidates.length).toBe(18);
    for (const c of candidates) {
      expect(c.rows.x86_64.images).toBe(GOAL.images);
      expect(c.rows.arm64.totalUsd).toBeLessThan(c.rows.x86_64.totalUsd);
      expect(c.rows.arm64.wallMinutes).toBe(c.rows.x86_64.wallMinutes);
    }
  });

  test('with the recorded figures some setting at one vCPU or more meets the goal', () => {
    const chosen = chooseSetting(goalSearch());
    expect(chosen).toBeDefined();
    expect(meetsGoal(chosen!.rows.x86_64)).toBe(true);
  });

  test('the rendered section starts at its heading and names its command', () => {
    const text = renderFigures();
    expect(text.startsWith(`${FIGURES_HEADING}\n`)).toBe(true);
    expect(text).toContain('npx tsx bench/sizing.ts --write');
  });
});
