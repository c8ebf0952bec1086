/**
 * `submit … --model-from <runId | key>`: the saved model a deployed run projects with, found and
 * checked in the bucket before the folder is uploaded. A run id names
 * `results/<runId>/pca-model.json`; a key must lie under `results/`. The model is read and
 * checked (format, lengths, numbers); its references parts, when it names some, must exist beside
 * it with the sizes it states (a HEAD each; the aggregate step checks their bytes where it reads them).
 * Whether the model's featurizer is the stack's, the aggregate step finds out from the shards.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { invalidName, invalidPcaModelKey, runLayout } from '../lambdas/contracts/bucket-layout';
import { MissingObjectError, objectSizes, readText } from '../lambdas/aws/s3-client';
// pca-model.ts, not the analysis face: the face loads the native kernels (onnxruntime-node), which
// reading a saved model does not need.
import { parsePcaModel, PcaModelError, referencesPartKeys, referencesPartsProblem, SavedPcaModel } from '../lambdas/analysis/pca-model';

/** The execution input's `pcaModel` for `value`, with the model it names; throws one line naming `--model-from`. */
export async function findSavedModel(s3: S3Client, bucket: string, value: string): Promise<{ key: string; model: SavedPcaModel }> {
  const fail = (problem: string): never => {
    throw new Error(`--model-from ${value}: ${problem}`);
  };
  const key = value.includes('/') ? value : runLayout(value).resultKey('model');
  const badKey = value.includes('/') ? invalidPcaModelKey(value) : invalidName(value, 'run id');
  if (badKey) fail(badKey);
  const uri = `s3://${bucket}/${key}`;
  let text: string;
  try {
    text = await readText(s3, bucket, key);
  } catch (error) {
    if (error instanceof MissingObjectError) return fail(`${uri} does not exist${value.includes('/') ? '' : `: did run ${value} succeed?`}`);
    throw error;
  }
  let model: SavedPcaModel;
  try {
    model = parsePcaModel(text, uri);
  } catch (error) {
    if (error instanceof PcaModelError) return fail(error.message);
    throw error;
  }
  const partKeys = referencesPartKeys(model, key);
  const problem = referencesPartsProblem(model, await objectSizes(s3, bucket, partKeys), (part) => `s3://${bucket}/${partKeys[part]}`);
  if (problem) fail(problem);
  return { key, model };
}
