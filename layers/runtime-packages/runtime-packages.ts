/**
 * The runtime-packages image layer: the `package.json` of the image's own node_modules, holding only
 * the packages the handler bundles leave external (runtime-externals.json), at the versions the
 * lockfile resolved. The rest of package.json (the CDK app, the local runner, the build tools) is
 * build-time only and would bloat the image.
 *
 *   npx tsx layers/runtime-packages/runtime-packages.ts <out>/package.json
 *
 * The Dockerfile runs this, then `npm install` in that folder.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Left out of the handler bundles and installed in the image instead: sharp, onnxruntime-node, the
 * libjpeg-turbo wasm codec and tfjs load native or wasm files next to their own modules, and every
 * tfjs package must share one tfjs-core instance for a backend registered by tfjs-node to be the one
 * the model runs on. `@scope/*` names every package of a scope.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports -- plain JSON, the list this layer installs
export const RUNTIME_EXTERNALS: readonly string[] = require('./runtime-externals.json');

export function isRuntimeExternal(name: string, externals: readonly string[] = RUNTIME_EXTERNALS): boolean {
  return externals.some((external) => (external.endsWith('/*') ? name.startsWith(external.slice(0, -1)) : name === external));
}

interface PackageJson {
  readonly dependencies: Record<string, string>;
}
interface PackageLock {
  readonly packages: Record<string, { readonly version?: string }>;
}

/** The runtime package.json: every dependency that is a runtime external, pinned to its locked version. */
export function runtimePackageJson(packageJson: PackageJson, lock: PackageLock, externals: readonly string[] = RUNTIME_EXTERNALS) {
  const names = Object.keys(packageJson.dependencies).filter((name) => isRuntimeExternal(name, externals));
  const dependencies = Object.fromEntries(
    names.map((name) => {
      const version = lock.packages[`node_modules/${name}`]?.version;
      if (!version) throw new Error(`${name} is a runtime external but package-lock.json does not resolve it`);
      return [name, version];
    }),
  );
  return { private: true, dependencies };
}

if (require.main === module) {
  const out = process.argv[2];
  if (!out) {
    console.error('usage: npx tsx layers/runtime-packages/runtime-packages.ts <out>/package.json');
    process.exit(2);
  }
  const root = join(__dirname, '..', '..');
  const read = (file: string) => JSON.parse(readFileSync(join(root, file), 'utf8'));
  writeFileSync(out, JSON.stringify(runtimePackageJson(read('package.json'), read('package-lock.json')), null, 2));
}
