import { link, mkdir, symlink, utimes, writeFile, truncate, appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ENTRY_TYPES, InvalidEntryPathError, type EntryHeader } from '../../src/tar/entry.js';
import { TarFormatError, parsePaxRecords, readTar } from '../../src/tar/read.js';
import { walkTree } from '../../src/tar/walk.js';
import { packEntries, type PackSource } from '../../src/tar/write.js';
import { collect, hasCommand, isRoot, paxBody, rawTar, readAll, run, tempDir } from './tar-helpers.js';

const canXattr = hasCommand('getfattr') && hasCommand('setfattr');

async function expectFailure(tar: Buffer, pattern: RegExp, type: abstract new (...args: never[]) => Error = TarFormatError): Promise<void> {
  const error = await readAll(tar).catch((err: unknown) => err);
  expect(error).toBeInstanceOf(type);
  expect((error as Error).message).toMatch(pattern);
}

describe('readTar on archives made by other tools', () => {
  let root: string;
  let src: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ path: root, cleanup } = await tempDir('strata-read-'));
    src = join(root, 'src');
  });
  afterEach(async () => {
    await cleanup();
  });

  async function buildTree(longNames: boolean): Promise<void> {
    await mkdir(join(src, 'dir', 'sub'), { recursive: true });
    await writeFile(join(src, 'dir', 'file'), 'hello\n'.repeat(300));
    await writeFile(join(src, 'dir', 'sub', 'empty'), '');
    await writeFile(join(src, 'exec'), '#!/bin/sh\n', { mode: 0o4755 });
    await symlink('dir/file', join(src, 'link'));
    await link(join(src, 'dir', 'file'), join(src, 'hard'));
    if (longNames) {
      const deep = join(src, 'l'.repeat(120), 'ü'.repeat(60));
      await mkdir(deep, { recursive: true });
      await writeFile(join(deep, 'n'.repeat(200)), 'deep');
      await symlink('t'.repeat(180), join(src, 'longlink'));
    }
    for await (const { sourcePath } of walkTree(src)) await utimes(sourcePath, 1_600_000_000, 1_600_000_000).catch(() => undefined);
  }

  /** What the walker says about the tree, in the tool's order, without what a given format cannot carry. */
  async function expected(): Promise<Map<string, EntryHeader>> {
    const out = new Map<string, EntryHeader>();
    for await (const { header } of walkTree(src)) out.set(header.path, { ...header, mtime: Math.floor(header.mtime) });
    return out;
  }

  async function compare(tar: Buffer, opts: { fractionalTimes?: boolean; names?: boolean } = {}): Promise<void> {
    const want = await expected();
    const got = await readAll(tar);
    expect(got.map((e) => e.header.path).sort()).toEqual([...want.keys()].sort());
    for (const { header, content } of got) {
      const { uname, gname, atime, ctime, ...rest } = header;
      if (opts.names) {
        expect(uname).toBe('root');
        expect(gname).toBe('root');
      }
      if (!opts.fractionalTimes) {
        expect(atime).toBeUndefined();
        expect(ctime).toBeUndefined();
      }
      const wanted = want.get(header.path)!;
      // Tools pick their own first path for a hardlinked inode.
      if (header.type === 'hardlink' || wanted.type === 'hardlink') {
        expect(['file', 'hardlink']).toContain(header.type);
        continue;
      }
      expect({ ...rest, mtime: Math.floor(rest.mtime) }).toEqual(wanted);
      if (header.type === 'file') expect(content.length).toBe(header.size);
    }
  }

  it.each([
    ['gnu', true],
    ['oldgnu', true],
    ['posix', true],
    ['ustar', false],
  ] as const)('reads GNU tar --format=%s', async (format, longNames) => {
    await buildTree(longNames);
    const tar = run('tar', [`--format=${format}`, '-C', src, '-cf', '-', '.']);
    await compare(tar, { names: true, fractionalTimes: format === 'posix' });
  });

  it('reads GNU tar --format=v7 (no magic, no names)', async () => {
    await buildTree(false);
    const tar = run('tar', ['--format=v7', '-C', src, '-cf', '-', '.']);
    await compare(tar);
  });

  it.skipIf(!hasCommand('busybox'))('reads busybox tar (GNU long names)', async () => {
    await buildTree(true);
    const tar = run('busybox', ['tar', '-C', src, '-cf', '-', '.']);
    await compare(tar, { names: true });
  });

  it('skips the root entry and keeps raw names for messages', async () => {
    await buildTree(false);
    const entries = await readAll(run('tar', ['-C', src, '-cf', '-', '.']));
    expect(entries.some((e) => e.rawName === './')).toBe(false);
    const dir = entries.find((e) => e.header.path === 'dir')!;
    expect(dir.rawName).toBe('./dir/');
  });

  it('reads GNU base-256 ids and PAX ids', async () => {
    await buildTree(false);
    const gnu = await readAll(run('tar', ['--format=gnu', '--owner=3000000', '--group=4000000', '--numeric-owner', '-C', src, '-cf', '-', 'exec']));
    expect(gnu[0]!.header).toMatchObject({ uid: 3000000, gid: 4000000 });
    const pax = await readAll(run('tar', ['--format=posix', '--owner=3000000', '--group=4000000', '--numeric-owner', '-C', src, '-cf', '-', 'exec']));
    expect(pax[0]!.header).toMatchObject({ uid: 3000000, gid: 4000000 });
  });

  it('applies PAX global headers to every entry', async () => {
    await buildTree(false);
    const tar = run('tar', ['--format=posix', '--pax-option=uname:=globaluser', '-C', src, '-cf', '-', 'dir', 'exec']);
    const entries = await readAll(tar);
    expect(entries.length).toBeGreaterThan(2);
    expect(entries.every((e) => e.header.uname === 'globaluser')).toBe(true);
  });

  it.skipIf(!canXattr)('reads binary xattrs GNU tar stores (needs the attr package)', async () => {
    await buildTree(false);
    run('setfattr', ['-n', 'user.bin', '-v', '0x00ff0a3d80c3', join(src, 'exec')]);
    const tar = run('tar', ['--format=posix', '--xattrs', '-C', src, '-cf', '-', 'exec']);
    const [entry] = await readAll(tar);
    expect(entry!.header.xattrs).toEqual({ 'user.bin': Buffer.from('00ff0a3d80c3', 'hex') });
  });

  it.skipIf(!isRoot)('reads device numbers from GNU tar (needs root for mknod)', async () => {
    await mkdir(src);
    run('mknod', [join(src, 'wide'), 'c', '4095', '1048575']);
    run('mknod', [join(src, 'null'), 'c', '1', '3']);
    const entries = await readAll(run('tar', ['-C', src, '-cf', '-', 'wide', 'null']));
    expect(entries.map((e) => [e.header.type, e.header.devmajor, e.header.devminor])).toEqual([
      ['char', 4095, 1048575],
      ['char', 1, 3],
    ]);
  });

  it('refuses GNU sparse files, POSIX sparse files and volume labels, naming the entry', async () => {
    await mkdir(src);
    await writeFile(join(src, 'f'), 'x');
    await truncate(join(src, 'f'), 8 * 1024 * 1024);
    await appendFile(join(src, 'f'), 'tail');
    await expectFailure(run('tar', ['--format=gnu', '--sparse', '-C', src, '-cf', '-', 'f']), /unsupported tar entry type for entry "f"/);
    await expectFailure(run('tar', ['--format=posix', '--sparse', '-C', src, '-cf', '-', 'f']), /entry "f" is a GNU sparse file/);
    await expectFailure(run('tar', ['-V', 'my label', '-C', src, '-cf', '-', 'f']), /entry "my label"/);
  });
});

describe('readTar on malformed input', () => {
  const fileEntry = (name: string, body: string) => ({ name, body: Buffer.from(body) });

  it('reports a cut in the middle of a file, naming the entry, from the body and from the iteration', async () => {
    const whole = rawTar([fileEntry('first', 'ok'), fileEntry('dir/big', 'x'.repeat(5000))]);
    const cut = whole.subarray(0, 512 * 3 + 1000);
    await expectFailure(cut, /unexpected end of tar archive in entry "dir\/big"/);

    const seen: string[] = [];
    const error = await (async () => {
      for await (const { rawName, body } of readTar(Readable.from([cut]))) {
        seen.push(rawName);
        await collect(body);
      }
    })().catch((err: unknown) => err);
    expect(seen).toEqual(['first', 'dir/big']);
    expect((error as Error).message).toBe('unexpected end of tar archive in entry "dir/big"');
  });

  it('reports a cut inside a header after the last complete entry', async () => {
    const whole = rawTar([fileEntry('first', 'ok'), fileEntry('second', 'x')]);
    await expectFailure(whole.subarray(0, 1024 + 100), /unexpected end of tar archive after entry "first"/);
    await expectFailure(whole.subarray(0, 100), /unexpected end of tar archive before the first entry/);
  });

  it('reports a corrupt header', async () => {
    const tar = rawTar([fileEntry('first', 'ok'), fileEntry('second', 'x')]);
    tar[1024 + 10] ^= 0xff;
    await expectFailure(tar, /invalid tar header after entry "first"/);
  });

  it("refuses names and hardlink targets with '..', naming the entry", async () => {
    await expectFailure(rawTar([fileEntry('../evil', 'x')]), /"\.\.\/evil".*'\.\.'/, InvalidEntryPathError);
    await expectFailure(rawTar([{ name: 'h', typeflag: '1', linkname: 'a/../../etc/passwd' }]), /"h": hardlink target "a\/\.\.\/\.\.\/etc\/passwd" contains a '\.\.' segment/, InvalidEntryPathError);
    await expectFailure(rawTar([{ name: '.', typeflag: '0' }]), /names the archive root but is a file/, InvalidEntryPathError);
  });

  it('normalizes names and hardlink targets but keeps the raw forms', async () => {
    const entries: Array<{ path: string; rawName: string; linkname?: string; rawLinkname?: string }> = [];
    for await (const { header, rawName, rawLinkname, body } of readTar(
      Readable.from([rawTar([{ name: './', typeflag: '5' }, { name: '/a//b/', typeflag: '5' }, { name: 'h', typeflag: '1', linkname: '/a/b/f' }, { name: 's', typeflag: '2', linkname: '../up' }])]),
    )) {
      body.resume();
      entries.push({ path: header.path, rawName, ...(header.linkname !== undefined ? { linkname: header.linkname, rawLinkname } : {}) });
    }
    expect(entries).toEqual([
      { path: 'a/b', rawName: '/a//b/' },
      { path: 'h', rawName: 'h', linkname: 'a/b/f', rawLinkname: '/a/b/f' },
      { path: 's', rawName: 's', linkname: '../up', rawLinkname: '../up' },
    ]);
  });

  it('treats a V7 entry with a trailing slash as a directory', async () => {
    const [entry] = await readAll(rawTar([{ name: 'old/', typeflag: '0', magic: 'v7' }]));
    expect(entry!.header).toMatchObject({ path: 'old', type: 'directory' });
  });

  it('refuses unknown entry types', async () => {
    await expectFailure(rawTar([{ name: 'weird', typeflag: 'Z', body: Buffer.from('abc') }]), /unsupported tar entry type for entry "weird"/);
  });

  it('reads PAX records byte-exact, and libarchive xattrs when no SCHILY one is given', async () => {
    const value = Buffer.from([0x00, 0x0a, 0xff, 0x3d]);
    const pax = paxBody([
      ['SCHILY.xattr.user.a', value],
      ['LIBARCHIVE.xattr.user.a', Buffer.from('ignored').toString('base64')],
      ['LIBARCHIVE.xattr.user.b%3Dc', value.toString('base64')],
      ['mtime', '1234.5'],
      ['atime', '99.25'],
      ['path', 'ünï/long'],
      ['uname', 'pax user'],
    ]);
    const [entry] = await readAll(rawTar([{ name: 'PaxHeader', typeflag: 'x', body: pax }, fileEntry('short', 'data')]));
    expect(entry!.header).toMatchObject({ path: 'ünï/long', mtime: 1234.5, atime: 99.25, uname: 'pax user', size: 4 });
    expect(entry!.header.xattrs).toEqual({ 'user.a': value, 'user.b=c': value });
  });

  it('refuses malformed PAX records', async () => {
    await expectFailure(rawTar([{ name: 'p', typeflag: 'x', body: Buffer.from('99 path=x\n') }, fileEntry('f', '')]), /malformed PAX/);
    await expectFailure(rawTar([{ name: 'p', typeflag: 'x', body: paxBody([['uid', 'abc']]) }, fileEntry('f', '')]), /invalid PAX uid/);
    expect(() => parsePaxRecords(Buffer.from('7 path\n'))).toThrow(/no keyword/);
    expect(parsePaxRecords(Buffer.concat([Buffer.from('10 path=x\n'), Buffer.alloc(20)]))).toEqual(new Map([['path', Buffer.from('x')]]));
  });
});

describe('readTar iteration', () => {
  it('discards unread bodies when moving on', async () => {
    const tar = rawTar([
      { name: 'a', body: Buffer.alloc(100_000, 1) },
      { name: 'b', body: Buffer.from('bee') },
      { name: 'c', body: Buffer.alloc(70_000, 3) },
      { name: 'd', body: Buffer.from('dee') },
    ]);
    const seen: Array<[string, string]> = [];
    for await (const { header, body } of readTar(Readable.from([tar.subarray(0, 7000), tar.subarray(7000)]))) {
      if (header.path === 'b' || header.path === 'd') seen.push([header.path, (await collect(body)).toString()]);
      if (header.path === 'c') body.read(0);
    }
    expect(seen).toEqual([
      ['b', 'bee'],
      ['d', 'dee'],
    ]);
  });

  it('stops reading and destroys the input when the consumer stops early', async () => {
    const tar = rawTar(Array.from({ length: 50 }, (_, i) => ({ name: `f${i}`, body: Buffer.alloc(10_000) })));
    const input = Readable.from(
      (function* () {
        for (let i = 0; i < tar.length; i += 4096) yield tar.subarray(i, i + 4096);
      })(),
    );
    for await (const { header, body } of readTar(input)) {
      body.resume();
      if (header.path === 'f2') break;
    }
    await new Promise((resolve) => setImmediate(resolve));
    expect(input.destroyed).toBe(true);
  });

  it('reads from any async iterable of chunks', async () => {
    const tar = rawTar([{ name: 'x', body: Buffer.from('xyz') }]);
    async function* chunks() {
      for (let i = 0; i < tar.length; i += 100) yield new Uint8Array(tar.subarray(i, i + 100));
    }
    const got: string[] = [];
    for await (const { body } of readTar(chunks())) got.push((await collect(body)).toString());
    expect(got).toEqual(['xyz']);
  });
});

describe('pack → read round trip (property)', () => {
  const segment = fc
    .oneof(
      fc.string({ minLength: 1, maxLength: 12 }),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 8 }),
      fc.string({ unit: fc.constantFrom('a', 'é', '日', '😀', ' ', '-'), minLength: 90, maxLength: 130 }),
    )
    .filter((s) => s !== '.' && s !== '..' && !s.includes('/') && !s.includes('\0'));
  const path = fc.array(segment, { minLength: 1, maxLength: 4 }).map((segments) => segments.join('/'));
  const id = fc.oneof(fc.integer({ min: 0, max: 70000 }), fc.integer({ min: 0, max: 2 ** 31 }));
  const ownerName = fc.option(
    fc.oneof(fc.string({ minLength: 1, maxLength: 40 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 12 })).filter((s) => !s.includes('\0')),
    { nil: undefined },
  );
  const xattrName = fc
    .oneof(fc.string({ minLength: 1, maxLength: 20 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 10 }))
    .filter((s) => !/[=\0\n]/.test(s))
    .map((s) => `user.${s}`);
  const xattrs = fc.option(
    fc.dictionary(xattrName, fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)), { minKeys: 1, maxKeys: 3 }),
    { nil: undefined },
  );

  const entry = fc
    .record({
      path,
      type: fc.constantFrom(...ENTRY_TYPES),
      mode: fc.integer({ min: 0, max: 0o7777 }),
      uid: id,
      gid: id,
      uname: ownerName,
      gname: ownerName,
      mtime: fc.integer({ min: -(2 ** 34), max: 2 ** 34 }),
      content: fc.uint8Array({ maxLength: 1500 }),
      symlinkTarget: fc.string({ unit: 'binary', minLength: 1, maxLength: 200 }).filter((s) => !s.includes('\0')),
      hardlinkTarget: path,
      devmajor: fc.integer({ min: 0, max: 2 ** 31 }),
      devminor: fc.integer({ min: 0, max: 2 ** 31 }),
      xattrs,
    })
    .map((r): PackSource => {
      const header: EntryHeader = { path: r.path, type: r.type, mode: r.mode, uid: r.uid, gid: r.gid, mtime: r.mtime, size: 0 };
      if (r.uname !== undefined) header.uname = r.uname;
      if (r.gname !== undefined) header.gname = r.gname;
      if (r.xattrs !== undefined) header.xattrs = r.xattrs;
      if (r.type === 'symlink') header.linkname = r.symlinkTarget;
      if (r.type === 'hardlink') header.linkname = r.hardlinkTarget;
      if (r.type === 'char' || r.type === 'block') {
        header.devmajor = r.devmajor;
        header.devminor = r.devminor;
      }
      if (r.type !== 'file') return { header };
      const content = Buffer.from(r.content);
      header.size = content.length;
      return { header, content: () => content };
    });

  it('keeps every header field and every byte of content', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(entry, { selector: (e) => e.header.path, maxLength: 6 }), async (sources) => {
        const tar = await collect(packEntries(sources));
        const again = await collect(packEntries(sources));
        expect(again.equals(tar)).toBe(true);
        const back = await readAll(tar);
        expect(back.map((e) => e.header)).toEqual(sources.map((s) => s.header));
        back.forEach((e, i) => {
          const content = sources[i]!.content?.();
          expect(e.content.equals(content instanceof Buffer ? content : Buffer.alloc(0))).toBe(true);
        });
      }),
      { numRuns: 150 },
    );
  });
});
