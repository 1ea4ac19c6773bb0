import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256Of } from '../../src/content/digest.js';
import { MediaType } from '../../src/image/mediatypes.js';
import { chainIdOf } from '../../src/layer/chain.js';
import { InvalidLayerSourceError, makeLayer, recordForBlob } from '../../src/layer/make.js';
import { LayerRecords } from '../../src/layer/record.js';
import { readTar } from '../../src/tar/read.js';
import { tarFromTree } from '../../src/tar/write.js';
import { hashFile, hashStream, makeTree, sandbox, type Sandbox } from './helpers.js';

let box: Sandbox;
beforeEach(async () => {
  box = await sandbox();
});
afterEach(async () => {
  await box.cleanup();
});

async function entryNames(tar: Buffer): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of readTar(Readable.from([tar]))) {
    names.push(entry.header.path);
    entry.body.resume();
  }
  return names;
}

describe('makeLayer', () => {
  it('is deterministic: the same tree gives the same DiffID and the same blob digest twice', async () => {
    const tree = join(box.dir, 'tree');
    await makeTree(tree);
    const first = await makeLayer(box.store, { dir: tree });
    const second = await makeLayer(box.store, { dir: tree });
    expect(second.diffId).toBe(first.diffId);
    expect(second.digest).toBe(first.digest);
    expect(first.diffId).not.toBe(first.digest);
    // A copy made elsewhere, with the same content and times, gives the same layer too.
    const copy = join(box.dir, 'copy');
    await makeTree(copy);
    expect((await makeLayer(box.store, { dir: copy })).digest).toBe(first.digest);
  });

  it('stores exactly the tar tarFromTree makes, for many small files and a few large ones', async () => {
    const tree = join(box.dir, 'tree');
    await makeTree(tree);
    for (let d = 0; d < 8; d++) {
      const dir = join(tree, 'many', `d${d}`);
      await mkdir(dir, { recursive: true });
      for (let f = 0; f < 40; f++) await writeFile(join(dir, `f${f}`), `content ${d}/${f}\n`.repeat(f * 7));
    }
    await writeFile(join(tree, 'many', 'large.bin'), Buffer.alloc(3 * 1024 * 1024 + 5, 'large'));
    const reference = await hashStream(tarFromTree(tree));
    const record = await makeLayer(box.store, { dir: tree });
    expect(record.diffId).toBe(reference.digest);
    expect(record.uncompressedSize).toBe(reference.size);
    expect(sha256Of(gunzipSync(await readFile(box.store.blobPath(record.digest))))).toBe(reference.digest);
  });

  it('stores a gzip blob whose content is the tar named by the DiffID, and records it', async () => {
    const tree = join(box.dir, 'tree');
    await makeTree(tree);
    let progress = 0;
    const record = await makeLayer(box.store, { dir: tree }, { onProgress: (bytes) => (progress = bytes) });
    const blob = await readFile(box.store.blobPath(record.digest));
    expect(sha256Of(blob)).toBe(record.digest);
    expect(blob.length).toBe(record.size);
    const tar = gunzipSync(blob);
    expect(sha256Of(tar)).toBe(record.diffId);
    expect(tar.length).toBe(record.uncompressedSize);
    expect(progress).toBe(record.uncompressedSize);
    expect(record).toMatchObject({ chainId: record.diffId, mediaType: MediaType.OciLayerGzip, compression: 'gzip' });
    expect(record.parent).toBeUndefined();
    expect(await new LayerRecords(box.store.root).get(record.chainId)).toEqual(record);
    expect(await entryNames(tar)).toEqual(expect.arrayContaining(['bin/tool', 'bin/hosts-link', 'etc/hosts', 'etc/hosts.hard', 'etc/app/config.json', 'empty']));
    // GNU tar reads it as well.
    execFileSync('tar', ['-tzf', box.store.blobPath(record.digest)]);
  });

  it('stores an uncompressed layer under its DiffID', async () => {
    const tree = join(box.dir, 'tree');
    await makeTree(tree);
    let progress = 0;
    const record = await makeLayer(box.store, { dir: tree }, { compression: 'none', onProgress: (bytes) => (progress = bytes) });
    const reference = await hashStream(tarFromTree(tree));
    expect(record.diffId).toBe(reference.digest);
    expect(record.digest).toBe(record.diffId);
    expect(record.size).toBe(record.uncompressedSize);
    expect(record.uncompressedSize).toBe(reference.size);
    expect(progress).toBe(record.uncompressedSize);
    expect(record.mediaType).toBe(MediaType.OciLayer);
    expect(await hashFile(box.store.blobPath(record.digest))).toBe(record.diffId);
  });

  it('clamps mtimes with sourceDateEpoch, changing the layer only through the clamped times', async () => {
    const tree = join(box.dir, 'tree');
    await makeTree(tree);
    const plain = await makeLayer(box.store, { dir: tree });
    const clamped = await makeLayer(box.store, { dir: tree }, { sourceDateEpoch: 1_000_000 });
    expect(clamped.diffId).not.toBe(plain.diffId);
    const again = await makeLayer(box.store, { dir: tree }, { sourceDateEpoch: 1_000_000 });
    expect(again.digest).toBe(clamped.digest);
  });

  it('stacks on a parent: the ChainID comes from the parent ChainID and the DiffID', async () => {
    const base = join(box.dir, 'base');
    await makeTree(base);
    const lower = await makeLayer(box.store, { dir: base });
    const upper = join(box.dir, 'upper');
    await makeTree(upper);
    await writeFile(join(upper, 'extra'), 'more');
    const top = await makeLayer(box.store, { dir: upper }, { parentChainId: lower.chainId });
    expect(top.parent).toBe(lower.chainId);
    expect(top.chainId).toBe(chainIdOf(lower.chainId, top.diffId));
  });

  it('makes a layer from a changeset, whiteouts and opaque markers included', async () => {
    const header = { mode: 0o644, uid: 0, gid: 0, mtime: 1_600_000_000 };
    const record = await makeLayer(box.store, {
      changeset: {
        entries: [
          { header: { ...header, path: 'etc', type: 'directory', mode: 0o755, size: 0 } },
          { header: { ...header, path: 'etc/motd', type: 'file', size: 6 }, content: () => Buffer.from('hello\n') },
        ],
        deletions: ['etc/old.conf', 'usr/bin/gone'],
        opaqueDirs: ['var/cache'],
      },
    });
    const tar = gunzipSync(await readFile(box.store.blobPath(record.digest)));
    const names = await entryNames(tar);
    expect(names).toEqual(expect.arrayContaining(['etc', 'etc/motd', 'etc/.wh.old.conf', 'usr/bin/.wh.gone', 'var/cache/.wh..wh..opq']));
  });

  it('stores an existing tar byte for byte', async () => {
    const tree = join(box.dir, 'tree');
    await makeTree(tree);
    const tarPath = join(box.dir, 'layer.tar');
    execFileSync('tar', ['-C', tree, '-cf', tarPath, '.']);
    const record = await makeLayer(box.store, { tar: createReadStream(tarPath) }, { compression: 'none' });
    expect(record.diffId).toBe(await hashFile(tarPath));
    const gz = await makeLayer(box.store, { tar: createReadStream(tarPath) });
    expect(gz.diffId).toBe(record.diffId);
  });

  it('puts the new blob under the given lease', async () => {
    const tree = join(box.dir, 'tree');
    await makeTree(tree);
    const lease = await box.store.lease();
    try {
      const record = await makeLayer(box.store, { dir: tree }, { lease });
      expect(lease.digests.has(record.digest)).toBe(true);
    } finally {
      await lease.release();
    }
  });

  it('fails cleanly: nothing stored, no record, no temp file', async () => {
    const before = await readdir(box.store.blobsDir);
    await expect(makeLayer(box.store, { dir: join(box.dir, 'missing') })).rejects.toThrow(/ENOENT/);
    const broken = new Readable({
      read() {
        this.destroy(new Error('disk on fire'));
      },
    });
    await expect(makeLayer(box.store, { tar: broken })).rejects.toThrow('disk on fire');
    expect(await readdir(box.store.blobsDir)).toEqual(before);
    expect(await readdir(box.store.tempDir)).toEqual([]);
    expect(await new LayerRecords(box.store.root).list()).toEqual([]);
  });

  it('refuses sources and options it cannot honour', async () => {
    const tar = Readable.from([Buffer.alloc(1024)]);
    await expect(makeLayer(box.store, { tar }, { sourceDateEpoch: 5 })).rejects.toThrow(InvalidLayerSourceError);
    await expect(makeLayer(box.store, { dir: 'a', tar } as never)).rejects.toThrow(/exactly one of dir, changeset, tar/);
    await expect(makeLayer(box.store, { dir: box.dir }, { level: 42 })).rejects.toThrow(/level must be an integer/);
    await expect(makeLayer(box.store, { dir: box.dir }, { parentChainId: 'sha256:nope' as never })).rejects.toThrow(/invalid digest/);
  });
});

describe('recordForBlob', () => {
  it('records a stored gzip blob made by another tool, learning its DiffID', async () => {
    const tree = join(box.dir, 'tree');
    await makeTree(tree);
    const tar = execFileSync('tar', ['-C', tree, '-cf', '-', '.'], { maxBuffer: 64 << 20 });
    const gz = execFileSync('gzip', ['-9n'], { input: tar, maxBuffer: 64 << 20 });
    const blob = await box.store.putBytes(gz);
    const parent = sha256Of('some lower stack');
    const record = await recordForBlob(box.store, blob.digest, MediaType.DockerLayerGzip, parent);
    expect(record).toMatchObject({
      diffId: sha256Of(tar),
      digest: blob.digest,
      size: gz.length,
      uncompressedSize: tar.length,
      compression: 'gzip',
      mediaType: MediaType.DockerLayerGzip,
      parent,
      chainId: chainIdOf(parent, sha256Of(tar)),
    });
    // Idempotent: the existing record comes back as it is.
    expect(await recordForBlob(box.store, blob.digest, MediaType.DockerLayerGzip, parent)).toEqual(record);
    // The same blob under another parent reuses the known DiffID.
    const base = await recordForBlob(box.store, blob.digest, MediaType.DockerLayerGzip);
    expect(base.chainId).toBe(sha256Of(tar));
  });

  it('records an uncompressed blob with DiffID = digest', async () => {
    const tree = join(box.dir, 'tree');
    await makeTree(tree);
    const tar = execFileSync('tar', ['-C', tree, '-cf', '-', '.'], { maxBuffer: 64 << 20 });
    const blob = await box.store.putBytes(tar);
    const record = await recordForBlob(box.store, blob.digest, MediaType.DockerLayer);
    expect(record).toMatchObject({ diffId: blob.digest, digest: blob.digest, uncompressedSize: tar.length, compression: 'none' });
  });

  it('refuses a blob whose bytes contradict its media type, a non-layer type and a missing blob', async () => {
    const gz = execFileSync('gzip', ['-n'], { input: Buffer.alloc(10240) });
    const blob = await box.store.putBytes(gz);
    await expect(recordForBlob(box.store, blob.digest, MediaType.OciLayer)).rejects.toThrow(/declared .* \(none\) but its content is gzip/);
    await expect(recordForBlob(box.store, blob.digest, MediaType.OciConfig)).rejects.toThrow(/not a layer media type/);
    await expect(recordForBlob(box.store, sha256Of('absent'), MediaType.OciLayerGzip)).rejects.toThrow(/not found/);
  });

  it('agrees with makeLayer about the DiffID', async () => {
    const tree = join(box.dir, 'tree');
    await makeTree(tree);
    const made = await makeLayer(box.store, { dir: tree });
    const records = new LayerRecords(box.store.root);
    await records.delete(made.chainId);
    const rebuilt = await recordForBlob(box.store, made.digest, made.mediaType);
    expect(rebuilt).toMatchObject({ diffId: made.diffId, uncompressedSize: made.uncompressedSize, size: made.size });
    expect((await hashStream(box.store.createReadStream(made.digest))).size).toBe(made.size);
  });
});
