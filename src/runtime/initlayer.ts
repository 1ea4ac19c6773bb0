/**
 * Docker's "init layer" and the per-container /etc files.
 *
 * A runtime mounts /proc, /sys, /dev/pts, /dev/shm and binds /etc/hosts,
 * /etc/hostname and /etc/resolv.conf into the container; where a mount point is
 * missing from the image it creates one, and in an overlay root filesystem that
 * creation would land in the upper directory and so in the container's diff
 * (and in a built layer). The init layer supplies those mount points as a
 * read-only layer between the image and the upper directory, as dockerd's
 * `<id>-init` layer does (moby `daemon/initlayer/setup_unix.go`).
 *
 * The file contents seen in the container come from bind mounts of files written
 * by {@link etcFiles} elsewhere, so writes to them never touch the upper
 * directory either.
 */
import { createWriteStream } from 'node:fs';
import { chmod, chown, lchown, mkdir, mkdtemp, open, rename, rm, rmdir, stat, symlink, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { pipeline } from 'node:stream/promises';
import { tempPathFor, writeFileAtomic } from '../util/atomic.js';
import { mountOverlay } from './overlay.js';
import type { BindMount, NetworkMode } from './spec.js';
import { errnoOf } from '../util/fs.js';

/** One entry of the init layer. */
export interface InitLayerEntry {
  /** Absolute path in the container. */
  path: string;
  type: 'dir' | 'file' | 'symlink';
  /** Symlink target. */
  target?: string;
}

/**
 * What dockerd puts in an init layer: mount points for the runtime's mounts,
 * the files bind-mounted over /etc, /dev/console for terminals, the
 * /.dockerenv marker some programs use to detect a container, and /etc/mtab
 * pointing at the kernel's mount table.
 */
export const INIT_LAYER_ENTRIES: readonly InitLayerEntry[] = Object.freeze([
  { path: '/dev/pts', type: 'dir' },
  { path: '/dev/shm', type: 'dir' },
  { path: '/proc', type: 'dir' },
  { path: '/sys', type: 'dir' },
  { path: '/.dockerenv', type: 'file' },
  { path: '/etc/resolv.conf', type: 'file' },
  { path: '/etc/hosts', type: 'file' },
  { path: '/etc/hostname', type: 'file' },
  { path: '/dev/console', type: 'file' },
  { path: '/etc/mtab', type: 'symlink', target: '/proc/mounts' },
]);

/** Options of {@link prepareInitLayer}. */
export interface InitLayerOptions {
  /**
   * The image's layer directories, topmost first. With them the init layer is
   * made the way dockerd makes it: on an overlay of the image, so directories
   * the image already has (/etc, /dev) are copied up with the image's owner and
   * mode, and the container sees them unchanged. Without them, missing parents
   * are created as root-owned 0755 directories, which then hide the image's
   * own /etc and /dev attributes.
   */
  lowerDirs?: string[];
}

const isRoot = () => process.geteuid?.() === 0;

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return false;
    throw err;
  }
}

/** mkdir -p that makes only the missing directories root-owned 0755 (moby `MkdirAllAndChownNew`). */
async function mkdirNew(root: string, relative: string): Promise<void> {
  let current = root;
  for (const part of relative.split('/').filter((p) => p !== '')) {
    current = join(current, part);
    try {
      await mkdir(current);
    } catch (err) {
      if (errnoOf(err) === 'EEXIST') continue;
      throw err;
    }
    await chmod(current, 0o755);
    if (isRoot()) await chown(current, 0, 0);
  }
}

/** Dockerd's setup, applied to the tree at `root` (an overlay or the plain init directory). */
async function populate(root: string): Promise<void> {
  for (const entry of INIT_LAYER_ENTRIES) {
    const parts = entry.path.split('/').filter((p) => p !== '');
    // Anything that is not a directory on the way (a symlinked /etc, a stale
    // file) goes, so nothing below can be redirected; directories stay.
    for (let i = 1; i <= parts.length; i++) {
      try {
        await unlink(join(root, ...parts.slice(0, i)));
      } catch (err) {
        const code = errnoOf(err);
        if (code !== 'ENOENT' && code !== 'EISDIR' && code !== 'EPERM' && code !== 'ENOTDIR') throw err;
      }
    }
    const hostPath = join(root, ...parts);
    if (await exists(hostPath)) continue;
    await mkdirNew(root, parts.slice(0, -1).join('/'));
    switch (entry.type) {
      case 'dir':
        await mkdirNew(root, parts.join('/'));
        break;
      case 'file': {
        const handle = await open(hostPath, 'wx', 0o755);
        await handle.close();
        // open's mode passes through the umask; dockerd's files end up 0755.
        await chmod(hostPath, 0o755);
        if (isRoot()) await chown(hostPath, 0, 0);
        break;
      }
      case 'symlink':
        await symlink(entry.target!, hostPath);
        if (isRoot()) await lchown(hostPath, 0, 0);
        break;
    }
  }
}

/**
 * Creates (or refreshes) the init layer in `dir`, to be mounted as the topmost
 * read-only lower directory, directly under a container's upper directory.
 *
 * With `opts.lowerDirs` an overlay of the image is mounted for the duration
 * (root required) and `dir` receives an overlay-format diff, possibly with
 * whiteouts for image files it replaces, exactly like dockerd's init layer.
 */
export async function prepareInitLayer(dir: string, opts: InitLayerOptions = {}): Promise<void> {
  await mkdir(dir, { recursive: true });
  if (opts.lowerDirs === undefined || opts.lowerDirs.length === 0) {
    await populate(dir);
    return;
  }
  // Work and mount directories beside `dir`: the work directory must share
  // its filesystem.
  const scratch = await mkdtemp(join(dirname(dir), '.init-'));
  try {
    const work = join(scratch, 'work');
    const merged = join(scratch, 'merged');
    await mkdir(work);
    await mkdir(merged);
    const release = await mountOverlay({ lowerDirs: opts.lowerDirs, upperDir: dir, workDir: work, target: merged });
    try {
      await populate(merged);
    } finally {
      await release();
      await rmdir(merged).catch(() => undefined);
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// /etc/hosts, /etc/hostname, /etc/resolv.conf

/** An extra /etc/hosts line (`--add-host name:ip`). */
export interface ExtraHost {
  host: string;
  ip: string;
}

/** Options of {@link etcFiles}. */
export interface EtcFilesOptions {
  hostname: string;
  network: NetworkMode;
  /** Lines appended to /etc/hosts. */
  extraHosts?: ExtraHost[];
  /** Complete /etc/hosts content, replacing the generated one. */
  hosts?: string;
  /** Complete /etc/resolv.conf content, replacing the derived one. */
  resolvConf?: string;
  /** Bind the files read-only (`RUN` steps may prefer it). Docker binds them read-write. */
  readOnly?: boolean;
  /** @internal The host's hosts file (default /etc/hosts). */
  hostHostsPath?: string;
  /** @internal The host's resolv.conf (default /etc/resolv.conf). */
  hostResolvConfPath?: string;
}

/** The files {@link etcFiles} wrote and the binds that put them in place. */
export interface EtcFiles {
  hostname: string;
  hosts: string;
  resolvConf: string;
  /** Binds over /etc/hostname, /etc/hosts, /etc/resolv.conf, for {@link buildSpec}. */
  mounts: BindMount[];
}

/**
 * Docker's /etc/hosts for a container without a routable address (Docker 26+
 * formatting), plus the hostname on the loopback address so it resolves, as
 * BuildKit does for RUN steps.
 */
function isolatedHosts(hostname: string): string {
  const lines = [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::\tip6-localnet',
    'ff00::\tip6-mcastprefix',
    'ff02::1\tip6-allnodes',
    'ff02::2\tip6-allrouters',
  ];
  if (hostname !== 'localhost') lines.push(`127.0.0.1\t${hostname}`);
  return lines.join('\n') + '\n';
}

function extraHostLines(extra: ExtraHost[] | undefined): string {
  return (extra ?? []).map(({ host, ip }) => `${ip}\t${host}\n`).join('');
}

/** Copies `source` to `target` atomically, then appends `suffix`; a missing source copies as empty. */
async function copyWithSuffix(source: string, target: string, suffix: string, transform?: (line: string) => string | undefined): Promise<void> {
  const temp = tempPathFor(target);
  const out = createWriteStream(temp, { mode: 0o644, flags: 'wx' });
  try {
    let input: NodeJS.ReadableStream | undefined;
    try {
      input = (await open(source, 'r')).createReadStream();
    } catch (err) {
      if (errnoOf(err) !== 'ENOENT') throw err;
    }
    await pipeline(async function* () {
      if (input !== undefined && transform === undefined) {
        for await (const chunk of input) yield chunk;
      } else if (input !== undefined && transform !== undefined) {
        for await (const line of createInterface({ input, crlfDelay: Infinity })) {
          const kept = transform(line);
          if (kept !== undefined) yield kept + '\n';
        }
      }
      if (suffix !== '') yield suffix;
    }, out);
    await chmod(temp, 0o644);
    await rename(temp, target);
  } catch (err) {
    out.destroy();
    await unlink(temp).catch(() => undefined);
    throw err;
  }
}

/**
 * Writes the /etc/hostname, /etc/hosts and /etc/resolv.conf a container sees
 * into `dir` (as `hostname`, `hosts`, `resolv.conf`) and returns binds for them.
 *
 * - hostname: `opts.hostname`.
 * - hosts: with network `host`, a copy of the host's /etc/hosts (dockerd does
 *   the same); with `none`, localhost entries and the hostname on 127.0.0.1.
 *   `extraHosts` are appended either way.
 * - resolv.conf: with `host`, a copy of the host's (its nameservers, even a
 *   local 127.0.0.53 resolver, are reachable from the host namespace); with
 *   `none`, the host's search and options lines without any nameserver, since
 *   there is nothing to reach.
 */
export async function etcFiles(dir: string, opts: EtcFilesOptions): Promise<EtcFiles> {
  await mkdir(dir, { recursive: true });
  const files = { hostname: join(dir, 'hostname'), hosts: join(dir, 'hosts'), resolvConf: join(dir, 'resolv.conf') };
  await writeFileAtomic(files.hostname, `${opts.hostname}\n`);

  const extra = extraHostLines(opts.extraHosts);
  if (opts.hosts !== undefined) await writeFileAtomic(files.hosts, opts.hosts + extra);
  else if (opts.network === 'host') await copyWithSuffix(opts.hostHostsPath ?? '/etc/hosts', files.hosts, extra);
  else await writeFileAtomic(files.hosts, isolatedHosts(opts.hostname) + extra);

  const hostResolvConf = opts.hostResolvConfPath ?? '/etc/resolv.conf';
  if (opts.resolvConf !== undefined) await writeFileAtomic(files.resolvConf, opts.resolvConf);
  else if (opts.network === 'host') await copyWithSuffix(hostResolvConf, files.resolvConf, '');
  else await copyWithSuffix(hostResolvConf, files.resolvConf, '', (line) => (/^\s*nameserver\b/.test(line) ? undefined : line));

  const readOnly = opts.readOnly ?? false;
  return {
    ...files,
    mounts: [
      { source: files.hostname, destination: '/etc/hostname', readOnly },
      { source: files.hosts, destination: '/etc/hosts', readOnly },
      { source: files.resolvConf, destination: '/etc/resolv.conf', readOnly },
    ],
  };
}
