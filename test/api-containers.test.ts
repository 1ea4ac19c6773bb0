/**
 * Containers and volumes through the package entry point: the facade's
 * container methods and `strata.volumes`, without a runtime (create, the
 * file-system API, diff, cp, export, commit, save, load, remove) and with one
 * (build → run → commit → save → load → run elsewhere; commit and cp of a
 * running container, paused by the facade).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ContainerFs,
  ContainerNotFoundError,
  ImageConflictError,
  Strata,
  VolumeRemoveError,
  formatChanges,
  parseMountFlag,
  parseVolumeFlag,
  tarFromChangeset,
} from '../src/index.js';
import { readTar } from '../src/tar/read.js';
import { makeBusyboxRootfs } from './helpers/busybox.js';
import { canRunContainers, Collector, NEEDS_CONTAINERS } from './runtime/helpers.js';
import { makeTree } from './cli/helpers.js';

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'strata-api-containers-'));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Entries of a tar stream as `path → content` (non-files as `<type>`). */
async function listing(tar: NodeJS.ReadableStream): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const entry of readTar(tar)) {
    if (entry.header.type !== 'file') {
      entry.body.resume();
      out[entry.header.path] = `<${entry.header.type}>`;
      continue;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of entry.body) chunks.push(chunk as Buffer);
    out[entry.header.path] = Buffer.concat(chunks).toString('utf8');
  }
  return out;
}

/** A one-file tar, as `docker cp -` reads it. */
function oneFileTar(path: string, content: string): Readable {
  const data = Buffer.from(content);
  return tarFromChangeset({
    entries: [{ header: { path, type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: data.length }, content: () => data }],
    deletions: [],
    opaqueDirs: [],
  });
}

describe('Strata containers and volumes (no runtime needed)', () => {
  it('creates a container, changes it through its file system, and commits, saves and loads the result', async () => {
    const strata = await Strata.open({ root: join(work, 'root-fs') });
    await strata.import(await makeTree(work, 'tree-fs'), { ref: 'api/base:1', changes: ['CMD ["/bin/hello"]'] });

    const container = await strata.createContainer('api/base:1', {
      name: 'work',
      mounts: [parseVolumeFlag('data:/data'), parseMountFlag('type=tmpfs,dst=/scratch')],
    });
    expect(container.name).toBe('work');
    expect((await strata.container('work')).id).toBe(container.id);
    expect((await strata.container(container.id.slice(0, 12))).name).toBe('work');
    expect((await strata.listContainers({ all: true })).map((c) => c.name)).toEqual(['work']);
    expect(await strata.listContainers()).toEqual([]);

    // The volume store knows the container uses `data`.
    expect((await strata.volumes.list()).map((v) => v.name)).toEqual(['data']);
    expect(await strata.volumes.usedBy('data')).toEqual([container.id]);
    await expect(strata.volumes.remove(['data'])).rejects.toBeInstanceOf(VolumeRemoveError);
    // So does rmi: the image a container uses cannot go.
    const refused = await strata.rmi(['api/base:1']);
    expect(refused.items[0]!.error).toBeInstanceOf(ImageConflictError);

    const files = await strata.containerFs('work');
    expect(files).toBeInstanceOf(ContainerFs);
    await files.writeFile('/etc/motd', 'welcome\n');
    await files.rm('/bin/hi');
    await strata.copyToContainer(container, '/etc', oneFileTar('copied.conf', 'copied\n'));
    await strata.copyToContainer('work', '/', { hostPath: join(work, 'tree-fs', 'etc', 'hostname') });

    expect(formatChanges(await strata.diff('work'))).toBe('C /bin\nD /bin/hi\nC /etc\nA /etc/copied.conf\nA /etc/motd\nA /hostname\n');
    expect(await listing(await strata.copyFromContainer('work', '/etc/motd'))).toEqual({ motd: 'welcome\n' });
    await expect(strata.copyFromContainer('work', '/nope')).rejects.toThrow('Could not find the file /nope in container work');
    expect(await listing(strata.exportContainer('work'))).toEqual({
      bin: '<directory>',
      'bin/hello': '#!/bin/sh\necho hello\n',
      etc: '<directory>',
      'etc/copied.conf': 'copied\n',
      'etc/hostname': 'strata\n',
      'etc/motd': 'welcome\n',
      hostname: 'strata\n',
    });
    await expect(listing(strata.exportContainer('gone'))).rejects.toBeInstanceOf(ContainerNotFoundError);

    const committed = await strata.commit('work', { ref: 'api/committed:1', changes: ['ENV STAGE=committed'], message: 'through the facade' });
    expect(committed.repoTags).toEqual(['api/committed:1']);
    expect(committed.config.config!.Env).toContain('STAGE=committed');
    expect(committed.manifest.layers).toHaveLength(2);

    const archive = join(work, 'committed.tar');
    await strata.saveToFile(['api/committed:1'], archive);
    const other = await Strata.open({ root: join(work, 'root-fs-other') });
    expect(await other.load({ file: archive })).toEqual([{ id: committed.id, manifestDigest: committed.manifestDigest, tags: ['api/committed:1'] }]);
    const flat = await listing(other.flatten('api/committed:1'));
    expect(flat).toMatchObject({ 'etc/motd': 'welcome\n', 'etc/copied.conf': 'copied\n', hostname: 'strata\n' });
    expect(flat['bin/hi']).toBeUndefined();
    expect((await other.fsck()).ok).toBe(true);

    // rm -v would take anonymous volumes only: `data` is named and stays, free to go now.
    await strata.removeContainer('work', { volumes: true });
    await expect(strata.container('work')).rejects.toBeInstanceOf(ContainerNotFoundError);
    expect(await strata.volumes.usedBy('data')).toEqual([]);
    expect(await strata.volumes.remove(['data'])).toEqual(['data']);
    expect((await strata.rmi(['api/base:1'])).items[0]!.error).toBeUndefined();
    expect((await strata.fsck()).ok).toBe(true);
  });
});

describe.skipIf(!canRunContainers)(`Strata containers with a runtime (${NEEDS_CONTAINERS})`, () => {
  let strata: Strata;

  beforeAll(async () => {
    strata = await Strata.open({ root: join(work, 'root-run') });
    await makeBusyboxRootfs(join(work, 'busybox'));
    await strata.import(join(work, 'busybox'), { ref: 'api/busybox:1', changes: ['CMD ["sh"]'] });
  });

  it('builds an image, runs it, commits what the run changed, and runs the saved image in another store', async () => {
    const ctx = join(work, 'ctx-run');
    const { mkdir, writeFile } = await import('node:fs/promises');
    await mkdir(ctx);
    await writeFile(join(ctx, 'Dockerfile'), 'FROM api/busybox:1\nCOPY hello.txt /app/\nCMD ["cat", "/app/hello.txt"]\n');
    await writeFile(join(ctx, 'hello.txt'), 'hello from the build\n');
    const built = await strata.build({ contextDir: ctx, tags: ['api/built:1'], sourceDateEpoch: 0 });

    const defaultCmd = new Collector();
    const plain = await strata.run('api/built:1', { stdout: defaultCmd, autoRemove: true });
    expect(plain.exitCode).toBe(0);
    expect(defaultCmd.text).toBe('hello from the build\n');

    const out = new Collector();
    const ran = await strata.run(built.id, { name: 'runner', cmd: ['sh', '-c', 'echo ran > /ran.txt; rm /app/hello.txt'], stdout: out });
    expect(ran).toMatchObject({ exitCode: 0 });
    expect(ran.container.record.State).toMatchObject({ Status: 'exited', ExitCode: 0 });
    expect(formatChanges(await strata.diff(ran.container))).toBe('C /app\nD /app/hello.txt\nA /ran.txt\n');

    const committed = await strata.commit(ran.container, { ref: 'api/ran:1', changes: ['CMD ["cat", "/ran.txt"]'] });
    const archive = join(work, 'ran.tar');
    await strata.saveToFile(['api/ran:1'], archive);

    const other = await Strata.open({ root: join(work, 'root-run-other') });
    expect((await other.load({ file: archive }))[0]).toMatchObject({ id: committed.id, tags: ['api/ran:1'] });
    const elsewhere = new Collector();
    const again = await other.run('api/ran:1', { stdout: elsewhere, autoRemove: true });
    expect(again.exitCode).toBe(0);
    expect(elsewhere.text).toBe('ran\n');
    const missing = new Collector();
    expect((await other.run('api/ran:1', { cmd: ['ls', '/app'], stdout: missing, autoRemove: true })).exitCode).toBe(0);
    expect(missing.text).toBe('');
    expect(await other.listContainers({ all: true })).toEqual([]);
    await strata.removeContainer('runner');
  });

  it('pauses a running container for commit and cp, and removes it with force', async () => {
    const out = new Collector();
    const container = await strata.createContainer('api/busybox:1', { name: 'sleeper', cmd: ['sh', '-c', 'echo x > /marker; echo ready; exec sleep 60'] });
    const started = strata.start(container, { stdout: out });
    try {
      await out.waitFor('ready');
      expect((await strata.container('sleeper')).isRunning).toBe(true);

      // Without the runtime's pauser the modules refuse; the facade brings it.
      const committed = await strata.commit('sleeper', { ref: 'api/paused:1' });
      expect(await listing(await strata.copyFromContainer('sleeper', '/marker'))).toEqual({ marker: 'x\n' });
      // Resumed by the time that tar ended, so it can be paused again at once.
      await strata.copyToContainer('sleeper', '/', oneFileTar('in.txt', 'in\n'));
      expect((await strata.container('sleeper')).isRunning).toBe(true);
      expect(formatChanges(await strata.diff('sleeper'))).toBe('A /in.txt\nA /marker\n');
      expect((await listing(strata.flatten('api/paused:1'))).marker).toBe('x\n');
      expect(committed.manifest.layers.length).toBe(2);
    } finally {
      await strata.removeContainer('sleeper', { force: true });
    }
    expect((await started).exitCode).toBe(137);
    await expect(strata.container('sleeper')).rejects.toBeInstanceOf(ContainerNotFoundError);
  });
});
