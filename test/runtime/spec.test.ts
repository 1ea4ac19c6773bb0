import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveInRoot, RootfsPathError } from '../../src/runtime/inroot.js';
import {
  buildSpec,
  DEFAULT_CAPABILITIES,
  DEFAULT_PATH_ENV,
  InvalidSpecError,
  mergeEnv,
  resolveUser,
  UserNotFoundError,
} from '../../src/runtime/spec.js';

describe('buildSpec', () => {
  it('gives Docker\'s defaults for an unprivileged container', () => {
    const spec = buildSpec({ args: ['sh', '-c', 'true'], hostname: 'box' });
    expect(spec.process.args).toEqual(['sh', '-c', 'true']);
    expect(spec.process.terminal).toBe(false);
    expect(spec.process.cwd).toBe('/');
    expect(spec.process.user).toEqual({ uid: 0, gid: 0 });
    expect(spec.process.env).toEqual([`PATH=${DEFAULT_PATH_ENV}`, 'HOSTNAME=box']);
    expect(spec.process.noNewPrivileges).toBe(false);
    expect(spec.process.rlimits).toHaveLength(1);
    expect(spec.process.rlimits[0]!.type).toBe('RLIMIT_NOFILE');
    expect(spec.process.rlimits[0]!.hard).toBeLessThanOrEqual(1048576);
    for (const set of [spec.process.capabilities.bounding, spec.process.capabilities.effective, spec.process.capabilities.permitted]) {
      expect([...set].sort()).toEqual(
        [
          'CAP_AUDIT_WRITE',
          'CAP_CHOWN',
          'CAP_DAC_OVERRIDE',
          'CAP_FOWNER',
          'CAP_FSETID',
          'CAP_KILL',
          'CAP_MKNOD',
          'CAP_NET_BIND_SERVICE',
          'CAP_NET_RAW',
          'CAP_SETFCAP',
          'CAP_SETGID',
          'CAP_SETPCAP',
          'CAP_SETUID',
          'CAP_SYS_CHROOT',
        ].sort(),
      );
    }
    expect(spec.hostname).toBe('box');
    expect(spec.root.readonly).toBe(false);
    expect(spec.mounts.map((m) => [m.destination, m.type])).toEqual([
      ['/proc', 'proc'],
      ['/dev', 'tmpfs'],
      ['/dev/pts', 'devpts'],
      ['/sys', 'sysfs'],
      ['/sys/fs/cgroup', 'cgroup'],
      ['/dev/mqueue', 'mqueue'],
      ['/dev/shm', 'tmpfs'],
    ]);
    expect(spec.mounts.find((m) => m.destination === '/dev')!.options).toEqual(expect.arrayContaining(['mode=755', 'size=65536k']));
    expect(spec.mounts.find((m) => m.destination === '/dev/shm')!.options).toEqual(expect.arrayContaining(['size=67108864', 'mode=1777']));
    expect(spec.mounts.find((m) => m.destination === '/sys')!.options).toEqual(expect.arrayContaining(['ro', 'nosuid', 'noexec', 'nodev']));
    const namespaces = spec.linux.namespaces.map((ns) => ns.type);
    expect(namespaces).toEqual(expect.arrayContaining(['pid', 'ipc', 'uts', 'mount', 'network']));
    expect(spec.linux.maskedPaths).toEqual(expect.arrayContaining(['/proc/kcore', '/proc/keys', '/sys/firmware']));
    expect(spec.linux.readonlyPaths).toEqual(['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger']);
    expect(spec.linux.devices.map((d) => d.path).sort()).toEqual(['/dev/full', '/dev/null', '/dev/random', '/dev/tty', '/dev/urandom', '/dev/zero']);
    const rules = spec.linux.resources.devices;
    expect(rules[0]).toEqual({ allow: false, access: 'rwm' });
    expect(rules).toContainEqual({ allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' });
    expect(rules).toContainEqual({ allow: true, type: 'c', major: 136, access: 'rwm' });
    expect(rules).toContainEqual({ allow: false, type: 'c', major: 10, minor: 229, access: 'rwm' });
  });

  it('shares the host network namespace with network host', () => {
    expect(buildSpec({ args: ['x'], network: 'host' }).linux.namespaces.map((ns) => ns.type)).not.toContain('network');
    expect(buildSpec({ args: ['x'], network: 'none' }).linux.namespaces.map((ns) => ns.type)).toContain('network');
    expect(buildSpec({ args: ['x'], cgroupNamespace: true }).linux.namespaces.map((ns) => ns.type)).toContain('cgroup');
    expect(buildSpec({ args: ['x'], cgroupNamespace: false }).linux.namespaces.map((ns) => ns.type)).not.toContain('cgroup');
  });

  it('lets the image replace PATH and HOSTNAME, and a bare key unset a default', () => {
    expect(buildSpec({ args: ['x'], hostname: 'h', env: ['PATH=/opt/bin', 'A=1', 'HOSTNAME'] }).process.env).toEqual(['PATH=/opt/bin', 'A=1']);
    expect(mergeEnv(['A=1', 'B=2'], ['B=3', 'C=4', 'A', 'C=5'])).toEqual(['B=3', 'C=5']);
    expect(mergeEnv([], ['X=a=b'])).toEqual(['X=a=b']);
  });

  it('adds binds and tmpfs mounts after the defaults, parents first, replacing defaults they cover', () => {
    const spec = buildSpec({
      args: ['x'],
      binds: [
        { source: '/host/deep', destination: '/data/deep/' },
        { source: '/host/data', destination: '/data', readOnly: true },
        { source: '/host/f', destination: '/etc/hosts', recursive: false, propagation: 'rslave', options: ['nosuid'] },
      ],
      tmpfs: [{ destination: '/dev/shm', size: 1024, mode: 0o1777 }, { destination: '/run' }],
    });
    const userMounts = spec.mounts.slice(spec.mounts.findIndex((m) => m.destination === '/dev/mqueue') + 1);
    expect(userMounts).toEqual([
      { destination: '/data', type: 'bind', source: '/host/data', options: ['rbind', 'ro', 'rprivate'] },
      { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'noexec'] },
      { destination: '/data/deep', type: 'bind', source: '/host/deep', options: ['rbind', 'rw', 'rprivate'] },
      { destination: '/etc/hosts', type: 'bind', source: '/host/f', options: ['bind', 'rw', 'rslave', 'nosuid'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'noexec', 'size=1024', 'mode=1777'] },
    ]);
    expect(spec.mounts.filter((m) => m.destination === '/dev/shm')).toHaveLength(1);
    // A caller's /dev takes every default below it along.
    const devSpec = buildSpec({ args: ['x'], tmpfs: [{ destination: '/dev' }] });
    expect(devSpec.mounts.map((m) => m.destination)).toEqual(['/proc', '/sys', '/sys/fs/cgroup', '/dev']);
  });

  it('passes user, groups and capabilities through', () => {
    const spec = buildSpec({ args: ['x'], user: { uid: 1000, gid: 1000, additionalGids: [5, 5, 20] }, capabilities: ['CAP_CHOWN'], readOnlyRootfs: true });
    expect(spec.process.user).toEqual({ uid: 1000, gid: 1000, additionalGids: [5, 20] });
    expect(spec.process.capabilities.bounding).toEqual(['CAP_CHOWN']);
    expect(spec.root.readonly).toBe(true);
    expect(DEFAULT_CAPABILITIES).toHaveLength(14);
  });

  it('refuses what it cannot honour, with specific messages', () => {
    expect(() => buildSpec({ args: [] })).toThrow(new InvalidSpecError('no command given: args must not be empty'));
    expect(() => buildSpec({ args: ['x'], cwd: 'rel' })).toThrow("the working directory 'rel' is invalid, it needs to be an absolute path");
    expect(() => buildSpec({ args: ['x'], network: 'bridge' as never })).toThrow('network mode "bridge" is not supported');
    expect(() => buildSpec({ args: ['x'], user: { uid: -1, gid: 0 } })).toThrow('uids and gids must be in range 0-2147483647');
    expect(() => buildSpec({ args: ['x'], binds: [{ source: 'rel', destination: '/x' }] })).toThrow('must be an absolute host path');
    expect(() => buildSpec({ args: ['x'], tmpfs: [{ destination: 'x' }] })).toThrow('tmpfs destination "x" must be an absolute path');
    expect(() => buildSpec({ args: ['x'], hostname: 'a b' })).toThrow('invalid hostname');
  });
});

describe('resolveUser', () => {
  let scratch: string;
  let rootfs: string;
  let outside: string;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'strata-user-'));
    rootfs = join(scratch, 'rootfs');
    outside = join(scratch, 'outside');
    await mkdir(join(rootfs, 'etc'), { recursive: true });
    await mkdir(outside);
    await writeFile(
      join(rootfs, 'etc', 'passwd'),
      [
        '# comment',
        'root:x:0:0:root:/root:/bin/sh',
        '',
        'app:x:1000:1000:app:/home/app:/bin/sh',
        'garbled:x:notanumber:0::/:/bin/sh',
        'dup:x:1001:1001::/first:/bin/sh',
        'dup:x:1002:1002::/second:/bin/sh',
        'nogroup:x:1003:4242::/:/bin/sh',
      ].join('\n') + '\n',
    );
    await writeFile(join(rootfs, 'etc', 'group'), 'root:x:0:\napp:x:1000:\nwheel:x:10:root,app\nstaff:x:50:app\nstaff2:x:50:app\n');
    await writeFile(join(outside, 'passwd'), 'evil:x:0:0::/:/bin/sh\n');
  });

  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it('defaults to root, with root\'s groups and home', async () => {
    expect(await resolveUser(rootfs, '')).toEqual({ uid: 0, gid: 0, additionalGids: [10], home: '/root' });
  });

  it('finds a user by name or uid, with supplementary groups from /etc/group', async () => {
    const app = { uid: 1000, gid: 1000, additionalGids: [10, 50], home: '/home/app' };
    expect(await resolveUser(rootfs, 'app')).toEqual(app);
    expect(await resolveUser(rootfs, '1000')).toEqual(app);
    expect(await resolveUser(rootfs, 'dup')).toMatchObject({ uid: 1001, home: '/first' });
    expect(await resolveUser(rootfs, 'nogroup')).toEqual({ uid: 1003, gid: 4242, additionalGids: [], home: '/' });
  });

  it('uses a numeric uid or gid without an entry as is', async () => {
    expect(await resolveUser(rootfs, '4000')).toEqual({ uid: 4000, gid: 0, additionalGids: [] });
    expect(await resolveUser(rootfs, '4000:4001')).toEqual({ uid: 4000, gid: 4001, additionalGids: [] });
  });

  it('takes an explicit group by name or gid and then adds no supplementary groups', async () => {
    expect(await resolveUser(rootfs, 'app:wheel')).toEqual({ uid: 1000, gid: 10, additionalGids: [], home: '/home/app' });
    expect(await resolveUser(rootfs, 'app:50')).toEqual({ uid: 1000, gid: 50, additionalGids: [], home: '/home/app' });
    expect(await resolveUser(rootfs, ':wheel')).toEqual({ uid: 0, gid: 10, additionalGids: [], home: '/root' });
  });

  it('fails with Docker\'s messages', async () => {
    await expect(resolveUser(rootfs, 'foo')).rejects.toThrow(new UserNotFoundError('unable to find user foo: no matching entries in passwd file'));
    await expect(resolveUser(rootfs, 'app:bar')).rejects.toThrow('unable to find group bar: no matching entries in group file');
    await expect(resolveUser(rootfs, '2147483648')).rejects.toThrow('uids and gids must be in range 0-2147483647');
    await expect(resolveUser(rootfs, 'garbled')).rejects.toThrow('unable to find user garbled');
    await expect(resolveUser(join(scratch, 'empty'), 'app')).rejects.toThrow('unable to find user app: no matching entries in passwd file');
    expect(await resolveUser(join(scratch, 'empty'), '')).toEqual({ uid: 0, gid: 0, additionalGids: [] });
  });

  it('does not follow symlinks out of the rootfs', async () => {
    for (const [name, target] of [
      ['absolute', join(outside, 'passwd')],
      ['relative', `../../../../../../../../..${join(outside, 'passwd')}`],
    ] as const) {
      const evil = join(scratch, `evil-${name}`);
      await mkdir(join(evil, 'etc'), { recursive: true });
      await symlink(target, join(evil, 'etc', 'passwd'));
      await expect(resolveUser(evil, 'evil')).rejects.toThrow('unable to find user evil');
    }
    // A symlink within the rootfs is followed.
    const linked = join(scratch, 'linked');
    await mkdir(join(linked, 'etc'), { recursive: true });
    await mkdir(join(linked, 'data'));
    await writeFile(join(linked, 'data', 'passwd'), 'svc:x:7:7::/:/bin/sh\n');
    await symlink('/data/passwd', join(linked, 'etc', 'passwd'));
    expect(await resolveUser(linked, 'svc')).toEqual({ uid: 7, gid: 7, additionalGids: [], home: '/' });
  });
});

describe('resolveInRoot', () => {
  let root: string;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'strata-inroot-'));
    await mkdir(join(root, 'a', 'b'), { recursive: true });
    await symlink('/a', join(root, 'abs'));
    await symlink('../../../..', join(root, 'a', 'up'));
    await symlink('loop2', join(root, 'loop1'));
    await symlink('loop1', join(root, 'loop2'));
    await symlink('b', join(root, 'a', 'rel'));
  });

  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('maps container paths to host paths under the root', async () => {
    expect(await resolveInRoot(root, '/a/b')).toBe(join(root, 'a', 'b'));
    expect(await resolveInRoot(root, '/abs/b')).toBe(join(root, 'a', 'b'));
    expect(await resolveInRoot(root, '/a/rel')).toBe(join(root, 'a', 'b'));
    expect(await resolveInRoot(root, '/a/up/a')).toBe(join(root, 'a'));
    expect(await resolveInRoot(root, '/../../etc/passwd')).toBe(join(root, 'etc', 'passwd'));
    expect(await resolveInRoot(root, '/missing/../../x')).toBe(join(root, 'x'));
    expect(await resolveInRoot(root, '/abs', false)).toBe(join(root, 'abs'));
  });

  it('gives up on a symlink loop', async () => {
    await expect(resolveInRoot(root, '/loop1')).rejects.toBeInstanceOf(RootfsPathError);
  });
});
