import { mkdtemp, rm, stat, lstat, readFile, writeFile, mkdir, symlink, readlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { applyLayer, applyLayers, setXattrs, xattrDump } from '../../src/tar/extract.js';
import { craftTar, streamOf, type CraftEntry } from '../../testdata/crafted/craft.js';
import { snapshotTree } from '../../testdata/crafted/tree.js';
import { execFileSync } from 'node:child_process';
import { packEntries } from '../../src/tar/write.js';

const isRoot = process.geteuid?.() === 0;

let work: string;
let root: string;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'strata-extract-'));
  root = join(work, 'root');
  await mkdir(root);
});

afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function apply(...layers: CraftEntry[][]) {
  const tars = await Promise.all(layers.map((entries) => craftTar(entries)));
  return applyLayers(
    root,
    tars.map((bytes) => () => streamOf(bytes)),
  );
}

async function tree() {
  const snapshot = await snapshotTree(root);
  const out: Record<string, string> = {};
  for (const [path, node] of Object.entries(snapshot)) {
    out[path] = node.type === 'file' ? `file:${node.content}` : node.type === 'symlink' ? `symlink:${node.linkname}` : node.type;
  }
  return out;
}

const dir = (name: string, extra: Partial<CraftEntry> = {}): CraftEntry => ({ name, type: 'directory', ...extra });
const file = (name: string, content = name, extra: Partial<CraftEntry> = {}): CraftEntry => ({ name, content, ...extra });

describe('applyLayer: OCI semantics', () => {
  it('extracts a first layer and reports stats', async () => {
    const stats = await apply([dir('./'), dir('etc'), file('etc/hosts', 'localhost'), { name: 'etc/link', type: 'symlink', linkname: 'hosts' }]);
    expect(await tree()).toEqual({ etc: 'directory', 'etc/hosts': 'file:localhost', 'etc/link': 'symlink:hosts' });
    expect(stats).toMatchObject({ entries: 3, bytes: 9, whiteouts: 0 });
  });

  it('a whiteout removes the lower file', async () => {
    const stats = await apply([file('a'), file('b')], [file('.wh.a')]);
    expect(await tree()).toEqual({ b: 'file:b' });
    expect(stats.whiteouts).toBe(1);
  });

  it('a whiteout removes a lower directory recursively, and a whiteout of a missing path is harmless', async () => {
    await apply([dir('d'), file('d/x'), dir('d/sub'), file('d/sub/y'), file('keep')], [file('.wh.d'), file('.wh.never-existed'), file('nodir/.wh.x')]);
    expect(await tree()).toEqual({ keep: 'file:keep' });
  });

  it('a whiteout removes a lower symlink itself, not what it points at', async () => {
    await apply([dir('target'), file('target/f'), { name: 'link', type: 'symlink', linkname: 'target' }], [file('.wh.link')]);
    expect(await tree()).toEqual({ target: 'directory', 'target/f': 'file:target/f' });
  });

  it.each([
    ['marker first', [file('d/.wh..wh..opq'), file('d/new'), dir('d/sub'), file('d/sub/n2')]],
    ['marker last', [file('d/new'), dir('d/sub'), file('d/sub/n2'), file('d/.wh..wh..opq')]],
    ['marker between', [file('d/new'), file('d/.wh..wh..opq'), dir('d/sub'), file('d/sub/n2')]],
  ])('an opaque directory hides lower children but keeps this layer\'s (%s)', async (_order, upper) => {
    await apply([dir('d'), file('d/old'), dir('d/sub'), file('d/sub/old2'), file('outside')], [dir('d'), ...upper]);
    expect(await tree()).toEqual({ d: 'directory', 'd/new': 'file:d/new', 'd/sub': 'directory', 'd/sub/n2': 'file:d/sub/n2', outside: 'file:outside' });
  });

  it('an opaque marker for a directory the lower layers lack creates it', async () => {
    await apply([file('x')], [file('fresh/.wh..wh..opq')]);
    expect(await tree()).toEqual({ x: 'file:x', fresh: 'directory' });
  });

  it('a directory replaces a lower file and a file replaces a lower directory', async () => {
    await apply([file('a'), dir('b'), file('b/child')], [dir('a'), file('a/inner'), file('b', 'now a file')]);
    expect(await tree()).toEqual({ a: 'directory', 'a/inner': 'file:a/inner', b: 'file:now a file' });
  });

  it('a directory replaces a lower symlink instead of following it', async () => {
    await mkdir(join(work, 'elsewhere'));
    await apply([{ name: 'lib', type: 'symlink', linkname: join(work, 'elsewhere') }], [dir('lib'), file('lib/x')]);
    expect(await tree()).toEqual({ lib: 'directory', 'lib/x': 'file:lib/x' });
    expect(await snapshotTree(join(work, 'elsewhere'))).toEqual({});
  });

  it('a directory over a directory keeps the children and takes the new attributes', async () => {
    await apply([dir('d', { mode: 0o700, mtime: 1000 }), file('d/kept')], [dir('d', { mode: 0o751, mtime: 2000 })]);
    expect(await tree()).toEqual({ d: 'directory', 'd/kept': 'file:d/kept' });
    const st = await stat(join(root, 'd'));
    expect(st.mode & 0o7777).toBe(0o751);
    expect(Math.floor(st.mtimeMs / 1000)).toBe(2000);
  });

  it('a file over a file replaces it without writing through a lower hardlink or symlink', async () => {
    await writeFile(join(work, 'victim'), 'untouched');
    await apply(
      [file('f', 'original'), { name: 'g', type: 'link', linkname: 'f' }, { name: 's', type: 'symlink', linkname: join(work, 'victim') }],
      [file('g', 'new g'), file('s', 'new s')],
    );
    expect(await tree()).toMatchObject({ f: 'file:original', g: 'file:new g', s: 'file:new s' });
    expect(await readFile(join(work, 'victim'), 'utf8')).toBe('untouched');
  });

  it('hardlinks within a layer and to a lower file share the inode', async () => {
    await apply([file('lower', 'L')], [file('a', 'A'), { name: 'b', type: 'link', linkname: 'a' }, { name: 'c', type: 'link', linkname: './lower' }]);
    const [a, b, c, lower] = await Promise.all(['a', 'b', 'c', 'lower'].map((p) => lstat(join(root, p))));
    expect(b!.ino).toBe(a!.ino);
    expect(c!.ino).toBe(lower!.ino);
    expect(a!.nlink).toBe(2);
  });

  it('keeps modes including setuid, setgid and sticky', async () => {
    await apply([
      file('suid', 'x', { mode: 0o4755 }),
      file('sgid', 'x', { mode: 0o2711 }),
      dir('tmp', { mode: 0o1777 }),
      dir('ro', { mode: 0o555 }),
      file('ro/inside', 'x', { mode: 0o400 }),
    ]);
    const snapshot = await snapshotTree(root);
    expect(snapshot['suid']!.mode).toBe(0o4755);
    expect(snapshot['sgid']!.mode).toBe(0o2711);
    expect(snapshot['tmp']!.mode).toBe(0o1777);
    expect(snapshot['ro']!.mode).toBe(0o555);
    expect(snapshot['ro/inside']!.mode).toBe(0o400);
  });

  it('keeps mtimes of files, symlinks and directories (set after their children)', async () => {
    await apply([
      dir('d', { mtime: 1_000_000 }),
      dir('d/e', { mtime: 2_000_000 }),
      file('d/e/f', 'x', { mtime: 3_000_000 }),
      { name: 'd/l', type: 'symlink', linkname: 'nowhere', mtime: 4_000_000 },
    ]);
    const snapshot = await snapshotTree(root);
    expect(snapshot['d']!.mtime).toBe(1_000_000);
    expect(snapshot['d/e']!.mtime).toBe(2_000_000);
    expect(snapshot['d/e/f']!.mtime).toBe(3_000_000);
    expect(snapshot['d/l']!.mtime).toBe(4_000_000);
  });

  it.skipIf(!isRoot)('keeps owners as root, setuid surviving the chown (needs root)', async () => {
    await apply([
      dir('home', { uid: 1000, gid: 1000 }),
      file('home/f', 'x', { uid: 1000, gid: 100, mode: 0o6755 }),
      { name: 'home/l', type: 'symlink', linkname: '/nowhere', uid: 33, gid: 34 },
    ]);
    const snapshot = await snapshotTree(root);
    expect(snapshot['home']).toMatchObject({ uid: 1000, gid: 1000 });
    expect(snapshot['home/f']).toMatchObject({ uid: 1000, gid: 100, mode: 0o6755 });
    expect(snapshot['home/l']).toMatchObject({ uid: 33, gid: 34 });
  });

  it.skipIf(!isRoot)('maps owners through an id map (needs root)', async () => {
    const bytes = await craftTar([file('f', 'x', { uid: 5, gid: 6 }), file('deep/g', 'y', { uid: 0, gid: 0 })]);
    await applyLayer(root, streamOf(bytes), { idMap: { uids: [{ containerId: 0, hostId: 100000, size: 65536 }], gids: [{ containerId: 0, hostId: 200000, size: 65536 }] } });
    const snapshot = await snapshotTree(root);
    expect(snapshot['f']).toMatchObject({ uid: 100005, gid: 200006 });
    expect(snapshot['deep']).toMatchObject({ uid: 100000, gid: 200000, mode: 0o755 });
    const unmapped = await craftTar([file('u', 'x', { uid: 70000 })]);
    await expect(applyLayer(root, streamOf(unmapped), { idMap: { uids: [{ containerId: 0, hostId: 1, size: 10 }], gids: [{ containerId: 0, hostId: 1, size: 10 }] } })).rejects.toThrow(
      /uid 70000 is not mapped/,
    );
  });

  it('creates fifos', async () => {
    await apply([{ name: 'pipe', type: 'fifo', mode: 0o620 }]);
    expect((await snapshotTree(root))['pipe']).toMatchObject({ type: 'fifo', mode: 0o620 });
  });

  it.skipIf(!isRoot)('creates device nodes as root (needs root)', async () => {
    await apply([{ name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 }]);
    const node = (await snapshotTree(root))['dev/null']!;
    expect(node).toMatchObject({ type: 'char', mode: 0o666 });
    expect(node.rdev).toBe((1 << 8) | 3);
  });

  it('skips devices with devices: skip and counts them', async () => {
    const bytes = await craftTar([{ name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3 }, file('after')]);
    const stats = await applyLayer(root, streamOf(bytes), { devices: 'skip' });
    expect(stats.skippedDevices).toBe(1);
    expect(await tree()).toEqual({ after: 'file:after' });
  });

  it('streams large files without changing them', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024 + 123, 7);
    big.write('start', 0);
    big.write('end', big.length - 3);
    const stats = await apply([file('big', big as unknown as string)]);
    expect((await readFile(join(root, 'big'))).equals(big)).toBe(true);
    expect(stats.bytes).toBe(big.length);
  });

  it('accepts a plain NodeJS.ReadableStream (not a stream.Readable)', async () => {
    const bytes = await craftTar([file('x')]);
    const legacy = Readable.from([bytes]) as NodeJS.ReadableStream;
    await applyLayer(root, legacy);
    expect(await tree()).toEqual({ x: 'file:x' });
  });

  it('calls layer factories one at a time, in order', async () => {
    const calls: number[] = [];
    const tars = [await craftTar([file('a', '1')]), await craftTar([file('a', '2')])];
    await applyLayers(
      root,
      tars.map((bytes, i) => () => {
        calls.push(i);
        return streamOf(bytes);
      }),
    );
    expect(calls).toEqual([0, 1]);
    expect(await tree()).toEqual({ a: 'file:2' });
  });

  it('keeps the target root itself untouched by a root entry', async () => {
    const before = await stat(root);
    await apply([dir('./', { mode: 0o700, mtime: 5 }), file('x')]);
    expect((await stat(root)).mode & 0o7777).toBe(before.mode & 0o7777);
  });

  it('applies into a target reached through a symlink (the caller\'s choice)', async () => {
    await symlink(root, join(work, 'root-link'));
    await applyLayer(join(work, 'root-link'), streamOf(await craftTar([file('x')])));
    expect(await tree()).toEqual({ x: 'file:x' });
    expect(await readlink(join(work, 'root-link'))).toBe(root);
  });
});

describe('extended attributes', () => {
  const hasTool = (name: string): boolean => {
    try {
      execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  const getXattr = (path: string, name: string): string =>
    execFileSync('python3', ['-c', 'import os,sys; sys.stdout.write(os.getxattr(sys.argv[1], sys.argv[2], follow_symlinks=False).decode())', path, name], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });

  it('writes a getfattr-style dump with escaped names and base64 values', () => {
    expect(xattrDump([{ path: '/r/a b\n', xattrs: { 'user.k=1': Buffer.from([0, 1, 2]) } }])).toBe('# file: /r/a\\040b\\012\nuser.k\\0751=0sAAEC\n\n');
  });

  it.skipIf(!hasTool('python3'))('applies xattrs from PAX records at the end of the layer (needs python3 to read them back)', async () => {
    const stats = await apply([
      dir('d', { pax: { 'SCHILY.xattr.user.dir': 'on-dir' } }),
      file('d/f', 'x', { pax: { 'SCHILY.xattr.user.note': 'hello' } }),
    ]);
    expect(getXattr(join(root, 'd/f'), 'user.note')).toBe('hello');
    expect(getXattr(join(root, 'd'), 'user.dir')).toBe('on-dir');
    expect(stats.skippedXattrs).toBe(0);
  });

  it.skipIf(!isRoot || !hasTool('python3'))('keeps a binary security.capability on a chowned file (needs root and python3)', async () => {
    // vfs_cap_data v2, effective, permitted = CAP_NET_RAW: binary, so written with the project's own PAX writer.
    const capability = Buffer.from([0x01, 0, 0, 0x02, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const content = Buffer.from('#!/bin/true\n');
    const tar = packEntries([
      {
        header: { path: 'ping', type: 'file', mode: 0o755, uid: 1000, gid: 1000, mtime: 1, size: content.length, xattrs: { 'security.capability': capability } },
        content: () => content,
      },
    ]);
    await applyLayer(root, tar);
    const back = execFileSync('python3', ['-c', 'import os,sys; sys.stdout.buffer.write(os.getxattr(sys.argv[1], "security.capability"))', join(root, 'ping')]);
    expect(Buffer.compare(back, capability)).toBe(0);
    expect((await snapshotTree(root))['ping']).toMatchObject({ uid: 1000, gid: 1000, mode: 0o755 });
  });

  it('skips xattrs with xattrs: skip and counts them', async () => {
    const bytes = await craftTar([file('f', 'x', { pax: { 'SCHILY.xattr.user.a': '1', 'SCHILY.xattr.user.b': '2' } })]);
    const stats = await applyLayer(root, streamOf(bytes), { xattrs: 'skip' });
    expect(stats.skippedXattrs).toBe(2);
  });

  for (const tool of ['setfattr', 'python3'] as const) {
    it.skipIf(!hasTool(tool) || !hasTool('python3'))(`sets binary values with ${tool}, never through a symlink (needs ${tool === 'python3' ? 'python3' : `${tool} and python3`})`, async () => {
      const target = join(work, 'outside-target');
      await writeFile(target, '');
      await writeFile(join(root, 'odd name\t'), '');
      await symlink(target, join(root, 'link'));
      const value = Buffer.from([0xff, 0x00, 0x41]);
      await setXattrs([{ path: join(root, 'odd name\t'), xattrs: { 'user.bin': value } }], tool);
      const back = execFileSync('python3', ['-c', 'import os,sys; sys.stdout.buffer.write(os.getxattr(sys.argv[1], "user.bin"))', join(root, 'odd name\t')]);
      expect(Buffer.compare(back, value)).toBe(0);
      // user.* is not allowed on symlinks, so a non-following tool fails instead of setting it on the target.
      await expect(setXattrs([{ path: join(root, 'link'), xattrs: { 'user.x': Buffer.from('1') } }], tool)).rejects.toThrow(/extended attributes/);
      expect(() => getXattr(target, 'user.x')).toThrow();
    });
  }
});
