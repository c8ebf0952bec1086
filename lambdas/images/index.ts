/**
 * The images: photo bytes to what the model and the report take. `preprocessImage` sniffs the real
 * format, refuses what is not an image or too large, and gives the model's square of RGB pixels
 * (small plain JPEGs through libjpeg-turbo in wasm and a JavaScript enlargement, anything else
 * through sharp); `thumbnailDataUri` gives the HTML report's gallery images. No AWS, and of the
 * project only the featurize settings' limits (lambdas/contracts/): bytes in, pixels out. The exports below are what the rest of the code may use from
 * this folder.
 */
export { DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_INPUT_PIXELS, type PixelScaling, type PreprocessOptions, preprocessImage, scalePixels } from './preprocess';
export { thumbnailDataUri } from './thumbnail';
