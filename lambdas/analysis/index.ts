/**
 * The analysis: the statistics of a run, with no AWS. `ScatterAccumulator` streams the moments of
 * every shard, `fitPca` fits the standardised PCA and `PcaProjector` projects; `pca-model.ts`
 * writes and reads the saved model (`pca-model.json`) and the classifier's references;
 * `LdaClassifier` (fitted from `ClassStatisticsAccumulator`'s statistics and a `PrototypeSample`),
 * `LogisticClassifier`, both together (`CombinedClassifier`, the default) or `KnnReferences` (the
 * nearest Training rows) classifies a row over up to `classifierK` components, and
 * `ClassificationTally` scores the predictions. The matrix products behind them run on onnxruntime (native-kernels.ts), and
 * the fit's top eigenpairs come from top-eigen.ts. The exports below are what the rest of the code may use from this folder.
 */
export {
  type ComponentSelection,
  DEFAULT_BLOCK_ROWS,
  type FeatureMoments,
  InsufficientDataError,
  type PcaFit,
  PcaProjector,
  ScatterAccumulator,
  fitPca,
} from './streaming-pca';
export {
  FeaturizerMismatchError,
  PcaModelError,
  type SavedPcaModel,
  besideModel,
  decodeKnnReferences,
  encodeKnnReferences,
  knnReferencesParts,
  type KnnReferencesPointer,
  type NamedReferencesPart,
  type ReferenceRows,
  referencesPartKeys,
  referencesPartProblem,
  referencesPartsProblem,
  parsePcaModel,
  pcaFitOf,
  pcaModelJson,
} from './pca-model';
export { DEFAULT_KNN_NEIGHBOURS, KnnReferences, type Split, splitOfKey } from './knn';
export { type ClassificationReport, ClassificationTally, type ClassificationTallyPart, type ClassifierDescription, classifierName } from './classification';
export { type LdaClassifierJson, LdaClassifier, LdaClassifierSchema, ldaClassifierFromStatistics, fitLdaClassifier, loadLdaClassifier } from './lda-classifier';
export { ClassStatisticsAccumulator, mergeClassStatistics, decodeClassStatistics, encodeClassStatistics } from './class-statistics';
export { PROTOTYPE_SAMPLE_PER_CLASS, PrototypeSample } from './prototype-sample';
export {
  blockMoments,
  DEFAULT_INTRA_OP_THREADS,
  DEFAULT_NATIVE_BLOCK_ROWS,
  emptyMoments,
  mergeNeighbourLists,
  NativeNeighbourSearch,
  NativeProjector,
  NativeScatterAccumulator,
  voteNeighbours,
} from './native-kernels';
export type { KernelOptions, KernelPrecision, NeighbourLists, NeighbourSearchOptions, RowBlock } from './native-kernels';
export { topEigen } from './top-eigen';
export type { TopEigenOptions, TopEigenResult } from './top-eigen';
