/**
 * The userspace merged view COPY reads the image through (src/snapshot/merged.ts):
 * over real snapshots (overlay format), whiteouts hide, opaque directories
 * cut off what is below, directories merge, and symlinks resolve inside the
 * root, never out of it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MergedPathError, MergedView } from '../../src/snapshot/merged.js';
import { Snapshotter } from '../../src/snapshot/snapshotter.js';
import { makeLayer } from '../../src/layer/make.js';
import { chainIds } from '../../src/layer/chain.js';
import type { Changeset } from '../../src/tar/changeset.js';
import type { EntryHeader } from '../../src/tar/entry.js';
import { cleanupAll, openStore, type TestStore } from './engine-helpers.js';

let store: TestStore;
let view: MergedView;

function file(path: string, content: string, mode = 0o644): { header: EntryHeader; content: () => Buffer } {
  const data = Buffer.from(content);
  return { header: { path, type: 'file', mode, uid: 0, gid: 0, mtime: 1000, size: data.length }, content: () => data };
}
function dir(path: string, mode = 0o755, uid = 0): { header: EntryHeader } {
  return { header: { path, type: 'directory', mode, uid, gid: 0, mtime: 1000, size: 0 } };
}
function symlink(path: string, target: string): { header: EntryHeader } {
  return { header: { path, type: 'symlink', mode: 0o777, uid: 0, gid: 0, mtime: 1000, size: 0, linkname: target } };
}

beforeAll(async () => {
  store = await openStore();
  const lower: Changeset = {
    entries: [
      dir('a'),
      file('a/x', 'x-lower'),
      file('a/y', 'y-lower'),
      file('b', 'b was a file'),
      dir('c'),
      file('c/old', 'old'),
      dir('etc'),
      file('etc/passwd', 'root:x:0:0::/:/bin/sh\n'),
      symlink('abs', '/a'),
      symlink('rel', 'a/y'),
      symlink('escape', '../../../../etc/passwd'),
      symlink('loop1', 'loop2'),
      symlink('loop2', 'loop1'),
    ],
    deletions: [],
    opaqueDirs: [],
  };
  const upper: Changeset = {
    entries: [dir('a', 0o700, 5), file('a/z', 'z-upper'), dir('b'), file('b/inner', 'inner'), dir('c'), file('c/new', 'new')],
    deletions: ['a/x'],
    opaqueDirs: ['c'],
  };
  const l1 = await makeLayer(store.content, { changeset: lower }, {});
  const l2 = await makeLayer(store.content, { changeset: upper }, { parentChainId: l1.chainId });
  const top = chainIds([l1.diffId, l2.diffId])[1]!;
  const snapshotter = new Snapshotter(store.root, store.content, store.images.layers);
  view = new MergedView(await snapshotter.lowerDirs(top));
});
afterAll(cleanupAll);

describe('MergedView', () => {
  it('merges directories and hides whiteouts', async () => {
    expect(await view.readdir('/')).toEqual(['a', 'abs', 'b', 'c', 'escape', 'etc', 'loop1', 'loop2', 'rel']);
    expect(await view.readdir('/a')).toEqual(['y', 'z']);
    expect(await view.exists('/a/x')).toBe(false);
    expect((await view.lstat('/a')).header).toMatchObject({ type: 'directory', mode: 0o700, uid: 5 });
  });

  it('an opaque directory hides what is below it', async () => {
    expect(await view.readdir('/c')).toEqual(['new']);
    expect(await view.exists('/c/old')).toBe(false);
  });

  it('a directory over a file replaces it', async () => {
    expect((await view.lstat('/b')).header.type).toBe('directory');
    expect(await view.readdir('/b')).toEqual(['inner']);
  });

  it('reads file content from the visible layer', async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of await view.createReadStream('/a/y')) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('y-lower');
    expect((await view.readSmallFile('/rel'))?.toString()).toBe('y-lower');
    await expect(view.createReadStream('/a')).rejects.toMatchObject({ code: 'EISDIR' });
  });

  it('follows symlinks inside the root only', async () => {
    expect((await view.resolve('/abs/z', { followLast: true })).rel).toBe('a/z');
    expect((await view.resolve('/rel', { followLast: true })).rel).toBe('a/y');
    expect((await view.resolve('/rel')).rel).toBe('rel');
    expect(await view.readlink('/abs')).toBe('/a');
    // ../../.. stops at the root: the image's own /etc/passwd, not the host's.
    expect((await view.resolve('/escape', { followLast: true })).rel).toBe('etc/passwd');
    expect((await view.readSmallFile('/escape'))?.toString()).toBe('root:x:0:0::/:/bin/sh\n');
    await expect(view.resolve('/loop1', { followLast: true })).rejects.toMatchObject({ code: 'ELOOP' });
  });

  it('reports missing paths and files in the way', async () => {
    await expect(view.lstat('/nope')).rejects.toBeInstanceOf(MergedPathError);
    await expect(view.lstat('/nope/deeper')).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(view.lstat('/a/y/under-a-file')).rejects.toMatchObject({ code: 'ENOTDIR' });
    const partial = await view.resolve('/abs/new/dir', { followLast: true, allowMissing: true });
    expect(partial).toMatchObject({ rel: 'a/new/dir', node: undefined, missing: 2 });
  });

  it('walks a subtree in archive order', async () => {
    const walked: string[] = [];
    for await (const node of view.walk(await view.root())) walked.push(`${node.rel}:${node.header.type}`);
    expect(walked).toEqual([
      'a:directory',
      'a/y:file',
      'a/z:file',
      'abs:symlink',
      'b:directory',
      'b/inner:file',
      'c:directory',
      'c/new:file',
      'escape:symlink',
      'etc:directory',
      'etc/passwd:file',
      'loop1:symlink',
      'loop2:symlink',
      'rel:symlink',
    ]);
  });

  it('an empty stack is an empty root directory', async () => {
    const empty = new MergedView([]);
    expect(await empty.readdir('/')).toEqual([]);
    expect((await empty.root()).header).toMatchObject({ type: 'directory', mode: 0o755 });
    expect(await empty.exists('/x')).toBe(false);
  });
});
