import { spawnSync } from 'node:child_process';
import { cpSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sha256Of } from '../../src/content/digest.js';
import { BlobNotFoundError } from '../../src/content/errors.js';
import { zstdAvailable } from '../../src/layer/compress.js';
import { LayerNotFoundError } from '../../src/layer/record.js';
import { MergedView } from '../../src/snapshot/merged.js';
import { SnapshotError, Snapshotter, type UnpackEvent } from '../../src/snapshot/snapshotter.js';
import { readTreeXattrs } from '../../src/tar/walk.js';
import { box, cs, d, f, h, isRoot, l, makeStack, startChild, transpileForChild, type Box } from './helpers.js';

const hasGetfattr = spawnSync('sh', ['-c', 'command -v getfattr'], { stdio: 'ignore' }).status === 0;
const hasSetpriv = spawnSync('sh', ['-c', 'command -v setpriv'], { stdio: 'ignore' }).status === 0;

let b: Box;
beforeEach(async () => {
  b = await box();
});
afterEach(async () => {
  await b.cleanup();
});

/** Base layer, a layer with a whiteout and an opaque dir, and a layer replacing a file by a directory. */
async function threeLayers(compression: 'gzip' | 'none' | 'zstd' = 'gzip') {
  return makeStack(
    b,
    [
      cs([d('etc'), f('etc/a', 'a1'), f('etc/b', 'b1'), d('opt'), d('opt/x'), f('opt/x/old', 'old'), f('data', 'plain'), l('lib', 'usr/lib'), f('bin', 'tool'), h('bin2', 'bin')]),
      cs([d('etc'), d('opt'), d('opt/x', { mode: 0o750 }), f('opt/x/new', 'new')], ['etc/b'], ['opt/x']),
      cs([d('data'), f('data/inner', 'inner'), d('etc'), f('etc/a', 'a3')]),
    ],
    compression,
  );
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(at: string, prefix: string): Promise<void> {
    for (const name of (await readdir(at)).sort()) {
      const rel = prefix ? `${prefix}/${name}` : name;
      out.push(rel);
      if ((await lstat(join(at, name))).isDirectory()) await walk(join(at, name), rel);
    }
  }
  await walk(dir, '');
  return out;
}

describe('Snapshotter.ensure', () => {
  it('unpacks each layer of a stack alone, in overlay format, bottom first', async () => {
    const [l1, l2, l3] = await threeLayers();
    const events: UnpackEvent[] = [];
    const snapshotter = new Snapshotter(b.root, b.store, b.records, { onUnpack: (event) => events.push(event) });
    const top = await snapshotter.ensure(l3!.chainId);
    expect(top).toBe(join(b.root, 'strata', 'snapshots', l3!.chainId.slice(7), 'fs'));
    expect(events.filter((e) => e.phase === 'start').map((e) => e.chainId)).toEqual([l1!.chainId, l2!.chainId, l3!.chainId]);

    expect(await names(snapshotter.fsDir(l1!.chainId))).toEqual(['bin', 'bin2', 'data', 'etc', 'etc/a', 'etc/b', 'lib', 'opt', 'opt/x', 'opt/x/old']);
    expect(await names(snapshotter.fsDir(l2!.chainId))).toEqual(['etc', 'etc/b', 'opt', 'opt/x', 'opt/x/new']);
    expect(await names(top)).toEqual(['data', 'data/inner', 'etc', 'etc/a']);

    const whiteout = await lstat(join(snapshotter.fsDir(l2!.chainId), 'etc/b'));
    expect(whiteout.isCharacterDevice() && whiteout.rdev === 0).toBe(true);
    const hardlinked = await lstat(join(snapshotter.fsDir(l1!.chainId), 'bin2'));
    expect(hardlinked.nlink).toBe(2);
    expect(await readFile(join(top, 'etc/a'), 'utf8')).toBe('a3');
    // The snapshot directory itself is read-only; its fs keeps the image root's usual mode.
    expect((await lstat(join(top, '..'))).mode & 0o777).toBe(0o555);
    expect((await lstat(top)).mode & 0o777).toBe(0o755);
  });

  it.skipIf(!hasGetfattr)('marks opaque directories with the snapshotter\'s xattr namespace (skipped: getfattr missing)', async () => {
    const [, l2] = await threeLayers();
    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    const dir = await snapshotter.ensure(l2!.chainId);
    const xattrs = await readTreeXattrs(dir, { all: true });
    expect(xattrs?.get('opt/x')).toEqual({ [`${snapshotter.overlayXattrs}.overlay.opaque`]: Buffer.from('y') });
    expect(snapshotter.overlayXattrs).toBe(isRoot ? 'trusted' : 'user');
  });

  it('works for uncompressed layers too', async () => {
    const [, , l3] = await threeLayers('none');
    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    expect(await readFile(join(await snapshotter.ensure(l3!.chainId), 'data/inner'), 'utf8')).toBe('inner');
  });

  it.skipIf(!zstdAvailable())('works for zstd layers too (skipped: this Node has no zstd)', async () => {
    const [, , l3] = await threeLayers('zstd');
    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    expect(await readFile(join(await snapshotter.ensure(l3!.chainId), 'data/inner'), 'utf8')).toBe('inner');
  });

  it('unpacks a layer once: later calls, and concurrent ones in one process, reuse it', async () => {
    const [, , l3] = await threeLayers();
    const starts: string[] = [];
    const snapshotter = new Snapshotter(b.root, b.store, b.records, { onUnpack: (e) => e.phase === 'start' && starts.push(e.chainId) });
    const dirs = await Promise.all([snapshotter.ensure(l3!.chainId), snapshotter.ensure(l3!.chainId), snapshotter.lowerDirs(l3!.chainId)]);
    expect(dirs[0]).toBe(dirs[1]);
    expect(starts).toHaveLength(3);
    await snapshotter.ensure(l3!.chainId);
    const again = new Snapshotter(b.root, b.store, b.records, { onUnpack: (e) => e.phase === 'start' && starts.push(e.chainId) });
    await again.ensure(l3!.chainId);
    expect(starts).toHaveLength(3);
  });

  it('lowerDirs lists the stack topmost first', async () => {
    const layers = await threeLayers();
    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    expect(await snapshotter.lowerDirs(layers[2]!.chainId)).toEqual(layers.map((layer) => snapshotter.fsDir(layer.chainId)).reverse());
    expect(await snapshotter.lowerDirs(layers[0]!.chainId)).toEqual([snapshotter.fsDir(layers[0]!.chainId)]);
  });

  it('lowerDirs ends at a layer whose root is opaque, since overlayfs ignores opacity of a layer root', async () => {
    const [l1, l2, l3] = await makeStack(b, [cs([f('old', 'x')]), cs([f('fresh', 'y')], [], ['']), cs([f('top', 'z')])]);
    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    expect(await snapshotter.lowerDirs(l3!.chainId)).toEqual([snapshotter.fsDir(l3!.chainId), snapshotter.fsDir(l2!.chainId)]);
    expect((await snapshotter.get(l2!.chainId))?.rootOpaque).toBe(true);
    expect((await snapshotter.get(l1!.chainId))?.rootOpaque).toBe(false);
  });

  it('fails with LayerNotFoundError for a ChainID without a layer record, and publishes nothing', async () => {
    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    const unknown = sha256Of('no such layer');
    await expect(snapshotter.ensure(unknown)).rejects.toBeInstanceOf(LayerNotFoundError);
    expect(await snapshotter.list()).toEqual([]);
  });

  it('refuses a blob that does not match its digest, and leaves no snapshot or temp directory', async () => {
    const [l1] = await makeStack(b, [cs([f('file', 'original content')])], 'none');
    const blobPath = b.store.blobPath(l1!.digest);
    await chmod(blobPath, 0o644);
    const bytes = await readFile(blobPath);
    bytes[bytes.indexOf('original')] = 'X'.charCodeAt(0);
    await writeFile(blobPath, bytes);
    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    await expect(snapshotter.ensure(l1!.chainId)).rejects.toThrow(/sha256|digest|corrupt/i);
    expect(await snapshotter.get(l1!.chainId)).toBeUndefined();
    expect(await readdir(snapshotter.dir)).toEqual([]);
  });

  it('fails with BlobNotFoundError when the blob is gone', async () => {
    const [l1] = await makeStack(b, [cs([f('file', 'content')])]);
    await b.store.delete(l1!.digest);
    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    await expect(snapshotter.ensure(l1!.chainId)).rejects.toBeInstanceOf(BlobNotFoundError);
    expect(await readdir(snapshotter.dir)).toEqual([]);
  });

  it('names the layer when an entry cannot be unpacked alone (a hardlink to a lower layer\'s file)', async () => {
    const [, l2] = await makeStack(b, [cs([f('target', 'x')]), cs([h('link', 'target')])]);
    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    await expect(snapshotter.ensure(l2!.chainId)).rejects.toThrow(new RegExp(`unpacking layer ${l2!.diffId} .*hardlink target 'target' does not exist`));
    expect(await snapshotter.list()).toHaveLength(1);
  });

  it('refuses a layer whose unpacked tar does not hash to the DiffID of its record', async () => {
    const [real] = await makeStack(b, [cs([f('file', 'content')])]);
    const fakeDiffId = sha256Of('some other tar');
    await b.records.put({ ...real!, chainId: fakeDiffId, diffId: fakeDiffId });
    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    const failure = snapshotter.ensure(fakeDiffId);
    await expect(failure).rejects.toBeInstanceOf(SnapshotError);
    await expect(failure).rejects.toThrow(/not its DiffID/);
    expect(await readdir(snapshotter.dir)).toEqual([]);
  });

  it('redoes a snapshot left without .complete, and clears temp directories of interrupted unpacks', async () => {
    const [l1] = await makeStack(b, [cs([f('file', 'content')])]);
    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    const hex = l1!.chainId.slice(7);
    await mkdir(join(snapshotter.dir, hex, 'fs'), { recursive: true });
    await writeFile(join(snapshotter.dir, hex, 'fs', 'half-written'), '');
    await mkdir(join(snapshotter.dir, `.tmp-${hex}-999999-abcdef`, 'fs'), { recursive: true });
    expect(await snapshotter.get(l1!.chainId)).toBeUndefined();
    const dir = await snapshotter.ensure(l1!.chainId);
    expect(await names(dir)).toEqual(['file']);
    expect((await readdir(snapshotter.dir)).sort()).toEqual([hex]);
  });

  it('treats a damaged .complete as unfinished', async () => {
    const [l1] = await makeStack(b, [cs([f('file', 'content')])]);
    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    await snapshotter.ensure(l1!.chainId);
    const complete = join(snapshotter.dir, l1!.chainId.slice(7), '.complete');
    await chmod(join(complete, '..'), 0o755);
    await writeFile(complete, '{"chainId": "sha256:nope"');
    expect(await snapshotter.get(l1!.chainId)).toBeUndefined();
    await snapshotter.ensure(l1!.chainId);
    expect(await snapshotter.get(l1!.chainId)).toMatchObject({ chainId: l1!.chainId, diffId: l1!.diffId });
  });

  it('when another writer publishes first, discards its own copy and returns theirs', async () => {
    const [l1] = await makeStack(b, [cs([d('dir'), f('dir/file', 'content')])]);
    // The "other writer": the same layer unpacked under another root, copied in mid-unpack.
    const otherRoot = join(b.dir, 'other');
    const other = new Snapshotter(otherRoot, b.store, b.records);
    await other.ensure(l1!.chainId);
    const hex = l1!.chainId.slice(7);
    const snapshotter = new Snapshotter(b.root, b.store, b.records, {
      onUnpack: (event) => {
        if (event.phase === 'start') cpSync(join(other.dir, hex), join(snapshotter.dir, hex), { recursive: true });
      },
    });
    const theirs = await other.get(l1!.chainId);
    const dir = await snapshotter.ensure(l1!.chainId);
    expect(dir).toBe(snapshotter.fsDir(l1!.chainId));
    expect((await snapshotter.get(l1!.chainId))?.createdAt).toBe(theirs!.createdAt);
    expect(await readdir(snapshotter.dir)).toEqual([hex]);
    expect(await readFile(join(dir, 'dir/file'), 'utf8')).toBe('content');
  });

  it('stops when aborted, publishing nothing', async () => {
    const [l1] = await makeStack(b, [cs([f('file', 'content')])]);
    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    const controller = new AbortController();
    controller.abort(new Error('stop'));
    await expect(snapshotter.ensure(l1!.chainId, { signal: controller.signal })).rejects.toThrow('stop');
    expect(await snapshotter.get(l1!.chainId)).toBeUndefined();
  });
});

describe('Snapshotter bookkeeping', () => {
  it('list, get and usage describe what is unpacked', async () => {
    const [l1, l2] = await threeLayers();
    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    expect(await snapshotter.list()).toEqual([]);
    expect(await snapshotter.usage()).toEqual({ bytes: 0, inodes: 0 });
    await snapshotter.ensure(l2!.chainId);
    const listed = await snapshotter.list();
    expect(listed.map((info) => info.chainId)).toEqual([l1!.chainId, l2!.chainId].sort());
    const info = await snapshotter.get(l2!.chainId);
    expect(info).toMatchObject({ chainId: l2!.chainId, parent: l1!.chainId, diffId: l2!.diffId, blob: l2!.digest, dir: snapshotter.fsDir(l2!.chainId), rootOpaque: false });
    expect(Date.parse(info!.createdAt)).not.toBeNaN();
    expect((await snapshotter.get(l1!.chainId))?.parent).toBeUndefined();

    const one = await snapshotter.usage(l1!.chainId);
    const all = await snapshotter.usage();
    // Layer 1: snapshot dir, .complete, fs, bin (bin2 is the same inode), data, etc, etc/a, etc/b, lib, opt, opt/x, opt/x/old.
    expect(one.inodes).toBe(12);
    expect(one.bytes).toBeGreaterThan(0);
    expect(all.inodes).toBeGreaterThan(one.inodes);
  });

  it('remove deletes one snapshot; stacks above it unpack it again when needed', async () => {
    const [l1, l2] = await threeLayers();
    const starts: string[] = [];
    const snapshotter = new Snapshotter(b.root, b.store, b.records, { onUnpack: (e) => e.phase === 'start' && starts.push(e.chainId) });
    await snapshotter.ensure(l2!.chainId);
    expect(await snapshotter.remove(l1!.chainId)).toBe(true);
    expect(await snapshotter.remove(l1!.chainId)).toBe(false);
    expect(await snapshotter.get(l1!.chainId)).toBeUndefined();
    expect(await snapshotter.get(l2!.chainId)).toBeDefined();
    expect(await readdir(snapshotter.dir)).toEqual([l2!.chainId.slice(7)]);
    await snapshotter.lowerDirs(l2!.chainId);
    expect(starts).toEqual([l1!.chainId, l2!.chainId, l1!.chainId]);
  });

  it('prune keeps the given stacks with all their parents and removes the rest, unfinished ones and temp dirs included', async () => {
    const layers = await threeLayers();
    const [side] = await makeStack(b, [cs([f('unrelated', 'x')])]);
    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    await snapshotter.ensure(layers[1]!.chainId);
    await snapshotter.ensure(layers[2]!.chainId);
    await snapshotter.ensure(side!.chainId);
    await mkdir(join(snapshotter.dir, `.tmp-${side!.chainId.slice(7)}-1-abc`, 'fs'), { recursive: true });
    await mkdir(join(snapshotter.dir, sha256Of('unfinished').slice(7), 'fs'), { recursive: true });

    const result = await snapshotter.prune(new Set([layers[1]!.chainId, 'not a digest']));
    expect(result.removed.sort()).toEqual([layers[2]!.chainId, side!.chainId, sha256Of('unfinished')].sort());
    expect(result.temp).toBe(1);
    expect((await snapshotter.list()).map((info) => info.chainId)).toEqual([layers[0]!.chainId, layers[1]!.chainId].sort());
    expect((await readdir(snapshotter.dir)).sort()).toEqual([layers[0]!.chainId.slice(7), layers[1]!.chainId.slice(7)].sort());
  });
});

describe('Snapshotter across processes', () => {
  let moduleDir: string;
  let modules: string;
  beforeAll(async () => {
    moduleDir = await mkdtemp(join(tmpdir(), 'strata-snap-child-'));
    await transpileForChild(['snapshot/snapshotter.ts', 'content/store.ts', 'layer/record.ts'], moduleDir);
    modules = pathToFileURL(moduleDir).href;
  });
  afterAll(async () => {
    await rm(moduleDir, { recursive: true, force: true });
  });

  /** A child that prints "ready", waits for "go", ensures argv[2] under root argv[1] and prints the events and the dir. */
  const ENSURE_SCRIPT = (modulesUrl: string) => `
    const { Snapshotter } = await import('${modulesUrl}/snapshot/snapshotter.js');
    const { ContentStore } = await import('${modulesUrl}/content/store.js');
    const { LayerRecords } = await import('${modulesUrl}/layer/record.js');
    const { createInterface } = await import('node:readline');
    const [root, chainId] = process.argv.slice(1);
    const store = await ContentStore.open(root);
    const snapshotter = new Snapshotter(root, store, new LayerRecords(root), { onUnpack: (e) => console.log('unpack ' + e.phase + ' ' + e.chainId) });
    const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
    console.log('ready');
    await lines.next();
    console.log('dir ' + await snapshotter.ensure(chainId));
    process.exit(0);
  `;

  it('two processes ensuring the same layer at once: one unpacks, both get the directory', async () => {
    const entries = [d('many')];
    for (let i = 0; i < 300; i++) entries.push(f(`many/file-${i}`, `content ${i}\n`.repeat(50)));
    const [layer] = await makeStack(b, [cs(entries)]);
    const children = [0, 1].map(() => startChild(ENSURE_SCRIPT(modules), [b.root, layer!.chainId]));
    for (const child of children) expect(await child.nextLine()).toBe('ready');
    for (const child of children) child.send('go');
    const outputs = await Promise.all(
      children.map(async (child) => {
        const lines: string[] = [];
        for (;;) {
          const line = await child.nextLine();
          lines.push(line);
          if (line.startsWith('dir ')) break;
        }
        expect(await child.exited).toEqual({ code: 0, signal: null });
        return lines;
      }),
    );
    const all = outputs.flat();
    expect(all.filter((line) => line.startsWith('unpack start'))).toHaveLength(1);
    const dirs = new Set(all.filter((line) => line.startsWith('dir ')));
    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    expect([...dirs]).toEqual([`dir ${snapshotter.fsDir(layer!.chainId)}`]);
    expect((await readdir(join(snapshotter.fsDir(layer!.chainId), 'many'))).length).toBe(300);
    expect(await readdir(snapshotter.dir)).toEqual([layer!.chainId.slice(7)]);
  });

  it('a process killed mid-unpack leaves a temp directory; the next ensure makes a complete snapshot', async () => {
    const entries = [d('big')];
    for (let i = 0; i < 64; i++) entries.push(f(`big/chunk-${i}`, String(i).padEnd(64 * 1024, '.')));
    const [layer] = await makeStack(b, [cs(entries)], 'none');
    // The child's blob stream delivers the first half of the tar, says so, and never ends.
    const script = `
      const { Snapshotter } = await import('${modules}/snapshot/snapshotter.js');
      const { ContentStore } = await import('${modules}/content/store.js');
      const { LayerRecords } = await import('${modules}/layer/record.js');
      const { Readable } = await import('node:stream');
      const { readFileSync } = await import('node:fs');
      const [root, chainId] = process.argv.slice(1);
      const store = await ContentStore.open(root);
      store.createReadStream = (digest) => {
        const bytes = readFileSync(store.blobPath(digest));
        let sent = false;
        return new Readable({
          read() {
            if (sent) { console.log('stalled'); return; }
            sent = true;
            this.push(bytes.subarray(0, bytes.length >> 1));
          },
        });
      };
      const snapshotter = new Snapshotter(root, store, new LayerRecords(root));
      await snapshotter.ensure(chainId);
    `;
    const child = startChild(script, [b.root, layer!.chainId]);
    expect(await child.nextLine()).toBe('stalled');
    child.process.kill('SIGKILL');
    expect((await child.exited).signal).toBe('SIGKILL');

    const snapshotter = new Snapshotter(b.root, b.store, b.records);
    const leftovers = await readdir(snapshotter.dir);
    expect(leftovers).toHaveLength(1);
    expect(leftovers[0]).toMatch(new RegExp(`^\\.tmp-${layer!.chainId.slice(7)}-\\d+-[a-f0-9]+$`));
    expect(await snapshotter.get(layer!.chainId)).toBeUndefined();

    const dir = await snapshotter.ensure(layer!.chainId);
    expect(await readdir(snapshotter.dir)).toEqual([layer!.chainId.slice(7)]);
    const files = await readdir(join(dir, 'big'));
    expect(files).toHaveLength(64);
    expect(await readFile(join(dir, 'big', 'chunk-63'), 'utf8')).toBe('63'.padEnd(64 * 1024, '.'));
  });

  it.skipIf(!isRoot || !hasSetpriv || !hasGetfattr)(
    'unpacks without root: owners become the user, whiteouts are still devices, opaque dirs use user.overlay.opaque (needs root to drop to nobody, setpriv, getfattr)',
    async () => {
      const [l1] = await makeStack(b, [
        cs([d('etc'), f('etc/owned', 'x', { uid: 123, gid: 456 }), { header: { path: 'null', type: 'char', mode: 0o666, uid: 0, gid: 0, mtime: 0, size: 0, devmajor: 1, devminor: 3 } }, d('opt')], ['etc/gone'], ['opt']),
      ]);
      // nobody must be able to read the store and write the snapshot directory.
      spawnSync('chmod', ['-R', 'a+rX', b.dir]);
      await mkdir(join(b.root, 'strata', 'snapshots'), { recursive: true });
      spawnSync('chown', ['65534:65534', join(b.root, 'strata', 'snapshots')]);
      const child = startChild(ENSURE_SCRIPT(modules), [b.root, l1!.chainId], ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']);
      expect(await child.nextLine()).toBe('ready');
      child.send('go');
      let line = await child.nextLine();
      while (!line.startsWith('dir ')) line = await child.nextLine();
      expect(await child.exited, child.stderr()).toEqual({ code: 0, signal: null });
      const dir = line.slice(4);
      const owned = await lstat(join(dir, 'etc/owned'));
      expect([owned.uid, owned.gid]).toEqual([65534, 65534]);
      const whiteout = await lstat(join(dir, 'etc/gone'));
      expect(whiteout.isCharacterDevice() && whiteout.rdev === 0).toBe(true);
      expect(whiteout.uid).toBe(65534);
      await expect(lstat(join(dir, 'null'))).rejects.toMatchObject({ code: 'ENOENT' });
      expect((await readTreeXattrs(dir, { all: true }))?.get('opt')).toEqual({ 'user.overlay.opaque': Buffer.from('y') });
      const snapshotter = new Snapshotter(b.root, b.store, b.records);
      expect(await snapshotter.get(l1!.chainId)).toMatchObject({ overlayXattrs: 'user' });
      // The layer's owners are kept beside the files, and the merged view reports them.
      const view = new MergedView([dir]);
      expect((await view.lookup('etc/owned'))?.header).toMatchObject({ uid: 123, gid: 456 });
      expect((await view.lookup('etc'))?.header).toMatchObject({ uid: 0, gid: 0 });
    },
  );

  it('keeps the owners it could not apply beside the snapshot, and the merged view reports them', async () => {
    const [l1, l2] = await makeStack(b, [
      cs([d('etc'), f('etc/owned', 'x', { uid: 123, gid: 456 }), l('etc/link', 'owned', { uid: 7, gid: 8 }), h('etc/z-hard', 'etc/owned')]),
      cs([d('etc'), f('etc/new', 'n', { uid: 9, gid: 10 })]),
    ]);
    const snapshotter = new Snapshotter(b.root, b.store, b.records, { apply: { preserveOwners: false } });
    const top = await snapshotter.ensure(l2!.chainId);
    const me = [process.geteuid!(), process.getegid!()];
    const owned = await lstat(join(await snapshotter.ensure(l1!.chainId), 'etc/owned'));
    expect([owned.uid, owned.gid]).toEqual(me);
    const view = new MergedView(await snapshotter.lowerDirs(l2!.chainId));
    const ownerOf = async (rel: string) => {
      const header = (await view.lookup(rel))?.header;
      return [header?.uid, header?.gid];
    };
    expect(await ownerOf('etc/owned')).toEqual([123, 456]);
    expect(await ownerOf('etc/link')).toEqual([7, 8]);
    expect(await ownerOf('etc/z-hard')).toEqual([0, 0]);
    expect(await ownerOf('etc/new')).toEqual([9, 10]);
    expect(await ownerOf('etc')).toEqual([0, 0]);
    expect(await readdir(join(top, '..'))).toContain('owners.json');
  });

  it.skipIf(!isRoot)('writes no owners file when it applies the owners (needs root)', async () => {
    const [l1] = await makeStack(b, [cs([d('etc'), f('etc/owned', 'x', { uid: 123, gid: 456 })])]);
    const dir = await new Snapshotter(b.root, b.store, b.records).ensure(l1!.chainId);
    expect(await readdir(join(dir, '..'))).not.toContain('owners.json');
    expect((await new MergedView([dir]).lookup('etc/owned'))?.header).toMatchObject({ uid: 123, gid: 456 });
  });

  it('fails, naming the file, on a damaged owners file rather than report wrong owners', async () => {
    const [l1] = await makeStack(b, [cs([d('etc'), f('etc/owned', 'x', { uid: 123, gid: 456 })])]);
    const dir = await new Snapshotter(b.root, b.store, b.records, { apply: { preserveOwners: false } }).ensure(l1!.chainId);
    const file = join(dir, '..', 'owners.json');
    await chmod(join(dir, '..'), 0o755);
    await writeFile(file, '{"version":1,"owners":{"etc/owned":["root"]}}');
    await expect(new MergedView([dir]).lookup('etc/owned')).rejects.toThrow(/owners\.json: the owner of "etc\/owned" is not \[uid, gid\]; the snapshot is damaged/);
  });
});
