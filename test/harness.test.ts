/**
 * The test harness itself: the private dockerd answers, the network-free
 * busybox base image runs, docker's classic builder can RUN in it, and the
 * same busybox tree works as a plain rootfs.
 */
import { execFile } from 'node:child_process';
import { lstat, mkdtemp, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BUSYBOX_IMAGE,
  docker,
  dockerAvailable,
  dockerHost,
  dockerOk,
  dockerUnavailableReason,
  ensureBusyboxImage,
  makeBusyboxRootfs,
} from './helpers/docker.js';
import { BUSYBOX_ROOTFS_MTIME } from './helpers/busybox.js';

const execFileAsync = promisify(execFile);
const noDocker = !dockerAvailable();
const isRoot = process.getuid?.() === 0;

describe.skipIf(noDocker)(noDocker ? `test dockerd (skipped: ${dockerUnavailableReason()})` : 'test dockerd', () => {
  it('answers the Debian docker CLI on its private socket', async () => {
    const { stdout } = await dockerOk(['version', '--format', '{{.Server.Version}}']);
    expect(stdout.toString().trim()).toMatch(/^\d+\.\d+/);
    if (process.env.STRATA_TEST_DOCKER_HOST) return; // someone else's daemon: its paths are its own
    expect(dockerHost()).toMatch(/^unix:\/\/\/.*strata-test-docker-\d+\/docker\.sock$/);
    const info = await dockerOk(['info', '--format', '{{.Driver}} {{.DockerRootDir}}']);
    const [driver, dataRoot] = info.stdout.toString().trim().split(' ');
    expect(['overlay2', 'vfs']).toContain(driver);
    expect(dataRoot).toMatch(/strata-test-docker-\d+\/data$/);
  });

  it('runs echo in the busybox image', async () => {
    const image = await ensureBusyboxImage();
    expect(image).toBe(BUSYBOX_IMAGE);
    const { stdout } = await dockerOk(['run', '--rm', image, 'echo', 'hi']);
    expect(stdout.toString()).toBe('hi\n');
  });

  it('builds a Dockerfile with RUN using the classic builder', async () => {
    const context = await mkdtemp(join(tmpdir(), 'strata-harness-build-'));
    const tag = `strata-test/harness-build:${process.pid}`;
    try {
      await writeFile(
        join(context, 'Dockerfile'),
        `FROM ${BUSYBOX_IMAGE}\nRUN echo built > /built && mkdir -p /data/sub\nCMD ["cat", "/built"]\n`,
      );
      const build = await dockerOk(['build', '-t', tag, context]);
      // The classic builder narrates each step; BuildKit would not.
      expect(build.stdout.toString()).toMatch(/Step 2\/3 : RUN echo built/);
      const { stdout } = await dockerOk(['run', '--rm', tag]);
      expect(stdout.toString()).toBe('built\n');
    } finally {
      await docker(['rmi', '-f', tag]);
      await rm(context, { recursive: true, force: true });
    }
  });

  it('passes stdin through and reports failures with their stderr', async () => {
    const piped = await dockerOk(['run', '--rm', '-i', BUSYBOX_IMAGE, 'wc', '-c'], { input: 'twelve bytes' });
    expect(piped.stdout.toString().trim()).toBe('12');
    const failed = await docker(['image', 'inspect', 'strata-test/does-not-exist:latest']);
    expect(failed.code).not.toBe(0);
    await expect(dockerOk(['image', 'inspect', 'strata-test/does-not-exist:latest'])).rejects.toThrow(/No such image/);
  });
});

describe('busybox rootfs', () => {
  let dir: string;
  let applets: string[];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'strata-harness-rootfs-'));
    ({ applets } = await makeBusyboxRootfs(join(dir, 'rootfs')));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('has a static busybox with an applet symlink for each command', async () => {
    const rootfs = join(dir, 'rootfs');
    expect((await stat(join(rootfs, 'bin', 'busybox'))).mode & 0o7777).toBe(0o755);
    expect(applets).toEqual(expect.arrayContaining(['sh', 'ls', 'cat', 'echo', 'mkdir', 'rm']));
    for (const applet of ['sh', 'ls', 'cat']) {
      expect((await lstat(join(rootfs, 'bin', applet))).isSymbolicLink()).toBe(true);
      expect(await readlink(join(rootfs, 'bin', applet))).toBe('busybox');
    }
  });

  it('has users, a sticky /tmp and fixed mtimes', async () => {
    const rootfs = join(dir, 'rootfs');
    expect(await readFile(join(rootfs, 'etc', 'passwd'), 'utf8')).toMatch(/^root:x:0:0:root:\/root:\/bin\/sh$/m);
    expect(await readFile(join(rootfs, 'etc', 'group'), 'utf8')).toMatch(/^root:x:0:$/m);
    expect((await stat(join(rootfs, 'tmp'))).mode & 0o7777).toBe(0o1777);
    expect((await stat(join(rootfs, 'root'))).mode & 0o7777).toBe(0o700);
    for (const path of ['', 'bin', 'bin/busybox', 'etc/passwd', 'tmp']) {
      expect((await lstat(join(rootfs, path))).mtimeMs).toBe(BUSYBOX_ROOTFS_MTIME.getTime());
    }
    expect((await lstat(join(rootfs, 'bin', 'sh'))).mtimeMs).toBe(BUSYBOX_ROOTFS_MTIME.getTime());
  });

  it('refuses a non-empty target directory', async () => {
    await expect(makeBusyboxRootfs(join(dir, 'rootfs'))).rejects.toThrow(/not empty/);
  });

  it.skipIf(!isRoot)('runs a shell when chrooted into (needs root for chroot)', async () => {
    const { stdout } = await execFileAsync('chroot', [join(dir, 'rootfs'), '/bin/sh', '-c', 'echo hi from $(cat /etc/hostname 2>/dev/null || echo chroot)']);
    expect(stdout).toBe('hi from chroot\n');
  });
});
