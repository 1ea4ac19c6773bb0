/**
 * Fixtures for runtime tests: a tiny busybox root filesystem, and what the
 * host offers (root, runc, overlayfs).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmod, copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';

export const BUSYBOX = process.env.STRATA_TEST_BUSYBOX ?? '/bin/busybox';

export const isRoot = process.geteuid?.() === 0;
export const isLinux = process.platform === 'linux';

function which(name: string): string | undefined {
  const found = spawnSync('sh', ['-c', `command -v ${name} || ls /usr/sbin/${name} /sbin/${name} 2>/dev/null`], { encoding: 'utf8' });
  const path = found.stdout.trim().split('\n')[0];
  return path ? path : undefined;
}

export const runcPath = isLinux ? which('runc') : undefined;
export const hasBusybox = existsSync(BUSYBOX);
export const hasOverlay = isLinux && existsSync('/proc/filesystems') && /\toverlay$/m.test(execFileSync('cat', ['/proc/filesystems'], { encoding: 'utf8' }));

/** Containers can be run here: root, runc, overlayfs, a static busybox. */
export const canRunContainers = isRoot && runcPath !== undefined && hasOverlay && hasBusybox;
export const NEEDS_CONTAINERS = 'needs root, runc, overlayfs and /bin/busybox';

const APPLETS = ['sh', 'echo', 'cat', 'ls', 'id', 'touch', 'rm', 'mkdir', 'hostname', 'sleep', 'pwd', 'env', 'wc', 'head', 'true', 'stat'];

/**
 * A rootfs with busybox and a few applets, /etc/passwd with root and `app`
 * (1000:1000, member of `extra` 2000), and a sticky /tmp.
 */
export async function makeRootfs(dir: string): Promise<string> {
  for (const sub of ['bin', 'etc', 'tmp', 'root', 'home/app']) await mkdir(join(dir, sub), { recursive: true });
  await chmod(join(dir, 'tmp'), 0o1777);
  await copyFile(BUSYBOX, join(dir, 'bin', 'busybox'));
  await chmod(join(dir, 'bin', 'busybox'), 0o755);
  for (const applet of APPLETS) await symlink('busybox', join(dir, 'bin', applet));
  await writeFile(join(dir, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n');
  await writeFile(join(dir, 'etc', 'group'), 'root:x:0:\napp:x:1000:\nextra:x:2000:app\n');
  return dir;
}

/** A writable that collects what it is given. */
export class Collector extends Writable {
  chunks: Buffer[] = [];
  private waiters: { text: string; resolve: () => void }[] = [];

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.chunks.push(chunk);
    const text = this.text;
    this.waiters = this.waiters.filter((waiter) => {
      if (!text.includes(waiter.text)) return true;
      waiter.resolve();
      return false;
    });
    done();
  }

  get text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }

  /** Resolves once the collected output contains `text`. */
  waitFor(text: string): Promise<void> {
    if (this.text.includes(text)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ text, resolve }));
  }
}
