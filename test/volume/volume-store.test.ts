import { createHash } from 'node:crypto';
import { chmod, chown, link, lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, utimes, lutimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { pack } from 'tar-stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ANONYMOUS_VOLUME_LABEL } from '../../src/volume/names.js';
import {
  InvalidFilterError,
  VolumeNotFoundError,
  VolumeRemoveError,
  VolumeStore,
  type VolumeInfo,
} from '../../src/volume/volume-store.js';
import { buildChildModules, describeTree, runChild } from './helpers.js';

const isRoot = process.geteuid?.() === 0;
let scratch: string;
let root: string;
let store: VolumeStore;
let users: Map<string, string[]>;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'strata-volumes-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});
beforeEach(async () => {
  root = await mkdtemp(join(scratch, 'root-'));
  users = new Map();
  store = await VolumeStore.open(root, { usageProvider: async (name) => users.get(name) ?? [] });
});

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks);
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

/** A tree with the things a copy can get wrong. */
async function makeSampleTree(dir: string): Promise<void> {
  await mkdir(join(dir, 'etc', 'conf.d'), { recursive: true });
  await writeFile(join(dir, 'etc', 'app.conf'), 'key=value\n');
  await writeFile(join(dir, 'etc', 'conf.d', 'secret'), 'hush\n');
  await chmod(join(dir, 'etc', 'conf.d', 'secret'), 0o600);
  await writeFile(join(dir, 'run.sh'), '#!/bin/sh\necho hi\n');
  await chmod(join(dir, 'run.sh'), 0o4755);
  await symlink('etc/app.conf', join(dir, 'config'));
  await symlink('/nonexistent/target', join(dir, 'dangling'));
  await link(join(dir, 'etc', 'app.conf'), join(dir, 'hardlink.conf'));
  await mkdir(join(dir, 'empty'), { mode: 0o700 });
  await chmod(join(dir, 'empty'), 0o1777);
  if (isRoot) {
    await chown(join(dir, 'etc', 'conf.d', 'secret'), 1234, 5678);
    await chown(join(dir, 'run.sh'), 1234, 5678);
    await chmod(join(dir, 'run.sh'), 0o4755);
  }
  const when = new Date('2001-02-03T04:05:06Z');
  for (const path of ['etc/app.conf', 'etc/conf.d/secret', 'run.sh', 'etc/conf.d', 'etc', 'empty']) await utimes(join(dir, path), when, when);
  await lutimes(join(dir, 'config'), when, when);
  await lutimes(join(dir, 'dangling'), when, when);
}

describe('create and inspect', () => {
  it('creates a named volume laid out like Docker', async () => {
    const info = await store.create('data', { labels: { app: 'web' } });
    expect(info).toMatchObject({
      name: 'data',
      driver: 'local',
      labels: { app: 'web' },
      options: {},
      scope: 'local',
      anonymous: false,
      mountpoint: join(root, 'strata', 'volumes', 'data', '_data'),
    });
    expect(info.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$/);
    expect(Math.abs(Date.parse(info.createdAt) - Date.now())).toBeLessThan(60_000);
    const dataStat = await stat(info.mountpoint);
    expect(dataStat.isDirectory()).toBe(true);
    expect(dataStat.mode & 0o777).toBe(0o755);
    expect(JSON.parse(await readFile(join(root, 'strata', 'volumes', 'data', 'meta.json'), 'utf8'))).toEqual({
      Name: 'data',
      Driver: 'local',
      CreatedAt: info.createdAt,
      Labels: { app: 'web' },
      Options: {},
      Scope: 'local',
      Anonymous: false,
    });
  });

  it('returns an existing volume unchanged when created again', async () => {
    const first = await store.create('data', { labels: { v: '1' } });
    const again = await store.create('data', { labels: { v: '2' } });
    expect(again).toEqual(first);
  });

  it('creates anonymous volumes with a 64-hex name and the anonymous label', async () => {
    const a = await store.create();
    const b = await store.create('');
    expect(a.name).toMatch(/^[a-f0-9]{64}$/);
    expect(a.name).not.toBe(b.name);
    expect(a).toMatchObject({ anonymous: true, labels: { [ANONYMOUS_VOLUME_LABEL]: '' } });
  });

  it('refuses invalid names with Docker messages', async () => {
    expect((await rejection(store.create('a'))).message).toBe(
      'create a: volume name is too short, names should be at least two alphanumeric characters',
    );
    expect((await rejection(store.create('../etc'))).message).toBe(
      'create ../etc: "../etc" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path',
    );
    expect((await rejection(store.create('x'.repeat(256)))).message).toContain('volume name is too long');
    expect(await readdir(join(root, 'strata', 'volumes'))).toEqual([]);
  });

  it('refuses drivers and driver options the local driver here cannot honour', async () => {
    expect((await rejection(store.create('data', { driver: 'nfs' }))).message).toBe(
      'create data: error looking up volume plugin nfs: plugin "nfs" not found',
    );
    expect((await rejection(store.create('data', { options: { hello: 'world' } }))).message).toBe('create data: invalid option: "hello"');
    expect((await rejection(store.create('data', { options: { size: '1g' } }))).message).toBe(
      'create data: quota size requested but no quota support',
    );
    expect((await rejection(store.create('data', { options: { type: 'tmpfs', device: 'tmpfs' } }))).message).toMatch(
      /^create data: volume option "type" is not supported/,
    );
    expect(await store.exists('data')).toBe(false);
  });

  it('inspects in Docker\'s shape and key order', async () => {
    const info = await store.create('data');
    const [doc] = await store.inspect(['data']);
    expect(Object.keys(doc!)).toEqual(['CreatedAt', 'Driver', 'Labels', 'Mountpoint', 'Name', 'Options', 'Scope']);
    expect(doc).toEqual({
      CreatedAt: info.createdAt,
      Driver: 'local',
      Labels: {},
      Mountpoint: info.mountpoint,
      Name: 'data',
      Options: {},
      Scope: 'local',
    });
    const missing = await rejection(store.inspect(['data', 'nope']));
    expect(missing).toBeInstanceOf(VolumeNotFoundError);
    expect(missing.message).toBe('get nope: no such volume');
    expect((await rejection(store.get('a b'))).message).toBe('get a b: no such volume');
  });

  it('is safe when two processes create the same volumes at once', async () => {
    const modules = await buildChildModules(join(scratch, 'child-modules'), 'volume/volume-store.ts');
    const storeUrl = pathToFileURL(join(modules, 'volume', 'volume-store.js')).href;
    const script = `
      const [url, root, who] = process.argv.slice(1);
      const { VolumeStore } = await import(url);
      const store = await VolumeStore.open(root);
      const out = [];
      for (let i = 0; i < 15; i++) out.push(await store.create('shared-' + i, { labels: { who } }));
      console.log(JSON.stringify(out));
    `;
    const [a, b] = await Promise.all([runChild(script, [storeUrl, root, 'a']), runChild(script, [storeUrl, root, 'b'])]);
    const fromA = JSON.parse(a) as VolumeInfo[];
    const fromB = JSON.parse(b) as VolumeInfo[];
    // Each volume was created once; both processes got that one volume back.
    expect(fromB).toEqual(fromA);
    const entries = await readdir(join(root, 'strata', 'volumes'));
    expect(entries.sort()).toEqual(Array.from({ length: 15 }, (_, i) => `shared-${i}`).sort());
    const listed = await store.list();
    expect(listed.map((v) => v.labels.who).every((who) => who === 'a' || who === 'b')).toBe(true);
  });

  it('is safe when many creates of one name race in one process', async () => {
    const all = await Promise.all(Array.from({ length: 10 }, (_, i) => store.create('racy', { labels: { i: String(i) } })));
    for (const info of all) expect(info).toEqual(all[0]);
  });
});

describe('list', () => {
  beforeEach(async () => {
    await store.create('alpha', { labels: { tier: 'web', env: 'prod' } });
    await store.create('beta', { labels: { tier: 'db' } });
    await store.create('alphabet');
    users.set('beta', ['c1']);
  });
  const names = async (filters: string[]): Promise<string[]> => (await store.list({ filters })).map((v) => v.name);

  it('lists everything sorted by name', async () => {
    expect(await names([])).toEqual(['alpha', 'alphabet', 'beta']);
  });

  it('matches name as Docker does (substring, or regular expression)', async () => {
    expect(await names(['name=alph'])).toEqual(['alpha', 'alphabet']);
    expect(await names(['name=ta$'])).toEqual(['beta']);
    expect(await names(['name=^a.*t$'])).toEqual(['alphabet']);
    expect(await names(['name=beta', 'name=bet$'])).toEqual(['alphabet', 'beta']);
    expect(await names(['name=('])).toEqual([]);
  });

  it('matches labels by key or key=value, all of them', async () => {
    expect(await names(['label=tier'])).toEqual(['alpha', 'beta']);
    expect(await names(['label=tier=db'])).toEqual(['beta']);
    expect(await names(['label=tier', 'label=env=prod'])).toEqual(['alpha']);
    expect(await names(['label=tier=nope'])).toEqual([]);
  });

  it('matches driver and dangling', async () => {
    expect(await names(['driver=local'])).toEqual(['alpha', 'alphabet', 'beta']);
    expect(await names(['driver=nfs'])).toEqual([]);
    expect(await names(['dangling=true'])).toEqual(['alpha', 'alphabet']);
    expect(await names(['dangling=0'])).toEqual(['beta']);
    expect(await names([' Dangling = false '])).toEqual(['beta']);
  });

  it('refuses unknown and malformed filters', async () => {
    const unknown = await rejection(store.list({ filters: ['foo=bar'] }));
    expect(unknown).toBeInstanceOf(InvalidFilterError);
    expect(unknown.message).toBe("invalid filter 'foo'");
    expect((await rejection(store.list({ filters: ['dangling=maybe'] }))).message).toBe("Invalid filter 'dangling=[maybe]'");
    expect((await rejection(store.list({ filters: ['dangling=true', 'dangling=false'] }))).message).toBe(
      "Invalid filter 'dangling=[true false]'",
    );
    expect((await rejection(store.list({ filters: ['dangling'] }))).message).toBe('bad format of filter (expected name=value)');
  });

  it('treats a store without usage provider as having no users', async () => {
    store.setUsageProvider(undefined);
    expect(await names(['dangling=true'])).toEqual(['alpha', 'alphabet', 'beta']);
  });
});

describe('remove', () => {
  it('removes volumes and their data', async () => {
    const info = await store.create('data');
    await writeFile(join(info.mountpoint, 'f'), 'x');
    expect(await store.remove(['data'])).toEqual(['data']);
    expect(await store.exists('data')).toBe(false);
    expect(await readdir(join(root, 'strata', 'volumes'))).toEqual([]);
  });

  it('refuses a volume in use with Docker\'s message unless forced', async () => {
    await store.create('data');
    users.set('data', ['c1', 'c2']);
    const err = await rejection(store.remove(['data']));
    expect(err).toBeInstanceOf(VolumeRemoveError);
    expect(err.message).toBe('remove data: volume is in use - [c1, c2]');
    expect((err as VolumeRemoveError).code).toBe('VOLUME_IN_USE');
    expect(await store.exists('data')).toBe(true);
    expect(await store.remove(['data'], { force: true })).toEqual(['data']);
  });

  it('reports missing volumes unless forced, and goes on with the others', async () => {
    await store.create('one');
    await store.create('two');
    const err = (await rejection(store.remove(['one', 'ghost', 'two']))) as VolumeRemoveError;
    expect(err.message).toBe('get ghost: no such volume');
    expect(err.removed).toEqual(['one', 'two']);
    expect(await store.remove(['ghost'], { force: true })).toEqual([]);
  });
});

describe('prune', () => {
  it('removes unused anonymous volumes only, unless all', async () => {
    const anonUnused = await store.create();
    const anonUsed = await store.create();
    await store.create('named');
    users.set(anonUsed.name, ['c1']);
    await writeFile(join(anonUnused.mountpoint, 'file'), Buffer.alloc(1000));
    await link(join(anonUnused.mountpoint, 'file'), join(anonUnused.mountpoint, 'same-file'));
    await symlink('file', join(anonUnused.mountpoint, 'sym'));
    await mkdir(join(anonUnused.mountpoint, 'dir'));
    await writeFile(join(anonUnused.mountpoint, 'dir', 'more'), Buffer.alloc(24));

    const report = await store.prune();
    expect(report.volumesDeleted).toEqual([anonUnused.name]);
    // Hardlinked content once, plus the symlink's own size ('file' is 4 bytes).
    expect(report.spaceReclaimed).toBe(1000 + 24 + 4);
    expect((await store.list()).map((v) => v.name).sort()).toEqual([anonUsed.name, 'named'].sort());

    const all = await store.prune({ all: true });
    expect(all.volumesDeleted).toEqual(['named']);
    expect((await store.list()).map((v) => v.name)).toEqual([anonUsed.name]);
  });

  it('narrows by label filters and takes all= as a filter', async () => {
    await store.create('keep', { labels: { keep: 'yes' } });
    await store.create('drop', { labels: { team: 'x' } });
    await store.create('other');
    expect((await store.prune({ filters: ['all=true', 'label!=keep'] })).volumesDeleted.sort()).toEqual(['drop', 'other']);
    expect((await store.prune({ all: true, filters: ['label=keep=no'] })).volumesDeleted).toEqual([]);
    expect((await store.prune({ all: true, filters: ['label=keep=yes'] })).volumesDeleted).toEqual(['keep']);
    expect((await rejection(store.prune({ filters: ['name=x'] }))).message).toBe("invalid filter 'name'");
    expect((await rejection(store.prune({ filters: ['all=maybe'] }))).message).toBe("Invalid filter 'all=[maybe]'");
  });
});

describe('export and import', () => {
  it('round-trips content, modes, owners, times, symlinks and hardlinks', async () => {
    const source = await store.create('source');
    await makeSampleTree(source.mountpoint);
    const archive = await collect(store.exportTar('source'));
    const imported = await store.importTar('copy', Readable.from([archive]));
    expect(imported).toMatchObject({ name: 'copy', anonymous: false });
    expect(await describeTree(imported.mountpoint)).toEqual(await describeTree(source.mountpoint));
    const tree = await describeTree(imported.mountpoint);
    expect(tree['hardlink.conf']!.links).toEqual(['etc/app.conf', 'hardlink.conf']);
    if (isRoot) expect(tree['run.sh']).toMatchObject({ uid: 1234, gid: 5678, mode: 0o4755 });
  });

  it('exports deterministically', async () => {
    const source = await store.create('source');
    await makeSampleTree(source.mountpoint);
    const digest = async (): Promise<string> => createHash('sha256').update(await collect(store.exportTar('source', { sourceDateEpoch: 1e9 }))).digest('hex');
    expect(await digest()).toBe(await digest());
  });

  it('replaces existing content entirely', async () => {
    const from = await store.create('from');
    await writeFile(join(from.mountpoint, 'new'), 'new');
    const to = await store.create('to');
    await writeFile(join(to.mountpoint, 'stale'), 'old');
    await store.importTar('to', store.exportTar('from'));
    expect(await readdir(to.mountpoint)).toEqual(['new']);
    expect(await readdir(join(root, 'strata', 'volumes', 'to'))).toEqual(['_data', 'meta.json']);
  });

  it('keeps the old content when the archive is truncated', async () => {
    const source = await store.create('source');
    await writeFile(join(source.mountpoint, 'big'), Buffer.alloc(64 * 1024, 7));
    const archive = await collect(store.exportTar('source'));
    const target = await store.create('target');
    await writeFile(join(target.mountpoint, 'precious'), 'keep me');

    const err = await rejection(store.importTar('target', Readable.from([archive.subarray(0, 20_000)])));
    expect(err.message).toMatch(/truncated/);
    expect(await readdir(target.mountpoint)).toEqual(['precious']);
    expect(await readFile(join(target.mountpoint, 'precious'), 'utf8')).toBe('keep me');
    expect(await readdir(join(root, 'strata', 'volumes', 'target'))).toEqual(['_data', 'meta.json']);
  });

  it('refuses an archive that escapes the volume, keeping the old content', async () => {
    const target = await store.create('target');
    await writeFile(join(target.mountpoint, 'precious'), 'keep me');
    const evil = pack();
    evil.entry({ name: 'ok.txt' }, 'fine');
    evil.entry({ name: '../../escape.txt' }, 'gotcha');
    evil.finalize();
    await expect(store.importTar('target', evil as unknown as NodeJS.ReadableStream)).rejects.toThrow();
    expect(await readdir(target.mountpoint)).toEqual(['precious']);
    await expect(lstat(join(root, 'strata', 'volumes', 'escape.txt'))).rejects.toThrow();
    await expect(lstat(join(root, 'strata', 'escape.txt'))).rejects.toThrow();
  });

  it('fails the export stream for a missing volume', async () => {
    const err = await rejection(collect(store.exportTar('ghost')));
    expect(err).toBeInstanceOf(VolumeNotFoundError);
  });

  it('does not read the stream of an import with an invalid name', async () => {
    const stream = Readable.from([Buffer.alloc(10)]);
    await expect(store.importTar('bad name', stream)).rejects.toThrow(/includes invalid characters/);
    expect(stream.destroyed).toBe(true);
  });

  it('puts the old data back after a crash between the two renames of a swap', async () => {
    const info = await store.create('data');
    await writeFile(join(info.mountpoint, 'f'), 'before');
    const volumeDir = join(root, 'strata', 'volumes', 'data');
    // What a crash after "rename _data away" and before "rename staging in" leaves.
    await rename(info.mountpoint, join(volumeDir, '.tmp-old-123-abcdef'));
    await mkdir(join(volumeDir, '.tmp-data-123-abcdef'));
    await writeFile(join(volumeDir, '.tmp-data-123-abcdef', 'half'), 'written');
    const again = await store.get('data');
    expect(await readFile(join(again.mountpoint, 'f'), 'utf8')).toBe('before');
    expect(await readdir(volumeDir)).toEqual(['_data', 'meta.json']);
  });
});

describe('fillFromImage', () => {
  it('copies the image content into an empty volume, preserving metadata, and the root owner and mode', async () => {
    const image = await mkdtemp(join(scratch, 'image-'));
    await makeSampleTree(image);
    await chmod(image, 0o750);
    if (isRoot) await chown(image, 42, 43);
    const info = await store.create('data');
    expect(await store.fillFromImage('data', image)).toBe(true);
    expect(await describeTree(info.mountpoint)).toEqual(await describeTree(image));
    const rootStat = await stat(info.mountpoint);
    expect(rootStat.mode & 0o7777).toBe(0o750);
    if (isRoot) expect([rootStat.uid, rootStat.gid]).toEqual([42, 43]);
  });

  it('copies nothing into a volume that has content, or from a missing path', async () => {
    const image = await mkdtemp(join(scratch, 'image-'));
    await writeFile(join(image, 'from-image'), 'x');
    const info = await store.create('data');
    await writeFile(join(info.mountpoint, 'mine'), 'y');
    expect(await store.fillFromImage('data', image)).toBe(false);
    expect(await readdir(info.mountpoint)).toEqual(['mine']);
    await store.create('empty');
    expect(await store.fillFromImage('empty', join(image, 'does-not-exist'))).toBe(false);
  });

  it('refuses a file as source and a missing volume', async () => {
    const image = await mkdtemp(join(scratch, 'image-'));
    await writeFile(join(image, 'file'), 'x');
    await store.create('data');
    await expect(store.fillFromImage('data', join(image, 'file'))).rejects.toThrow(/not a directory/);
    await expect(store.fillFromImage('ghost', image)).rejects.toBeInstanceOf(VolumeNotFoundError);
  });
});
