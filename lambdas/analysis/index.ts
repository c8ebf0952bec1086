/**
 * The analysis: the statistics of a run, with no AWS. `ScatterAccumulator` streams the moments of
 * every shard, `fitPca` fits the standardised PCA and `PcaProjector` projects; `pca-model.ts`
 * writes and reads the saved model (`pca-model.json`) and the classifier's references;
 * `KnnReferences` classifies a row by its nearest Training rows, and `ClassificationTally` scores
 * the predictions. The exports below are what the rest of the code may use from this folder.
 */
export { type ComponentSelection, DEFAULT_BLOCK_ROWS, InsufficientDataError, type PcaFit, PcaProjector, ScatterAccumulator, fitPca } from './streaming-pca';
export {
  FeaturizerMismatchError,
  PcaModelError,
  type SavedPcaModel,
  besideModel,
  decodeKnnReferences,
  encodeKnnReferences,
  parsePcaModel,
  pcaFitOf,
  pcaModelJson,
} from './pca-model';
export { DEFAULT_KNN_NEIGHBOURS, KnnReferences, type Split, splitOfKey } from './knn';
export { type ClassificationReport, ClassificationTally } from './classification';
