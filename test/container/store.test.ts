/**
 * The container store: create/get/list/remove, names, gc roots, the in-use
 * check for rmi, and the cost of creating containers (nothing is copied).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AmbiguousContainerError,
  ContainerNameConflictError,
  ContainerNotFoundError,
  ContainerStateError,
  ContainerStore,
  mergeContainerConfig,
} from '../../src/container/container-store.js';
import { InvalidContainerNameError } from '../../src/container/names.js';
import { ContainerFs } from '../../src/container/fs.js';
import { ImageConflictError } from '../../src/image/image-store.js';
import { diskUsage, isRoot, makeImage, sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;

beforeAll(async () => {
  sb = await sandbox();
  const tree = join(sb.dir, 'tree');
  await mkdir(join(tree, 'app'), { recursive: true });
  await writeFile(join(tree, 'app', 'app.py'), 'print(1)\n');
  await makeImage(sb.images, 'app:1', [{ dir: tree }], { Cmd: ['python', '/app/app.py'], Env: ['PATH=/bin', 'A=image'], WorkingDir: '/app', Labels: { from: 'image' } });
});

afterAll(async () => {
  await sb.cleanup();
});

describe('container records', () => {
  it('creates a container whose config merges the image config with the options', async () => {
    const c = await sb.containers.create('app:1', { name: 'web', env: ['A=mine', 'B=2'], labels: { mine: 'yes' } });
    expect(c.id).toMatch(/^[a-f0-9]{64}$/);
    expect(c.name).toBe('web');
    const r = c.record;
    expect(r.Image).toBe((await sb.images.resolve('app:1')).id);
    expect(r.ImageRef).toBe('app:1');
    expect(r.Config.Cmd).toEqual(['python', '/app/app.py']);
    expect(r.Config.Env).toEqual(['A=mine', 'B=2', 'PATH=/bin']);
    expect(r.Config.WorkingDir).toBe('/app');
    expect(r.Config.Labels).toEqual({ mine: 'yes', from: 'image' });
    expect(r.Mounts).toEqual([]);
    expect(r.State).toMatchObject({ Status: 'created', ExitCode: 0, Pid: 0, StartedAt: '0001-01-01T00:00:00Z' });
    expect(existsSync(c.upperDir) && existsSync(c.workDir)).toBe(true);
    expect(r.TopChainId).toBe(r.ChainIds[r.ChainIds.length - 1]);
  });

  it("follows Docker's merge rules for Cmd and Entrypoint", () => {
    const image = { Cmd: ['img-cmd'], Entrypoint: ['img-ep'] };
    expect(mergeContainerConfig({ Entrypoint: ['mine'] }, image)).toMatchObject({ Entrypoint: ['mine'] });
    expect(mergeContainerConfig({ Entrypoint: ['mine'] }, image).Cmd).toBeUndefined();
    expect(mergeContainerConfig({ Cmd: ['c'] }, image)).toMatchObject({ Cmd: ['c'], Entrypoint: ['img-ep'] });
    expect(mergeContainerConfig({ Entrypoint: [] }, image)).toMatchObject({ Cmd: ['img-cmd'], Entrypoint: [] });
    expect(mergeContainerConfig({}, image)).toMatchObject({ Cmd: ['img-cmd'], Entrypoint: ['img-ep'] });
  });

  it('finds containers by id, name and unique prefix', async () => {
    const c = await sb.containers.create('app:1', { name: 'finder' });
    expect((await sb.containers.get(c.id)).id).toBe(c.id);
    expect((await sb.containers.get('finder')).id).toBe(c.id);
    expect((await sb.containers.get('/finder')).id).toBe(c.id);
    expect((await sb.containers.get(c.id.slice(0, 12))).id).toBe(c.id);
    await expect(sb.containers.get('nosuch')).rejects.toThrow(ContainerNotFoundError);
    await expect(sb.containers.get('nosuch')).rejects.toThrow('No such container: nosuch');
    // Prefixes short enough to match several containers are ambiguous.
    const all = await sb.containers.list({ all: true });
    const clash = all.find((a) => all.some((b) => b !== a && b.id[0] === a.id[0]));
    if (clash) await expect(sb.containers.get(clash.id[0]!)).rejects.toThrow(AmbiguousContainerError);
  });

  it('keeps names unique and valid, and generates names', async () => {
    await sb.containers.create('app:1', { name: 'unique' });
    await expect(sb.containers.create('app:1', { name: 'unique' })).rejects.toThrow(ContainerNameConflictError);
    await expect(sb.containers.create('app:1', { name: '/unique' })).rejects.toThrow(/is already in use by container/);
    await expect(sb.containers.create('app:1', { name: 'bad name' })).rejects.toThrow(InvalidContainerNameError);
    const generated = await sb.containers.create('app:1');
    expect(generated.name).toMatch(/^[a-z]+_[a-z]+\d?$|^strata_[a-f0-9]{12}$/);
    // Concurrent creations with one name: exactly one wins.
    const results = await Promise.allSettled(Array.from({ length: 4 }, () => sb.containers.create('app:1', { name: 'race' })));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
  });

  it('removes a container: its upper dir goes, the image and other containers stay', async () => {
    const a = await sb.containers.create('app:1', { name: 'doomed' });
    const b = await sb.containers.create('app:1', { name: 'survivor' });
    await (await ContainerFs.open(b)).writeFile('/b.txt', 'b');
    await sb.containers.remove('doomed');
    expect(existsSync(a.dir)).toBe(false);
    await expect(sb.containers.get('doomed')).rejects.toThrow(ContainerNotFoundError);
    expect(await (await ContainerFs.open(b)).readFile('/b.txt', 'utf8')).toBe('b');
    // The name is free again.
    await sb.containers.create('app:1', { name: 'doomed' });
  });

  it('refuses to remove a running container unless forced', async () => {
    const c = await sb.containers.create('app:1', { name: 'runner' });
    // A stand-in for the runtime: a live process recorded as the container's.
    const { spawn } = await import('node:child_process');
    const child = spawn('sleep', ['60'], { stdio: 'ignore' });
    await sb.containers.update(c.id, (r) => {
      r.State = { ...r.State, Status: 'running', Pid: child.pid!, StartedAt: new Date().toISOString() };
    });
    await expect(sb.containers.remove('runner')).rejects.toThrow(ContainerStateError);
    await expect(sb.containers.remove('runner')).rejects.toThrow(/container is running: stop the container before removing or force remove/);
    expect((await sb.containers.list()).map((x) => x.name)).toContain('runner');
    const exited = new Promise((resolve) => child.once('exit', resolve));
    await sb.containers.remove('runner', { force: true });
    await exited;
    expect(existsSync(c.dir)).toBe(false);
  });

  it('lists running containers, or all of them, newest first', async () => {
    const all = await sb.containers.list({ all: true });
    expect(all.length).toBeGreaterThan(3);
    for (let i = 1; i < all.length; i++) expect(Date.parse(all[i - 1]!.record.Created)).toBeGreaterThanOrEqual(Date.parse(all[i]!.record.Created));
    expect(await sb.containers.list()).toEqual([]);
  });
});

describe('images used by containers', () => {
  it('reports the image in use, so rmi refuses without force', async () => {
    const tree = join(sb.dir, 'tree2');
    await mkdir(tree, { recursive: true });
    await writeFile(join(tree, 'x'), 'x');
    const image = await makeImage(sb.images, 'used:1', [{ dir: tree }]);
    const c = await sb.containers.create('used:1');
    expect(await sb.containers.isInUse(image.id)).toEqual({ containerId: c.id, running: false });
    const isInUse = (id: typeof image.id) => sb.containers.isInUse(id);
    await expect(sb.images.remove('used:1', { isInUse })).rejects.toThrow(ImageConflictError);
    await expect(sb.images.remove(image.id, { isInUse })).rejects.toThrow(/must be forced\) - image is being used by stopped container/);
  });

  it('keeps a container’s image blobs through gc after the image lost its name', async () => {
    const tree = join(sb.dir, 'tree3');
    await mkdir(tree, { recursive: true });
    await writeFile(join(tree, 'y'), 'y');
    const image = await makeImage(sb.images, 'gone:1', [{ dir: tree }]);
    const c = await sb.containers.create('gone:1');
    await sb.images.remove('gone:1', { force: true });
    await expect(sb.images.resolve('gone:1')).rejects.toThrow();
    await sb.images.gc();
    for (const blob of [image.manifestDigest, image.manifest.config.digest, ...image.manifest.layers.map((l) => l.digest)]) {
      expect(await sb.images.content.has(blob)).toBe(true);
    }
    // And the container still works: its snapshots are there, its image readable.
    const fsys = await ContainerFs.open(c);
    expect(await fsys.readFile('/y', 'utf8')).toBe('y');
    await sb.containers.remove(c.id);
    await sb.images.gc();
    expect(await sb.images.content.has(image.manifestDigest)).toBe(false);
  });

  it('reports volume users and the ChainIDs in use', async () => {
    const c = await sb.containers.create('app:1', {
      mounts: [{ type: 'volume', source: 'vol1', target: '/data', readOnly: false, noCopy: false, createHostPath: false, raw: 'vol1:/data', syntax: 'volume', targetAsGiven: '/data' }],
    });
    expect(await sb.containers.volumeUsers('vol1')).toEqual([c.id]);
    expect(await sb.containers.volumeUsers('vol2')).toEqual([]);
    expect((await sb.containers.chainIdsInUse()).has(c.record.TopChainId!)).toBe(true);
  });
});

describe.skipIf(!isRoot)('creating many containers', () => {
  it('100 containers of a ~200 MB image cost what the first did and add < 5 MB', async () => {
    const own = await sandbox();
    try {
      const tree = join(own.dir, 'big');
      await mkdir(tree, { recursive: true });
      // Incompressible, so the layer really is ~200 MB; a few files plus many small ones.
      for (let i = 0; i < 4; i++) await writeFile(join(tree, `blob${i}`), randomBytes(50 * 1024 * 1024));
      for (let i = 0; i < 200; i++) await writeFile(join(tree, `small${i}`), randomBytes(1024));
      await makeImage(own.images, 'big:1', [{ dir: tree }], {}, { compression: 'none' });
      // The first container unpacks the snapshot (once, shared); measure creations after that.
      await own.containers.create('big:1');
      const before = await diskUsage(own.root);
      const times: number[] = [];
      for (let i = 0; i < 100; i++) {
        const start = performance.now();
        await own.containers.create('big:1');
        times.push(performance.now() - start);
      }
      const added = (await diskUsage(own.root)) - before;
      expect(added).toBeLessThan(5 * 1024 * 1024);
      const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const first = avg(times.slice(0, 10));
      const last = avg(times.slice(-10));
      console.log(`create: first 10 avg ${first.toFixed(2)} ms, last 10 avg ${last.toFixed(2)} ms, 100 containers added ${(added / 1024).toFixed(0)} KiB`);
      expect(last).toBeLessThan(3 * first + 5);
    } finally {
      await own.cleanup();
    }
  });
});

describe('opening', () => {
  it('clears leftovers of interrupted creations', async () => {
    const stale = join(sb.containers.dir, '.tmp-abc-999999999-0123456789ab');
    await mkdir(join(stale, 'upper'), { recursive: true });
    const reopened = await ContainerStore.open(sb.root, { images: sb.images });
    expect(existsSync(stale)).toBe(false);
    expect((await reopened.list({ all: true })).length).toBeGreaterThan(0);
  });
});
