import { spawnSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { applyLayer, makeWhiteouts } from '../../src/tar/extract.js';
import { readTreeXattrs } from '../../src/tar/walk.js';
import { craftTar, streamOf, type CraftEntry } from '../../testdata/crafted/craft.js';
import { snapshotTree } from '../../testdata/crafted/tree.js';

const isRoot = process.geteuid?.() === 0;
const hasGetfattr = spawnSync('sh', ['-c', 'command -v getfattr && command -v setfattr'], { stdio: 'ignore' }).status === 0;
const hasPython = spawnSync('python3', ['-c', ''], { stdio: 'ignore' }).status === 0;

let work: string;
let root: string;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'strata-extract-ovl-'));
  root = join(work, 'root');
  await mkdir(root);
});

afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

const dir = (name: string, extra: Partial<CraftEntry> = {}): CraftEntry => ({ name, type: 'directory', ...extra });
const file = (name: string, content = name, extra: Partial<CraftEntry> = {}): CraftEntry => ({ name, content, ...extra });

async function unpack(entries: CraftEntry[], opts: Parameters<typeof applyLayer>[2] = {}) {
  return applyLayer(root, streamOf(await craftTar(entries)), { whiteouts: 'overlay', ...opts });
}

async function xattrsOf(rel: string): Promise<Record<string, string>> {
  const all = (await readTreeXattrs(root, { all: true })) ?? new Map<string, Record<string, Buffer>>();
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(all.get(rel) ?? {})) out[name] = value.toString('utf8');
  return out;
}

async function expectWhiteout(rel: string, uid = 0, gid = 0): Promise<void> {
  const stats = await lstat(join(root, rel));
  expect(stats.isCharacterDevice(), `${rel} is a character device`).toBe(true);
  expect(stats.rdev).toBe(0);
  expect(stats.mode & 0o7777).toBe(0);
  if (isRoot) expect([stats.uid, stats.gid]).toEqual([uid, gid]);
}

describe("applyLayer with whiteouts: 'overlay'", () => {
  it('keeps whiteouts as 0/0 character devices, creating their parents, and deletes nothing', async () => {
    const stats = await unpack([
      dir('etc', { mode: 0o750, mtime: 1_000_000 }),
      file('etc/.wh.passwd'),
      file('etc/hosts', 'localhost'),
      file('usr/lib/.wh.libold.so'),
      file('.wh.tmp'),
    ]);
    await expectWhiteout('etc/passwd');
    await expectWhiteout('usr/lib/libold.so');
    await expectWhiteout('tmp');
    const tree = await snapshotTree(root);
    expect(Object.keys(tree).sort()).toEqual(['etc', 'etc/hosts', 'etc/passwd', 'tmp', 'usr', 'usr/lib', 'usr/lib/libold.so']);
    // The directory's own attributes are applied after its whiteouts were made inside it.
    expect(tree.etc).toMatchObject({ type: 'directory', mode: 0o750, mtime: 1_000_000 });
    expect(tree.usr).toMatchObject({ type: 'directory', mode: 0o755 });
    expect(await readFile(join(root, 'etc/hosts'), 'utf8')).toBe('localhost');
    expect(stats).toMatchObject({ whiteouts: 3, entries: 2 });
  });

  it.skipIf(!isRoot)('gives a whiteout device the owner of the whiteout entry, as overlay2 does (needs root to chown)', async () => {
    await unpack([dir('home'), file('home/.wh.old', '', { uid: 1000, gid: 1001 })]);
    await expectWhiteout('home/old', 1000, 1001);
  });

  it('makes whiteouts even in a directory that ends up read-only', async () => {
    await unpack([dir('ro', { mode: 0o555 }), file('ro/.wh.gone'), file('ro/kept')]);
    await expectWhiteout('ro/gone');
    expect((await lstat(join(root, 'ro'))).mode & 0o7777).toBe(0o555);
  });

  it.skipIf(!isRoot || !hasGetfattr)('marks an opaque directory with trusted.overlay.opaque=y and keeps the layer\'s own children (needs root for trusted.*)', async () => {
    const stats = await unpack([dir('app', { mode: 0o700 }), file('app/.wh..wh..opq'), file('app/new', 'fresh'), dir('app/sub'), file('app/sub/x')]);
    expect(await xattrsOf('app')).toEqual({ 'trusted.overlay.opaque': 'y' });
    expect(await xattrsOf('app/sub')).toEqual({});
    expect(await readFile(join(root, 'app/new'), 'utf8')).toBe('fresh');
    expect((await lstat(join(root, 'app'))).mode & 0o7777).toBe(0o700);
    expect(stats.whiteouts).toBe(1);
  });

  it.skipIf(!isRoot || !hasGetfattr)('an opaque marker after the directory\'s children, or for a directory never named, still marks it (needs root)', async () => {
    await unpack([dir('a'), file('a/f'), file('a/.wh..wh..opq'), file('b/c/.wh..wh..opq')]);
    expect(await xattrsOf('a')).toEqual({ 'trusted.overlay.opaque': 'y' });
    expect(await xattrsOf('b/c')).toEqual({ 'trusted.overlay.opaque': 'y' });
    expect((await snapshotTree(root))['b/c']).toMatchObject({ type: 'directory', mode: 0o755 });
  });

  it.skipIf(!isRoot || !hasGetfattr)('an opaque marker at the layer root marks the target directory itself (needs root)', async () => {
    await unpack([file('.wh..wh..opq'), file('only')]);
    expect(await xattrsOf('')).toEqual({ 'trusted.overlay.opaque': 'y' });
  });

  it.skipIf(!hasGetfattr)("overlayXattrs: 'user' marks opaque directories with user.overlay.opaque, for userxattr mounts", async () => {
    await unpack([dir('d'), file('d/.wh..wh..opq')], { overlayXattrs: 'user' });
    expect(await xattrsOf('d')).toEqual({ 'user.overlay.opaque': 'y' });
  });

  it.skipIf(!isRoot || !hasGetfattr)('drops overlayfs xattrs carried by the layer itself and keeps the others (needs root for trusted.*)', async () => {
    const stats = await unpack([
      dir('d', { pax: { 'SCHILY.xattr.trusted.overlay.redirect': '/etc', 'SCHILY.xattr.user.note': 'kept' } }),
      file('f', 'x', { pax: { 'SCHILY.xattr.trusted.overlay.opaque': 'y', 'SCHILY.xattr.user.overlay.metacopy': '' } }),
    ]);
    expect(await xattrsOf('d')).toEqual({ 'user.note': 'kept' });
    expect(await xattrsOf('f')).toEqual({});
    expect(stats.skippedXattrs).toBe(3);
  });

  it('refuses a target directory that is not empty', async () => {
    await writeFile(join(root, 'leftover'), '');
    await expect(unpack([file('a')])).rejects.toThrow(/overlay format .*not empty/);
  });

  it('still enforces the layer rules: a whiteout of a path the same layer adds is refused', async () => {
    await expect(unpack([file('.wh.a'), file('a')])).rejects.toThrow(/whites out this path/);
  });

  it("'apply' (the default) still deletes lower paths", async () => {
    await writeFile(join(root, 'a'), 'lower');
    await applyLayer(root, streamOf(await craftTar([file('.wh.a')])));
    expect(await snapshotTree(root)).toEqual({});
  });
});

describe.each([
  ['python3', !hasPython],
  ['mknod', false],
] as const)('makeWhiteouts with %s', (tool, unavailable) => {
  it.skipIf(unavailable)('creates 0/0 devices with mode 0, whatever the names hold (skipped: tool not installed)', async () => {
    await mkdir(join(root, 'sub'));
    await makeWhiteouts([join(root, 'one'), join(root, 'sub', 'two'), join(root, 'sp ace\nnewline')], tool);
    await expectWhiteout('one');
    await expectWhiteout('sub/two');
    await expectWhiteout('sp ace\nnewline');
  });

  it.skipIf(unavailable)('names the path that could not be made (skipped: tool not installed)', async () => {
    await writeFile(join(root, 'taken'), '');
    await expect(makeWhiteouts([join(root, 'taken')], tool)).rejects.toThrow(/cannot create overlay whiteouts: .*taken.*exists/i);
  });
});
