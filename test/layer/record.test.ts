import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidDigestError, sha256Of, type Digest } from '../../src/content/digest.js';
import { MediaType } from '../../src/image/mediatypes.js';
import { chainIdOf } from '../../src/layer/chain.js';
import { InvalidLayerRecordError, LayerRecords, type LayerRecord } from '../../src/layer/record.js';

const diffA = sha256Of('tar a');
const diffB = sha256Of('tar b');
const blobA = sha256Of('gzip a');
const blobB = sha256Of('gzip b');

function gzipRecord(diffId: Digest, digest: Digest, parent?: Digest): LayerRecord {
  return {
    chainId: chainIdOf(parent, diffId),
    ...(parent ? { parent } : {}),
    diffId,
    digest,
    size: 10,
    mediaType: MediaType.OciLayerGzip,
    compression: 'gzip',
    uncompressedSize: 2048,
    createdAt: '2024-01-02T03:04:05.000Z',
  };
}

let root: string;
let records: LayerRecords;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'strata-records-'));
  records = new LayerRecords(root);
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('LayerRecords', () => {
  it('stores a record under strata/layers/<chainId hex>.json and reads it back', async () => {
    const base = gzipRecord(diffA, blobA);
    const top = gzipRecord(diffB, blobB, base.chainId);
    await records.put(base);
    await records.put(top);
    expect(await records.get(base.chainId)).toEqual(base);
    expect(await records.get(top.chainId)).toEqual(top);
    const names = await readdir(join(root, 'strata', 'layers'));
    expect(names.sort()).toEqual([base.chainId, top.chainId].map((d) => `${d.slice(7)}.json`).sort());
  });

  it('answers undefined for an unknown ChainID and refuses malformed ones before touching the disk', async () => {
    expect(await records.get(sha256Of('nothing'))).toBeUndefined();
    await expect(records.get('sha256:../../../etc/passwd')).rejects.toThrow(InvalidDigestError);
    expect(() => records.pathFor('sha256:../x')).toThrow(InvalidDigestError);
  });

  it('refuses inconsistent or malformed records and writes nothing for them', async () => {
    const good = gzipRecord(diffB, blobB, chainIdOf(undefined, diffA));
    const bad: Array<[Partial<LayerRecord> & Record<string, unknown>, RegExp]> = [
      [{ ...good, chainId: diffB }, /is not the ChainID of parent/],
      [{ ...good, diffId: 'sha256:1234' as Digest }, /diffId .* is not a sha256 digest/],
      [{ ...good, parent: 'md5:abc' as Digest }, /parent .* is not a sha256 digest/],
      [{ ...good, size: -1 }, /size must be a non-negative integer/],
      [{ ...good, uncompressedSize: 1.5 }, /uncompressedSize must be a non-negative integer/],
      [{ ...good, mediaType: MediaType.OciLayer }, /says none, compression says gzip/],
      [{ ...good, mediaType: 'text/plain' }, /not a layer media type/],
      [{ ...good, compression: 'lz4' as never }, /compression "lz4" is not one of/],
      [{ ...good, createdAt: 'yesterday' }, /createdAt/],
      [{ ...good, extra: 1 }, /unknown field "extra"/],
      [{ ...good, compression: 'none', mediaType: MediaType.OciLayer }, /uncompressed blob must have digest = diffId/],
    ];
    for (const [record, message] of bad) {
      await expect(records.put(record as LayerRecord)).rejects.toThrow(message);
    }
    await expect(records.put(null as unknown as LayerRecord)).rejects.toThrow(InvalidLayerRecordError);
    expect(await records.list()).toEqual([]);
  });

  it('accepts Docker layer media types and uncompressed layers', async () => {
    const docker = { ...gzipRecord(diffA, blobA), mediaType: MediaType.DockerLayerGzip };
    await records.put(docker);
    const plain: LayerRecord = { ...gzipRecord(diffB, diffB), compression: 'none', mediaType: MediaType.DockerLayer, size: 2048 };
    await records.put(plain);
    expect(await records.list()).toHaveLength(2);
  });

  it('replaces atomically and leaves no temp files behind', async () => {
    const first = gzipRecord(diffA, blobA);
    await records.put(first);
    const second = { ...first, digest: blobB, size: 99 };
    await records.put(second);
    expect(await records.get(first.chainId)).toEqual(second);
    expect(await readdir(records.dir)).toEqual([`${first.chainId.slice(7)}.json`]);
  });

  it('lists records sorted by ChainID, skipping temp files and foreign names', async () => {
    const all = [gzipRecord(diffA, blobA), gzipRecord(diffB, blobB), gzipRecord(diffB, blobB, diffA)];
    for (const r of all) await records.put(r);
    await writeFile(join(records.dir, '.tmp-half-written'), '{');
    await writeFile(join(records.dir, 'README'), 'not a record');
    const listed = await records.list();
    expect(listed.map((r) => r.chainId)).toEqual(all.map((r) => r.chainId).sort());
  });

  it('reports a damaged record file with its path rather than returning garbage', async () => {
    const record = gzipRecord(diffA, blobA);
    await records.put(record);
    const path = records.pathFor(record.chainId);
    await writeFile(path, '{"chainId": ');
    await expect(records.get(record.chainId)).rejects.toThrow(/is not JSON/);
    await writeFile(path, JSON.stringify({ ...record, size: 'big' }));
    await expect(records.get(record.chainId)).rejects.toThrow(InvalidLayerRecordError);
    // A valid record filed under the wrong name is damage too.
    const other = gzipRecord(diffB, blobB);
    await writeFile(path, JSON.stringify(other));
    await expect(records.get(record.chainId)).rejects.toThrow(/holds ChainID/);
    await expect(records.list()).rejects.toThrow(/does not match its file name/);
  });

  it('deletes records', async () => {
    const record = gzipRecord(diffA, blobA);
    await records.put(record);
    expect(await records.delete(record.chainId)).toBe(true);
    expect(await records.delete(record.chainId)).toBe(false);
    expect(await records.get(record.chainId)).toBeUndefined();
  });

  it('finds records by DiffID (optionally by compression) and by blob', async () => {
    const gz = gzipRecord(diffA, blobA);
    const onTop = gzipRecord(diffB, blobB, gz.chainId);
    await records.put(gz);
    await records.put(onTop);
    expect(await records.findByDiffId(diffB)).toEqual(onTop);
    expect(await records.findByDiffId(diffA, 'gzip')).toEqual(gz);
    expect(await records.findByDiffId(diffA, 'none')).toBeUndefined();
    expect(await records.findByBlob(blobB)).toEqual(onTop);
    expect(await records.findByBlob(sha256Of('x'))).toBeUndefined();
    await expect(records.findByDiffId('nope')).rejects.toThrow(/not a sha256 digest/);
  });

  it('has nothing to list before the first record', async () => {
    expect(await records.list()).toEqual([]);
    await mkdir(records.dir, { recursive: true });
    expect(await records.list()).toEqual([]);
  });
});
