/**
 * End to end with the kernel: snapshots stacked as overlay lower dirs show
 * the same tree as applying the layers into one directory, and what a
 * container does in the mount comes back out of the upper dir as a changeset
 * that reproduces the mounted tree. Needs root and overlayfs.
 */
import { spawnSync } from 'node:child_process';
import { appendFile, chmod, mkdir, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDecompressor } from '../../src/layer/compress.js';
import { makeLayer } from '../../src/layer/make.js';
import type { LayerRecord } from '../../src/layer/record.js';
import { mountOverlay, overlaySupported, unmount, type Unmount } from '../../src/runtime/overlay.js';
import { Snapshotter } from '../../src/snapshot/snapshotter.js';
import { changesetFromUpper, UpperDirError } from '../../src/snapshot/upperdiff.js';
import { tarFromChangeset } from '../../src/tar/changeset.js';
import { applyLayer, applyLayers } from '../../src/tar/extract.js';
import { box, cs, d, f, h, l, makeStack, pictureOf, type Box } from './helpers.js';

const canMount = (await overlaySupported(tmpdir())) && spawnSync('sh', ['-c', 'command -v getfattr'], { stdio: 'ignore' }).status === 0;

let b: Box;
const mounts: string[] = [];
beforeEach(async () => {
  b = await box('strata-snap-ovl-');
});
afterEach(async () => {
  for (const target of mounts.splice(0)) await unmount(target, { lazyFallback: true });
  await b.cleanup();
});

/** Version-2 VFS capability blob: cap_net_raw permitted + effective. */
const CAPABILITY = Buffer.from('0100000200200000000000000000000000000000', 'hex');
const T1 = 1_600_000_000;
const T2 = 1_650_000_000;
const T3 = 1_700_000_000;

/**
 * Layer 1 builds a small system; layer 2 deletes a file, makes a directory
 * opaque and replaces a file by a directory; layer 3 modifies a file, deletes
 * a directory, replaces a directory by a file and adds a home directory.
 * Every directory a layer touches is in it, as Docker's differ writes them.
 */
async function imageLayers(): Promise<LayerRecord[]> {
  return makeStack(b, [
    cs([
      d('bin', { mtime: T1 }),
      f('bin/tool', 'tool v1', { mode: 0o755, mtime: T1, xattrs: { 'security.capability': CAPABILITY } }),
      h('bin/tool-again', 'bin/tool'),
      d('etc', { mtime: T1 }),
      f('etc/a.conf', 'a v1', { mtime: T1 }),
      f('etc/b.conf', 'b v1', { mtime: T1 }),
      f('etc/keep.conf', 'keep', { mtime: T1, mode: 0o640, gid: 42 }),
      d('usr', { mtime: T1 }),
      d('usr/lib', { mtime: T1 }),
      d('usr/lib/x', { mtime: T1 }),
      f('usr/lib/x/x1', 'x1', { mtime: T1 }),
      d('usr/lib/x/sub', { mtime: T1 }),
      f('usr/lib/x/sub/x3', 'x3', { mtime: T1 }),
      d('usr/share', { mtime: T1 }),
      f('usr/share/doc', 'doc', { mtime: T1 }),
      l('lib', 'usr/lib', { mtime: T1 }),
      f('data', 'plain file', { mtime: T1 }),
      d('opt', { mtime: T1 }),
      d('opt/keep', { mtime: T1 }),
      f('opt/keep/k1', 'k1', { mtime: T1 }),
      d('opt/keep/deep', { mtime: T1 }),
      f('opt/keep/deep/k2', 'k2', { mtime: T1 }),
      d('var', { mtime: T1 }),
      d('var/cache', { mtime: T1 }),
      f('var/cache/c1', 'c1', { mtime: T1 }),
      d('home', { mtime: T1 }),
      d('home/user', { mode: 0o700, uid: 1000, gid: 1000, mtime: T1 }),
      f('home/user/.profile', 'profile', { uid: 1000, gid: 1000, mtime: T1 }),
      d('run', { mtime: T1 }),
      { header: { path: 'run/pipe', type: 'fifo', mode: 0o600, uid: 0, gid: 0, mtime: T1, size: 0 } },
    ]),
    cs(
      [
        d('etc', { mtime: T2 }),
        f('etc/c.conf', 'c v2', { mtime: T2 }),
        d('usr', { mtime: T2 }),
        d('usr/lib', { mtime: T2 }),
        d('usr/lib/x', { mode: 0o750, mtime: T2 }),
        f('usr/lib/x/new', 'new in 2', { mtime: T2 }),
        d('data', { mtime: T2 }),
        f('data/inner', 'inner', { mtime: T2 }),
      ],
      ['etc/b.conf'],
      ['usr/lib/x'],
    ),
    cs(
      [
        d('etc', { mtime: T3 }),
        f('etc/a.conf', 'a v3', { mtime: T3 }),
        d('var', { mtime: T3 }),
        d('usr', { mtime: T3 }),
        f('usr/share', 'now a file', { mtime: T3 }),
        d('home', { mtime: T3 }),
        d('home/user', { mode: 0o700, uid: 1000, gid: 1000, mtime: T3 }),
        f('home/user/notes', 'hello', { uid: 1000, gid: 1000, mtime: T3 }),
      ],
      ['var/cache'],
    ),
  ]);
}

/** The same layers applied one after the other into one plain directory. */
async function appliedInto(dir: string, layers: LayerRecord[]): Promise<void> {
  await mkdir(dir);
  await applyLayers(
    dir,
    layers.map((layer) => () => b.store.createReadStream(layer.digest).pipe(createDecompressor(layer.compression))),
  );
}

async function mount(lowerDirs: string[], name: string): Promise<{ merged: string; upper: string; release: Unmount }> {
  const base = join(b.dir, name);
  const [merged, upper, work] = ['merged', 'upper', 'work'].map((part) => join(base, part)) as [string, string, string];
  for (const dir of [merged, upper, work]) await mkdir(dir, { recursive: true });
  const release = await mountOverlay({ lowerDirs, upperDir: upper, workDir: work, target: merged });
  mounts.push(merged);
  return { merged, upper, release };
}

describe.skipIf(!canMount)('snapshots under a real overlay mount (skipped: needs root, overlayfs and getfattr)', () => {
  it('a stack of snapshots mounts to the same tree as applying the layers, and the upper dir commits back exactly', async () => {
    const layers = await imageLayers();
    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    const lowerDirs = await snapshotter.lowerDirs(layers[2]!.chainId);
    expect(lowerDirs).toHaveLength(3);

    const plain = join(b.dir, 'plain');
    await appliedInto(plain, layers);
    const { merged, upper, release } = await mount(lowerDirs, 'container');
    const image = await pictureOf(plain);
    expect(await pictureOf(merged)).toEqual(image);
    // The scenario really exercised what it claims to.
    expect(image['etc/b.conf']).toBeUndefined();
    expect(image['usr/lib/x/x1']).toBeUndefined();
    expect(image['usr/lib/x/new']).toMatch(/^file /);
    expect(image['data/inner']).toMatch(/^file /);
    expect(image['usr/share']).toMatch(/^file /);
    expect(image['var/cache']).toBeUndefined();
    expect(image['bin/tool-again']).toMatch(/^hardlink .* -> bin\/tool/);
    expect(image['bin/tool']).toContain(`security.capability=${CAPABILITY.toString('base64')}`);

    // What a container does: create, modify (copy-up), chmod (metadata copy-up), delete a lower
    // file, and remove a lower directory then make it again (opaque).
    await mkdir(join(merged, 'home/user/projects'));
    await writeFile(join(merged, 'home/user/projects/new.txt'), 'brand new');
    await appendFile(join(merged, 'etc/a.conf'), ' + local edit');
    await chmod(join(merged, 'etc/keep.conf'), 0o600);
    await unlink(join(merged, 'etc/c.conf'));
    await rm(join(merged, 'opt/keep'), { recursive: true });
    await mkdir(join(merged, 'opt/keep'));
    await writeFile(join(merged, 'opt/keep/again'), 'again');
    const container = await pictureOf(merged);
    await release();

    const changes = await changesetFromUpper(upper);
    expect(changes.entries.map((entry) => entry.header.path)).toEqual([
      'etc',
      'etc/a.conf',
      'etc/keep.conf',
      'home',
      'home/user',
      'home/user/projects',
      'home/user/projects/new.txt',
      'opt',
      'opt/keep',
      'opt/keep/again',
    ]);
    expect(changes.deletions).toEqual(['etc/c.conf']);
    expect(changes.opaqueDirs).toEqual(['opt/keep']);
    expect(changes.entries.find((entry) => entry.header.path === 'etc/keep.conf')!.header).toMatchObject({ mode: 0o600, gid: 42, size: 4 });
    expect(changes.entries.find((entry) => entry.header.path === 'home/user')!.header).toMatchObject({ uid: 1000, mode: 0o700 });

    // The committed layer on top of the image reproduces the container's tree.
    await applyLayer(plain, tarFromChangeset(changes));
    expect(await pictureOf(plain)).toEqual(container);

    // And as a fourth snapshot, stacked, it mounts to the same tree again.
    const committed = await makeLayer(b.store, { changeset: changes }, { parentChainId: layers[2]!.chainId });
    const stacked = await snapshotter.lowerDirs(committed.chainId);
    expect(stacked).toHaveLength(4);
    const again = await mount(stacked, 'again');
    expect(await pictureOf(again.merged)).toEqual(container);
  });

  it('a layer with an opaque root hides everything below it once stacked', async () => {
    const layers = await makeStack(b, [cs([f('old', 'old'), d('dir'), f('dir/x', 'x')]), cs([f('fresh', 'fresh')], [], ['']), cs([f('top', 'top')])]);
    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    const plain = join(b.dir, 'plain');
    await appliedInto(plain, layers);
    const lowerDirs = await snapshotter.lowerDirs(layers[2]!.chainId);
    const { merged } = await mount(lowerDirs, 'rootopaque');
    expect(Object.keys(await pictureOf(merged))).toEqual(['fresh', 'top']);
    expect(await pictureOf(merged)).toEqual(await pictureOf(plain));
  });

  it('reads the data of metadata-only copy-ups (metacopy=on) from the lower dirs', async () => {
    const [layer] = await makeStack(b, [cs([d('bin'), f('bin/tool', 'the real data', { mode: 0o755 })])]);
    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    const lowerDirs = await snapshotter.lowerDirs(layer!.chainId);
    const base = join(b.dir, 'metacopy');
    const [merged, upper, work] = ['merged', 'upper', 'work'].map((part) => join(base, part)) as [string, string, string];
    for (const dir of [merged, upper, work]) await mkdir(dir, { recursive: true });
    const mounted = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', `metacopy=on,index=off,lowerdir=${lowerDirs.join(':')},upperdir=${upper},workdir=${work}`, merged], { encoding: 'utf8' });
    expect(mounted.status, mounted.stderr).toBe(0);
    mounts.push(merged);
    await chmod(join(merged, 'bin/tool'), 0o700);
    await unmount(merged);

    await expect(changesetFromUpper(upper)).rejects.toThrow(/metadata-only copy-up/);
    const changes = await changesetFromUpper(upper, { lowerDirs });
    const tool = changes.entries.find((entry) => entry.header.path === 'bin/tool')!;
    expect(tool.header).toMatchObject({ mode: 0o700, size: 'the real data'.length });
    const plain = join(b.dir, 'plain');
    await appliedInto(plain, [layer!]);
    await applyLayer(plain, tarFromChangeset(changes));
    expect((await pictureOf(plain))['bin/tool']).toMatch(/^file 700 0:0 .*size=13/);
  });

  it('refuses an upper dir from a mount with redirect_dir=on where a lower directory was renamed', async () => {
    const [layer] = await makeStack(b, [cs([d('src'), f('src/file', 'x')])]);
    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    const lower = await snapshotter.ensure(layer!.chainId);
    const base = join(b.dir, 'redirect');
    const [merged, upper, work] = ['merged', 'upper', 'work'].map((part) => join(base, part)) as [string, string, string];
    for (const dir of [merged, upper, work]) await mkdir(dir, { recursive: true });
    const mounted = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', `redirect_dir=on,index=off,lowerdir=${lower},upperdir=${upper},workdir=${work}`, merged], { encoding: 'utf8' });
    expect(mounted.status, mounted.stderr).toBe(0);
    mounts.push(merged);
    await rename(join(merged, 'src'), join(merged, 'dst'));
    await unmount(merged);
    await expect(changesetFromUpper(upper)).rejects.toBeInstanceOf(UpperDirError);
  });
});
