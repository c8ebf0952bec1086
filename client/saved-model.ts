/**
 * `submit … --model-from <runId | key>`: the saved model a deployed run projects with, found and
 * checked in the bucket before the folder is uploaded. A run id names
 * `results/<runId>/pca-model.json`; a key must lie under `results/`. The model is read and
 * checked (format, lengths, numbers); its references, when it names some, must exist beside it.
 * Whether the model's featurizer is the stack's, the aggregate step finds out from the shards.
 */
import { HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { invalidName, invalidPcaModelKey, runLayout } from '../lambdas/contracts/bucket-layout';
import { MissingObjectError, readText, storageError } from '../lambdas/aws/s3-client';
// pca-model.ts, not the analysis face: the face loads the native kernels (onnxruntime-node), which
// reading a saved model does not need.
import { besideModel, parsePcaModel, PcaModelError, SavedPcaModel } from '../lambdas/analysis/pca-model';

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
  if (model.knnReferences) {
    const referencesKey = besideModel(key, model.knnReferences.file);
    try {
      await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: referencesKey }));
    } catch (error) {
      const problem = storageError(`reading s3://${bucket}/${referencesKey}`, error, 'read');
      if (problem instanceof MissingObjectError) return fail(`the model names its references s3://${bucket}/${referencesKey}, which does not exist`);
      throw problem;
    }
  }
  return { key, model };
}
