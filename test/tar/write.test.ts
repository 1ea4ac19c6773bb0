import { createHash } from 'node:crypto';
import { cp, link, mkdir, readFile, stat, symlink, utimes, lutimes, writeFile, chmod, chown } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import fc from 'fast-check';
import { pack as tarStreamPack, type Header as TarStreamHeader } from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EntryHeader } from '../../src/tar/entry.js';
import { readTar } from '../../src/tar/read.js';
import { walkTree } from '../../src/tar/walk.js';
import { FileChangedError, InvalidEntryError, packEntries, tarFromTree, type PackSource } from '../../src/tar/write.js';
import { collect, hasCommand, isRoot, readAll, run, sha256, tempDir } from './tar-helpers.js';
import { countLoopTurns } from '../helpers/loop-turns.js';

const canXattr = hasCommand('getfattr') && hasCommand('setfattr');

function h(path: string, type: EntryHeader['type'], extra: Partial<EntryHeader> = {}): EntryHeader {
  return { path, type, mode: type === 'directory' ? 0o755 : 0o644, uid: 0, gid: 0, mtime: 1_700_000_000, size: 0, ...extra };
}

function file(path: string, content: string | Buffer, extra: Partial<EntryHeader> = {}): PackSource {
  const bytes = Buffer.from(content);
  return { header: h(path, 'file', { size: bytes.length, ...extra }), content: () => bytes };
}

async function pack(entries: PackSource[], opts?: { sourceDateEpoch?: number }): Promise<Buffer> {
  return collect(packEntries(entries, opts));
}

/** tar -tv lines without the date column, which depends on the local time zone. */
function gnuList(tar: Buffer, extra: string[] = []): string[] {
  return run('tar', ['-tv', '--numeric-owner', ...extra, '-f', '-'], { input: tar })
    .toString('utf8')
    .trimEnd()
    .split('\n')
    .map((line) => line.replace(/ \d{4}-\d\d-\d\d \d\d:\d\d /, ' DATE '));
}

describe('packEntries', () => {
  it('writes a header GNU tar reads, with trailing slashes on directories', async () => {
    const tar = await pack([
      { header: h('dir', 'directory', { mode: 0o1777 }) },
      file('dir/setuid', 'abc', { mode: 0o4755, uid: 1000, gid: 1001 }),
      file('dir/setgid', '', { mode: 0o2711 }),
      { header: h('dir/sym', 'symlink', { mode: 0o777, linkname: '../elsewhere' }) },
      { header: h('dir/hard', 'hardlink', { linkname: 'dir/setuid' }) },
      { header: h('fifo', 'fifo', { mode: 0o600 }) },
      { header: h('null', 'char', { mode: 0o666, devmajor: 1, devminor: 3 }) },
      { header: h('loop', 'block', { mode: 0o660, devmajor: 7, devminor: 0 }) },
    ]);
    expect(tar.length % 512).toBe(0);
    expect(gnuList(tar)).toEqual([
      'drwxrwxrwt 0/0               0 DATE dir/',
      '-rwsr-xr-x 1000/1001         3 DATE dir/setuid',
      '-rwx--s--x 0/0               0 DATE dir/setgid',
      'lrwxrwxrwx 0/0               0 DATE dir/sym -> ../elsewhere',
      'hrw-r--r-- 0/0               0 DATE dir/hard link to dir/setuid',
      'prw------- 0/0               0 DATE fifo',
      'crw-rw-rw- 0/0             1,3 DATE null',
      'brw-rw---- 0/0             7,0 DATE loop',
    ]);
    const entries = await readAll(tar);
    expect(entries.map((e) => e.rawName)).toEqual(['dir/', 'dir/setuid', 'dir/setgid', 'dir/sym', 'dir/hard', 'fifo', 'null', 'loop']);
    expect(entries[1]!.content.toString()).toBe('abc');
  });

  it('keeps mode 0000 and every special bit', async () => {
    const modes = [0, 0o7777, 0o4000, 0o2000, 0o1000, 0o0001];
    const tar = await pack(modes.map((mode, i) => file(`f${i}`, 'x', { mode })));
    expect((await readAll(tar)).map((e) => e.header.mode)).toEqual(modes);
  });

  it('stores whatever ustar cannot hold in PAX records, which GNU tar understands', async () => {
    const long100 = `${'d'.repeat(60)}/${'n'.repeat(60)}`;
    const long255 = Array.from({ length: 6 }, (_, i) => `${i}`.repeat(50)).join('/');
    const longSegment = 'x'.repeat(180);
    const unicode = 'ünïcødé/日本語/😀';
    const tar = await pack([
      file(long100, 'a'),
      file(long255, 'b'),
      { header: h(longSegment, 'directory') },
      file(unicode, 'c', { uname: 'zoë', gname: 'g'.repeat(40) }),
      file('big-ids', 'd', { uid: 300000, gid: 2_500_000, uname: 'u', gname: 'g' }),
      { header: h('longlink', 'symlink', { linkname: `../${'t'.repeat(150)}` }) },
      { header: h('uniclink', 'symlink', { linkname: 'é' }) },
      { header: h('hardlong', 'hardlink', { linkname: long255 }) },
      file('old', 'e', { mtime: -86400 * 365 }),
      file('future', 'f', { mtime: 4_102_444_800 }),
      { header: h('wide-dev', 'char', { devmajor: 4095, devminor: 1_048_575 }) },
    ]);

    const listing = gnuList(tar);
    expect(listing).toEqual([
      `-rw-r--r-- 0/0               1 DATE ${long100}`,
      `-rw-r--r-- 0/0               1 DATE ${long255}`,
      `drwxr-xr-x 0/0               0 DATE ${longSegment}/`,
      `-rw-r--r-- 0/0               1 DATE ${unicode}`,
      `-rw-r--r-- 300000/2500000    1 DATE big-ids`,
      `lrw-r--r-- 0/0               0 DATE longlink -> ../${'t'.repeat(150)}`,
      `lrw-r--r-- 0/0               0 DATE uniclink -> é`,
      `hrw-r--r-- 0/0               0 DATE hardlong link to ${long255}`,
      `-rw-r--r-- 0/0               1 DATE old`,
      `-rw-r--r-- 0/0               1 DATE future`,
      `crw-r--r-- 0/0    4095,1048575 DATE wide-dev`,
    ]);
    const names = run('tar', ['-tv', '-f', '-'], { input: tar }).toString('utf8');
    expect(names).toContain('zoë/gggggggggggggggggggggggggggggggggggggggg');

    const back = await readAll(tar);
    expect(back.map((e) => e.header.path)).toEqual([long100, long255, longSegment, unicode, 'big-ids', 'longlink', 'uniclink', 'hardlong', 'old', 'future', 'wide-dev']);
    expect(back[3]!.header).toMatchObject({ uname: 'zoë', gname: 'g'.repeat(40) });
    expect(back[4]!.header).toMatchObject({ uid: 300000, gid: 2_500_000, uname: 'u', gname: 'g' });
    expect(back[5]!.header.linkname).toBe(`../${'t'.repeat(150)}`);
    expect(back[8]!.header.mtime).toBe(-86400 * 365);
    expect(back[9]!.header.mtime).toBe(4_102_444_800);
    expect(back[10]!.header).toMatchObject({ devmajor: 4095, devminor: 1_048_575 });
  });

  it('writes binary xattrs byte-exact as SCHILY.xattr records', async () => {
    const capability = Buffer.from('0100000200200000000000000000000000000000', 'hex');
    const binary = Buffer.from([0, 0xff, 0x80, 0x0a, 0x3d, 0xc3]);
    const tar = await pack([file('ping', 'x', { xattrs: { 'security.capability': capability, 'user.bin': binary, 'user.empty': Buffer.alloc(0) } })]);
    const [entry] = await readAll(tar);
    expect(entry!.header.xattrs).toEqual({ 'security.capability': capability, 'user.bin': binary, 'user.empty': Buffer.alloc(0) });
    // The record bytes themselves, as GNU tar and Go expect them.
    expect(tar.includes(Buffer.concat([Buffer.from('SCHILY.xattr.user.bin='), binary, Buffer.from('\n')]))).toBe(true);
  });

  it('truncates mtimes to whole seconds and clamps them to sourceDateEpoch', async () => {
    const entries = () => [file('early', 'x', { mtime: 1000.9 }), file('late', 'x', { mtime: 5000.5 }), { header: h('dir', 'directory', { mtime: 9999 }) }];
    const plain = await readAll(await pack(entries()));
    expect(plain.map((e) => e.header.mtime)).toEqual([1000, 5000, 9999]);
    const clamped = await readAll(await pack(entries(), { sourceDateEpoch: 3000 }));
    expect(clamped.map((e) => e.header.mtime)).toEqual([1000, 3000, 3000]);
  });

  it('never writes atime or ctime', async () => {
    const a = await pack([file('f', 'x', { atime: 1, ctime: 2 })]);
    const b = await pack([file('f', 'x', { atime: 1_800_000_000, ctime: 1_800_000_001 })]);
    expect(a.equals(b)).toBe(true);
  });

  it('takes content from streams and fails, naming the file, when it is longer or shorter than the header says', async () => {
    const ok = await pack([{ header: h('s', 'file', { size: 6 }), content: () => Readable.from([Buffer.from('abc'), 'def']) }]);
    expect((await readAll(ok))[0]!.content.toString()).toBe('abcdef');

    const grown = packEntries([{ header: h('dir/grown', 'file', { size: 3 }), content: () => Readable.from([Buffer.from('abcdef')]) }]);
    await expect(collect(grown)).rejects.toThrow(/dir\/grown: file changed as we read it/);
    const shrunk = packEntries([{ header: h('shrunk', 'file', { size: 10 }), content: () => Readable.from([Buffer.from('abc')]) }]);
    await expect(collect(shrunk)).rejects.toThrow(FileChangedError);
    const buffer = packEntries([{ header: h('buf', 'file', { size: 2 }), content: () => Buffer.from('abc') }]);
    await expect(collect(buffer)).rejects.toThrow(/buf: file changed as we read it/);
    const missing = packEntries([{ header: h('nocontent', 'file', { size: 2 }) }]);
    await expect(collect(missing)).rejects.toThrow(/nocontent.*has no content/);
  });

  it.each([
    [h('./a', 'file'), /not normalized/],
    [h('a/', 'directory'), /not normalized/],
    [h('../a', 'file'), /'\.\.'/],
    [h('', 'directory'), /archive root/],
    [h('a', 'file', { mode: 0o10644 }), /07777/],
    [h('a', 'file', { uid: -1 }), /uid/],
    [h('a', 'directory', { size: 3 }), /cannot have content/],
    [h('a', 'symlink'), /has no target/],
    [h('a', 'hardlink', { linkname: '/abs' }), /not a normalized entry path/],
    [h('a', 'file', { linkname: 'x' }), /cannot have a link target/],
    [h('a', 'file', { mtime: Number.NaN }), /mtime/],
    [h('a', 'file', { xattrs: { 'user.a=b': Buffer.from('') } }), /xattr name/],
    [{ ...h('a', 'file'), type: 'socket' as EntryHeader['type'] }, /unknown entry type/],
  ])('refuses an unwritable header %#', async (header, message) => {
    const stream = packEntries([{ header }]);
    const error = await collect(stream).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(InvalidEntryError);
    expect((error as Error).message).toMatch(message);
  });

  it('stores sizes of 8 GiB and more in PAX (header checked without writing the content)', async () => {
    const size = 8 * 1024 ** 3 + 5;
    const zeros = Buffer.alloc(64 * 1024);
    const content = () =>
      Readable.from(
        (function* () {
          for (;;) yield zeros;
        })(),
      );
    const stream = packEntries([{ header: h('huge', 'file', { size }), content }]);
    const chunks: Buffer[] = [];
    let length = 0;
    for await (const chunk of stream) {
      chunks.push(chunk as Buffer);
      length += (chunk as Buffer).length;
      if (length >= 4096) break;
    }
    const head = Buffer.concat(chunks).subarray(0, 4096);
    expect(head.includes(Buffer.from(` size=${size}\n`))).toBe(true);
    for await (const { header, body } of readTar(Readable.from([head]))) {
      expect(header).toMatchObject({ path: 'huge', size });
      body.resume();
      break;
    }
  });

  it('produces entries lazily, pausing while the reader is behind', async () => {
    const total = 20_000;
    let produced = 0;
    async function* many(): AsyncGenerator<PackSource> {
      for (let i = 0; i < total; i++) {
        produced++;
        yield { header: h(`d${String(i).padStart(6, '0')}`, 'directory') };
      }
    }
    const stream = packEntries(many());
    const iterator = stream[Symbol.asyncIterator]();
    const first = await iterator.next();
    await new Promise((resolve) => setImmediate(resolve));
    expect(produced).toBeLessThan(500);
    let bytes = (first.value as Buffer).length;
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) bytes += (next.value as Buffer).length;
    expect(produced).toBe(total);
    expect(bytes).toBe(total * 512 + 1024);
  });

  it('stops reading the source when the consumer gives up', async () => {
    let produced = 0;
    let finished = false;
    async function* many(): AsyncGenerator<PackSource> {
      try {
        for (let i = 0; ; i++) {
          produced++;
          yield file(`f${i}`, 'x'.repeat(1000));
        }
      } finally {
        finished = true;
      }
    }
    const stream = packEntries(many());
    for await (const chunk of stream) {
      expect(chunk).toBeInstanceOf(Buffer);
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(finished).toBe(true);
    expect(produced).toBeLessThan(200);
  });
});

describe('tarFromTree', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ path: root, cleanup } = await tempDir('strata-tree-'));
  });
  afterEach(async () => {
    await cleanup();
  });

  async function buildTree(dir: string, order: 'forward' | 'reverse'): Promise<void> {
    const names = ['alpha', 'beta', 'Gamma', 'delta', 'é', 'z'];
    const list = order === 'forward' ? names : [...names].reverse();
    await mkdir(join(dir, 'sub'), { recursive: true });
    for (const name of list) {
      await writeFile(join(dir, name), `content of ${name}\n`.repeat(100));
      await writeFile(join(dir, 'sub', name), name);
    }
    await symlink('alpha', join(dir, 'link'));
    await link(join(dir, 'beta'), join(dir, 'sub', 'hard'));
    for (const name of [...list, 'sub/alpha', 'sub/hard', 'sub', '.']) {
      await utimes(join(dir, name), 1_600_000_000, 1_600_000_000);
    }
  }

  it('gives the same bytes for the same tree: twice, after reads, and regardless of inode order', async () => {
    const first = join(root, 'first');
    const second = join(root, 'second');
    await buildTree(first, 'forward');
    await buildTree(second, 'reverse');
    const a = sha256(await collect(tarFromTree(first)));
    const b = sha256(await collect(tarFromTree(first)));
    expect(b).toBe(a);
    await utimes(join(first, 'alpha'), 1_900_000_000, (await stat(join(first, 'alpha'))).mtimeMs / 1000);
    await readFile(join(first, 'beta'));
    expect(sha256(await collect(tarFromTree(first)))).toBe(a);
    expect(sha256(await collect(tarFromTree(second)))).toBe(a);
  });

  it('archives the tree as the walker sees it, contents included', async () => {
    await buildTree(root, 'forward');
    const entries = await readAll(await collect(tarFromTree(root)));
    const walked: EntryHeader[] = [];
    for await (const { header } of walkTree(root)) walked.push({ ...header, mtime: Math.floor(header.mtime) });
    expect(entries.map((e) => e.header)).toEqual(walked);
    const alpha = entries.find((e) => e.header.path === 'alpha')!;
    expect(alpha.content.toString()).toBe('content of alpha\n'.repeat(100));
    expect(entries.find((e) => e.header.path === 'sub/hard')!.header).toMatchObject({ type: 'hardlink', linkname: 'beta' });
  });

  it('applies the filter and sourceDateEpoch', async () => {
    await buildTree(root, 'forward');
    const entries = await readAll(await collect(tarFromTree(root, { filter: (rel) => !rel.startsWith('sub'), sourceDateEpoch: 1_500_000_000 })));
    expect(entries.some((e) => e.header.path.startsWith('sub'))).toBe(false);
    expect(entries.every((e) => e.header.mtime === 1_500_000_000)).toBe(true);
  });

  it('fails the stream when the walk fails', async () => {
    await writeFile(join(root, 'not-a-dir'), '');
    await expect(collect(tarFromTree(join(root, 'not-a-dir')))).rejects.toThrow(/is not a directory/);
  });

  it('fails naming the file when it grows between stat and read', async () => {
    await writeFile(join(root, 'growing'), 'abc');
    const stream = packEntries(
      (async function* () {
        for await (const { header, sourcePath } of walkTree(root)) {
          await writeFile(sourcePath, 'abcdef');
          yield { header, content: () => Readable.from([Buffer.from('abcdef')]) };
        }
      })(),
    );
    await expect(collect(stream)).rejects.toThrow(/growing: file changed as we read it/);
  });

  describe.skipIf(!isRoot)('round trip through GNU tar (needs root for owners, devices and trusted xattrs)', () => {
    it('GNU tar extracts exactly the tree that was archived', async () => {
      const src = join(root, 'src');
      const dst = join(root, 'dst');
      await mkdir(src);
      await mkdir(dst);
      await buildTree(src, 'forward');
      await mkdir(join(src, 'sticky'), { mode: 0o1777 });
      await chmod(join(src, 'sticky'), 0o1777);
      await writeFile(join(src, 'suid'), '#!/bin/sh\n');
      await chown(join(src, 'suid'), 300000, 2_500_000);
      await chmod(join(src, 'suid'), 0o4755);
      const deep = join(src, ...Array.from({ length: 4 }, (_, i) => `${i}`.repeat(70)));
      await mkdir(deep, { recursive: true });
      await writeFile(join(deep, 'ü'.repeat(30)), 'deep');
      run('mknod', [join(src, 'null'), 'c', '1', '3']);
      run('mkfifo', [join(src, 'fifo')]);
      if (canXattr) {
        run('setfattr', ['-n', 'user.bin', '-v', '0x00ff0a80', join(src, 'alpha')]);
        run('setfattr', ['-n', 'security.capability', '-v', '0x0000000200200000000000000000000000000000', join(src, 'suid')]);
      }
      for (const name of ['sticky', 'suid', 'null', 'fifo', '.']) await utimes(join(src, name), 1_600_000_000, 1_600_000_000);

      const tar = await collect(tarFromTree(src, { xattrs: true }));
      run('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-xpf', '-', '-C', dst], { input: tar });

      const describe = async (dir: string) => {
        const out: EntryHeader[] = [];
        for await (const { header } of walkTree(dir, { xattrs: canXattr })) out.push({ ...header, mtime: Math.floor(header.mtime) });
        return out;
      };
      const original = await describe(src);
      const extracted = await describe(dst);
      // GNU tar restores directory mtimes only when it is done with them, and we set none for deep dirs.
      const comparable = (headers: EntryHeader[]) => headers.map((hd) => (hd.type === 'directory' ? { ...hd, mtime: 0 } : hd));
      expect(comparable(extracted)).toEqual(comparable(original));
      expect(original.find((e) => e.path === 'suid')).toMatchObject({ uid: 300000, gid: 2_500_000, mode: 0o4755 });
      if (canXattr) expect(original.find((e) => e.path === 'suid')!.xattrs?.['security.capability']).toBeDefined();
    });
  });

  it.skipIf(!hasCommand('busybox'))('busybox tar lists what we write', async () => {
    await buildTree(root, 'forward');
    const tar = await collect(tarFromTree(root));
    const names = run('busybox', ['tar', '-tf', '-'], { input: tar }).toString('utf8').trim().split('\n');
    expect(names).toContain('sub/');
    expect(names).toContain('sub/hard');
    expect(names).toContain('é');
  });

  it('copies of a tree hash the same even when made by cp', async () => {
    await buildTree(join(root, 'a'), 'forward');
    await cp(join(root, 'a'), join(root, 'b'), { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    // cp breaks the hardlink into two files; re-create it so the trees are the same.
    const { rm } = await import('node:fs/promises');
    await rm(join(root, 'b', 'sub', 'hard'));
    await link(join(root, 'b', 'beta'), join(root, 'b', 'sub', 'hard'));
    await utimes(join(root, 'b', 'sub'), 1_600_000_000, 1_600_000_000);
    // cp makes the symlink anew (its mtime is "now"); give both the same time, or the
    // test only passes when the two trees happen to be made within one second.
    for (const tree of ['a', 'b']) await lutimes(join(root, tree, 'link'), 1_600_000_000, 1_600_000_000);
    expect(sha256(await collect(tarFromTree(join(root, 'b'))))).toBe(sha256(await collect(tarFromTree(join(root, 'a')))));
  });
});

/**
 * Entries covering every header field and encoding: special mode bits, owner
 * names, sizes around block boundaries and past an output chunk, each entry
 * type, wide device numbers, and everything that goes to PAX.
 */
function formatFixture(): PackSource[] {
  const bytes = (size: number, seed: number) => Buffer.from(Array.from({ length: size }, (_, i) => (i * 31 + seed) & 0xff));
  const sized = (path: string, size: number, seed: number, extra: Partial<EntryHeader> = {}): PackSource => ({
    header: h(path, 'file', { size, ...extra }),
    content: () => bytes(size, seed),
  });
  return [
    { header: h('dir', 'directory', { mode: 0o1777, uid: 1000, gid: 1000, uname: 'builder', gname: 'staff' }) },
    sized('dir/a', 1, 1, { mode: 0o4755, mtime: 1_600_000_000.9 }),
    sized('dir/b', 511, 2, { mode: 0 }),
    sized('dir/c', 512, 3),
    sized('dir/d', 513, 4, { mtime: 0 }),
    sized('dir/e', 100_000, 5),
    sized('dir/empty', 0, 6),
    { header: h('dir/sym', 'symlink', { mode: 0o777, linkname: '../elsewhere' }) },
    { header: h('dir/hard', 'hardlink', { linkname: 'dir/a' }) },
    { header: h('fifo', 'fifo', { mode: 0o600 }) },
    { header: h('null', 'char', { mode: 0o666, devmajor: 1, devminor: 3 }) },
    { header: h('wide', 'block', { devmajor: 4095, devminor: 1_048_575 }) },
    { header: h('widest', 'char', { devmajor: 2 ** 30, devminor: 0o7777777 }) },
    sized(`${'d'.repeat(60)}/${'n'.repeat(60)}`, 7, 7),
    sized(Array.from({ length: 6 }, (_, i) => `${i}`.repeat(50)).join('/'), 8, 8),
    { header: h('x'.repeat(180), 'directory') },
    sized('ünïcødé/日本語/😀', 9, 9, { uname: 'zoë', gname: 'g'.repeat(40) }),
    sized('big-ids', 10, 10, { uid: 300_000, gid: 2_500_000 }),
    { header: h('longlink', 'symlink', { linkname: `../${'t'.repeat(150)}` }) },
    { header: h('uniclink', 'symlink', { linkname: 'é' }) },
    sized('old', 11, 11, { mtime: -86_400 * 365 }),
    sized('future', 12, 12, { mtime: 4_102_444_800 }),
    sized('caps', 13, 13, {
      xattrs: { 'security.capability': Buffer.from('0100000200200000000000000000000000000000', 'hex'), 'user.bin': Buffer.from([0, 0xff, 0x0a, 0x3d]) },
    }),
  ];
}

describe('byte-exact output', () => {
  it('writes the bytes it always has: layer digests must not move between versions', async () => {
    // Pinned from the tar-stream based writer these bytes were first made with.
    const tar = await pack(formatFixture());
    expect(tar.length).toBe(128_512);
    expect(sha256(tar)).toBe('62203ef955c8f10c48c135c22edbe558afa9afdbf96099a328da6ba5df144bc4');
    expect(sha256(await pack(formatFixture(), { sourceDateEpoch: 1_650_000_000 }))).toBe('2674a961147ac2994a95027a2ec9c0377f865597e107238368801b99a700f0af');
  });

  it('lays out every header ustar can hold exactly as tar-stream does', async () => {
    const segment = fc.stringMatching(/^[a-zA-Z0-9._-]{1,40}$/).filter((name) => name !== '.' && name !== '..');
    const entry = fc.record({
      segments: fc.array(segment, { minLength: 1, maxLength: 5 }),
      type: fc.constantFrom(...(['file', 'directory', 'symlink', 'hardlink', 'fifo', 'char', 'block'] as const)),
      mode: fc.integer({ min: 0, max: 0o7777 }),
      uid: fc.integer({ min: 0, max: 0o777777 }),
      gid: fc.integer({ min: 0, max: 0o777777 }),
      uname: fc.stringMatching(/^[a-z]{0,32}$/),
      gname: fc.stringMatching(/^[a-z]{0,32}$/),
      mtime: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      size: fc.integer({ min: 0, max: 1500 }),
      linkname: segment,
      devmajor: fc.integer({ min: 0, max: 0o777777 }),
      devminor: fc.integer({ min: 0, max: 0o777777 }),
    });
    await fc.assert(
      fc.asyncProperty(entry, async (e) => {
        const path = e.segments.join('/');
        if (path.length > 250) return;
        const isFile = e.type === 'file';
        const isLink = e.type === 'symlink' || e.type === 'hardlink';
        const isDevice = e.type === 'char' || e.type === 'block';
        const header: EntryHeader = {
          ...h(path, e.type, { mode: e.mode, uid: e.uid, gid: e.gid, uname: e.uname, gname: e.gname, mtime: e.mtime, size: isFile ? e.size : 0 }),
          ...(isLink ? { linkname: e.linkname } : {}),
          ...(isDevice ? { devmajor: e.devmajor, devminor: e.devminor } : {}),
        };
        const content = Buffer.alloc(header.size, 0x61);
        const ours = await pack([{ header, ...(isFile ? { content: () => content } : {}) }]);

        const reference = tarStreamPack();
        const typeOf = { file: 'file', directory: 'directory', symlink: 'symlink', hardlink: 'link', fifo: 'fifo', char: 'character-device', block: 'block-device' } as const;
        const tsHeader: TarStreamHeader = {
          name: e.type === 'directory' ? `${path}/` : path,
          type: typeOf[e.type],
          // tar-stream would replace a zero mode with its default; file-type bits keep it zero after its 07777 mask.
          mode: e.mode | 0o100000,
          uid: e.uid,
          gid: e.gid,
          uname: e.uname,
          gname: e.gname,
          mtime: new Date(e.mtime * 1000),
          size: header.size,
          linkname: isLink ? e.linkname : '',
          devmajor: isDevice ? e.devmajor : 0,
          devminor: isDevice ? e.devminor : 0,
        };
        if (isFile) reference.entry(tsHeader, content);
        else reference.entry(tsHeader);
        reference.finalize();
        const theirs = await collect(reference as unknown as NodeJS.ReadableStream);
        expect(ours.toString('hex')).toBe(theirs.toString('hex'));
      }),
      { numRuns: 300 },
    );
  });
});

describe('content read from source paths', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ path: root, cleanup } = await tempDir('strata-content-'));
  });
  afterEach(async () => {
    await cleanup();
  });

  /** Sizes around block boundaries and the writer's output-chunk sizes and thresholds (powers of two from 64 KiB to 1 MiB). */
  const SIZES = [1, 511, 512, 513, 65_535, 65_536, 65_537, 131_071, 131_073, 262_143, 262_145, 523_775, 524_287, 524_288, 524_289, 1_048_575, 1_048_577, 3 * 1_048_576 + 7];

  async function sizedTree(dir: string): Promise<void> {
    await mkdir(join(dir, 'sizes'), { recursive: true });
    for (const [i, size] of SIZES.entries()) {
      await writeFile(join(dir, 'sizes', `f${String(i).padStart(2, '0')}`), Buffer.alloc(size, 0x41 + i));
    }
    await mkdir(join(dir, 'many'));
    for (let i = 0; i < 200; i++) await writeFile(join(dir, 'many', `m${String(i).padStart(3, '0')}`), Buffer.alloc((i * 7919) % 150_000, i));
  }

  /** The walk with every file's content already in memory: what tarFromTree must equal. */
  async function walkedInMemory(dir: string): Promise<PackSource[]> {
    const sources: PackSource[] = [];
    for await (const { header, sourcePath } of walkTree(dir)) {
      if (header.type !== 'file' || header.size === 0) sources.push({ header });
      else {
        const bytes = await readFile(sourcePath);
        sources.push({ header, content: () => bytes });
      }
    }
    return sources;
  }

  it('gives the same bytes as in-memory content, for files of every size around chunk boundaries', async () => {
    await sizedTree(root);
    const expected = sha256(await pack(await walkedInMemory(root)));
    expect(sha256(await collect(tarFromTree(root)))).toBe(expected);
    const byPath: PackSource[] = [];
    for await (const { header, sourcePath } of walkTree(root)) byPath.push({ header, sourcePath });
    expect(sha256(await pack(byPath))).toBe(expected);
  });

  it('fails naming the file when it grew or shrank since its header was made, small or big', async () => {
    await writeFile(join(root, 'small'), 'now longer than when walked');
    await writeFile(join(root, 'big'), Buffer.alloc(3 * 1024 * 1024));
    for (const [name, claimed] of [
      ['small', 5],
      ['small', 100],
      ['big', 3 * 1024 * 1024 - 10],
      ['big', 3 * 1024 * 1024 + 10],
    ] as const) {
      const header = h(name, 'file', { size: claimed });
      const error = await collect(packEntries([{ header, sourcePath: join(root, name) }])).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(FileChangedError);
      expect((error as Error).message).toContain(`${name}: file changed as we read it (header says ${claimed} bytes`);
    }
  });

  it('fails with the read error of a file that vanished after the walk', async () => {
    const header = h('ghost', 'file', { size: 10 });
    await expect(collect(packEntries([{ header, sourcePath: join(root, 'ghost') }]))).rejects.toThrow(/ENOENT/);
  });

  it('does not follow a file that became a symlink, nor hang on one that became a FIFO', async () => {
    await writeFile(join(root, 'secret'), 'not for the layer');
    await symlink(join(root, 'secret'), join(root, 'swapped'));
    const swapped = packEntries([{ header: h('swapped', 'file', { size: 17 }), sourcePath: join(root, 'swapped') }]);
    const error = await collect(swapped).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(FileChangedError);
    expect((error as Error).message).toMatch(/swapped: file changed as we read it \(.*is now a symlink, which is not followed\)/);

    run('mkfifo', [join(root, 'fifo')]);
    const fifo = packEntries([{ header: h('fifo', 'file', { size: 4 }), sourcePath: join(root, 'fifo') }]);
    await expect(collect(fifo)).rejects.toThrow(/fifo: file changed as we read it \(.*is no longer a regular file/);
  });

  it('lets the event loop turn while it works', async () => {
    await sizedTree(root);
    const turns = countLoopTurns();
    let turnsWhileBusy = 0;
    const hash = createHash('sha256');
    const started = performance.now();
    // A consumer that never waits on I/O itself, so any turn of the loop is the producer's doing.
    await pipeline(
      tarFromTree(root),
      new Writable({
        highWaterMark: 4 * 1024 * 1024,
        write(chunk: Buffer, _encoding, callback) {
          hash.update(chunk);
          turnsWhileBusy = turns.count;
          callback();
        },
      }),
    );
    const elapsed = performance.now() - started;
    turns.stop();
    // Slices last about a millisecond; a generous bound keeps a loaded machine from failing this.
    expect(turnsWhileBusy).toBeGreaterThanOrEqual(Math.floor(elapsed / 25));
    expect(turnsWhileBusy).toBeGreaterThan(0);
  });

  it('stops walking the tree when its reader gives up', async () => {
    await sizedTree(root);
    let visited = 0;
    const stream = tarFromTree(root, {
      filter: () => {
        visited++;
        return true;
      },
    });
    for await (const chunk of stream) {
      expect(chunk).toBeInstanceOf(Buffer);
      break;
    }
    await new Promise((resolve) => setImmediate(resolve));
    const afterStop = visited;
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(visited).toBe(afterStop);
    expect(visited).toBeLessThan(100);
  });
});
