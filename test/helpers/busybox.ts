/**
 * A minimal, network-free root filesystem for tests: a static busybox with one
 * symlink per applet, a root/nobody passwd and group, and a sticky /tmp. The
 * same tree serves as a rootfs on disk (chroot, strata's own containers) and,
 * imported into docker, as the `strata-test/busybox` base image.
 *
 * The tree is deterministic (fixed modes, fixed mtimes, sorted creation) so
 * layer digests computed from it are stable across runs and machines with the
 * same busybox build.
 */
import { execFile } from 'node:child_process';
import { chmod, copyFile, lstat, lutimes, mkdir, open, readdir, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Docker reference of the base image the harness imports. */
export const BUSYBOX_IMAGE = 'strata-test/busybox:latest';

/** Where the static busybox comes from (Debian's busybox-static). */
export const BUSYBOX_BINARY = process.env.STRATA_TEST_BUSYBOX ?? '/bin/busybox';

/** mtime of every entry in the tree: 2000-01-01T00:00:00Z. */
export const BUSYBOX_ROOTFS_MTIME = new Date(Date.UTC(2000, 0, 1));

/** `PATH` the imported image declares (docker's default for Linux containers). */
export const BUSYBOX_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n';
const GROUP = 'root:x:0:\nnobody:x:65534:\n';

/** What {@link makeBusyboxRootfs} created. */
export interface BusyboxRootfs {
  /** The rootfs directory. */
  dir: string;
  /** Applet names linked in /bin (sorted), e.g. `['[', '[[', 'acpid', ...]`. */
  applets: string[];
}

/**
 * Throws unless `path` is a statically linked ELF executable: a dynamically
 * linked busybox would start on the host but fail inside the rootfs, where
 * there is no libc, with a confusing "no such file or directory".
 */
export async function assertStaticElf(path: string): Promise<void> {
  const handle = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new Error(`busybox not found at ${path} (install busybox-static): ${err.message}`);
  });
  try {
    const header = Buffer.alloc(64);
    await handle.read(header, 0, 64, 0);
    if (header.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${path} is not an ELF executable`);
    const is64 = header[4] === 2;
    const little = header[5] === 1;
    const u16 = (b: Buffer, o: number) => (little ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (b: Buffer, o: number) => (little ? b.readUInt32LE(o) : b.readUInt32BE(o));
    const phoff = is64 ? Number(little ? header.readBigUInt64LE(32) : header.readBigUInt64BE(32)) : u32(header, 28);
    const phentsize = u16(header, is64 ? 54 : 42);
    const phnum = u16(header, is64 ? 56 : 44);
    const table = Buffer.alloc(phentsize * phnum);
    await handle.read(table, 0, table.length, phoff);
    const PT_INTERP = 3;
    for (let i = 0; i < phnum; i++) {
      if (u32(table, i * phentsize) === PT_INTERP) {
        throw new Error(`${path} is dynamically linked; the test rootfs needs a static busybox (Debian: busybox-static)`);
      }
    }
  } finally {
    await handle.close();
  }
}

/** The applets `busybox` provides, sorted, without `busybox` itself. */
export async function busyboxApplets(binary = BUSYBOX_BINARY): Promise<string[]> {
  const { stdout } = await execFileAsync(binary, ['--list'], { encoding: 'utf8' });
  const applets = stdout
    .split('\n')
    .map((line) => line.trim())
    .filter((name) => name !== '' && name !== 'busybox' && !name.includes('/'));
  if (applets.length === 0) throw new Error(`${binary} --list printed no applets`);
  return [...new Set(applets)].sort();
}

async function setTreeMtimes(dir: string, mtime: Date): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await setTreeMtimes(path, mtime);
    else await lutimes(path, mtime, mtime);
  }
  // Children first: touching them would otherwise bump the directory's mtime.
  await utimes(dir, mtime, mtime);
}

/**
 * Creates the busybox rootfs under `dir` (created if missing; must be empty).
 *
 * Layout: `/bin/busybox` (0755) and `/bin/<applet> -> busybox` for every
 * applet, `/etc/passwd` and `/etc/group` (root, nobody; 0644), `/root`
 * (0700), `/home` (0755), `/tmp` (1777). Every mtime is {@link BUSYBOX_ROOTFS_MTIME}.
 * Ownership is the caller's (root in CI).
 */
export async function makeBusyboxRootfs(dir: string, binary = BUSYBOX_BINARY): Promise<BusyboxRootfs> {
  await assertStaticElf(binary);
  const applets = await busyboxApplets(binary);
  await mkdir(dir, { recursive: true });
  if ((await readdir(dir)).length > 0) throw new Error(`rootfs directory ${dir} is not empty`);

  const dirs: [string, number][] = [
    ['bin', 0o755],
    ['etc', 0o755],
    ['home', 0o755],
    ['root', 0o700],
    ['tmp', 0o1777],
  ];
  for (const [name, mode] of dirs) {
    await mkdir(join(dir, name));
    // mkdir's mode is filtered by the umask and cannot set the sticky bit.
    await chmod(join(dir, name), mode);
  }
  await copyFile(binary, join(dir, 'bin', 'busybox'));
  await chmod(join(dir, 'bin', 'busybox'), 0o755);
  for (const applet of applets) await symlink('busybox', join(dir, 'bin', applet));
  await writeFile(join(dir, 'etc', 'passwd'), PASSWD);
  await chmod(join(dir, 'etc', 'passwd'), 0o644);
  await writeFile(join(dir, 'etc', 'group'), GROUP);
  await chmod(join(dir, 'etc', 'group'), 0o644);
  await setTreeMtimes(dir, BUSYBOX_ROOTFS_MTIME);
  if (!(await lstat(join(dir, 'bin', 'sh'))).isSymbolicLink()) throw new Error(`${binary} has no sh applet`);
  return { dir, applets };
}
