/**
 * What an object key under a run's input prefix means: an image of a label, or something to skip.
 *
 * Keys are used exactly as ListObjectsV2 returned them: the Distributed Map's ItemReader already
 * hands over decoded keys, so decoding them again would corrupt names holding `%` or `+`.
 */
import { BUCKET_LAYOUT } from '../contracts/bucket-layout';

/**
 * Extensions worth reading. Anything else (notes, manifests, `.svg`) is skipped without a read;
 * the content of a listed image is still checked (lambdas/images/preprocess.ts sniffs the real format).
 */
const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(['jpg', 'jpeg', 'jpe', 'png', 'webp', 'tif', 'tiff', 'gif', 'avif', 'heic', 'heif']);

export type KeyClassification = { kind: 'image'; label: string } | { kind: 'skip'; reason: string };

/**
 * The label of an image is its immediate parent folder (`input/d/Training/Kiwi/1.jpg` -> `Kiwi`).
 * A key must lie under `inputPrefix` and have at least one folder between the prefix and the file.
 */
export function classifyKey(key: string, inputPrefix: string): KeyClassification {
  if (!key.startsWith(inputPrefix)) return { kind: 'skip', reason: `key is outside the input prefix ${inputPrefix}` };
  const relative = key.slice(inputPrefix.length).replace(/^\/+/, '');
  if (relative === '' || key.endsWith('/')) return { kind: 'skip', reason: 'folder placeholder, not an image' };
  const parts = relative.split('/');
  const fileName = parts[parts.length - 1];
  if (fileName === BUCKET_LAYOUT.startMarker) return { kind: 'skip', reason: 'run start marker' };
  const dot = fileName.lastIndexOf('.');
  const extension = dot > 0 ? fileName.slice(dot + 1).toLowerCase() : '';
  if (!IMAGE_EXTENSIONS.has(extension)) {
    return { kind: 'skip', reason: extension ? `not an image extension (.${extension})` : 'file has no image extension' };
  }
  if (parts.length < 2) return { kind: 'skip', reason: 'image is not inside a label folder' };
  const label = parts[parts.length - 2];
  if (label === '') return { kind: 'skip', reason: 'image is inside an empty-named folder' };
  return { kind: 'image', label };
}
