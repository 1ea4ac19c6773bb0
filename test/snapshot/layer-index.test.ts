/**
 * A LayerIndex stands in for the unpacked snapshot of a layer made from a
 * changeset: a MergedView with the index in place of the snapshot directory
 * answers every metadata question (lookup, lstat, stat, resolve, find,
 * exists, readlink) exactly as the view over the unpacked snapshots does,
 * without unpacking anything; reading contents, extended attributes or a
 * listing of an indexed layer unpacks it (once) and then agrees too.
 */
import { spawnSync } from 'node:child_process';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Digest } from '../../src/content/digest.js';
import { makeLayer } from '../../src/layer/make.js';
import { indexChangeset, MergedPathError, MergedView, type LayerIndex, type MergedNode } from '../../src/snapshot/merged.js';
import { Snapshotter } from '../../src/snapshot/snapshotter.js';
import type { Changeset, ChangesetEntry } from '../../src/tar/changeset.js';
import type { EntryHeader } from '../../src/tar/entry.js';
import { box, cs, d, f, h, isRoot, l, type Box } from './helpers.js';

const hasGetfattr = spawnSync('sh', ['-c', 'command -v getfattr'], { stdio: 'ignore' }).status === 0;
// indexChangeset only indexes as root (owners are kept only then); disk layers' opaque markers are read with getfattr.
const skip = !isRoot || !hasGetfattr;

const T0 = 1_600_000_000;
/** Version-2 VFS capability blob: cap_net_raw permitted + effective. */
const CAPABILITY = Buffer.from('0100000200200000000000000000000000000000', 'hex');

function special(path: string, type: 'fifo' | 'char' | 'block', extra: Partial<EntryHeader> = {}): ChangesetEntry {
  return { header: { path, type, mode: 0o600, uid: 0, gid: 0, mtime: T0, size: 0, ...extra } };
}

/** The two views of one stack: every layer unpacked, and the top ones indexed. */
interface Stack {
  disk: MergedView;
  indexed: MergedView;
  indexes: LayerIndex[];
  /** Calls of each index's materialize callback, bottom first. */
  unpacks: number[];
}

/**
 * Makes `lowers` then `tops` (bottom first) as one stack, unpacks every
 * layer, and indexes the `tops` with a materialize callback that counts its
 * calls and returns the layer's snapshot (what the build engine passes).
 */
async function buildStack(b: Box, snapshotter: Snapshotter, lowers: Changeset[], tops: Changeset[], sourceDateEpoch?: number): Promise<Stack> {
  const epoch = sourceDateEpoch === undefined ? {} : { sourceDateEpoch };
  let parent: Digest | undefined;
  const make = async (changeset: Changeset): Promise<Digest> => {
    const record = await makeLayer(b.store, { changeset }, { compression: 'none', ...epoch, ...(parent !== undefined ? { parentChainId: parent } : {}) });
    parent = record.chainId;
    return record.chainId;
  };
  for (const changeset of lowers) await make(changeset);
  const unpacks = tops.map(() => 0);
  const indexes: LayerIndex[] = [];
  for (const [i, changeset] of tops.entries()) {
    const chainId = await make(changeset);
    const index = indexChangeset(
      changeset,
      () => {
        unpacks[i]!++;
        return snapshotter.ensure(chainId);
      },
      epoch,
    );
    if (index === undefined) throw new Error(`top changeset ${i} was not indexed`);
    indexes.push(index);
  }
  const dirs = parent === undefined ? [] : await snapshotter.lowerDirs(parent);
  return {
    disk: new MergedView(dirs),
    indexed: new MergedView([...[...indexes].reverse(), ...dirs.slice(tops.length)]),
    indexes,
    unpacks,
  };
}

/**
 * What a test compares of a node: everything but the host path and lstat,
 * which an indexed instance does not have. The root's own metadata is not
 * modelled by an index (merged.ts: "nothing reads the root's own metadata
 * from a view"), so only its type is compared.
 */
function shape(node: MergedNode | undefined): unknown {
  if (node === undefined) return undefined;
  const { rel, layer, header, merge } = node;
  return { rel, layer, merge: [...merge], header: rel === '' ? { type: header.type } : header };
}

/** A call's value, or the MergedPathError it failed with. */
async function outcome<T>(call: () => Promise<T>): Promise<{ ok: T } | { error: string }> {
  try {
    return { ok: await call() };
  } catch (err) {
    if (err instanceof MergedPathError) return { error: err.message };
    throw err;
  }
}

/** Every metadata answer a view gives about `path`. */
async function metadata(view: MergedView, path: string): Promise<Record<string, unknown>> {
  const resolved = (opts: { followLast?: boolean; allowMissing?: boolean }) =>
    outcome(async () => {
      const r = await view.resolve(path, opts);
      return { rel: r.rel, missing: r.missing, node: shape(r.node) };
    });
  return {
    lstat: await outcome(async () => shape(await view.lstat(path))),
    stat: await outcome(async () => shape(await view.stat(path))),
    resolve: await resolved({}),
    resolveFollow: await resolved({ followLast: true }),
    resolveMissing: await resolved({ allowMissing: true }),
    resolveMissingFollow: await resolved({ followLast: true, allowMissing: true }),
    find: await outcome(async () => shape(await view.find(path))),
    findFollow: await outcome(async () => shape(await view.find(path, true))),
    exists: await outcome(() => view.exists(path)),
    readlink: await outcome(() => view.readlink(path)),
  };
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('base64');
}

/** Every answer about `path` that needs the layers' files: listings, contents, xattrs. */
async function contents(view: MergedView, path: string): Promise<Record<string, unknown>> {
  return {
    readdir: await outcome(() => view.readdir(path)),
    readSmallFile: await outcome(async () => (await view.readSmallFile(path))?.toString('base64')),
    createReadStream: await outcome(async () => readAll(await view.createReadStream(path))),
    xattrs: await outcome(async () => {
      const node = await view.find(path);
      if (node === undefined) return undefined;
      const xattrs = await view.xattrs(node);
      return xattrs && Object.fromEntries(Object.entries(xattrs).map(([name, value]) => [name, value.toString('base64')]));
    }),
  };
}

/** The whole merged tree as MergedView.walk gives it, host paths included (an indexed instance gets its snapshot's). */
async function walked(view: MergedView): Promise<{ rel: string }[]> {
  const out: { rel: string }[] = [];
  for await (const node of view.walk(await view.root())) out.push({ ...(shape(node) as { rel: string }), hostPath: node.hostPath });
  return out;
}

/** Paths of a changeset's entries, deletions and opaque dirs, with their ancestors. */
function pathsOf(changesets: Changeset[]): { rels: string[]; symlinks: string[]; targets: string[] } {
  const rels = new Set<string>(['']);
  const symlinks: string[] = [];
  const targets: string[] = [];
  const add = (raw: string): void => {
    const parts = raw.split('/').filter((part) => part !== '' && part !== '.');
    for (let i = 1; i <= parts.length; i++) rels.add(parts.slice(0, i).join('/'));
  };
  for (const changeset of changesets) {
    for (const { header } of changeset.entries) {
      add(header.path);
      if (header.type === 'symlink') {
        symlinks.push(header.path);
        targets.push(header.linkname ?? '');
      }
    }
    for (const path of [...changeset.deletions, ...changeset.opaqueDirs]) add(path);
  }
  return { rels: [...rels], symlinks: [...new Set(symlinks)], targets };
}

/**
 * Container paths to ask about: every path of the trees in several
 * spellings, missing names under each, `..` steps, every path continued
 * through every symlink, and the symlinks' targets themselves.
 */
function queriesFor(changesets: Changeset[], extra: string[] = []): { rels: string[]; queries: string[] } {
  const { rels, symlinks, targets } = pathsOf(changesets);
  const queries = new Set<string>(['', '/', '.', '..', '/..', '../..', 'nope', '/nope/deeper', ...extra, ...targets]);
  const tails = new Set<string>();
  for (const rel of rels) {
    queries.add(rel).add(`/${rel}`).add(`${rel}/`).add(`./${rel}/.`).add(`${rel}/nope`).add(`${rel}/nope/deeper`);
    queries.add(`${rel}/..`).add(`${rel}/../${rel}`).add(`/../${rel}`);
    const parts = rel.split('/');
    for (let i = 0; i < parts.length; i++) tails.add(parts.slice(i).join('/'));
  }
  for (const link of symlinks) {
    queries.add(`${link}/`).add(`${link}/.`).add(`${link}/..`).add(`${link}/../..`);
    for (const tail of tails) queries.add(`${link}/${tail}`);
  }
  return { rels, queries: [...queries] };
}

/** The parts of two answers that differ (by top-level key for records), so a failure names what differs. */
function differences(expected: unknown, got: unknown): { expected: unknown; got: unknown } {
  const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
  if (!isRecord(expected) || !isRecord(got)) return { expected, got };
  const keys = [...new Set([...Object.keys(expected), ...Object.keys(got)])].filter((key) => !isDeepStrictEqual(expected[key], got[key]));
  return { expected: Object.fromEntries(keys.map((key) => [key, expected[key]])), got: Object.fromEntries(keys.map((key) => [key, got[key]])) };
}

interface Mismatch {
  what: string;
  path: string;
  expected: unknown;
  got: unknown;
}

/**
 * Compares the two views of `stack` on every query: metadata first (which
 * must not unpack any indexed layer), then contents, listings and a walk
 * (which unpack each indexed layer once). Returns the differences.
 */
async function compareViews(stack: Stack, changesets: Changeset[], extra: string[] = []): Promise<Mismatch[]> {
  const { rels, queries } = queriesFor(changesets, extra);
  const mismatches: Mismatch[] = [];
  const check = (what: string, path: string, expected: unknown, got: unknown): void => {
    if (!isDeepStrictEqual(got, expected)) mismatches.push({ what, path, ...differences(expected, got) });
  };
  for (const rel of [...rels, ...rels.map((rel) => `${rel}/nope`), 'nope']) {
    check('lookup', rel, shape(await stack.disk.lookup(rel)), shape(await stack.indexed.lookup(rel)));
  }
  for (const path of queries) check('metadata', path, await metadata(stack.disk, path), await metadata(stack.indexed, path));
  check('unpacks before reading contents', '', stack.unpacks.map(() => 0), [...stack.unpacks]);
  for (const path of queries) check('contents', path, await contents(stack.disk, path), await contents(stack.indexed, path));
  const walkedDisk = await walked(stack.disk);
  const walkedIndexed = await walked(stack.indexed);
  check('walk order', '', walkedDisk.map((node) => node.rel), walkedIndexed.map((node) => node.rel));
  const byRel = new Map(walkedIndexed.map((node) => [node.rel, node]));
  for (const node of walkedDisk) check('walk', node.rel, node, byRel.get(node.rel));
  // The root lists every layer, so each index was needed; its callback ran once however many reads followed.
  check('unpacks after reading contents', '', stack.unpacks.map(() => 1), [...stack.unpacks]);
  return mismatches;
}

describe.skipIf(skip)('LayerIndex in a MergedView answers like the unpacked snapshot', () => {
  let b: Box;
  let snapshotter: Snapshotter;
  beforeEach(async () => {
    b = await box('strata-layer-index-');
    snapshotter = new Snapshotter(b.root, b.store, b.records);
  });
  afterEach(async () => {
    await b.cleanup();
  });

  async function expectSameAnswers(lowers: Changeset[], tops: Changeset[], opts: { sourceDateEpoch?: number; extra?: string[] } = {}): Promise<Stack> {
    const stack = await buildStack(b, snapshotter, lowers, tops, opts.sourceDateEpoch);
    expect(await compareViews(stack, [...lowers, ...tops], opts.extra)).toEqual([]);
    return stack;
  }

  const base = cs([
    d('etc'),
    f('etc/passwd', 'root:x:0:0::/root:/bin/sh\n'),
    f('etc/old', 'old'),
    d('usr'),
    d('usr/lib'),
    d('usr/lib/x'),
    f('usr/lib/x/lib.so', 'elf'),
    d('usr/bin'),
    f('usr/bin/sh', 'sh', { mode: 0o755 }),
    l('bin', 'usr/bin'),
    l('lib', '/usr/lib'),
    d('var'),
    d('var/cache'),
    f('var/cache/c', 'c'),
    f('data', 'plain file'),
    d('home'),
  ]);

  it('files and nested directories with modes, owners, devices and fractional mtimes', async () => {
    await expectSameAnswers(
      [base],
      [
        cs([
          d('etc', { mtime: T0 + 0.75 }),
          f('etc/passwd', 'root:x:0:0::/root:/bin/bash\n', { mtime: T0 + 12.999 }),
          f('etc/shadow', 'root:*::', { mode: 0o640, gid: 42, mtime: T0 + 0.001 }),
          d('etc/ssl', { mode: 0o2755, uid: 1000, gid: 1000, mtime: T0 + 1.5 }),
          f('etc/ssl/cert.pem', 'pem', { mode: 0o4755, uid: 1000, gid: 1000 }),
          d('tmp', { mode: 0o1777 }),
          d('app', { mode: 0o750, uid: 10, gid: 20 }),
          d('app/src'),
          d('app/src/deep', { mtime: T0 + 99.5 }),
          f('app/src/deep/main.js', 'console.log(1)\n', { mtime: 1.9 }),
          f('app/empty', ''),
          f('app/big-ids', 'x', { uid: 3_000_000, gid: 4_000_000 }),
          f('app/epoch0', 'zero', { mtime: 0 }),
          // Past ustar's 11 octal digits (a PAX mtime), within what ext4 and tmpfs store (up to 2446).
          f('app/far-future', 'far', { mtime: 2 ** 33 + 0.5 }),
          f('app/setuid-only', 's', { mode: 0o4000 }),
          f('app/no-perms', 'n', { mode: 0 }),
          f('app/ping', 'elf', { mode: 0o755, xattrs: { 'security.capability': CAPABILITY, 'user.note': Buffer.from('hi') } }),
          d('app/dev'),
          special('app/dev/pipe', 'fifo', { mode: 0o644, mtime: T0 + 4.4 }),
          special('app/dev/null', 'char', { mode: 0o666, devmajor: 1, devminor: 3 }),
          special('app/dev/loop0', 'block', { mode: 0o660, gid: 6, devmajor: 7, devminor: 0 }),
          special('app/dev/block00', 'block', { devmajor: 0, devminor: 0 }),
          special('app/dev/char01', 'char', { devmajor: 0, devminor: 1 }),
          d('home'),
          d('home/user', { mode: 0o700, uid: 1000, gid: 1000 }),
          f('home/user/.profile', 'export A=1\n', { uid: 1000, gid: 1000, mtime: T0 + 0.5 }),
        ]),
      ],
    );
  });

  it('mtimes before 1970', async () => {
    // The tar carries them (a PAX mtime); the unpacked snapshot must keep them for the index to be right about it.
    await expectSameAnswers(
      [base],
      [cs([d('old', { mtime: -1 }), f('old/day-before', 'x', { mtime: -86_400.25 }), l('old/link', 'day-before', { mtime: -0.5 })])],
    );
  });

  it('sourceDateEpoch clamps mtimes the way the layer tar does (whole and fractional epochs)', async () => {
    for (const sourceDateEpoch of [T0 + 100, T0 + 100.5]) {
      await expectSameAnswers(
        [base],
        [
          cs([
            d('etc', { mtime: T0 + 200.25 }),
            f('etc/before', 'b', { mtime: T0 + 50.25 }),
            f('etc/at', 'a', { mtime: T0 + 100 }),
            f('etc/half-after', 'h', { mtime: T0 + 100.5 }),
            f('etc/just-after', 'j', { mtime: T0 + 100.9 }),
            f('etc/after', 'x', { mtime: T0 + 5000 }),
            l('etc/link-after', 'after', { mtime: T0 + 7000.7 }),
            d('etc/dir-after', { mtime: T0 + 9000 }),
            special('etc/fifo-after', 'fifo', { mtime: T0 + 101 }),
          ]),
        ],
        { sourceDateEpoch },
      );
    }
  });

  it('symlinks: relative, up past the root, absolute, dangling, loops, through lower links and into lower trees', async () => {
    const lower = cs([
      ...base.entries,
      d('opt'),
      f('opt/a', 'a'),
      l('shortcut', 'usr/local'),
      l('usr/lib/x/up', '../../..'),
    ]);
    await expectSameAnswers(
      [lower],
      [
        cs([
          d('usr'),
          d('usr/local'),
          l('usr/local/up', '../..'),
          l('usr/local/way-up', '../../../../../..'),
          l('usr/local/abs-file', '/etc/passwd'),
          l('usr/local/abs-dir', '/usr/lib/'),
          l('usr/local/dot', '.'),
          l('usr/local/dotdot', '..'),
          l('usr/local/rel-lower', '../lib/x/lib.so'),
          l('usr/local/dangling', 'nowhere/else'),
          l('usr/local/abs-dangling', '/nope'),
          l('usr/local/lib', 'lib-missing'),
          l('usr/local/owned', 'x', { uid: 5, gid: 6, mtime: T0 + 3.3 }),
          l('loop1', 'loop2'),
          l('loop2', 'loop1'),
          l('self', 'self'),
          l('chain1', 'chain2'),
          l('chain2', 'usr/local/up'),
          l('through-file', 'etc/passwd/more'),
          l('via-lower-link', 'bin/sh'),
          l('via-lower-abs-link', 'lib/x'),
          l('root', '/'),
          l('slashes', '//usr///lib//x/'),
          l('escape', '../../etc'),
          l('escape-abs', '/../../../usr/bin'),
          // Replaces a lower directory: paths under 'opt' now go through the link.
          l('opt', 'usr'),
          d('etc'),
          l('etc/passwd2', './passwd'),
          l('etc/hosts', '../usr/local/abs-file'),
        ]),
      ],
      { extra: ['shortcut/up/etc/passwd', 'usr/lib/x/up/usr/local/up/etc', 'chain1/data', 'opt/lib/x/lib.so', 'opt/a'] },
    );
  });

  it('a symlink and a file of the index replace lower directories; an index directory replaces a lower symlink', async () => {
    await expectSameAnswers(
      [base],
      [
        cs([
          d('usr'),
          // 'usr/lib' was a directory holding x/lib.so.
          l('usr/lib', 'bin'),
          // 'var/cache' was a directory.
          d('var'),
          f('var/cache', 'now a file'),
          // 'bin' was a symlink to usr/bin.
          d('bin'),
          f('bin/busybox', 'bb', { mode: 0o755 }),
        ]),
      ],
      { extra: ['lib/x/lib.so', 'lib/sh', 'bin/sh', 'var/cache/c', 'usr/lib/sh'] },
    );
  });

  it('a directory replaces a lower file; opaque directories on a lower layer and in the index', async () => {
    const lower1 = cs([
      d('opt'),
      d('opt/x'),
      f('opt/x/old', 'old'),
      d('opt/x/sub'),
      f('opt/x/sub/s', 's'),
      f('data', 'plain'),
      d('srv'),
      d('srv/www'),
      f('srv/www/index.html', '<html>'),
      d('keep'),
      f('keep/k', 'k'),
      d('keep/kd'),
      f('gone', 'g'),
      d('var'),
      d('var/lib'),
      f('var/lib/l1', 'l1'),
    ]);
    // A whiteout, and two opaque directories (one left empty), on a layer beneath the index.
    const lower2 = cs([d('opt'), d('opt/x', { mode: 0o750 }), f('opt/x/new', 'new'), d('var'), d('var/lib', { mode: 0o700 })], ['gone'], ['opt/x', 'var/lib']);
    await expectSameAnswers(
      [lower1, lower2],
      [
        cs(
          [
            // Replaces the lower file 'data'; made opaque too, which changes nothing over a file.
            d('data', { mode: 0o711 }),
            f('data/inner', 'inner'),
            d('data/sub'),
            // Merges with the lower opaque opt/x, which hides lower1's opt/x.
            d('opt'),
            d('opt/x', { mtime: T0 + 8.8 }),
            f('opt/x/top', 'top'),
            // A file replaces a lower directory.
            f('srv', 'now a file'),
            // Opaque in the index: keep/k and keep/kd disappear.
            d('keep'),
            d('keep/more'),
            f('keep/more/m', 'm'),
            d('var'),
            d('var/lib'),
            f('var/lib/l3', 'l3'),
            // Whited out below, back as a directory.
            d('gone'),
            f('gone/back', 'back'),
            // Opaque over nothing below.
            d('fresh'),
            f('fresh/f', 'f'),
          ],
          [],
          ['keep', 'data', 'fresh'],
        ),
      ],
      { extra: ['opt/x/old', 'opt/x/sub/s', 'keep/k', 'keep/kd', 'srv/www/index.html', 'var/lib/l1', 'gone/back/..'] },
    );
  });

  it('two indexed layers stacked, the upper one opaque over the lower index', async () => {
    await expectSameAnswers(
      [base],
      [
        cs([d('app'), f('app/a', '1'), d('app/d'), f('app/d/x', 'x'), l('app/link', 'a'), d('etc'), f('etc/i1', 'i1')]),
        cs([d('app'), f('app/b', '2'), l('app/a', 'b'), d('etc'), f('etc/i2', 'i2'), d('more'), f('more/m', 'm')], [], ['app']),
        cs([d('etc'), f('etc/old', 'replaced by the third index'), d('app'), f('app/c', '3')]),
      ],
      { extra: ['app/d/x', 'app/link'] },
    );
  });

  it('indexed layers with nothing on disk below (FROM scratch)', async () => {
    await expectSameAnswers(
      [],
      [
        cs([d('app'), f('app/a', '1'), l('app/up', '..'), l('abs', '/app/a')]),
        cs([d('app'), d('app/a2'), f('app/a2/x', 'x'), l('app/a', 'a2/x')], [], ['app/a2']),
      ],
    );
  });

  it('an index over a lower layer whose root is opaque', async () => {
    await expectSameAnswers([base, cs([d('new'), f('new/n', 'n')], [], ['.'])], [cs([d('new'), f('new/x', 'x'), d('etc'), f('etc/e', 'e')])], {
      extra: ['etc/passwd', 'usr/bin/sh'],
    });
  });
});

describe.skipIf(skip)('LayerIndex unpacks only when contents are read', () => {
  let b: Box;
  let snapshotter: Snapshotter;
  beforeAll(async () => {
    b = await box('strata-layer-index-lazy-');
    snapshotter = new Snapshotter(b.root, b.store, b.records);
  });
  afterAll(async () => {
    await b.cleanup();
  });

  const lower = cs([d('etc'), f('etc/passwd', 'root'), d('var'), d('var/cache'), f('var/cache/c', 'c'), l('cache', 'var/cache')]);
  const index1 = cs([d('etc'), f('etc/one', 'one'), d('only1'), f('only1/f', 'f1')]);
  const index2 = cs([d('app'), f('app/two', 'two'), l('app/to-one', '/only1/f')]);

  it('metadata lookups never unpack; each read unpacks only the layer it needs, once', async () => {
    const stack = await buildStack(b, snapshotter, [lower], [index1, index2]);
    const view = stack.indexed;
    expect((await view.stat('/app/to-one')).header).toMatchObject({ path: 'only1/f', type: 'file', size: 2 });
    expect(await view.readlink('app/to-one')).toBe('/only1/f');
    expect(await view.exists('/etc/one')).toBe(true);
    expect(stack.unpacks).toEqual([0, 0]);

    // Only the disk layer holds var/cache: listing it and reading its files needs no index.
    expect(await view.readdir('/cache')).toEqual(['c']);
    expect((await view.readSmallFile('/var/cache/c'))?.toString()).toBe('c');
    expect((await view.readSmallFile('/etc/passwd'))?.toString()).toBe('root');
    expect(stack.unpacks).toEqual([0, 0]);

    // A file of the top index, through a symlink of that index into the lower index.
    expect((await view.readSmallFile('/app/to-one'))?.toString()).toBe('f1');
    expect(stack.unpacks).toEqual([1, 0]);
    expect(await readAll(await view.createReadStream('/app/two'))).toBe(Buffer.from('two').toString('base64'));
    expect(stack.unpacks).toEqual([1, 1]);

    // /etc merges the lower index with the disk layer: listed from the unpacked snapshots.
    expect(await view.readdir('/etc')).toEqual(['one', 'passwd']);
    expect(await view.readdir('/')).toEqual(['app', 'cache', 'etc', 'only1', 'var']);
    expect(stack.unpacks).toEqual([1, 1]);
  });

  it('a failed materialize is not remembered: the next read tries again', async () => {
    const record = await makeLayer(b.store, { changeset: index1 }, { compression: 'none' });
    let calls = 0;
    const index = indexChangeset(index1, async () => {
      calls++;
      if (calls === 1) throw new Error('unpack failed');
      return snapshotter.ensure(record.chainId);
    })!;
    expect(index).toBeDefined();
    const view = new MergedView([index]);
    await expect(view.readSmallFile('/only1/f')).rejects.toThrow('unpack failed');
    expect((await view.readSmallFile('/only1/f'))?.toString()).toBe('f1');
    expect((await view.readSmallFile('/etc/one'))?.toString()).toBe('one');
    expect(calls).toBe(2);
  });
});

describe.skipIf(!isRoot)('indexChangeset declines changesets whose unpacked form its headers do not tell', () => {
  const never = (): Promise<string> => Promise.reject(new Error('not to be called'));
  it.each<[string, Changeset]>([
    ['a deletion', cs([d('etc')], ['etc/old'])],
    ['a hardlink', cs([f('a', 'a'), h('b', 'a')])],
    ['a 0/0 character device (a whiteout on disk)', cs([special('wh', 'char', { devmajor: 0, devminor: 0 })])],
    ['an entry whose parent is not in the changeset', cs([f('etc/passwd', 'x')])],
    ['an entry whose parent is a file', cs([f('etc', 'x'), f('etc/passwd', 'x')])],
    ['an opaque root', cs([d('etc')], [], ['.'])],
    ['an opaque directory that is not an entry', cs([d('etc')], [], ['opt'])],
    ['an opaque directory that is a file', cs([f('etc', 'x')], [], ['etc'])],
    ['a non-normalized path', cs([d('./etc'), f('./etc/a', 'a')])],
    ['a trailing slash', cs([d('etc/'), f('etc/a', 'a')])],
  ])('%s', (_what, changeset) => {
    expect(indexChangeset(changeset, never)).toBeUndefined();
  });
});

// ------------------------------------------------------------------ property

type TreeNode =
  | { kind: 'file'; content: string; mode: number; mtime: number; uid: number }
  | { kind: 'symlink'; target: string; mtime: number }
  | { kind: 'dir'; mode: number; mtime: number; opaque: boolean; children: Record<string, TreeNode> };

const NAMES = ['a', 'b', 'c'];
const TARGETS = ['a', 'b/c', '../a', '../../b', '/a', '/a/b/', '.', '..', '/', 'nope', 'a/../c', '/b/../a/c', '../../../../c'];
const mtimeArb = fc.constantFrom(T0, T0 + 0.25, T0 + 0.999, T0 + 7, T0 + 7.5, 0, 1.5);
const fileArb: fc.Arbitrary<TreeNode> = fc.record({
  kind: fc.constant('file' as const),
  content: fc.constantFrom('', 'x', 'hello'),
  mode: fc.constantFrom(0o644, 0o755, 0o4755, 0o600),
  mtime: mtimeArb,
  uid: fc.constantFrom(0, 1000),
});
const linkArb: fc.Arbitrary<TreeNode> = fc.record({ kind: fc.constant('symlink' as const), target: fc.constantFrom(...TARGETS), mtime: mtimeArb });
const { dir: dirArb } = fc.letrec<{ node: TreeNode; dir: TreeNode }>((tie) => ({
  node: fc.oneof({ maxDepth: 3, depthIdentifier: 'tree' }, fileArb, linkArb, tie('dir')),
  dir: fc.record({
    kind: fc.constant('dir' as const),
    mode: fc.constantFrom(0o755, 0o700, 0o1777),
    mtime: mtimeArb,
    opaque: fc.boolean(),
    children: fc.dictionary(fc.constantFrom(...NAMES), tie('node'), { maxKeys: 3, depthIdentifier: 'tree' }),
  }),
}));
/** A layer's tree: the children of its root. */
const treeArb = fc.dictionary(fc.constantFrom(...NAMES), dirArb.chain((dir) => fc.oneof(fc.constant(dir), fileArb, linkArb)), { maxKeys: 3 });

/** The entries (parents first) and opaque dirs of a tree, as a changeset. */
function changesetOf(tree: Record<string, TreeNode>, deletions: string[] = []): Changeset {
  const entries: ChangesetEntry[] = [];
  const opaqueDirs: string[] = [];
  const visit = (prefix: string, children: Record<string, TreeNode>): void => {
    for (const [name, node] of Object.entries(children)) {
      const path = prefix === '' ? name : `${prefix}/${name}`;
      if (node.kind === 'file') entries.push(f(path, node.content, { mode: node.mode, mtime: node.mtime, uid: node.uid }));
      else if (node.kind === 'symlink') entries.push(l(path, node.target, { mtime: node.mtime }));
      else {
        entries.push(d(path, { mode: node.mode, mtime: node.mtime }));
        if (node.opaque) opaqueDirs.push(path);
        visit(path, node.children);
      }
    }
  };
  visit('', tree);
  return { entries, deletions, opaqueDirs };
}

/**
 * Deletions for a layer over `below` whose own entries are `layer`, picked by
 * `pick`: only paths that the layer does not add, that no added path lies
 * under, whose ancestors the layer has as directories if at all, and not
 * under another deletion.
 */
function deletionsFor(below: Changeset, layer: Changeset, pick: boolean[]): string[] {
  const types = new Map(layer.entries.map(({ header }) => [header.path, header.type]));
  const chosen: string[] = [];
  const candidates = below.entries.map(({ header }) => header.path).sort();
  candidates.forEach((path, i) => {
    if (!pick[i % Math.max(pick.length, 1)] || types.has(path)) return;
    if ([...types.keys()].some((added) => added.startsWith(`${path}/`))) return;
    const parts = path.split('/');
    for (let n = 1; n < parts.length; n++) {
      const ancestor = parts.slice(0, n).join('/');
      if (chosen.includes(ancestor)) return;
      const type = types.get(ancestor);
      if (type !== undefined && type !== 'directory') return;
    }
    chosen.push(path);
  });
  return chosen;
}

describe.skipIf(skip)('LayerIndex property', () => {
  let b: Box;
  let snapshotter: Snapshotter;
  beforeAll(async () => {
    b = await box('strata-layer-index-prop-');
    snapshotter = new Snapshotter(b.root, b.store, b.records);
  });
  afterAll(async () => {
    await b.cleanup();
  });

  it('random small stacks: the indexed view answers like the unpacked one', async () => {
    await fc.assert(
      fc.asyncProperty(
        treeArb,
        treeArb,
        fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }),
        treeArb,
        fc.option(treeArb, { nil: undefined }),
        fc.option(fc.constantFrom(T0 + 5, T0 + 7.25), { nil: undefined }),
        async (t1, t2, pick, t3, t4, sourceDateEpoch) => {
          const lower1 = changesetOf(t1);
          const lower2Entries = changesetOf(t2);
          const lower2 = { ...lower2Entries, deletions: deletionsFor(lower1, lower2Entries, pick) };
          const tops = [changesetOf(t3), ...(t4 ? [changesetOf(t4)] : [])];
          const stack = await buildStack(b, snapshotter, [lower1, lower2], tops, sourceDateEpoch);
          const mismatches = await compareViews(stack, [lower1, lower2, ...tops]);
          expect(mismatches.slice(0, 5)).toEqual([]);
        },
      ),
      { numRuns: 60 },
    );
  });
});
