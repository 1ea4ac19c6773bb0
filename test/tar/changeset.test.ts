import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidChangesetError, changesetEntries, tarFromChangeset, type Changeset, type ChangesetEntry } from '../../src/tar/changeset.js';
import type { EntryHeader } from '../../src/tar/entry.js';
import { collect, readAll, run, sha256, tempDir } from './tar-helpers.js';

function dir(path: string, extra: Partial<EntryHeader> = {}): ChangesetEntry {
  return { header: { path, type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: 1_700_000_000, size: 0, ...extra } };
}

function file(path: string, content: string, extra: Partial<EntryHeader> = {}): ChangesetEntry {
  const bytes = Buffer.from(content);
  return { header: { path, type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 1_700_000_000, size: bytes.length, ...extra }, content: () => bytes };
}

describe('tarFromChangeset', () => {
  const changeset = (): Changeset => ({
    entries: [file('etc/zz', 'z'), dir('etc'), file('etc/app.conf', 'conf'), dir('var/cache', { mode: 0o2775, uid: 5, gid: 6, uname: 'cache' }), file('a-top', 'top'), file('var/cache/new', 'n')],
    deletions: ['etc/old', 'etc/-dash', 'usr/bin/gone', 'zzz'],
    opaqueDirs: ['var/cache'],
  });

  it('orders parents first, whiteouts (opaque marker first) before their siblings, all by byte order', async () => {
    const entries = await readAll(await collect(tarFromChangeset(changeset())));
    expect(entries.map((e) => e.rawName)).toEqual([
      '.wh.zzz',
      'a-top',
      'etc/',
      'etc/.wh.-dash',
      'etc/.wh.old',
      'etc/app.conf',
      'etc/zz',
      'usr/bin/.wh.gone',
      'var/cache/',
      'var/cache/.wh..wh..opq',
      'var/cache/new',
    ]);
  });

  it('writes whiteouts as empty files with mode 0600 and owner 0:0 (as the moby overlay2 differ does); opaque markers take their directory’s perms and owner', async () => {
    const entries = await readAll(await collect(tarFromChangeset(changeset())));
    const byName = Object.fromEntries(entries.map((e) => [e.header.path, e.header]));
    expect(byName['etc/.wh.old']).toEqual({ path: 'etc/.wh.old', type: 'file', mode: 0o600, uid: 0, gid: 0, mtime: 0, size: 0 });
    expect(byName['var/cache/.wh..wh..opq']).toEqual({ path: 'var/cache/.wh..wh..opq', type: 'file', mode: 0o775, uid: 5, gid: 6, uname: 'cache', mtime: 0, size: 0 });
    const list = run('tar', ['-tv', '--numeric-owner', '-f', '-'], { input: await collect(tarFromChangeset(changeset())) }).toString();
    expect(list).toMatch(/^-rw------- 0\/0 +0 1970-01-01 \d\d:\d\d etc\/\.wh\.old$/m);
  });

  it('gives the same bytes whatever order the changeset lists things in', async () => {
    const cs = changeset();
    const shuffled: Changeset = { entries: [...cs.entries].reverse(), deletions: [...cs.deletions].reverse(), opaqueDirs: [...cs.opaqueDirs] };
    expect(sha256(await collect(tarFromChangeset(shuffled)))).toBe(sha256(await collect(tarFromChangeset(cs))));
  });

  it('normalizes paths and supports an opaque root', async () => {
    const entries = await readAll(
      await collect(tarFromChangeset({ entries: [file('./a//b', 'x')], deletions: ['/c/'], opaqueDirs: ['.'] })),
    );
    expect(entries.map((e) => e.rawName)).toEqual(['.wh..wh..opq', '.wh.c', 'a/b']);
  });

  it('reads file content from sourcePath and clamps mtimes to sourceDateEpoch', async () => {
    const { path: root, cleanup } = await tempDir();
    try {
      await writeFile(join(root, 'src'), 'from disk');
      const cs: Changeset = {
        entries: [{ header: { path: 'f', type: 'file', mode: 0o600, uid: 0, gid: 0, mtime: 2_000_000_000, size: 9 }, sourcePath: join(root, 'src') }],
        deletions: ['gone'],
        opaqueDirs: [],
      };
      const entries = await readAll(await collect(tarFromChangeset(cs, { sourceDateEpoch: 1_000_000_000 })));
      expect(entries.map((e) => [e.header.path, e.header.mtime, e.content.toString()])).toEqual([
        ['.wh.gone', 0, ''],
        ['f', 1_000_000_000, 'from disk'],
      ]);
    } finally {
      await cleanup();
    }
  });

  it.each<[string, Changeset, RegExp]>([
    ['a path both deleted and added', { entries: [file('a/b', 'x')], deletions: ['a/b/'], opaqueDirs: [] }, /"a\/b" is both deleted and added/],
    ['an entry under a deleted path', { entries: [file('a/b', 'x')], deletions: ['a'], opaqueDirs: [] }, /entry "a\/b" lies under deleted "a"/],
    ['a deletion under a deleted path', { entries: [], deletions: ['a', 'a/b'], opaqueDirs: [] }, /deletion "a\/b" lies under deleted "a"/],
    ['an opaque dir that is deleted', { entries: [], deletions: ['a'], opaqueDirs: ['a'] }, /opaque dir "a" is deleted/],
    ['an opaque dir added as a file', { entries: [file('a', 'x')], deletions: [], opaqueDirs: ['a'] }, /opaque dir "a" is added as a file/],
    ['a duplicate entry', { entries: [file('a', 'x'), file('./a', 'y')], deletions: [], opaqueDirs: [] }, /entry "a" is listed twice/],
    ['a duplicate deletion', { entries: [], deletions: ['a', '/a'], opaqueDirs: [] }, /deletion "a" is listed twice/],
    ['a whiteout-named entry', { entries: [file('d/.wh.x', '')], deletions: [], opaqueDirs: [] }, /uses a \.wh\. name/],
    ['a whiteout-named parent', { entries: [], deletions: ['.wh.d/x'], opaqueDirs: [] }, /uses a \.wh\. name/],
    ['deleting the root', { entries: [], deletions: ['/'], opaqueDirs: [] }, /deletion names the root/],
    ['an entry for the root', { entries: [dir('.')], deletions: [], opaqueDirs: [] }, /names the root/],
    ["a '..' path", { entries: [], deletions: ['a/../../b'], opaqueDirs: [] }, /'\.\.'/],
  ])('refuses %s before streaming anything', (_, cs, message) => {
    expect(() => tarFromChangeset(cs)).toThrow(InvalidChangesetError);
    expect(() => changesetEntries(cs)).toThrow(message);
  });
});
