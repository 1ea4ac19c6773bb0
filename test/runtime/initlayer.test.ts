import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcFiles, INIT_LAYER_ENTRIES, prepareInitLayer } from '../../src/runtime/initlayer.js';
import { hasOverlay, isRoot } from './helpers.js';

let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'strata-initlayer-'));
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('prepareInitLayer', () => {
  it('creates dockerd\'s mount points, files and /etc/mtab link', async () => {
    const dir = join(scratch, 'plain');
    await prepareInitLayer(dir);
    expect((await readdir(dir)).sort()).toEqual(['.dockerenv', 'dev', 'etc', 'proc', 'sys']);
    expect((await readdir(join(dir, 'dev'))).sort()).toEqual(['console', 'pts', 'shm']);
    expect((await readdir(join(dir, 'etc'))).sort()).toEqual(['hostname', 'hosts', 'mtab', 'resolv.conf']);
    for (const entry of INIT_LAYER_ENTRIES) {
      const info = await lstat(join(dir, entry.path));
      if (entry.type === 'dir') expect(info.isDirectory()).toBe(true);
      if (entry.type === 'file') {
        expect(info.isFile()).toBe(true);
        expect(info.size).toBe(0);
        expect(info.mode & 0o7777).toBe(0o755);
      }
      if (entry.type !== 'symlink') expect(info.mode & 0o7777).toBe(0o755);
    }
    expect(await readlink(join(dir, 'etc', 'mtab'))).toBe('/proc/mounts');
    // Running it again keeps the layer as it is.
    await prepareInitLayer(dir);
    expect((await readdir(join(dir, 'etc'))).sort()).toEqual(['hostname', 'hosts', 'mtab', 'resolv.conf']);
  });

  it('replaces non-directories in the way instead of writing through them', async () => {
    const dir = join(scratch, 'clobbered');
    const outside = join(scratch, 'outside');
    await mkdir(outside);
    await mkdir(dir);
    await symlink(outside, join(dir, 'etc'));
    await writeFile(join(dir, 'proc'), 'not a directory');
    await prepareInitLayer(dir);
    expect((await lstat(join(dir, 'etc'))).isDirectory()).toBe(true);
    expect((await lstat(join(dir, 'proc'))).isDirectory()).toBe(true);
    expect(await readdir(outside)).toEqual([]);
  });

  it.skipIf(!isRoot || !hasOverlay)('on top of the image keeps the image\'s directories and whites out replaced files (needs root and overlayfs)', async () => {
    const image = join(scratch, 'image');
    await mkdir(join(image, 'etc'), { recursive: true });
    await chmod(join(image, 'etc'), 0o750);
    await writeFile(join(image, 'etc', 'hosts'), 'image hosts');
    await writeFile(join(image, 'etc', 'mtab'), 'image mtab');
    await writeFile(join(image, 'etc', 'keep'), 'kept');
    await symlink('/tmp', join(image, 'sys'));
    const dir = join(scratch, 'on-image');
    await prepareInitLayer(dir, { lowerDirs: [image] });
    // /etc was copied up with the image's mode.
    expect((await stat(join(dir, 'etc'))).mode & 0o7777).toBe(0o750);
    expect(await readFile(join(dir, 'etc', 'hosts'), 'utf8')).toBe('');
    expect(await readlink(join(dir, 'etc', 'mtab'))).toBe('/proc/mounts');
    // Files the init layer does not own stay in the image only.
    await expect(lstat(join(dir, 'etc', 'keep'))).rejects.toMatchObject({ code: 'ENOENT' });
    // The image's /sys symlink is replaced by a directory.
    expect((await lstat(join(dir, 'sys'))).isDirectory()).toBe(true);
    // No scratch directories are left beside the layer.
    expect((await readdir(scratch)).filter((name) => name.startsWith('.init-'))).toEqual([]);
    expect(await readFile(join(image, 'etc', 'hosts'), 'utf8')).toBe('image hosts');
  });
});

describe('etcFiles', () => {
  let hostHosts: string;
  let hostResolv: string;

  beforeAll(async () => {
    hostHosts = join(scratch, 'host-hosts');
    hostResolv = join(scratch, 'host-resolv.conf');
    await writeFile(hostHosts, '127.0.0.1 localhost\n10.0.0.5 build-host\n');
    await writeFile(hostResolv, '# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.1\nsearch corp.example\noptions edns0 trust-ad\n');
  });

  it('with network none: isolated hosts with the hostname, resolv.conf without nameservers', async () => {
    const dir = join(scratch, 'etc-none');
    const files = await etcFiles(dir, {
      hostname: 'box',
      network: 'none',
      extraHosts: [{ host: 'db', ip: '192.0.2.7' }],
      hostHostsPath: hostHosts,
      hostResolvConfPath: hostResolv,
    });
    expect(await readFile(files.hostname, 'utf8')).toBe('box\n');
    expect(await readFile(files.hosts, 'utf8')).toBe(
      '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::\tip6-localnet\nff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.0.1\tbox\n192.0.2.7\tdb\n',
    );
    expect(await readFile(files.resolvConf, 'utf8')).toBe('# generated\nsearch corp.example\noptions edns0 trust-ad\n');
    expect(files.mounts).toEqual([
      { source: join(dir, 'hostname'), destination: '/etc/hostname', readOnly: false },
      { source: join(dir, 'hosts'), destination: '/etc/hosts', readOnly: false },
      { source: join(dir, 'resolv.conf'), destination: '/etc/resolv.conf', readOnly: false },
    ]);
  });

  it('with network host: the host\'s hosts and resolv.conf as they are', async () => {
    const files = await etcFiles(join(scratch, 'etc-host'), {
      hostname: 'box',
      network: 'host',
      readOnly: true,
      hostHostsPath: hostHosts,
      hostResolvConfPath: hostResolv,
    });
    expect(await readFile(files.hosts, 'utf8')).toBe(await readFile(hostHosts, 'utf8'));
    expect(await readFile(files.resolvConf, 'utf8')).toBe(await readFile(hostResolv, 'utf8'));
    expect(files.mounts.every((mount) => mount.readOnly)).toBe(true);
  });

  it('takes explicit contents, and survives a host without the files', async () => {
    const files = await etcFiles(join(scratch, 'etc-explicit'), {
      hostname: 'box',
      network: 'host',
      hosts: '127.0.0.1 only\n',
      hostResolvConfPath: join(scratch, 'no-such-file'),
    });
    expect(await readFile(files.hosts, 'utf8')).toBe('127.0.0.1 only\n');
    expect(await readFile(files.resolvConf, 'utf8')).toBe('');
    const custom = await etcFiles(join(scratch, 'etc-explicit'), { hostname: 'box', network: 'none', resolvConf: 'nameserver 192.0.2.1\n' });
    expect(await readFile(custom.resolvConf, 'utf8')).toBe('nameserver 192.0.2.1\n');
  });
});
