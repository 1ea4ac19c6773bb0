import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { readFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256Of } from '../../src/content/digest.js';
import { discard, makeLayer, prefetchContent } from '../../src/layer/make.js';
import { walkTree, type WalkedEntry } from '../../src/tar/walk.js';
import { FileChangedError, packEntries, tarFromTree } from '../../src/tar/write.js';
import { pipeline } from 'node:stream/promises';
import { hashStream, makeTree, sandbox, type Sandbox } from './helpers.js';

let box: Sandbox;
beforeEach(async () => {
  box = await sandbox();
});
afterEach(async () => {
  await box.cleanup();
});

/** Many small files of varied sizes in nested directories, plus a few large ones. */
async function manyFiles(root: string): Promise<void> {
  await makeTree(root);
  for (let d = 0; d < 8; d++) {
    const dir = join(root, 'many', `d${d}`);
    await mkdir(dir, { recursive: true });
    for (let f = 0; f < 40; f++) await writeFile(join(dir, `f${f}`), `content ${d}/${f}\n`.repeat(f * 7));
  }
  await writeFile(join(root, 'many', 'large.bin'), Buffer.alloc(3 * 1024 * 1024, 'large'));
}

describe('prefetching tree tar', () => {
  it('gives exactly the bytes tarFromTree gives', async () => {
    const tree = join(box.dir, 'tree');
    await manyFiles(tree);
    const reference = await hashStream(tarFromTree(tree));
    const record = await makeLayer(box.store, { dir: tree });
    expect(record.diffId).toBe(reference.digest);
    expect(sha256Of(gunzipSync(await readFile(box.store.blobPath(record.digest))))).toBe(reference.digest);
  });

  it('keeps order and content under tight limits', async () => {
    const tree = join(box.dir, 'tree');
    await manyFiles(tree);
    const reference = await hashStream(tarFromTree(tree));
    for (const limits of [
      { smallFileBytes: 1024 * 1024, maxBytes: 1, maxEntries: 1, maxReads: 1 },
      { smallFileBytes: 100, maxBytes: 1000, maxEntries: 3, maxReads: 2 },
      { smallFileBytes: 8 * 1024 * 1024, maxBytes: 64 * 1024 * 1024, maxEntries: 10_000, maxReads: 64 },
    ]) {
      const tar = packEntries(prefetchContent(walkTree(tree), limits));
      expect((await hashStream(tar)).digest).toBe(reference.digest);
    }
  });

  it('reports a file whose size changed since the walk, like the streaming path', async () => {
    const tree = join(box.dir, 'tree');
    await mkdir(tree);
    await writeFile(join(tree, 'grew'), 'now longer than when walked');
    async function* walked(): AsyncGenerator<WalkedEntry> {
      for await (const entry of walkTree(tree)) yield { ...entry, header: { ...entry.header, size: 5 } };
    }
    await expect(pipeline(packEntries(prefetchContent(walked())), discard())).rejects.toThrow(FileChangedError);
  });

  it('fails with the read error of a file that vanished after the walk', async () => {
    const tree = join(box.dir, 'tree');
    await mkdir(tree);
    async function* walked(): AsyncGenerator<WalkedEntry> {
      yield { header: { path: 'ghost', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 10 }, sourcePath: join(tree, 'ghost') };
    }
    await expect(pipeline(packEntries(prefetchContent(walked())), discard())).rejects.toThrow(/ENOENT/);
  });

  it('stops walking when its consumer stops early', async () => {
    const tree = join(box.dir, 'tree');
    await manyFiles(tree);
    let pulled = 0;
    let closed = false;
    async function* walked(): AsyncGenerator<WalkedEntry> {
      try {
        for await (const entry of walkTree(tree)) {
          pulled++;
          yield entry;
        }
      } finally {
        closed = true;
      }
    }
    const limits = { smallFileBytes: 1024, maxBytes: 4096, maxEntries: 4, maxReads: 2 };
    for await (const source of prefetchContent(walked(), limits)) {
      expect(source.header.path).toBeTruthy();
      break;
    }
    expect(closed).toBe(true);
    expect(pulled).toBeLessThan(20);
  });
});
