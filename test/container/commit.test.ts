/**
 * commit: the new image is the container's image plus one layer of its upper
 * dir, with Docker's config and history; it runs as a container that sees the
 * changes; volumes are left out; an unchanged container gives an empty layer.
 */
import { mkdtemp, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commit, EMPTY_LAYER_DIFF_ID } from '../../src/container/commit.js';
import { ContainerFs } from '../../src/container/fs.js';
import { ContainerStateError } from '../../src/container/container-store.js';
import { readTar } from '../../src/tar/read.js';
import { tarFromTree } from '../../src/tar/write.js';
import { dockerAvailable, dockerOk } from '../helpers/docker.js';
import { execFileAsync, isRoot, makeFixtureImage, sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;

beforeAll(async () => {
  sb = await sandbox();
  await makeFixtureImage(sb.images, sb.dir);
});

afterAll(async () => {
  await sb.cleanup();
});

/** (path type mode) of every entry of a stored layer blob, in archive order. */
async function layerEntries(digest: string): Promise<string[]> {
  const gz = sb.images.content.createReadStream(digest);
  const out: string[] = [];
  for await (const entry of readTar(gz.pipe(createGunzip()))) {
    out.push(`${entry.header.path} ${entry.header.type} ${entry.header.mode.toString(8)}`);
    entry.body.resume();
  }
  return out;
}

describe.skipIf(!isRoot)('commit (needs root)', () => {
  it('makes an image of the image plus the container’s changes, with Docker’s config and history', async () => {
    const c = await sb.containers.create('fixture:1', { cmd: ['sh', '-c', 'echo hi'], env: ['MODE=dev'] });
    const fsys = await ContainerFs.open(c);
    await fsys.writeFile('/temp.txt', 't\n');
    await fsys.writeFile('/app/app.py', 'print(2)\n');
    await fsys.rm('/etc/conf2');
    await fsys.rm('/data', { recursive: true });
    await fsys.mkdir('/data');
    const parent = await sb.images.resolve('fixture:1');
    const image = await commit(c, { ref: 'committed:1', message: 'my msg', author: 'me <me@x>', changes: ['ENV FOO=bar', 'EXPOSE 8080'] });
    expect(image.repoTags).toEqual(['committed:1']);
    expect(image.manifest.layers.slice(0, -1)).toEqual(parent.manifest.layers);
    expect(image.manifest.layers).toHaveLength(parent.manifest.layers.length + 1);
    const config = image.config;
    expect(config.config?.Cmd).toEqual(['sh', '-c', 'echo hi']);
    expect(config.config?.Env).toEqual(['MODE=dev', 'PATH=/bin', 'FOO=bar']);
    expect(config.config?.ExposedPorts).toEqual({ '8080/tcp': {} });
    expect(config.config?.WorkingDir).toBe('/app');
    expect(config.author).toBe('me <me@x>');
    expect(config.container).toBe(c.id);
    expect(config.rootfs.diff_ids.slice(0, -1)).toEqual(parent.config.rootfs.diff_ids);
    const last = config.history![config.history!.length - 1]!;
    expect(last).toEqual({ created: config.created, author: 'me <me@x>', created_by: 'sh -c echo hi', comment: 'my msg' });
    expect(config.history!.slice(0, -1)).toEqual(parent.config.history);
    expect(await layerEntries(image.manifest.layers.at(-1)!.digest)).toEqual([
      'app directory 755',
      'app/app.py file 644',
      'data directory 755',
      'data/.wh..wh..opq file 755',
      'etc directory 755',
      'etc/.wh.conf2 file 600',
      'temp.txt file 644',
    ]);
    for (const layer of image.manifest.layers) await sb.images.content.verify(layer.digest);

    // A container of the new image sees the changes.
    const next = await ContainerFs.open(await sb.containers.create('committed:1'));
    expect(await next.readFile('/app/app.py', 'utf8')).toBe('print(2)\n');
    expect(await next.readFile('/temp.txt', 'utf8')).toBe('t\n');
    expect(await next.exists('/etc/conf2')).toBe(false);
    expect(await next.readdir('/data')).toEqual([]);
    expect(await next.readFile('/etc/conf', 'utf8')).toBe('conf v3\n');
  });

  it('is deterministic: the same upper gives the same layer', async () => {
    const c = await sb.containers.create('fixture:1');
    await (await ContainerFs.open(c)).writeFile('/x', 'x');
    const a = await commit(c);
    const b = await commit(c);
    expect(a.manifest.layers.at(-1)).toEqual(b.manifest.layers.at(-1));
    expect(a.repoTags).toEqual([]);
  });

  it('records an empty layer when nothing changed', async () => {
    const c = await sb.containers.create('fixture:1', { entrypoint: ['/bin/echo'], cmd: ['hi'] });
    const parent = await sb.images.resolve('fixture:1');
    const image = await commit(c);
    expect(image.manifest.layers).toEqual(parent.manifest.layers);
    expect(image.config.rootfs.diff_ids).toEqual(parent.config.rootfs.diff_ids);
    expect(image.config.history!.at(-1)).toMatchObject({ created_by: 'hi', empty_layer: true });
    expect(image.config.config).toMatchObject({ Entrypoint: ['/bin/echo'], Cmd: ['hi'] });
    expect(image.config.rootfs.diff_ids).not.toContain(EMPTY_LAYER_DIFF_ID);
  });

  it('leaves out what lies under volume mount points', async () => {
    const c = await sb.containers.create('fixture:1', {
      mounts: [{ type: 'volume', source: 'v', target: '/vol', readOnly: false, noCopy: false, createHostPath: false, raw: 'v:/vol', syntax: 'volume', targetAsGiven: '/vol' }],
    });
    const fsys = await ContainerFs.open(c);
    await fsys.mkdir('/vol');
    await fsys.writeFile('/vol/inside', 'in');
    await fsys.writeFile('/outside', 'out');
    const image = await commit(c);
    expect(await layerEntries(image.manifest.layers.at(-1)!.digest)).toEqual(['outside file 644', 'vol directory 755']);
  });

  it('refuses to commit a running container with pause but no way to pause it', async () => {
    const c = await sb.containers.create('fixture:1');
    const { spawn } = await import('node:child_process');
    const child = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      await sb.containers.update(c.id, (r) => {
        r.State = { ...r.State, Status: 'running', Pid: child.pid! };
      });
      await expect(commit(c)).rejects.toThrow(ContainerStateError);
      const paused: string[] = [];
      await commit(c, { pauser: { pause: async () => void paused.push('pause'), resume: async () => void paused.push('resume') } });
      expect(paused).toEqual(['pause', 'resume']);
      await commit(c, { pause: false });
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe.skipIf(!isRoot)('commit against the test dockerd', () => {
  it.skipIf(!dockerAvailable())('writes the same layer entries as docker commit for the same changes', async () => {
    const base = join(sb.dir, 'layer1');
    const tag = `strata-test/commitbase:${process.pid}`;
    await dockerOk(['import', '-', tag], { input: tarFromTree(base) });
    const name = `strata-commit-${process.pid}`;
    const work = await mkdtemp(join(sb.dir, 'docker-'));
    try {
      // The fixture has no shell; docker cp makes the same kind of change a process would.
      await dockerOk(['create', '--name', name, tag, '/bin/tool']);
      const file = join(work, 'temp.txt');
      await execFileAsync('sh', ['-c', `printf 't\\n' > ${file}`]);
      await dockerOk(['cp', file, `${name}:/temp.txt`]);
      await dockerOk(['cp', file, `${name}:/data/sub/new`]);
      const committed = `strata-test/committed:${process.pid}`;
      await dockerOk(['commit', name, committed]);
      const saved = join(work, 'saved.tar');
      await dockerOk(['save', '-o', saved, committed]);
      await execFileAsync('tar', ['-C', work, '-xf', saved]);
      const manifest = JSON.parse(await readFile(join(work, 'manifest.json'), 'utf8')) as [{ Layers: string[] }];
      const theirs: string[] = [];
      const layerTar = join(work, manifest[0].Layers.at(-1)!);
      const { createReadStream } = await import('node:fs');
      for await (const entry of readTar(createReadStream(layerTar))) {
        theirs.push(`${entry.header.path} ${entry.header.type} ${entry.header.mode.toString(8)} ${entry.header.uid}:${entry.header.gid}`);
        await pipeline(entry.body, new Writable({ write: (_c, _e, cb) => cb() }));
      }
      await dockerOk(['rmi', '-f', committed]);

      const c = await sb.containers.create(await importedIntoStrata(base));
      const { copyToContainer } = await import('../../src/container/cp.js');
      await copyToContainer(c, '/temp.txt', { hostPath: file });
      await copyToContainer(c, '/data/sub/new', { hostPath: file });
      const image = await commit(c);
      const ours: string[] = [];
      for await (const entry of readTar(sb.images.content.createReadStream(image.manifest.layers.at(-1)!.digest).pipe(createGunzip()))) {
        ours.push(`${entry.header.path} ${entry.header.type} ${entry.header.mode.toString(8)} ${entry.header.uid}:${entry.header.gid}`);
        entry.body.resume();
      }
      expect(ours).toEqual(theirs);
    } finally {
      await dockerOk(['rm', '-f', name]);
      await dockerOk(['rmi', '-f', tag]);
    }
  });
});

async function importedIntoStrata(base: string): Promise<string> {
  const { makeImage } = await import('./helpers.js');
  const ref = 'imported-base:1';
  await makeImage(sb.images, ref, [{ dir: base }]);
  return ref;
}
