import sharp from 'sharp';
import { alterImage, FIELD_CONDITIONS } from '../../evaluate/field-conditions';
import { generateDemoDataset } from '../../local/demo-dataset';

async function rgb(image: Uint8Array) {
  const { data, info } = await sharp(image).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

describe('field conditions (altered queries for the accuracy bench)', () => {
  let photo: Buffer;
  beforeAll(async () => {
    photo = (await generateDemoDataset({ trainingPerClass: 1, testPerClass: 0 }))[0].body;
  });

  it.each(FIELD_CONDITIONS)('%s keeps the size, changes the pixels and is deterministic', async (condition) => {
    const [a, b] = [await alterImage(photo, condition, 7), await alterImage(photo, condition, 7)];
    expect(a.equals(b)).toBe(true);
    const [source, altered] = [await rgb(photo), await rgb(a)];
    expect([altered.width, altered.height]).toEqual([source.width, source.height]);
    let changed = 0;
    for (let i = 0; i < source.data.length; i++) changed += Math.abs(source.data[i] - altered.data[i]);
    expect(changed / source.data.length).toBeGreaterThan(2);
  });

  it('background: the white studio corners are no longer white', async () => {
    const altered = await rgb(await alterImage(photo, 'background', 3));
    expect(Math.min(altered.data[0], altered.data[1], altered.data[2])).toBeLessThan(200);
  });
});
