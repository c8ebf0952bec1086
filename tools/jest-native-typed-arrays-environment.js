/**
 * Jest's node environment with Node's own typed-array constructors.
 *
 * Jest runs each test file in a separate realm, so a Float32Array made by a native addon (the
 * outputs of onnxruntime-node) fails `instanceof Float32Array` inside the test, and
 * onnxruntime-common refuses it ("A float32 tensor's data must be type of Float32Array").
 * Test files that run ONNX Runtime opt in with a docblock:
 *   @jest-environment ./tools/jest-native-typed-arrays-environment.js
 */
const { TestEnvironment } = require('jest-environment-node');

const SHARED = [
  'ArrayBuffer',
  'SharedArrayBuffer',
  'DataView',
  'Int8Array',
  'Uint8Array',
  'Uint8ClampedArray',
  'Int16Array',
  'Uint16Array',
  'Int32Array',
  'Uint32Array',
  'Float32Array',
  'Float64Array',
  'BigInt64Array',
  'BigUint64Array',
];

class NativeTypedArraysEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of SHARED) this.global[name] = globalThis[name];
  }
}

module.exports = NativeTypedArraysEnvironment;
