/**
 * Acceptance item 5: one flipped byte in a stored blob is found by whatever
 * reads the blob next, and the error names the blob.
 */
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Digest } from '../../src/content/digest.js';
import type { ImageStore } from '../../src/image/image-store.js';
import { saveImages } from '../../src/archive/save.js';
import { importImage } from '../../src/archive/import.js';
import { craftImage, loadBuffer, ociArchiveEntries, openStore, rawTar, saveItem, workspace } from './helpers.js';

let ws: { dir: string; cleanup: () => Promise<void> };
let store: ImageStore;

beforeEach(async () => {
  ws = await workspace('strata-corrupt-');
  store = await openStore(join(ws.dir, 'store'));
});
afterEach(async () => {
  await ws.cleanup();
});

/** Flips one bit of the byte at `offset` (negative: from the end) of a stored blob, in place. */
async function flipByte(digest: Digest, offset: number): Promise<void> {
  const path = store.content.blobPath(digest);
  const handle = await open(path, 'r+');
  try {
    const { size } = await handle.stat();
    const at = offset < 0 ? size + offset : offset;
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, at);
    byte[0]! ^= 0x01;
    await handle.write(byte, 0, 1, at);
  } finally {
    await handle.close();
  }
}

/** Runs a save to nowhere and returns the error it ends with. */
async function saveError(ref: string, format: 'docker' | 'oci' = 'docker'): Promise<Error | undefined> {
  const item = await saveItem(store, ref);
  const sink = new Writable({ write: (_chunk, _enc, done) => done() });
  return pipeline(saveImages(store.content, [item], { format }), sink).then(
    () => undefined,
    (err: Error) => err,
  );
}

async function loadSample(tag = 'sample/app:1'): Promise<ReturnType<typeof craftImage>> {
  const files = Array.from({ length: 40 }, (_, i) => ({ name: `data/file-${i}`, content: `content of file ${i}\n`.repeat(200) }));
  const image = craftImage([
    { tar: rawTar([{ name: 'data/', type: 'directory' }, ...files.slice(0, 20)]), gzip: true },
    { tar: rawTar(files.slice(20)) },
  ]);
  await loadBuffer(store, rawTar(ociArchiveEntries(image, tag)));
  return image;
}

describe('a flipped byte in a stored blob', () => {
  for (const [what, layerIndex] of [['gzip layer', 0], ['uncompressed layer', 1]] as const) {
    for (const where of ['first', 'middle', 'last'] as const) {
      it(`in the ${where} byte of a ${what}: save fails naming the blob, fsck reports it`, async () => {
        const image = await loadSample();
        const layer = image.layers[layerIndex]!;
        expect(await saveError('sample/app:1')).toBeUndefined();
        await flipByte(layer.digest, where === 'first' ? 0 : where === 'last' ? -1 : Math.floor(layer.bytes.length / 2));

        for (const format of ['docker', 'oci'] as const) {
          const error = await saveError('sample/app:1', format);
          expect(error, `save --format ${format}`).toBeInstanceOf(Error);
          expect(error!.message).toContain(layer.digest);
          expect(error!.message).toMatch(/corrupt/);
        }
        const report = await store.fsck();
        expect(report.ok).toBe(false);
        expect(report.faults.filter((f) => f.severity === 'error').map((f) => [f.kind, f.object])).toEqual([['corrupt-blob', layer.digest]]);
        await expect(store.content.verify(layer.digest)).rejects.toThrow(layer.digest);
      });
    }
  }

  it('in the config: inspecting the image fails naming the config, and so do save and fsck', async () => {
    const image = await loadSample();
    await flipByte(image.configDigest, 10);
    const fresh = await openStore(store.root); // no cached documents
    await expect(fresh.resolve('sample/app:1')).rejects.toThrow(image.configDigest);
    const error = await saveError('sample/app:1').catch((err: Error) => err);
    expect(error?.message).toContain(image.configDigest);
    const report = await fresh.fsck();
    expect(report.faults.filter((f) => f.severity === 'error').map((f) => [f.kind, f.object])).toContainEqual(['corrupt-blob', image.configDigest]);
    expect(report.ok).toBe(false);
  });

  it('in the manifest: resolving the tag fails naming the manifest, and fsck reports it', async () => {
    const image = await loadSample();
    await flipByte(image.manifestDigest, -3);
    const fresh = await openStore(store.root);
    await expect(fresh.resolve('sample/app:1')).rejects.toThrow(image.manifestDigest);
    const report = await fresh.fsck();
    expect(report.faults.filter((f) => f.severity === 'error').map((f) => [f.kind, f.object])).toContainEqual(['corrupt-blob', image.manifestDigest]);
  });

  it('in an imported layer: save fails naming it', async () => {
    const rootfs = join(ws.dir, 'rootfs');
    await (await import('node:fs/promises')).mkdir(join(rootfs, 'etc'), { recursive: true });
    await writeFile(join(rootfs, 'etc', 'motd'), 'hello\n'.repeat(1000));
    const imported = await importImage(store, { dir: rootfs }, { ref: 'imported/app:1' });
    const manifest = (await store.resolve('imported/app:1')).manifest;
    const layer = manifest.layers[0]!.digest;
    await flipByte(layer, 100);
    const error = await saveError('imported/app:1');
    expect(error?.message).toContain(layer);
    expect(imported.diffId).toMatch(/^sha256:/);
    expect((await store.fsck()).faults.map((f) => [f.kind, f.object])).toContainEqual(['corrupt-blob', layer]);
  });

  it('a blob cut short is reported as a size mismatch before any byte is written', async () => {
    const image = await loadSample();
    const layer = image.layers[1]!;
    const handle = await open(store.content.blobPath(layer.digest), 'r+');
    await handle.truncate(layer.bytes.length - 1);
    await handle.close();
    const error = await saveError('sample/app:1');
    expect(error?.message).toContain(layer.digest);
    expect(error?.message).toMatch(/bytes/);
    const report = await store.fsck();
    expect(report.faults.map((f) => [f.kind, f.object])).toContainEqual(['size-mismatch', layer.digest]);
  });
});
