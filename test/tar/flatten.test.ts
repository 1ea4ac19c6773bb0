import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LayerSecurityError } from '../../src/tar/extract.js';
import { flattenLayers } from '../../src/tar/flatten.js';
import { readTar } from '../../src/tar/read.js';
import { craftTar, streamOf, type CraftEntry } from '../../testdata/crafted/craft.js';

let scratchDir: string;

beforeEach(async () => {
  scratchDir = await mkdtemp(join(tmpdir(), 'strata-flatten-'));
});

afterEach(async () => {
  await rm(scratchDir, { recursive: true, force: true });
});

interface Listed {
  type: string;
  content?: string;
  linkname?: string;
  mode: number;
  uid: number;
  mtime: number;
}

async function list(tar: Readable): Promise<Record<string, Listed>> {
  const out: Record<string, Listed> = {};
  for await (const { header, body } of readTar(tar)) {
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    const entry: Listed = { type: header.type, mode: header.mode, uid: header.uid, mtime: header.mtime };
    if (header.type === 'file') entry.content = Buffer.concat(chunks).toString('utf8');
    if (header.linkname !== undefined) entry.linkname = header.linkname;
    out[header.path] = entry;
  }
  return out;
}

async function layers(...specs: CraftEntry[][]) {
  const tars = await Promise.all(specs.map((entries) => craftTar(entries)));
  return tars.map((bytes) => () => streamOf(bytes));
}

const base: CraftEntry[] = [
  { name: 'etc/', type: 'directory' },
  { name: 'etc/gone', content: 'old' },
  { name: 'etc/changed', content: 'v1' },
  { name: 'usr/bin/tool', content: '#!/bin/sh', mode: 0o4755, uid: 7, mtime: 1_500_000_000 },
  { name: 'usr/bin/alias', type: 'link', linkname: 'usr/bin/tool' },
  { name: 'cache/', type: 'directory' },
  { name: 'cache/stale', content: 'stale' },
];
const top: CraftEntry[] = [
  { name: 'etc/.wh.gone' },
  { name: 'etc/changed', content: 'v2' },
  { name: 'cache/fresh', content: 'fresh' },
  { name: 'cache/.wh..wh..opq' },
  { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
];

describe('flattenLayers', () => {
  it('produces the merged tree with no whiteouts or opaque markers, and removes its scratch tree', async () => {
    const entries = await list(flattenLayers(await layers(base, top), { scratchDir }));
    expect(Object.keys(entries).sort()).toEqual(['cache', 'cache/fresh', 'etc', 'etc/changed', 'lib', 'usr', 'usr/bin', 'usr/bin/alias', 'usr/bin/tool']);
    expect(entries['etc/changed']).toMatchObject({ type: 'file', content: 'v2' });
    expect(entries['cache/fresh']).toMatchObject({ content: 'fresh' });
    expect(entries['lib']).toMatchObject({ type: 'symlink', linkname: 'usr/lib' });
    // One of the two names carries the content (the first in tree order), the other links to it.
    expect(entries['usr/bin/alias']).toMatchObject({ type: 'file', mode: 0o4755, mtime: 1_500_000_000, content: '#!/bin/sh' });
    expect(entries['usr/bin/tool']).toMatchObject({ type: 'hardlink', linkname: 'usr/bin/alias' });
    expect(await readdir(scratchDir)).toEqual([]);
  });

  it.skipIf(process.geteuid?.() !== 0)('keeps owners (needs root)', async () => {
    const entries = await list(flattenLayers(await layers(base), { scratchDir }));
    expect(entries['usr/bin/tool']!.uid).toBe(7);
  });

  it('clamps mtimes to sourceDateEpoch', async () => {
    const entries = await list(flattenLayers(await layers(base, top), { scratchDir, sourceDateEpoch: 1_000_000 }));
    for (const entry of Object.values(entries)) expect(entry.mtime).toBeLessThanOrEqual(1_000_000);
  });

  it('accepts layer factories that return promises', async () => {
    const bytes = await craftTar([{ name: 'x', content: 'y' }]);
    const entries = await list(flattenLayers([async () => streamOf(bytes)], { scratchDir }));
    expect(entries['x']).toMatchObject({ content: 'y' });
  });

  it('fails the stream for an unsafe layer and still cleans up', async () => {
    const bad = await layers(base, [{ name: '../escape', content: 'x' }]);
    await expect(list(flattenLayers(bad, { scratchDir }))).rejects.toBeInstanceOf(LayerSecurityError);
    expect(await readdir(scratchDir)).toEqual([]);
  });

  it('removes the scratch tree when the consumer stops early', async () => {
    const big = await layers([{ name: 'big', content: Buffer.alloc(4 * 1024 * 1024, 1) }]);
    const output = flattenLayers(big, { scratchDir });
    await new Promise<void>((resolve, reject) => {
      output.once('data', () => {
        output.once('close', resolve);
        output.destroy();
      });
      output.once('error', reject);
    });
    expect(await readdir(scratchDir)).toEqual([]);
  });

  it('removes the scratch tree when destroyed before it started streaming', async () => {
    const output = flattenLayers(await layers(base), { scratchDir });
    output.resume();
    await new Promise<void>((resolve) => {
      output.once('close', resolve);
      output.destroy();
    });
    expect(await readdir(scratchDir)).toEqual([]);
  });
});
