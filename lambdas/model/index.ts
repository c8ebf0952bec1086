/**
 * The model: the CNN that turns the model's squares of RGB pixels into feature vectors, a batch at
 * a time. `getFeaturizer` builds it once per process from the handler's environment
 * (`featurizerConfigFromEnv`): a `.tflite` model (the default, run by `tflite/` on onnxruntime-node
 * or TF.js), a TF.js layers model, or the `pixels` fallback. `featurizerIdOf` gives a featurizer's
 * id (everything that shapes its vectors) without loading the model. `model-loader.ts` says where a
 * model is found: MODEL_DIR, the copy shipped in layers/model-weights/, then the fetch cache. The
 * exports below are what the rest of the code may use from this folder.
 */
export { type Featurizer, featurizerConfigFromEnv, featurizerIdOf, getFeaturizer } from './featurizer';
export { defaultModelCacheDir, defaultModelDir, hasModel } from './model-loader';
export { parseTfliteModel } from './tflite/tflite-model';
export { listActivations } from './tflite/tflite-graph';
export { type OnnxPooling, tfliteToOnnx } from './tflite/tflite-onnx';
