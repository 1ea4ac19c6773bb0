/**
 * The layer probe `load` runs on every blob: what it classifies as a layer,
 * the diffID it computes, and that its verdict on a layer's entries is
 * extraction's verdict (it must refuse exactly what {@link applyLayer}
 * refuses, or a crafted layer could pass one and not the other).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { LayerProbe, type ProbeResult } from '../../src/archive/probe.js';
import { applyLayer } from '../../src/tar/extract.js';
import { paxRecords, rawTar, sha256, type RawEntry } from './helpers.js';

async function probe(bytes: Buffer, chunkSize = 700): Promise<ProbeResult> {
  const layerProbe = new LayerProbe('test-blob');
  for (let at = 0; at < bytes.length; at += chunkSize) {
    if (!layerProbe.write(bytes.subarray(at, at + chunkSize))) await new Promise((resolve) => layerProbe.once('drain', resolve));
  }
  layerProbe.end();
  return layerProbe.result();
}

async function extractionRefuses(tar: Buffer): Promise<Error | undefined> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-probe-parity-'));
  try {
    await applyLayer(dir, Readable.from([tar]), { devices: 'skip', xattrs: 'skip' });
    return undefined;
  } catch (err) {
    return err as Error;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('LayerProbe', () => {
  it('classifies blobs: plain, gzip and V7 tars are layers; JSON and random bytes are not', async () => {
    const tar = rawTar([{ name: 'a', content: 'a' }]);
    expect(await probe(tar)).toEqual({ kind: 'layer', compression: 'none', diffId: sha256(tar), uncompressedSize: tar.length });
    expect(await probe(gzipSync(tar))).toEqual({ kind: 'layer', compression: 'gzip', diffId: sha256(tar), uncompressedSize: tar.length });
    const v7 = rawTar([{ name: 'a', content: 'a' }], { format: 'v7' });
    expect(await probe(v7)).toMatchObject({ kind: 'layer', diffId: sha256(v7) });
    expect(await probe(Buffer.alloc(1024))).toMatchObject({ kind: 'layer', diffId: sha256(Buffer.alloc(1024)) });
    expect(await probe(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }).padEnd(600)))).toEqual({ kind: 'other', compression: 'none' });
    expect(await probe(Buffer.from('tiny'))).toEqual({ kind: 'other', compression: 'none' });
  });

  it('gives the same answer however the bytes are chunked', async () => {
    const tar = rawTar(Array.from({ length: 30 }, (_, i) => ({ name: `f${i}`, content: 'x'.repeat(i * 37) })));
    const gz = gzipSync(tar);
    for (const size of [1, 511, 512, 513, 4096, gz.length]) expect(await probe(gz, size)).toMatchObject({ diffId: sha256(tar), uncompressedSize: tar.length });
  });

  it('reports a gzip stream that does not decompress, and a truncated one', async () => {
    const gz = gzipSync(rawTar([{ name: 'a', content: 'x'.repeat(10_000) }]));
    const broken = Buffer.from(gz);
    broken[20]! ^= 0xff;
    expect((await probe(broken)).lintError?.message).toMatch(/test-blob: (cannot decompress gzip layer|malformed layer tar)/);
    expect((await probe(gz.subarray(0, gz.length - 10))).lintError?.message).toMatch(/test-blob: (cannot decompress gzip layer|malformed layer tar)/);
  });

  const cases: { name: string; entries: RawEntry[]; v7?: boolean }[] = [
    { name: 'plain files and dirs', entries: [{ name: 'd/', type: 'directory' }, { name: 'd/f', content: 'x' }, { name: 'l', type: 'symlink', linkname: '/etc/passwd' }] },
    { name: 'V7 headers', entries: [{ name: 'd/', type: 'directory' }, { name: 'd/f', content: 'x' }], v7: true },
    { name: 'a directory spelt as a file with a trailing slash, then as a directory', entries: [{ name: 'd/', type: 'file' }, { name: 'd/', type: 'directory' }, { name: 'd/f', content: 'x' }] },
    { name: 'a hardlink to an earlier file', entries: [{ name: 'f', content: 'x' }, { name: 'h', type: 'link', linkname: 'f' }] },
    { name: 'whiteouts and an opaque dir', entries: [{ name: '.wh.gone', content: '' }, { name: 'd/', type: 'directory' }, { name: 'd/.wh..wh..opq', content: '' }] },
    { name: '.. in a name', entries: [{ name: '../x', content: 'x' }] },
    { name: '.. hidden in a PAX path', entries: [{ name: 'PaxHeaders/x', type: 'pax', content: paxRecords({ path: 'a/../../x' }) }, { name: 'innocent', content: 'x' }] },
    { name: 'an absolute PAX linkpath for a hardlink', entries: [{ name: 'PaxHeaders/h', type: 'pax', content: paxRecords({ linkpath: '/etc/passwd' }) }, { name: 'h', type: 'link', linkname: 'f' }] },
    { name: 'a GNU sparse file (PAX 1.0 markers)', entries: [{ name: 'PaxHeaders/s', type: 'pax', content: paxRecords({ 'GNU.sparse.major': '1', 'GNU.sparse.minor': '0', 'GNU.sparse.name': 'sparse' }) }, { name: 'GNUSparseFile.0/sparse', content: '' }] },
    { name: 'a write through a symlink', entries: [{ name: 'l', type: 'symlink', linkname: '/tmp' }, { name: 'l/x', content: 'x' }] },
    { name: 'a duplicate file', entries: [{ name: 'f', content: 'a' }, { name: 'f', content: 'b' }] },
    { name: 'a whiteout and a write of the same path', entries: [{ name: '.wh.f', content: '' }, { name: 'f', content: 'x' }] },
    { name: 'a file replacing a directory written into', entries: [{ name: 'd/f', content: 'x' }, { name: 'd', content: 'x' }] },
    { name: 'an empty symlink target', entries: [{ name: 'l', type: 'symlink', linkname: '' }] },
  ];

  for (const c of cases) {
    it(`agrees with extraction on ${c.name}`, async () => {
      const tar = rawTar(c.entries, c.v7 ? { format: 'v7' } : {});
      const found = await probe(tar);
      const refused = await extractionRefuses(tar);
      expect(found.kind).toBe('layer');
      expect(found.lintError === undefined, `probe: ${found.lintError?.message ?? 'accepted'}; extraction: ${refused?.message ?? 'accepted'}`).toBe(refused === undefined);
    });
  }
});
