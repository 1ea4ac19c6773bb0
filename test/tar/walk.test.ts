import { createServer } from 'node:net';
import { link, mkdir, symlink, writeFile, chmod, utimes, lutimes } from 'node:fs/promises';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EntryHeader } from '../../src/tar/entry.js';
import { readTreeXattrs, statsToHeader, walkTree, type WalkOptions } from '../../src/tar/walk.js';
import { hasCommand, isRoot, run, tempDir } from './tar-helpers.js';
import { countLoopTurns } from '../helpers/loop-turns.js';

const canXattr = hasCommand('getfattr') && hasCommand('setfattr');

async function walk(root: string, opts?: WalkOptions): Promise<EntryHeader[]> {
  const out: EntryHeader[] = [];
  for await (const { header } of walkTree(root, opts)) out.push(header);
  return out;
}

describe('walkTree', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ path: root, cleanup } = await tempDir('strata-walk-'));
  });
  afterEach(async () => {
    await cleanup();
  });

  it('walks depth-first, parents first, siblings in byte order, whatever the creation order', async () => {
    for (const name of ['zeta', 'B', 'a', 'a-b', 'é', 'a.c']) await mkdir(join(root, name));
    await mkdir(join(root, 'a', 'sub'));
    await writeFile(join(root, 'a', 'sub', 'file'), 'x');
    await writeFile(join(root, 'a', 'z'), 'x');
    await writeFile(join(root, 'a', 'Y'), 'x');
    expect((await walk(root)).map((h) => h.path)).toEqual(['B', 'a', 'a/Y', 'a/sub', 'a/sub/file', 'a/z', 'a-b', 'a.c', 'zeta', 'é']);
  });

  it('describes each type with lstat, never following symlinks', async () => {
    await mkdir(join(root, 'dir'), { mode: 0o750 });
    await writeFile(join(root, 'dir', 'file'), 'hello');
    await chmod(join(root, 'dir', 'file'), 0o4755);
    await chmod(join(root, 'dir'), 0o1750);
    await symlink('file', join(root, 'dir', 'link'));
    await symlink('/nowhere/at/all', join(root, 'dangling'));
    await utimes(join(root, 'dir', 'file'), 1_600_000_000, 1_600_000_000.25);
    run('mkfifo', [join(root, 'pipe')]);

    const headers = await walk(root);
    const byPath = Object.fromEntries(headers.map((h) => [h.path, h]));
    expect(Object.keys(byPath)).toEqual(['dangling', 'dir', 'dir/file', 'dir/link', 'pipe']);
    expect(byPath['dir']).toMatchObject({ type: 'directory', mode: 0o1750, size: 0 });
    expect(byPath['dir/file']).toMatchObject({ type: 'file', mode: 0o4755, size: 5, mtime: 1_600_000_000.25 });
    expect(byPath['dir/link']).toMatchObject({ type: 'symlink', linkname: 'file', size: 0 });
    expect(byPath['dangling']).toMatchObject({ type: 'symlink', linkname: '/nowhere/at/all' });
    expect(byPath['pipe']).toMatchObject({ type: 'fifo', size: 0 });
    expect(byPath['dir/file']!.uid).toBe(process.getuid!());
    expect(byPath['dir/file']!.uname).toBeUndefined();
  });

  it('turns later links to an already-seen inode into hardlinks to the first path', async () => {
    await mkdir(join(root, 'b'));
    await writeFile(join(root, 'b', 'original'), 'data');
    await link(join(root, 'b', 'original'), join(root, 'a-link'));
    await link(join(root, 'b', 'original'), join(root, 'c-link'));
    const headers = await walk(root);
    expect(headers.map((h) => [h.path, h.type, h.linkname, h.size])).toEqual([
      ['a-link', 'file', undefined, 4],
      ['b', 'directory', undefined, 0],
      ['b/original', 'hardlink', 'a-link', 0],
      ['c-link', 'hardlink', 'a-link', 0],
    ]);
  });

  it('skips sockets, as Docker does', async () => {
    await writeFile(join(root, 'file'), '');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(join(root, 'sock'), resolve));
    try {
      expect((await walk(root)).map((h) => h.path)).toEqual(['file']);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('prunes a filtered-out directory with its whole subtree', async () => {
    await mkdir(join(root, 'keep', 'deep'), { recursive: true });
    await mkdir(join(root, 'skip', 'deep'), { recursive: true });
    await writeFile(join(root, 'skip', 'deep', 'f'), '');
    await writeFile(join(root, 'keep', 'deep', 'f'), '');
    await writeFile(join(root, 'keep', 'x.log'), '');
    const seen: Array<[string, boolean]> = [];
    const headers = await walk(root, {
      filter: (rel, isDir) => {
        seen.push([rel, isDir]);
        return rel !== 'skip' && !rel.endsWith('.log');
      },
    });
    expect(headers.map((h) => h.path)).toEqual(['keep', 'keep/deep', 'keep/deep/f']);
    expect(seen).toContainEqual(['skip', true]);
    expect(seen.some(([rel]) => rel.startsWith('skip/'))).toBe(false);
  });

  it('refuses a root that is not a directory', async () => {
    await writeFile(join(root, 'file'), '');
    await expect(walk(join(root, 'file'))).rejects.toThrow(/is not a directory/);
  });

  it('refuses file names that are not valid UTF-8, naming them', async () => {
    writeFileSync(Buffer.concat([Buffer.from(`${root}/bad-`), Buffer.from([0xff, 0xfe])]), '');
    await expect(walk(root)).rejects.toThrow(/not valid UTF-8.*bad-/);
  });

  it('lets the event loop turn during a long walk', async () => {
    for (let d = 0; d < 5; d++) {
      await mkdir(join(root, `d${d}`));
      for (let f = 0; f < 200; f++) writeFileSync(join(root, `d${d}`, `f${f}`), '');
    }
    const turns = countLoopTurns();
    // A slow filter stands in for a slow file system: the walk takes 50 ms or more.
    const slowFilter = (): boolean => {
      const until = performance.now() + 0.05;
      while (performance.now() < until);
      return true;
    };
    let seen = 0;
    const started = performance.now();
    // The loop body never waits on I/O, so any turn of the event loop is the walker's doing.
    for await (const entry of walkTree(root, { filter: slowFilter })) if (entry.header.path) seen++;
    const elapsed = performance.now() - started;
    const turnsWhileWalking = turns.count;
    turns.stop();
    expect(seen).toBe(5 * 201);
    // Slices last about a millisecond; a generous bound keeps a loaded machine from failing this.
    expect(turnsWhileWalking).toBeGreaterThanOrEqual(Math.floor(elapsed / 25));
    expect(turnsWhileWalking).toBeGreaterThan(0);
  });

  it('handles a few thousand entries in order', async () => {
    for (let d = 0; d < 30; d++) {
      const dir = join(root, `d${d}`);
      await mkdir(dir);
      await Promise.all(Array.from({ length: 100 }, (_, f) => writeFile(join(dir, `f${f}`), '')));
    }
    const paths = (await walk(root)).map((h) => h.path);
    expect(paths).toHaveLength(30 * 101);
    const sortedCopy = [...paths].sort((a, b) => {
      const [ad, af = ''] = a.split('/');
      const [bd, bf = ''] = b.split('/');
      return ad! < bd! ? -1 : ad! > bd! ? 1 : af < bf ? -1 : af > bf ? 1 : 0;
    });
    expect(paths).toEqual(sortedCopy);
  });

  it.skipIf(!isRoot)('reads device numbers of char and block devices (needs root for mknod)', async () => {
    run('mknod', [join(root, 'null'), 'c', '1', '3']);
    run('mknod', [join(root, 'wide'), 'c', '4095', '1048575']);
    run('mknod', [join(root, 'blk'), 'b', '7', '300000']);
    const byPath = Object.fromEntries((await walk(root)).map((h) => [h.path, h]));
    expect(byPath['null']).toMatchObject({ type: 'char', devmajor: 1, devminor: 3, size: 0 });
    expect(byPath['wide']).toMatchObject({ type: 'char', devmajor: 4095, devminor: 1048575 });
    expect(byPath['blk']).toMatchObject({ type: 'block', devmajor: 7, devminor: 300000 });
  });

  describe.skipIf(!canXattr)('xattrs (need getfattr/setfattr from the attr package)', () => {
    it('records user and security xattrs with exact binary values, only when asked', async () => {
      await writeFile(join(root, 'odd name\tand\nnewline'), '');
      await writeFile(join(root, 'plain'), '');
      await writeFile(join(root, 'none'), '');
      run('setfattr', ['-n', 'user.bin', '-v', '0x00ff0a5c3d80', join(root, 'odd name\tand\nnewline')]);
      run('setfattr', ['-n', 'user.with=equals', '-v', 'v', join(root, 'plain')]);
      run('setfattr', ['-n', 'user.empty', join(root, 'plain')]);

      const withXattrs = Object.fromEntries((await walk(root, { xattrs: true })).map((h) => [h.path, h.xattrs]));
      expect(withXattrs['odd name\tand\nnewline']).toEqual({ 'user.bin': Buffer.from('00ff0a5c3d80', 'hex') });
      expect(withXattrs['plain']).toEqual({ 'user.with=equals': Buffer.from('v'), 'user.empty': Buffer.alloc(0) });
      expect(withXattrs['none']).toBeUndefined();
      expect((await walk(root)).every((h) => h.xattrs === undefined)).toBe(true);
    });

    it.skipIf(!isRoot)('keeps capabilities (v3 becomes v2, as Docker does) and drops overlay bookkeeping (needs root)', async () => {
      await mkdir(join(root, 'dir'));
      await writeFile(join(root, 'ping'), '');
      await writeFile(join(root, 'ping3'), '');
      const capV2 = '0x0000000200200000000000000000000000000000';
      const capV3 = '0x0000000300200000000000000000000000000000e8030000';
      run('setfattr', ['-n', 'security.capability', '-v', capV2, join(root, 'ping')]);
      run('setfattr', ['-n', 'security.capability', '-v', capV3, join(root, 'ping3')]);
      run('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(root, 'dir')]);
      run('setfattr', ['-n', 'trusted.keep', '-v', 'k', join(root, 'dir')]);

      const byPath = Object.fromEntries((await walk(root, { xattrs: true })).map((h) => [h.path, h.xattrs]));
      expect(byPath['ping']).toEqual({ 'security.capability': Buffer.from(capV2.slice(2), 'hex') });
      expect(byPath['ping3']).toEqual({ 'security.capability': Buffer.from(capV2.slice(2), 'hex') });
      expect(byPath['dir']).toEqual({ 'trusted.keep': Buffer.from('k') });

      const raw = await readTreeXattrs(root, { all: true });
      expect(raw?.get('dir')?.['trusted.overlay.opaque']).toEqual(Buffer.from('y'));
    });

    it('does not attribute a symlink target’s xattrs to the symlink', async () => {
      await writeFile(join(root, 'target'), '');
      run('setfattr', ['-n', 'user.t', '-v', 't', join(root, 'target')]);
      await symlink('target', join(root, 'link'));
      await lutimes(join(root, 'link'), 1, 1);
      const byPath = Object.fromEntries((await walk(root, { xattrs: true })).map((h) => [h.path, h.xattrs]));
      expect(byPath['target']).toEqual({ 'user.t': Buffer.from('t') });
      expect(byPath['link']).toBeUndefined();
    });

    it('records no xattrs, without failing, when getfattr is not installed', async () => {
      await writeFile(join(root, 'f'), '');
      run('setfattr', ['-n', 'user.x', '-v', 'x', join(root, 'f')]);
      const savedPath = process.env['PATH'];
      process.env['PATH'] = join(root, 'no-such-bin');
      try {
        const headers = await walk(root, { xattrs: true });
        expect(headers).toHaveLength(1);
        expect(headers[0]!.xattrs).toBeUndefined();
      } finally {
        process.env['PATH'] = savedPath;
      }
    });
  });
});

describe('statsToHeader', () => {
  it('returns undefined for sockets and needs a target for symlinks', () => {
    const fakeStats = (kind: 'socket' | 'symlink') =>
      ({
        isFile: () => false,
        isDirectory: () => false,
        isSymbolicLink: () => kind === 'symlink',
        isFIFO: () => false,
        isCharacterDevice: () => false,
        isBlockDevice: () => false,
        isSocket: () => kind === 'socket',
        mode: 0o777,
        uid: 0,
        gid: 0,
        size: 0,
        rdev: 0,
        mtimeMs: 0,
      }) as unknown as import('node:fs').Stats;
    expect(statsToHeader('s', fakeStats('socket'))).toBeUndefined();
    expect(() => statsToHeader('l', fakeStats('symlink'))).toThrow(/needs its target/);
  });
});
