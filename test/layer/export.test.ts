import { execFileSync } from 'node:child_process';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256Of } from '../../src/content/digest.js';
import { exportLayer } from '../../src/layer/export.js';
import { makeLayer } from '../../src/layer/make.js';
import { LayerNotFoundError } from '../../src/layer/record.js';
import { hashStream, makeTree, sandbox, type Sandbox } from './helpers.js';

let box: Sandbox;
let tree: string;
beforeEach(async () => {
  box = await sandbox();
  tree = join(box.dir, 'tree');
  await makeTree(tree);
});
afterEach(async () => {
  await box.cleanup();
});

async function exported(reference: string, compression: 'none' | 'gzip'): Promise<Buffer> {
  return Buffer.concat((await hashStream(exportLayer(box.store, reference, { compression }))).bytes);
}

describe('exportLayer', () => {
  it('streams a gzip layer verbatim as gzip and as its DiffID tar when uncompressed', async () => {
    const record = await makeLayer(box.store, { dir: tree });
    const stored = await readFile(box.store.blobPath(record.digest));
    expect((await exported(record.digest, 'gzip')).equals(stored)).toBe(true);
    const tar = await exported(record.digest, 'none');
    expect(sha256Of(tar)).toBe(record.diffId);
  });

  it('compresses an uncompressed layer on the fly, reproducing makeLayer’s gzip bytes', async () => {
    const plain = await makeLayer(box.store, { dir: tree }, { compression: 'none' });
    const gz = await exported(plain.digest, 'gzip');
    expect(sha256Of(gunzipSync(gz))).toBe(plain.diffId);
    const direct = await makeLayer(box.store, { dir: tree }, { compression: 'gzip' });
    expect(sha256Of(gz)).toBe(direct.digest);
    expect((await exported(plain.digest, 'none')).equals(await readFile(box.store.blobPath(plain.digest)))).toBe(true);
  });

  it('accepts a DiffID or a ChainID as well as a blob digest', async () => {
    const base = await makeLayer(box.store, { dir: tree });
    await writeFile(join(tree, 'extra'), 'on top');
    const top = await makeLayer(box.store, { dir: tree }, { parentChainId: base.chainId });
    expect(top.chainId).not.toBe(top.diffId);
    const byBlob = await exported(top.digest, 'none');
    expect((await exported(top.diffId, 'none')).equals(byBlob)).toBe(true);
    expect((await exported(top.chainId, 'none')).equals(byBlob)).toBe(true);
    expect((await exported(top.chainId, 'gzip')).equals(await readFile(box.store.blobPath(top.digest)))).toBe(true);
  });

  it('fails the stream for an unknown layer and throws at once for a malformed reference', async () => {
    await expect(exported(sha256Of('no such layer'), 'none')).rejects.toThrow(LayerNotFoundError);
    expect(() => exportLayer(box.store, 'sha256:../../etc', { compression: 'none' })).toThrow(/invalid digest/);
  });

  it('exports an unrecorded tar blob, and refuses an unrecorded blob that is not a layer', async () => {
    const tar = execFileSync('tar', ['-C', tree, '-cf', '-', '.'], { maxBuffer: 64 << 20 });
    const blob = await box.store.putBytes(tar);
    expect((await exported(blob.digest, 'none')).equals(tar)).toBe(true);
    expect(gunzipSync(await exported(blob.digest, 'gzip')).equals(tar)).toBe(true);
    const empty = await box.store.putBytes(Buffer.alloc(1024));
    expect((await exported(empty.digest, 'none')).length).toBe(1024);
    const config = await box.store.putJson({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } });
    await expect(exported(config.digest, 'gzip')).rejects.toThrow(/neither a recorded layer nor a tar archive/);
  });

  it('detects a corrupted stored blob rather than exporting it silently', async () => {
    const record = await makeLayer(box.store, { dir: tree });
    const path = box.store.blobPath(record.digest);
    const bytes = await readFile(path);
    // Flip a bit in the deflate data; the blob keeps its size.
    bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
    await chmod(path, 0o644);
    await writeFile(path, bytes);
    await expect(exported(record.digest, 'gzip')).rejects.toThrow(/corrupt/);
    await expect(exported(record.digest, 'none')).rejects.toThrow();
  });
});
