import { cp, link, mkdir, readFile, stat, symlink, utimes, writeFile, chmod, chown } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EntryHeader } from '../../src/tar/entry.js';
import { readTar } from '../../src/tar/read.js';
import { walkTree } from '../../src/tar/walk.js';
import { FileChangedError, InvalidEntryError, packEntries, tarFromTree, type PackSource } from '../../src/tar/write.js';
import { collect, hasCommand, isRoot, readAll, run, sha256, tempDir } from './tar-helpers.js';

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
    expect(sha256(await collect(tarFromTree(join(root, 'b'))))).toBe(sha256(await collect(tarFromTree(join(root, 'a')))));
  });
});
