/**
 * The analysis's numeric kernels: moments, projection and nearest neighbours on onnxruntime
 * (native-kernels.ts), and the top eigenpairs of a covariance or correlation matrix (top-eigen.ts).
 */
export {
  blockMoments,
  DEFAULT_INTRA_OP_THREADS,
  DEFAULT_NATIVE_BLOCK_ROWS,
  emptyMoments,
  mergeMomentsInto,
  mergeNeighbourLists,
  NativeNeighbourSearch,
  NativeProjector,
  NativeScatterAccumulator,
  voteNeighbours,
} from './native-kernels';
export type { KernelOptions, KernelPrecision, NeighbourLists, NeighbourSearchOptions, RowBlock } from './native-kernels';
export { topEigen } from './top-eigen';
export type { TopEigenOptions, TopEigenResult } from './top-eigen';
