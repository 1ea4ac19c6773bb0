/**
 * export: the merged file system as one tar, streamed from the layers; the
 * same bytes as flattening the image's layers plus the container's committed
 * layer.
 */
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commit } from '../../src/container/commit.js';
import { exportContainer } from '../../src/container/export.js';
import { ContainerFs } from '../../src/container/fs.js';
import { flattenLayers } from '../../src/tar/flatten.js';
import { readTar } from '../../src/tar/read.js';
import { isRoot, makeFixtureImage, sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;

beforeAll(async () => {
  sb = await sandbox();
  await makeFixtureImage(sb.images, sb.dir);
});

afterAll(async () => {
  await sb.cleanup();
});

async function digestOf(stream: NodeJS.ReadableStream): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(stream, new Writable({ write: (chunk: Buffer, _e, cb) => cb(null, hash.update(chunk)) }));
  return hash.digest('hex');
}

describe.skipIf(!isRoot)('export (needs root)', () => {
  it('streams the merged tree: the same bytes as flattening image + committed layer', async () => {
    const c = await sb.containers.create('fixture:1');
    const fsys = await ContainerFs.open(c);
    await fsys.writeFile('/temp.txt', 't\n');
    await fsys.rm('/etc/conf2');
    await fsys.rm('/data', { recursive: true });
    await fsys.mkdir('/data');
    await fsys.writeFile('/data/new', 'n');
    await fsys.rename('/share', '/share2');
    await fsys.chmod('/bin/tool', 0o4750);

    const names: string[] = [];
    for await (const entry of readTar(exportContainer(c))) {
      names.push(entry.header.path);
      entry.body.resume();
    }
    expect(names).toContain('temp.txt');
    expect(names).toContain('share2/hard2');
    expect(names).not.toContain('etc/conf2');
    expect(names).not.toContain('data/one');
    expect(names).not.toContain('share');
    expect(names.filter((n) => n.startsWith('data'))).toEqual(['data', 'data/new']);

    const image = await commit(c);
    const layers = image.manifest.layers.map((l) => () => sb.images.content.createReadStream(l.digest).pipe(createGunzip()));
    const flattened = await digestOf(flattenLayers(layers, { scratchDir: join(sb.dir, 'scratch') }));
    expect(await digestOf(exportContainer(c))).toBe(flattened);
  });

  it('keeps xattrs and hard links in the tar', async () => {
    const c = await sb.containers.create('fixture:1');
    const seen = new Map<string, { type: string; linkname?: string; caps?: boolean }>();
    for await (const entry of readTar(exportContainer(c))) {
      seen.set(entry.header.path, {
        type: entry.header.type,
        ...(entry.header.linkname !== undefined ? { linkname: entry.header.linkname } : {}),
        caps: entry.header.xattrs?.['security.capability'] !== undefined,
      });
      entry.body.resume();
    }
    expect(seen.get('bin/tool')?.caps).toBe(true);
    expect(seen.get('share/hard2')).toMatchObject({ type: 'hardlink', linkname: 'share/hard1' });
    expect(seen.get('evil')).toMatchObject({ type: 'symlink', linkname: '../../../../../../../etc' });
  });
});
