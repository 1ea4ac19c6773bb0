/**
 * Running processes in containers with runc: the overlay root file system
 * over the container's upper dir, Docker's command rules, exit status in the
 * record, volumes/binds/tmpfs, and the lifecycle around a running process.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commit } from '../../src/container/commit.js';
import { ContainerStateError, type Container } from '../../src/container/container-store.js';
import { diff, formatChanges } from '../../src/container/diff.js';
import { exportContainer } from '../../src/container/export.js';
import { ContainerFs } from '../../src/container/fs.js';
import { inspectMounts, openVolumeStore } from '../../src/container/mounts.js';
import {
  createContainer,
  removeContainer,
  runContainer,
  runtimePauser,
  startContainer,
  type ContainerCreateOptions,
  type StartOptions,
} from '../../src/container/run.js';
import type { ResolvedImage } from '../../src/image/image-store.js';
import { exportLayer } from '../../src/layer/export.js';
import { ContainerRuntimeError } from '../../src/runtime/run.js';
import { readTar } from '../../src/tar/read.js';
import { parseMountFlag, parseVolumeFlag } from '../../src/volume/mountspec.js';
import type { VolumeStore } from '../../src/volume/volume-store.js';
import { makeBusyboxRootfs } from '../helpers/busybox.js';
import { canRunContainers, Collector, NEEDS_CONTAINERS } from '../runtime/helpers.js';
import { makeImage, sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
let volumes: VolumeStore;

beforeAll(async () => {
  if (!canRunContainers) return;
  sb = await sandbox();
  volumes = await openVolumeStore(sb.containers);
  const rootfs = join(sb.dir, 'rootfs');
  await makeBusyboxRootfs(rootfs);
  await mkdir(join(rootfs, 'app'));
  await writeFile(join(rootfs, 'app/app.py'), 'print("hello")\n');
  await mkdir(join(rootfs, 'var/lib/seeded'), { recursive: true });
  await writeFile(join(rootfs, 'var/lib/seeded/seed'), 'seed\n');
  await makeImage(sb.images, 'bb:1', [{ dir: rootfs }], {
    Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'FROM_IMAGE=1'],
    Cmd: ['sh', '-c', 'echo default cmd'],
  });
  await makeImage(sb.images, 'bb-entry:1', [{ dir: rootfs }], {
    Env: ['PATH=/bin'],
    Entrypoint: ['echo', 'entry'],
    Cmd: ['default'],
  });
});

afterAll(async () => {
  await sb?.cleanup();
});

interface Ran {
  container: Container;
  exitCode: number;
  stdout: string;
  stderr: string;
}

async function run(args: string[] | undefined, opts: ContainerCreateOptions & Omit<StartOptions, 'stdout' | 'stderr'> & { image?: string } = {}): Promise<Ran> {
  const stdout = new Collector();
  const stderr = new Collector();
  const { image = 'bb:1', ...rest } = opts;
  const result = await runContainer(sb.containers, volumes, image, { ...rest, ...(args ? { cmd: args } : {}), stdout, stderr });
  return { container: result.container, exitCode: result.exitCode, stdout: stdout.text, stderr: stderr.text };
}

/** The top layer of an image as sorted lines: path, type, mode, owner, size, content hash, link target (no mtimes). */
async function topLayerListing(image: ResolvedImage): Promise<string[]> {
  const layer = image.manifest.layers.at(-1)!;
  const lines: string[] = [];
  for await (const entry of readTar(exportLayer(sb.images.content, layer.digest, { compression: 'none', records: sb.images.layers }))) {
    const hash = createHash('sha256');
    for await (const chunk of entry.body) hash.update(chunk as Buffer);
    const h = entry.header;
    lines.push(`${h.path} ${h.type} ${h.mode.toString(8)} ${h.uid}:${h.gid} ${h.size} ${h.type === 'file' ? hash.digest('hex').slice(0, 16) : ''} ${h.linkname ?? ''}`);
  }
  return lines.sort();
}

describe.skipIf(!canRunContainers)(`running containers (${NEEDS_CONTAINERS})`, () => {
  it('runs the command with the image\'s Env, the given -e, -w and -u, streams stdout and stderr, and records the exit', async () => {
    const { container, exitCode, stdout, stderr } = await run(['sh', '-c', 'echo "$FROM_IMAGE $EXTRA"; pwd; id -u; id -g; echo oops >&2; exit 7'], {
      env: ['EXTRA=yes'],
      workingDir: '/work/dir',
      user: 'nobody',
    });
    expect(exitCode).toBe(7);
    expect(stdout).toBe('1 yes\n/work/dir\n65534\n65534\n');
    expect(stderr).toBe('oops\n');
    const state = (await container.refresh()).record.State;
    expect(state).toMatchObject({ Status: 'exited', ExitCode: 7, Pid: 0 });
    expect(Date.parse(state.FinishedAt)).toBeGreaterThanOrEqual(Date.parse(state.StartedAt));
    // The working directory was made at create, and is the container's change.
    expect(formatChanges(await diff(container))).toBe('A /work\nA /work/dir\n');
  });

  it('follows Docker\'s Entrypoint + Cmd rules', async () => {
    expect((await run(undefined)).stdout).toBe('default cmd\n');
    expect((await run(undefined, { image: 'bb-entry:1' })).stdout).toBe('entry default\n');
    expect((await run(['given', 'args'], { image: 'bb-entry:1' })).stdout).toBe('entry given args\n');
    expect((await run(['/bin/echo', 'x'], { image: 'bb-entry:1', entrypoint: [] })).stdout).toBe('x\n');
  });

  it('puts the process\'s writes in the upper dir the file API uses, and the reverse; diff and commit agree either way', async () => {
    const script = 'echo new > /temp.txt; echo changed >> /app/app.py; rm /etc/group; mkdir -p /d/e; chmod 600 /etc/passwd';
    const byProcess = await run(['sh', '-c', script]);
    expect(byProcess.exitCode).toBe(0);

    const byApi = await createContainer(sb.containers, volumes, 'bb:1', { cmd: ['true'] });
    const fsys = await ContainerFs.open(byApi);
    await fsys.writeFile('/temp.txt', 'new\n');
    await fsys.writeFile('/app/app.py', 'changed\n', { flag: 'a' });
    await fsys.rm('/etc/group');
    await fsys.mkdir('/d/e', { recursive: true });
    await fsys.chmod('/etc/passwd', 0o600);

    const readBack = await ContainerFs.open(byProcess.container);
    expect(await readBack.readFile('/temp.txt', 'utf8')).toBe('new\n');
    expect(await readBack.readFile('/app/app.py', 'utf8')).toBe('print("hello")\nchanged\n');
    expect(await readBack.exists('/etc/group')).toBe(false);

    const expected = 'C /app\nC /app/app.py\nA /d\nA /d/e\nC /etc\nC /etc/passwd\nD /etc/group\nA /temp.txt\n';
    expect(formatChanges(await diff(byProcess.container))).toBe(expected);
    expect(formatChanges(await diff(byApi))).toBe(expected);
    const fromProcess = await commit(byProcess.container);
    const fromApi = await commit(byApi);
    expect(await topLayerListing(fromProcess)).toEqual(await topLayerListing(fromApi));

    // The other way round: the file API writes, the process reads.
    await fsys.writeFile('/from-api', 'written outside\n');
    await sb.containers.update(byApi.id, (r) => {
      r.Config.Cmd = ['cat', '/from-api'];
    });
    const seen = new Collector();
    expect((await startContainer(await byApi.refresh(), { stdout: seen, stderr: new Collector() })).exitCode).toBe(0);
    expect(seen.text).toBe('written outside\n');
  });

  it('keeps a named volume\'s content across containers, and out of diff, commit and export', async () => {
    await volumes.create('data_volume');
    const writer = await run(['sh', '-c', 'echo x > /var/lib/data/f'], { mounts: [parseVolumeFlag('data_volume:/var/lib/data')] });
    expect(writer.exitCode).toBe(0);
    expect(await readFile(join(volumes.mountpoint('data_volume'), 'f'), 'utf8')).toBe('x\n');
    // Only the mount point the runtime made (in the image's /var/lib) is the container's.
    expect(formatChanges(await diff(writer.container))).toBe('C /var\nC /var/lib\nA /var/lib/data\n');
    const image = await commit(writer.container);
    expect((await topLayerListing(image)).map((line) => line.split(' ').slice(0, 2).join(' '))).toEqual([
      'var directory',
      'var/lib directory',
      'var/lib/data directory',
    ]);
    const exported: string[] = [];
    for await (const entry of readTar(exportContainer(writer.container))) {
      exported.push(entry.header.path);
      entry.body.resume();
    }
    expect(exported).toContain('var/lib/data');
    expect(exported).not.toContain('var/lib/data/f');
    await removeContainer(sb.containers, volumes, writer.container.id, { volumes: true });

    const reader = await run(['cat', '/var/lib/data/f'], { mounts: [parseVolumeFlag('data_volume:/var/lib/data')] });
    expect(reader.stdout).toBe('x\n');
  });

  it('creates a volume named by --mount that did not exist, fills it from the image, and mounts it read-only when asked', async () => {
    const first = await run(['sh', '-c', 'cat /var/lib/seeded/seed; echo more > /var/lib/seeded/more'], {
      mounts: [parseMountFlag('type=volume,src=fresh,dst=/var/lib/seeded')],
    });
    expect(first.stdout).toBe('seed\n');
    expect((await readdir(volumes.mountpoint('fresh'))).sort()).toEqual(['more', 'seed']);
    const readOnly = await run(['sh', '-c', 'echo no > /v/x'], { mounts: [parseVolumeFlag('fresh:/v:ro')] });
    expect(readOnly.exitCode).not.toBe(0);
    expect(readOnly.stderr).toMatch(/Read-only file system/);
  });

  it('bind-mounts a host directory (created for -v when missing) and a tmpfs', async () => {
    const host = join(await mkdtemp(join(sb.dir, 'bind-')), 'made-by-start');
    const result = await run(['sh', '-c', 'echo hi > /host/f; echo t > /scratch/t; grep -c " /scratch tmpfs" /proc/mounts'], {
      mounts: [parseVolumeFlag(`${host}:/host`), parseMountFlag('type=tmpfs,dst=/scratch')],
    });
    expect(result.stdout).toBe('1\n');
    expect(await readFile(join(host, 'f'), 'utf8')).toBe('hi\n');
    expect(formatChanges(await diff(result.container))).toBe('A /host\nA /scratch\n');
    const again = await run(['cat', '/host/f'], { mounts: [parseMountFlag(`type=bind,src=${host},dst=/host`)] });
    expect(again.stdout).toBe('hi\n');
  });

  it('refuses to remove a running container without force, kills it with force, and refuses a second start', async () => {
    const container = await createContainer(sb.containers, volumes, 'bb:1', { cmd: ['sleep', '300'] });
    let started!: (pid: number) => void;
    const running = new Promise<number>((resolve) => (started = resolve));
    const done = startContainer(container, { attach: false, onStarted: (pid) => started(pid) });
    const pid = await running;
    await container.refresh();
    expect(container.isRunning).toBe(true);
    expect(container.record.State.Pid).toBe(pid);
    expect((await sb.containers.list()).map((c) => c.id)).toEqual([container.id]);
    await expect(startContainer(container)).rejects.toBeInstanceOf(ContainerStateError);
    await expect(removeContainer(sb.containers, volumes, container.id)).rejects.toThrow(/container is running: stop the container before removing or force remove/);

    await removeContainer(sb.containers, volumes, container.id, { force: true });
    expect((await done).exitCode).toBe(137);
    expect(await sb.containers.list({ all: true }).then((list) => list.some((c) => c.id === container.id))).toBe(false);
  });

  it('commits a running container paused through the runtime', async () => {
    const container = await createContainer(sb.containers, volumes, 'bb:1', { cmd: ['sh', '-c', 'echo live > /live; exec sleep 300'] });
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    const done = startContainer(container, { attach: false, onStarted: () => started() });
    await running;
    await expect(commit(container)).rejects.toBeInstanceOf(ContainerStateError);
    try {
      const image = await commit(container, { pauser: await runtimePauser(container) });
      expect(image.config.rootfs.diff_ids.length).toBeGreaterThanOrEqual(1);
      // Resumed afterwards: the process is still there to be killed.
      expect((await container.refresh()).isRunning).toBe(true);
    } finally {
      await removeContainer(sb.containers, volumes, container.id, { force: true });
      await done;
    }
  });

  it('an aborted start kills the process and records 137', async () => {
    const container = await createContainer(sb.containers, volumes, 'bb:1', { cmd: ['sleep', '300'] });
    const controller = new AbortController();
    const done = startContainer(container, { attach: false, signal: controller.signal, onStarted: () => controller.abort() });
    await expect(done).rejects.toThrow();
    expect((await container.refresh()).record.State).toMatchObject({ Status: 'exited', ExitCode: 137, Pid: 0 });
  });

  it('records a command that cannot be found as Docker does (127, State.Error, still created)', async () => {
    const container = await createContainer(sb.containers, volumes, 'bb:1', { cmd: ['no-such-command'] });
    const failure = await startContainer(container, { stdout: new Collector(), stderr: new Collector() }).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(ContainerRuntimeError);
    expect((failure as ContainerRuntimeError).exitCode).toBe(127);
    const state = (await container.refresh()).record.State;
    expect(state).toMatchObject({ Status: 'created', ExitCode: 127, Pid: 0 });
    expect(state.Error).toMatch(/no-such-command/);
  });

  it('autoRemove (run --rm) removes the container and its anonymous volumes, keeping named ones', async () => {
    const before = new Set((await volumes.list()).map((v) => v.name));
    const result = await run(['sh', '-c', 'echo a > /anon/a; echo n > /named/n'], {
      autoRemove: true,
      mounts: [parseVolumeFlag('/anon'), parseVolumeFlag('kept:/named')],
    });
    expect(result.exitCode).toBe(0);
    expect(inspectMounts(result.container.record)).toHaveLength(2);
    await expect(sb.containers.get(result.container.id)).rejects.toThrow('No such container');
    const after = (await volumes.list()).map((v) => v.name).filter((name) => !before.has(name));
    expect(after).toEqual(['kept']);
  });

  it('gives the container only a loopback interface by default, and the host\'s with network host', async () => {
    expect((await run(['ls', '/sys/class/net'])).stdout).toBe('lo\n');
    const host = await run(['ls', '/sys/class/net'], { network: 'host' });
    expect(host.stdout.split('\n').filter(Boolean).length).toBeGreaterThanOrEqual(1);
  });
});
