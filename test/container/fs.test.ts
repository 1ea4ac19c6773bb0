/**
 * ContainerFs: copy-up, whiteouts, opaque directories, renames and links in
 * overlay format; the snapshot dirs never change; a real overlay mount of the
 * same directories sees what the API sees; and the same changes made by
 * processes in a mounted overlay give the same layer as when made through
 * the API.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, chown, lstat, mkdir, mkdtemp, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerFs, ContainerPathError } from '../../src/container/fs.js';
import type { Container } from '../../src/container/container-store.js';
import { changesetFromUpper } from '../../src/snapshot/upperdiff.js';
import { makeLayer } from '../../src/layer/make.js';
import { readTreeXattrs } from '../../src/tar/walk.js';
import {
  CAP_NET_BIND,
  FIXED_TIME,
  canMountOverlay,
  execFileAsync,
  hostOps,
  isRoot,
  listing,
  makeFixtureImage,
  makeImage,
  mountOverlay,
  sandbox,
  treeFingerprint,
  type Sandbox,
} from './helpers.js';

let sb: Sandbox;
let lowerPrints: Map<string, string>;
const overlayOk = await canMountOverlay();

beforeAll(async () => {
  sb = await sandbox();
  await makeFixtureImage(sb.images, sb.dir);
  const probe = await sb.containers.create('fixture:1');
  lowerPrints = new Map();
  for (const dir of await probe.lowerDirs()) lowerPrints.set(dir, await treeFingerprint(dir));
});

afterAll(async () => {
  // Whatever the tests did, the shared snapshot dirs must be exactly as unpacked.
  for (const [dir, print] of lowerPrints) expect(await treeFingerprint(dir)).toBe(print);
  await sb.cleanup();
});

async function fresh(): Promise<{ container: Container; fsys: ContainerFs }> {
  const container = await sb.containers.create('fixture:1');
  return { container, fsys: await ContainerFs.open(container) };
}

const sha = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  await expect(promise).rejects.toSatisfy((err: unknown) => err instanceof ContainerPathError && err.code === code);
}

describe.skipIf(!isRoot)('ContainerFs (needs root: fixture owners, trusted.* xattrs, mknod)', () => {
  it('reads the merged view of the image layers', async () => {
    const { fsys } = await fresh();
    expect(await fsys.readFile('/etc/conf', 'utf8')).toBe('conf v3\n');
    expect(await fsys.exists('/etc/remove-me')).toBe(false);
    expect(await fsys.readdir('/opq')).toEqual(['new']);
    expect(await fsys.readdir('/')).toEqual(['abs', 'app', 'bin', 'data', 'etc', 'evil', 'lib', 'opq', 'share']);
    expect((await fsys.stat('/bin/tool-link')).mode & 0o7777).toBe(0o4755);
    expect((await fsys.lstat('/bin/tool-link')).isSymbolicLink()).toBe(true);
    expect(await fsys.realpath('/abs/conf')).toBe('/etc/conf');
    const chunks: Buffer[] = [];
    for await (const chunk of fsys.createReadStream('/etc/big', { start: 10, end: 19 })) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('bbbbbbbbbb');
    const missing = fsys.createReadStream('/etc/nope');
    await expect(
      (async () => {
        for await (const _ of missing) void _;
      })(),
    ).rejects.toThrow(/ENOENT/);
  });

  it('copies up on first write with owner, mode, xattrs and times, keeping the parent directory unchanged', async () => {
    const { container, fsys } = await fresh();
    await fsys.chmod('/bin/tool', 0o4755);
    const upper = join(container.upperDir, 'bin/tool');
    const copied = await lstat(upper);
    expect([copied.uid, copied.gid, copied.mode & 0o7777, copied.mtime.getTime()]).toEqual([1000, 1000, 0o4755, FIXED_TIME.getTime()]);
    const xattrs = (await readTreeXattrs(container.upperDir, { all: true }))!.get('bin/tool')!;
    expect(xattrs['user.note']?.toString()).toBe('hello');
    expect(xattrs['security.capability']).toEqual(CAP_NET_BIND);
    // Writing then behaves as in the kernel: the data changes, and so does the mtime.
    await fsys.writeFile('/bin/tool', 'appended\n', { flag: 'a' });
    expect(await readFile(upper, 'utf8')).toBe('#!/bin/sh\necho tool\nappended\n');
    expect((await lstat(upper)).mtime.getTime()).toBeGreaterThan(FIXED_TIME.getTime());
    // The copied-up parent keeps the lower directory's attributes and times, as overlayfs keeps them.
    const parent = await lstat(join(container.upperDir, 'bin'));
    expect(parent.mtime.getTime()).toBe(FIXED_TIME.getTime());
    // chmod copies the data up too, but leaves the file's mtime alone.
    await fsys.chmod('/etc/conf2', 0o600);
    const conf2 = await lstat(join(container.upperDir, 'etc/conf2'));
    expect([conf2.mode & 0o777, conf2.mtime.getTime()]).toEqual([0o600, FIXED_TIME.getTime()]);
    expect(await readFile(join(container.upperDir, 'etc/conf2'), 'utf8')).toBe('c2\n');
    // A directory copied up for a chown keeps everything else.
    await fsys.chown('/data', 1000, 0);
    const data = await lstat(join(container.upperDir, 'data'));
    expect([data.uid, data.gid, data.mode & 0o7777]).toEqual([1000, 0, 0o750]);
    expect(await readdir(join(container.upperDir, 'data'))).toEqual([]);
  });

  it('copies up a big file (copied by cp) with its attributes', async () => {
    const tree = join(sb.dir, 'bigtree');
    await mkdir(tree, { recursive: true });
    const data = randomBytes(40 * 1024 * 1024);
    await writeFile(join(tree, 'big.bin'), data);
    await chmod(join(tree, 'big.bin'), 0o640);
    await chown(join(tree, 'big.bin'), 7, 8);
    await utimes(join(tree, 'big.bin'), FIXED_TIME, FIXED_TIME);
    await makeImage(sb.images, 'big:1', [{ dir: tree }], {}, { compression: 'none' });
    const c = await sb.containers.create('big:1');
    await (await ContainerFs.open(c)).chown('/big.bin', 7, 9);
    const upper = join(c.upperDir, 'big.bin');
    const st = await lstat(upper);
    expect([st.mode & 0o7777, st.uid, st.gid, st.mtime.getTime(), st.size]).toEqual([0o640, 7, 9, FIXED_TIME.getTime(), data.length]);
    expect(sha(await readFile(upper))).toBe(sha(data));
  });

  it('truncating open copies no data; r+ writes in place after a full copy-up', async () => {
    const { container, fsys } = await fresh();
    await fsys.writeFile('/etc/big', 'small');
    expect((await stat(join(container.upperDir, 'etc/big'))).size).toBe(5);
    const stream = fsys.createWriteStream('/etc/conf3', { flags: 'r+', start: 1 });
    await new Promise<void>((resolve, reject) => stream.on('error', reject).end('X', resolve));
    expect(await fsys.readFile('/etc/conf3', 'utf8')).toBe('cX\n');
    await fsys.truncate('/etc/conf2', 1);
    expect(await fsys.readFile('/etc/conf2', 'utf8')).toBe('c');
  });

  it('deletes lower entries with whiteouts sharing one inode', async () => {
    const { container, fsys } = await fresh();
    await fsys.rm('/etc/conf2');
    await fsys.rm('/etc/conf3');
    await fsys.rm('/data', { recursive: true });
    for (const path of ['etc/conf2', 'etc/conf3', 'data']) {
      const st = await lstat(join(container.upperDir, path));
      expect(st.isCharacterDevice() && st.rdev === 0).toBe(true);
    }
    const a = await lstat(join(container.upperDir, 'etc/conf2'));
    const b = await lstat(join(container.upperDir, 'data'));
    expect(a.ino).toBe(b.ino);
    expect(await fsys.exists('/etc/conf2')).toBe(false);
    expect(await fsys.readdir('/')).not.toContain('data');
    // Removing an upper-only file leaves nothing behind.
    await fsys.writeFile('/etc/fresh', 'x');
    await fsys.rm('/etc/fresh');
    await expect(lstat(join(container.upperDir, 'etc/fresh'))).rejects.toThrow(/ENOENT/);
  });

  it('a removed and recreated directory is opaque and hides the lower content', async () => {
    const { container, fsys } = await fresh();
    await fsys.rm('/data', { recursive: true });
    await fsys.mkdir('/data', { mode: 0o700 });
    await fsys.writeFile('/data/fresh', 'f');
    expect(await fsys.readdir('/data')).toEqual(['fresh']);
    const xattrs = (await readTreeXattrs(container.upperDir, { all: true }))!.get('data')!;
    expect(xattrs['trusted.overlay.opaque']?.toString()).toBe('y');
    expect((await fsys.stat('/data')).mode & 0o7777).toBe(0o700);
    // A fresh ContainerFs (reading the markers from disk) sees the same.
    expect(await (await ContainerFs.open(container)).readdir('/data')).toEqual(['fresh']);
  });

  it('renames lower files and directories the way mv does on an overlay mount', async () => {
    const { container, fsys } = await fresh();
    await fsys.rename('/lib/tool', '/bin/tool2');
    expect(await fsys.readFile('/bin/tool2', 'utf8')).toBe('lib tool\n');
    expect(await fsys.exists('/lib/tool')).toBe(false);
    await fsys.rename('/share', '/share2');
    expect(await fsys.exists('/share')).toBe(false);
    expect(await fsys.readFile('/share2/doc/readme', 'utf8')).toBe('read me\n');
    const h1 = await lstat(join(container.upperDir, 'share2/hard1'));
    const h2 = await lstat(join(container.upperDir, 'share2/hard2'));
    expect(h1.ino).toBe(h2.ino);
    expect((await lstat(join(container.upperDir, 'share2/doc'))).mtime.getTime()).toBe(FIXED_TIME.getTime());
    expect((await lstat(join(container.upperDir, 'share'))).isCharacterDevice()).toBe(true);
    // A pure upper directory moves with one rename; onto a lower name it becomes opaque.
    await fsys.mkdir('/mine');
    await fsys.writeFile('/mine/x', 'x');
    await fsys.rm('/opq', { recursive: true });
    await fsys.rename('/mine', '/opq');
    expect(await fsys.readdir('/opq')).toEqual(['x']);
    expect((await readTreeXattrs(container.upperDir, { all: true }))!.get('opq')?.['trusted.overlay.opaque']?.toString()).toBe('y');
  });

  it('hard-links a lower file by copying it up first', async () => {
    const { container, fsys } = await fresh();
    await fsys.link('/etc/conf2', '/etc/conf2.hard');
    const a = await lstat(join(container.upperDir, 'etc/conf2'));
    const b = await lstat(join(container.upperDir, 'etc/conf2.hard'));
    expect(a.ino).toBe(b.ino);
    expect(await fsys.readFile('/etc/conf2.hard', 'utf8')).toBe('c2\n');
  });

  it('never follows a symlink out of the container root', async () => {
    const { container, fsys } = await fresh();
    const hostPasswd = sha(await readFile('/etc/passwd'));
    await fsys.writeFile('/evil/passwd', 'owned\n');
    await fsys.writeFile('/abs/group', 'owned\n');
    expect(sha(await readFile('/etc/passwd'))).toBe(hostPasswd);
    expect(await readFile(join(container.upperDir, 'etc/passwd'), 'utf8')).toBe('owned\n');
    expect(await readFile(join(container.upperDir, 'etc/group'), 'utf8')).toBe('owned\n');
    expect(await fsys.realpath('/evil/../evil/conf')).toBe('/etc/conf');
    expect(await fsys.realpath('/evil/../../../..')).toBe('/');
    await expectCode(fsys.readFile('/evil/hostname-that-is-not-in-the-image'), 'ENOENT');
  });

  it('reports errors like the kernel', async () => {
    const { fsys } = await fresh();
    await expectCode(fsys.readFile('/nope'), 'ENOENT');
    await expectCode(fsys.mkdir('/etc'), 'EEXIST');
    await expectCode(fsys.writeFile('/etc/conf/x', 'x'), 'ENOTDIR');
    await expectCode(fsys.writeFile('/etc', 'x'), 'EISDIR');
    await expectCode(fsys.rmdir('/etc'), 'ENOTEMPTY');
    await expectCode(fsys.rm('/etc'), 'EISDIR');
    await expectCode(fsys.rename('/etc', '/etc/sub'), 'EINVAL');
    await expectCode(fsys.rename('/etc/conf', '/data'), 'EISDIR');
    await expectCode(fsys.writeFile('/etc/conf', 'x', { flag: 'wx' }), 'EEXIST');
    await fsys.mkdir('/a/b/c', { recursive: true });
    expect(await fsys.readdir('/a/b')).toEqual(['c']);
  });
});

/**
 * The torture sequence, once as ContainerFs calls and once as shell commands
 * run in a mounted overlay of another container of the same image.
 */
const TORTURE: Array<[string, (fsys: ContainerFs) => Promise<void>]> = [
  ['echo n > new.txt', (f) => f.writeFile('/new.txt', 'n\n')],
  ['echo more >> etc/conf', (f) => f.writeFile('/etc/conf', 'more\n', { flag: 'a' })],
  ['rm etc/remove2', (f) => f.rm('/etc/remove2')],
  ['rm -rf data && mkdir data && chmod 755 data && echo f > data/fresh', async (f) => {
    await f.rm('/data', { recursive: true });
    await f.mkdir('/data', { mode: 0o755 });
    await f.writeFile('/data/fresh', 'f\n');
  }],
  ['mv lib/tool bin/tool2', (f) => f.rename('/lib/tool', '/bin/tool2')],
  ['mv share share2', (f) => f.rename('/share', '/share2')],
  ['ln etc/conf2 etc/conf2.hard', (f) => f.link('/etc/conf2', '/etc/conf2.hard')],
  ['chmod 600 etc/conf3', (f) => f.chmod('/etc/conf3', 0o600)],
  ['mkdir -p a/b/c && echo x > a/b/c/d', async (f) => {
    await f.mkdir('/a/b/c', { recursive: true });
    await f.writeFile('/a/b/c/d', 'x\n');
  }],
  [': > etc/big', (f) => f.writeFile('/etc/big', '')],
  ['ln -s etc/conf link', (f) => f.symlink('etc/conf', '/link')],
  ['rm opq/new', (f) => f.rm('/opq/new')],
  ['chown 1000:1000 bin/tool-link', (f) => f.chown('/bin/tool-link', 1000, 1000)],
  ['echo v > bin/tool', (f) => f.writeFile('/bin/tool', 'v\n')],
];

describe.skipIf(!overlayOk)('ContainerFs and a real overlay mount (needs root and overlayfs)', () => {
  it('a mount of the dirs shows what the API shows, and processes making the same changes give the same layer', async () => {
    const viaApi = await fresh();
    for (const [, op] of TORTURE) await op(viaApi.fsys);

    const viaShell = await sb.containers.create('fixture:1');
    const mnt = await mkdtemp(join(sb.dir, 'mnt-'));
    const lowers = await viaShell.lowerDirs();
    const unmount = await mountOverlay(lowers, viaShell.upperDir, viaShell.workDir, mnt);
    try {
      for (const [command] of TORTURE) await execFileAsync('sh', ['-c', `set -e; ${command}`], { cwd: mnt });
    } finally {
      await unmount();
    }

    // The API's upper, mounted, looks exactly like the API's view of it.
    const apiListing = await listing(viaApi.fsys);
    const mnt2 = await mkdtemp(join(sb.dir, 'mnt-'));
    const unmount2 = await mountOverlay(lowers, viaApi.container.upperDir, viaApi.container.workDir, mnt2);
    try {
      expect(await listing(hostOps(mnt2))).toEqual(apiListing);
    } finally {
      await unmount2();
    }
    // The kernel's upper, read through the API, looks like the mount did.
    expect(await listing(await ContainerFs.open(viaShell))).toEqual(apiListing);

    // Same changes, same layer: with mtimes clamped (they are the only thing time-dependent), byte-identical tars.
    const layerOf = async (c: Container) =>
      makeLayer(sb.images.content, { changeset: await changesetFromUpper(c.upperDir, { lowerDirs: lowers }) }, { compression: 'none', sourceDateEpoch: 946684800 });
    const [a, b] = [await layerOf(viaApi.container), await layerOf(viaShell)];
    expect(a.diffId).toBe(b.diffId);
    await rm(mnt, { recursive: true });
    await rm(mnt2, { recursive: true });
  });
});

describe.skipIf(!isRoot)('ContainerFs concurrency', () => {
  it('serializes concurrent changes on one object', async () => {
    const { container, fsys } = await fresh();
    // Each of these would copy /data (and so its attributes) up first, and they all start at once.
    await Promise.all([
      ...Array.from({ length: 20 }, (_, i) => fsys.writeFile(`/data/new${i}`, `${i}`)),
      fsys.rm('/data/one'),
      fsys.rename('/data/sub', '/data/sub2'),
    ]);
    expect(await fsys.readdir('/data')).toEqual([...Array.from({ length: 20 }, (_, i) => `new${i}`).sort(), 'sub2']);
    const data = await lstat(join(container.upperDir, 'data'));
    expect([data.uid, data.gid, data.mode & 0o7777]).toEqual([1000, 1000, 0o750]);
  });
});
