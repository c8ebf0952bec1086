import { singleStageThreads } from '../../../lambdas/aggregate/aggregate-shared';

describe('singleStageThreads (onnxruntime threads of a stage that has its function to itself)', () => {
  it("takes one per vCPU of the function's memory, as Lambda allots them, 1 to 6", () => {
    expect(singleStageThreads({ AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '3008' })).toBe(2);
    expect(singleStageThreads({ AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '1769' })).toBe(1);
    expect(singleStageThreads({ AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '1024' })).toBe(1);
    expect(singleStageThreads({ AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '128' })).toBe(1);
    expect(singleStageThreads({ AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '5307' })).toBe(3);
    expect(singleStageThreads({ AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '10240' })).toBe(6);
  });

  it('takes two where the memory is not stated or not a number', () => {
    expect(singleStageThreads({})).toBe(2);
    expect(singleStageThreads({ AWS_LAMBDA_FUNCTION_MEMORY_SIZE: 'lots' })).toBe(2);
  });
});
