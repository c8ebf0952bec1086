/**
 * Writes the ONNX form of a TFLite model (lambdas/model/tflite/tflite-onnx.ts) to a file, or lists
 * the tensors one can stop at. The featurizer needs no file: it converts in memory at start.
 *
 *   npx tsx tools/tflite-to-onnx.ts --model ~/.cache/fruits-pipeline/models/mobilenet_edgetpu_224_1.0_uint8/mobilenet_edgetpu_224_1.0_uint8.tflite \
 *     --output expanded_conv_12/add --pooling avg --out /tmp/edgetpu-block12.onnx
 *   npx tsx tools/tflite-to-onnx.ts --model <file.tflite> --list 128     # tensor names and shapes at 128 px
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { listActivations, OnnxPooling, parseTfliteModel, tfliteToOnnx } from '../lambdas/model';

function main(argv: string[]): void {
  const program = new Command()
    .name('tflite-to-onnx')
    .description('Convert a TFLite model, up to one tensor plus a global pool, to a float32 ONNX model')
    .requiredOption('--model <file>', '.tflite file')
    .option('--output <tensor>', 'tensor to stop at (full name, short name or unique suffix; default the model output)')
    .option('--pooling <kind>', 'avg | max | gem | none', 'avg')
    .option('--gem-p <p>', 'GeM exponent', '3')
    .option('--out <file>', 'where to write the .onnx file')
    .option('--list <size>', 'print the tensors one can stop at, with their shapes at <size> px, and exit')
    .parse(argv);
  const opts = program.opts<{ model: string; output?: string; pooling: string; gemP: string; out?: string; list?: string }>();
  const model = parseTfliteModel(readFileSync(opts.model));
  if (opts.list) {
    for (const a of listActivations(model, Number(opts.list))) console.log(`${a.opName.padEnd(18)} ${a.name.padEnd(64)} [${a.shape.join(', ')}]`);
    return;
  }
  if (!['avg', 'max', 'gem', 'none'].includes(opts.pooling)) throw new Error(`--pooling ${opts.pooling}: expected avg, max, gem or none`);
  if (!opts.out) throw new Error('--out is required (or --list)');
  const bytes = tfliteToOnnx(model, { output: opts.output, pooling: opts.pooling as OnnxPooling, gemP: Number(opts.gemP) });
  writeFileSync(opts.out, bytes);
  console.log(`wrote ${opts.out} (${(bytes.length / 1e6).toFixed(1)} MB)`);
}

if (require.main === module) main(process.argv);
