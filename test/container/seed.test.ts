/**
 * The seed scenario: an image with /app/app.py, a container that writes
 * /temp.txt and modifies /app/app.py; the container sees its versions, a
 * second container and the image itself the originals; `docker diff` output;
 * removing the container leaves everything else as it was.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diff, formatChanges } from '../../src/container/diff.js';
import { ContainerFs } from '../../src/container/fs.js';
import { flattenLayers } from '../../src/tar/flatten.js';
import { readTar } from '../../src/tar/read.js';
import { isRoot, makeImage, sandbox, treeFingerprint, type Sandbox } from './helpers.js';

let sb: Sandbox;

beforeAll(async () => {
  sb = await sandbox();
});

afterAll(async () => {
  await sb.cleanup();
});

async function flattenedFile(ref: string, path: string): Promise<string | undefined> {
  const image = await sb.images.resolve(ref);
  const layers = image.manifest.layers.map((l) => () => sb.images.content.createReadStream(l.digest).pipe(createGunzip()));
  let found: string | undefined;
  for await (const entry of readTar(flattenLayers(layers, { scratchDir: join(sb.dir, 'scratch') }))) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry.body as AsyncIterable<Buffer>) chunks.push(chunk);
    if (entry.header.path === path) found = Buffer.concat(chunks).toString('utf8');
  }
  return found;
}

describe.skipIf(!isRoot)('seed scenario (needs root: snapshots keep image owners)', () => {
  it('copy-on-write containers over a shared image', async () => {
    const tree = join(sb.dir, 'app-tree');
    await mkdir(join(tree, 'app'), { recursive: true });
    await writeFile(join(tree, 'app/app.py'), 'print("hello from the image")\n');
    await writeFile(join(tree, 'app/requirements.txt'), 'flask\n');
    const image = await makeImage(sb.images, 'seed/app:1.0', [{ dir: tree }], { Cmd: ['python', '/app/app.py'], WorkingDir: '/app' });

    const first = await sb.containers.create('seed/app:1.0', { name: 'first' });
    const second = await sb.containers.create('seed/app:1.0', { name: 'second' });
    const lowers = await first.lowerDirs();
    expect(await second.lowerDirs()).toEqual(lowers);
    const snapshotsBefore = await Promise.all(lowers.map((dir) => treeFingerprint(dir)));

    const fs1 = await ContainerFs.open(first);
    await fs1.writeFile('/temp.txt', 'scratch data\n');
    await fs1.writeFile('/app/app.py', 'print("hello from the container")\n');

    // The container sees its versions ...
    expect(await fs1.readFile('/temp.txt', 'utf8')).toBe('scratch data\n');
    expect(await fs1.readFile('/app/app.py', 'utf8')).toBe('print("hello from the container")\n');
    expect(await fs1.readdir('/app')).toEqual(['app.py', 'requirements.txt']);
    // ... the other container and the image the originals.
    const fs2 = await ContainerFs.open(second);
    expect(await fs2.readFile('/app/app.py', 'utf8')).toBe('print("hello from the image")\n');
    expect(await fs2.exists('/temp.txt')).toBe(false);
    expect(await flattenedFile('seed/app:1.0', 'app/app.py')).toBe('print("hello from the image")\n');
    expect(await flattenedFile('seed/app:1.0', 'temp.txt')).toBeUndefined();
    for (const layer of image.manifest.layers) await sb.images.content.verify(layer.digest);
    await sb.images.content.verify(image.manifest.config.digest);

    expect(formatChanges(await diff(first))).toBe('C /app\nC /app/app.py\nA /temp.txt\n');
    expect(await diff(second)).toEqual([]);

    await sb.containers.remove('first');
    expect(existsSync(first.upperDir)).toBe(false);
    await expect(sb.containers.get('first')).rejects.toThrow('No such container: first');
    expect(await (await ContainerFs.open(second)).readFile('/app/app.py', 'utf8')).toBe('print("hello from the image")\n');
    expect(await Promise.all(lowers.map((dir) => treeFingerprint(dir)))).toEqual(snapshotsBefore);
  });
});
