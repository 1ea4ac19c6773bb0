/**
 * Container mounts at create time, as dockerd resolves them: volumes made or
 * reused, anonymous volumes for image VOLUMEs and `-v /p`, Docker's inspect
 * entries, copy of image content into empty volumes, and which volumes `rm -v`
 * and `volume rm` may delete. Nothing here runs a process.
 */
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContainerNotFoundError } from '../../src/container/container-store.js';
import { diff, formatChanges } from '../../src/container/diff.js';
import { inspectMounts, openVolumeStore, VolumeOverFileError } from '../../src/container/mounts.js';
import { createContainer, removeContainer } from '../../src/container/run.js';
import { Strata } from '../../src/strata.js';
import { parseMountFlag, parseVolumeFlag } from '../../src/volume/mountspec.js';
import type { VolumeStore } from '../../src/volume/volume-store.js';
import { isRoot, makeImage, sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
let volumes: VolumeStore;

/** An image whose /var/lib/data has content (owned 1000:1000, mode 0750) and declares it a VOLUME, plus a file /etc/conf. */
async function makeVolumeImage(ref: string, declared: Record<string, Record<string, never>> = { '/var/lib/data': {} }): Promise<void> {
  const tree = await mkdtemp(join(sb.dir, 'tree-'));
  await mkdir(join(tree, 'var/lib/data/sub'), { recursive: true });
  await writeFile(join(tree, 'var/lib/data/seed'), 'from the image\n');
  await writeFile(join(tree, 'var/lib/data/sub/deep'), 'deep\n');
  await mkdir(join(tree, 'etc'));
  await writeFile(join(tree, 'etc/conf'), 'conf\n');
  await chmod(join(tree, 'var/lib/data'), 0o750);
  if (isRoot) await chown(join(tree, 'var/lib/data'), 1000, 1000);
  await makeImage(sb.images, ref, [{ dir: tree }], { Cmd: ['/bin/true'], Volumes: declared });
}

beforeEach(async () => {
  sb = await sandbox();
  volumes = await openVolumeStore(sb.containers);
  await makeVolumeImage('vol:1');
  await makeVolumeImage('novol:1', {});
});

afterEach(async () => {
  await sb.cleanup();
});

const volumeFlag = (raw: string) => parseVolumeFlag(raw);

describe('resolving mounts at create', () => {
  it('creates a named volume that does not exist and records Docker inspect entries', async () => {
    const hostDir = join(sb.dir, 'host');
    await mkdir(hostDir);
    const container = await createContainer(sb.containers, volumes, 'novol:1', {
      mounts: [
        volumeFlag('data_volume:/var/lib/data'),
        volumeFlag(`${hostDir}:/mnt/host:ro`),
        parseMountFlag('type=tmpfs,dst=/scratch,tmpfs-size=1m'),
      ],
    });
    const info = await volumes.get('data_volume');
    expect(info.anonymous).toBe(false);
    expect(inspectMounts(container.record)).toEqual([
      { Type: 'volume', Name: 'data_volume', Source: info.mountpoint, Destination: '/var/lib/data', Driver: 'local', Mode: 'z', RW: true, Propagation: '' },
      { Type: 'bind', Source: hostDir, Destination: '/mnt/host', Mode: 'ro', RW: false, Propagation: 'rprivate' },
      { Type: 'tmpfs', Source: '', Destination: '/scratch', Mode: '', RW: true, Propagation: '' },
    ]);
    // The record survives a re-read.
    expect(inspectMounts((await sb.containers.get(container.id)).record)).toEqual(inspectMounts(container.record));
  });

  it('reuses an existing named volume as it is', async () => {
    await volumes.create('keep', { labels: { a: 'b' } });
    await writeFile(join(volumes.mountpoint('keep'), 'mine'), 'x');
    await createContainer(sb.containers, volumes, 'vol:1', { mounts: [parseMountFlag('type=volume,src=keep,dst=/var/lib/data,volume-label=c=d')] });
    const info = await volumes.get('keep');
    expect(info.labels).toEqual({ a: 'b' });
    // Not empty: nothing of the image is copied in.
    expect(await readdir(info.mountpoint)).toEqual(['mine']);
  });

  it('gives each image VOLUME not covered by another mount an anonymous volume', async () => {
    const covered = await createContainer(sb.containers, volumes, 'vol:1', { mounts: [volumeFlag('named:/var/lib/data')] });
    expect(inspectMounts(covered.record).map((m) => m.Name)).toEqual(['named']);

    const container = await createContainer(sb.containers, volumes, 'vol:1');
    const [mount, ...rest] = inspectMounts(container.record);
    expect(rest).toEqual([]);
    expect(mount).toMatchObject({ Type: 'volume', Destination: '/var/lib/data', Driver: 'local', Mode: '', RW: true, Propagation: '' });
    expect(mount!.Name).toMatch(/^[a-f0-9]{64}$/);
    const info = await volumes.get(mount!.Name!);
    expect(info.anonymous).toBe(true);
    expect(info.labels).toHaveProperty(['com.docker.volume.anonymous']);
  });

  it('makes `-v /path` an anonymous volume declared in the container config, as the docker CLI does', async () => {
    const container = await createContainer(sb.containers, volumes, 'novol:1', { mounts: [volumeFlag('/cache')] });
    expect(container.record.Config.Volumes).toEqual({ '/cache': {} });
    const [mount] = inspectMounts(container.record);
    expect(mount).toMatchObject({ Type: 'volume', Destination: '/cache', Mode: '', RW: true });
    expect((await volumes.get(mount!.Name!)).anonymous).toBe(true);
  });

  it('refuses duplicate mount points and a --mount bind whose source is missing, leaving no volume behind', async () => {
    await expect(
      createContainer(sb.containers, volumes, 'novol:1', { mounts: [volumeFlag('a1:/x'), volumeFlag('b1:/x')] }),
    ).rejects.toThrow('Duplicate mount point: /x');
    expect(() => parseMountFlag(`type=bind,src=${join(sb.dir, 'missing')},dst=/x`)).toThrow(
      `invalid mount config for type "bind": bind source path does not exist: ${join(sb.dir, 'missing')}`,
    );
    expect(await volumes.list()).toEqual([]);
    expect(await sb.containers.list({ all: true })).toEqual([]);
  });

  it('says "No command specified" for an image without a command, before making anything', async () => {
    const tree = await mkdtemp(join(sb.dir, 'tree-'));
    await writeFile(join(tree, 'f'), 'x');
    await makeImage(sb.images, 'nocmd:1', [{ dir: tree }]);
    await expect(createContainer(sb.containers, volumes, 'nocmd:1', { mounts: [volumeFlag('v1:/v')] })).rejects.toThrow('No command specified');
    expect(await volumes.list()).toEqual([]);
    // A command on the command line is enough.
    await createContainer(sb.containers, volumes, 'nocmd:1', { cmd: ['true'] });
  });

  it('refuses a second container with the same name before creating its volumes', async () => {
    await createContainer(sb.containers, volumes, 'novol:1', { name: 'twin' });
    await expect(createContainer(sb.containers, volumes, 'novol:1', { name: 'twin', mounts: [volumeFlag('v2:/v')] })).rejects.toThrow(
      /The container name "\/twin" is already in use/,
    );
    expect(await volumes.exists('v2')).toBe(false);
  });
});

describe('filling volumes from the image', () => {
  it('copies the image content at the mount path into a new empty volume, with the directory owner and mode', async () => {
    const container = await createContainer(sb.containers, volumes, 'vol:1', { mounts: [volumeFlag('filled:/var/lib/data')] });
    const mountpoint = volumes.mountpoint('filled');
    expect(await readFile(join(mountpoint, 'seed'), 'utf8')).toBe('from the image\n');
    expect(await readFile(join(mountpoint, 'sub/deep'), 'utf8')).toBe('deep\n');
    const root = await stat(mountpoint);
    expect(root.mode & 0o7777).toBe(0o750);
    if (isRoot) expect([root.uid, root.gid]).toEqual([1000, 1000]);
    // The copy is the volume's; the container changed nothing.
    expect(await diff(container)).toEqual([]);
  });

  it('fills anonymous volumes of image VOLUMEs, and an existing volume only when it is empty', async () => {
    const container = await createContainer(sb.containers, volumes, 'vol:1');
    const name = inspectMounts(container.record)[0]!.Name!;
    expect(await readFile(join(volumes.mountpoint(name), 'seed'), 'utf8')).toBe('from the image\n');

    await volumes.create('empty-before');
    await createContainer(sb.containers, volumes, 'vol:1', { mounts: [volumeFlag('empty-before:/var/lib/data')] });
    expect((await readdir(volumes.mountpoint('empty-before'))).sort()).toEqual(['seed', 'sub']);
  });

  it('copies nothing with nocopy, and nothing where the image has nothing', async () => {
    await createContainer(sb.containers, volumes, 'vol:1', {
      mounts: [volumeFlag('nc:/var/lib/data:nocopy'), parseMountFlag('type=volume,src=nc2,dst=/etc/conf.d,volume-nocopy')],
    });
    expect(await readdir(volumes.mountpoint('nc'))).toEqual([]);
    await createContainer(sb.containers, volumes, 'vol:1', { mounts: [volumeFlag('elsewhere:/nothing/here')] });
    expect(await readdir(volumes.mountpoint('elsewhere'))).toEqual([]);
  });

  it('refuses an image VOLUME over a file and undoes the container and its volumes', async () => {
    await makeVolumeImage('badvol:1', { '/etc/conf': {} });
    await expect(createContainer(sb.containers, volumes, 'badvol:1')).rejects.toBeInstanceOf(VolumeOverFileError);
    await expect(createContainer(sb.containers, volumes, 'badvol:1')).rejects.toThrow('cannot mount volume over existing file, file exists /etc/conf');
    expect(await sb.containers.list({ all: true })).toEqual([]);
    expect(await volumes.list()).toEqual([]);
  });

  it('creates a missing working directory in the container, as Docker does at create', async () => {
    const container = await createContainer(sb.containers, volumes, 'novol:1', { workingDir: '/srv/app' });
    expect(formatChanges(await diff(container))).toBe('A /srv\nA /srv/app\n');
    await expect(createContainer(sb.containers, volumes, 'novol:1', { workingDir: '/etc/conf' })).rejects.toThrow(
      'Cannot mkdir: /etc/conf is not a directory',
    );
  });
});

describe('volumes in use', () => {
  it('volume rm refuses a volume a container uses, with Docker\'s message, until the container is gone', async () => {
    const container = await createContainer(sb.containers, volumes, 'novol:1', { mounts: [volumeFlag('busy:/data')] });
    await expect(volumes.remove(['busy'])).rejects.toThrow(`remove busy: volume is in use - [${container.id}]`);
    expect(await volumes.list({ filters: ['dangling=true'] })).toEqual([]);
    await removeContainer(sb.containers, volumes, container.id);
    expect(await volumes.exists('busy')).toBe(true);
    expect(await volumes.remove(['busy'])).toEqual(['busy']);
  });

  it('rm -v deletes the container\'s anonymous volumes only; named ones stay, and so do anonymous ones another container uses', async () => {
    const first = await createContainer(sb.containers, volumes, 'vol:1', { mounts: [volumeFlag('named:/named'), volumeFlag('/anon')] });
    const anonymous = inspectMounts(first.record).filter((m) => m.Destination !== '/named').map((m) => m.Name!);
    expect(anonymous).toHaveLength(2);
    // Another container mounting one of them by its (generated) name.
    const second = await createContainer(sb.containers, volumes, 'novol:1', { mounts: [volumeFlag(`${anonymous[0]}:/shared`)] });

    await removeContainer(sb.containers, volumes, first.id, { volumes: true });
    await expect(sb.containers.get(first.id)).rejects.toBeInstanceOf(ContainerNotFoundError);
    expect(await volumes.exists('named')).toBe(true);
    expect(await volumes.exists(anonymous[0]!)).toBe(true);
    expect(await volumes.exists(anonymous[1]!)).toBe(false);

    // The second container named it, so for it the volume is not anonymous: rm -v keeps it.
    await removeContainer(sb.containers, volumes, second.id, { volumes: true });
    expect(await volumes.exists(anonymous[0]!)).toBe(true);
  });

  it('rm without -v keeps every volume', async () => {
    const container = await createContainer(sb.containers, volumes, 'vol:1');
    const name = inspectMounts(container.record)[0]!.Name!;
    await removeContainer(sb.containers, volumes, container.id);
    expect(await volumes.exists(name)).toBe(true);
    // Dangling now, so an anonymous prune takes it.
    expect((await volumes.prune()).volumesDeleted).toEqual([name]);
  });
});

describe('images in use', () => {
  it('rmi refuses an image a container uses, with Docker\'s conflict message, and -f untags it', async () => {
    const strata = await Strata.open({ root: sb.root });
    const container = await createContainer(sb.containers, volumes, 'novol:1');
    const { items } = await strata.rmi(['novol:1']);
    expect(items[0]!.error?.message).toMatch(
      new RegExp(`^conflict: unable to remove repository reference "novol:1" \\(must force\\) - container ${container.id.slice(0, 12)} is using its referenced image [a-f0-9]{12}$`),
    );
    const forced = await strata.rmi(['novol:1'], { force: true });
    expect(forced.items[0]!.error).toBeUndefined();
    // The container keeps its image's blobs through gc.
    expect(formatChanges(await diff(await sb.containers.get(container.id)))).toBe('');
  });
});
