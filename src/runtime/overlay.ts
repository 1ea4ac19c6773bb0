/**
 * overlayfs mounts for container root filesystems: read-only image layers
 * (lower directories, topmost first) under a writable upper directory that
 * collects the container's changes in overlay format (whiteouts are 0:0
 * character devices, opaque directories carry `trusted.overlay.opaque=y`).
 *
 * Options follow Docker's overlay2 driver, which shares one lower directory
 * between any number of mounts: `index=off` where the kernel knows the option,
 * so a lower directory is not tied to the first upper it was mounted with.
 * Beyond Docker, `redirect_dir=off` and `metacopy=off` are passed when the
 * kernel supports them: with either feature on, renames and chmods in the
 * container leave xattr references to lower files in the upper directory
 * instead of full copies, and the upper directory would stop being a
 * self-contained diff (Docker falls back to a slow naive diff in that case).
 *
 * Mount data is limited to one page. When absolute paths do not fit (many
 * layers, long store paths) or contain characters the option syntax cannot
 * carry (`,` `:` `\` `"`), each directory gets a one- or two-character symlink
 * in a scratch directory and `mount` runs there with relative paths: Docker's
 * `l/<id>` links, made per mount. The kernel resolves the links when mounting,
 * so the scratch directory is removed right after.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, rmdir, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { StrataError } from '../content/errors.js';

/** Mount data must fit in one page including the NUL; 4 KiB is the smallest page Linux uses. */
const MOUNT_DATA_LIMIT = 4095;

/** The kernel's limit on overlay layers (OVL_MAX_STACK). */
export const MAX_LOWER_DIRS = 500;

/** How often {@link unmount} retries a busy mount before giving up. */
const UNMOUNT_ATTEMPTS = 8;

/** An overlay mount or unmount failed. */
export class OverlayError extends StrataError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('OVERLAY_FAILED', message, options);
  }
}

/** What to mount. */
export interface OverlayMountOptions {
  /** Read-only layers, topmost first. At least one. */
  lowerDirs: string[];
  /** Writable layer; omit (with `workDir`) for a read-only mount of two or more lowers. */
  upperDir?: string;
  /** Empty scratch directory on the same filesystem as `upperDir`. */
  workDir?: string;
  /** Existing directory to mount on. */
  target: string;
}

/** Releases a mount made by {@link mountOverlay}; safe to call more than once. */
export type Unmount = () => Promise<void>;

interface CommandResult {
  code: number | null;
  stderr: string;
}

function runCommand(command: string, args: string[], cwd?: string): Promise<CommandResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      if (stderr.length < 4096) stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stderr: stderr.trim() }));
  });
}

let featureOptions: Promise<string[]> | undefined;

/** `index=off`, `redirect_dir=off`, `metacopy=off` where the overlay module has the parameter. */
function kernelFeatureOptions(): Promise<string[]> {
  featureOptions ??= (async () => {
    const options: string[] = [];
    for (const [parameter, option] of [
      ['index', 'index=off'],
      ['redirect_dir', 'redirect_dir=off'],
      ['metacopy', 'metacopy=off'],
    ] as const) {
      if (existsSync(`/sys/module/overlay/parameters/${parameter}`)) options.push(option);
    }
    return options;
  })();
  return featureOptions;
}

/** Characters with a meaning in overlay (`:`, `\`) or mount(8) (`,`, `"`) option syntax. */
function needsLink(path: string): boolean {
  return /[,:\\"\n]/.test(path);
}

function mountData(features: string[], lowers: string[], upper?: string, work?: string): string {
  const parts = [...features, `lowerdir=${lowers.join(':')}`];
  if (upper !== undefined && work !== undefined) parts.push(`upperdir=${upper}`, `workdir=${work}`);
  return parts.join(',');
}

function describeMount(opts: OverlayMountOptions): string {
  const upper = opts.upperDir !== undefined ? ` with upper ${opts.upperDir}` : '';
  return `overlay on ${opts.target} (${opts.lowerDirs.length} lower dir${opts.lowerDirs.length === 1 ? '' : 's'}${upper})`;
}

/**
 * Mounts an overlay filesystem on `opts.target`.
 *
 * @returns a function that unmounts it (see {@link unmount})
 * @throws OverlayError when the arguments are unusable (no lowers, more than
 *   {@link MAX_LOWER_DIRS}, an upper without a work dir) or mount(8) fails,
 *   with mount's message
 */
export async function mountOverlay(opts: OverlayMountOptions): Promise<Unmount> {
  const target = resolve(opts.target);
  if (opts.lowerDirs.length === 0) {
    throw new OverlayError(`cannot mount overlay on ${target}: at least one lower directory is needed (use an empty directory for an empty image)`);
  }
  if (opts.lowerDirs.length > MAX_LOWER_DIRS) {
    throw new OverlayError(`cannot mount overlay on ${target}: ${opts.lowerDirs.length} lower directories, overlayfs stacks at most ${MAX_LOWER_DIRS}`);
  }
  if ((opts.upperDir === undefined) !== (opts.workDir === undefined)) {
    throw new OverlayError(`cannot mount overlay on ${target}: upperDir and workDir go together`);
  }
  if (opts.upperDir === undefined && opts.lowerDirs.length < 2) {
    throw new OverlayError(`cannot mount overlay on ${target}: a read-only overlay needs two or more lower directories (bind-mount a single one instead)`);
  }
  const lowers = opts.lowerDirs.map((dir) => resolve(dir));
  const upper = opts.upperDir !== undefined ? resolve(opts.upperDir) : undefined;
  const work = opts.workDir !== undefined ? resolve(opts.workDir) : undefined;
  const features = await kernelFeatureOptions();

  let data = mountData(features, lowers, upper, work);
  let cwd: string | undefined;
  const all = [...lowers, ...(upper !== undefined ? [upper] : []), ...(work !== undefined ? [work] : [])];
  if (data.length > MOUNT_DATA_LIMIT || all.some(needsLink)) {
    cwd = await mkdtemp(join(tmpdir(), 'strata-ovl-'));
    try {
      // Base-36 indices for lowers; upper and work get upper-case names, which
      // toString(36) never produces.
      await Promise.all(lowers.map((dir, i) => symlink(dir, join(cwd!, i.toString(36)))));
      if (upper !== undefined) await symlink(upper, join(cwd, 'U'));
      if (work !== undefined) await symlink(work, join(cwd, 'W'));
    } catch (err) {
      await rm(cwd, { recursive: true, force: true });
      throw err;
    }
    data = mountData(
      features,
      lowers.map((_, i) => i.toString(36)),
      upper !== undefined ? 'U' : undefined,
      work !== undefined ? 'W' : undefined,
    );
    if (data.length > MOUNT_DATA_LIMIT) {
      await rm(cwd, { recursive: true, force: true });
      throw new OverlayError(`cannot mount overlay on ${target}: mount options are ${data.length} bytes even with short links, over the ${MOUNT_DATA_LIMIT}-byte limit`);
    }
  }

  let result: CommandResult;
  try {
    result = await runCommand('mount', ['-t', 'overlay', 'overlay', '-o', data, target], cwd);
  } catch (err) {
    throw new OverlayError(`cannot mount ${describeMount(opts)}: could not run mount(8): ${(err as Error).message}`, { cause: err });
  } finally {
    if (cwd !== undefined) await rm(cwd, { recursive: true, force: true });
  }
  if (result.code !== 0) {
    throw new OverlayError(`cannot mount ${describeMount(opts)}: ${result.stderr || `mount exited with status ${result.code}`}`);
  }

  let released = false;
  return async () => {
    if (released) return;
    await unmount(target);
    released = true;
  };
}

/** Options of {@link unmount}. */
export interface UnmountOptions {
  /**
   * When the mount stays busy after the retries, detach it lazily (`umount -l`)
   * instead of failing: it disappears from the tree now and is released once
   * the last user lets go.
   */
  lazyFallback?: boolean;
}

/**
 * Unmounts `target`. An already unmounted target is not an error.
 *
 * A busy mount (a process still exiting, a runtime still tearing down its
 * namespace) is retried immediately, up to a few times, each attempt waiting
 * for the previous umount(8) to finish; there are no timed sleeps.
 *
 * @throws OverlayError when it stays busy (and `lazyFallback` is off) or umount fails otherwise
 */
export async function unmount(target: string, opts: UnmountOptions = {}): Promise<void> {
  const path = resolve(target);
  let last: CommandResult | undefined;
  for (let attempt = 0; attempt < UNMOUNT_ATTEMPTS; attempt++) {
    last = await runCommand('umount', [path]);
    if (last.code === 0) return;
    if (/not mounted|no mount point specified|not found/i.test(last.stderr)) return;
    if (!/busy/i.test(last.stderr)) break;
  }
  if (last !== undefined && /busy/i.test(last.stderr) && opts.lazyFallback) {
    const lazy = await runCommand('umount', ['-l', path]);
    if (lazy.code === 0) return;
    last = lazy;
  }
  throw new OverlayError(`cannot unmount ${path}: ${last?.stderr || `umount exited with status ${last?.code}`}`);
}

let supported: Promise<boolean> | undefined;

/**
 * Whether overlay mounts can be made here.
 *
 * Without `testDir`: the kernel knows overlayfs (it is in /proc/filesystems,
 * or `modprobe overlay` loads it) and this process is root.
 *
 * With `testDir`: additionally mounts a small overlay whose upper and work
 * directories are in a scratch directory under `testDir`, which proves the
 * filesystem there can hold upper directories (overlayfs, for one, cannot
 * be an upper directory's filesystem on older kernels).
 */
export async function overlaySupported(testDir?: string): Promise<boolean> {
  if (process.platform !== 'linux' || process.geteuid?.() !== 0) return false;
  supported ??= (async () => {
    if (await kernelHasOverlay()) return true;
    await runCommand('modprobe', ['overlay']).catch(() => undefined);
    return kernelHasOverlay();
  })();
  if (!(await supported)) return false;
  if (testDir === undefined) return true;
  return probeMount(testDir);
}

async function kernelHasOverlay(): Promise<boolean> {
  try {
    return /\toverlay$/m.test(await readFile('/proc/filesystems', 'utf8'));
  } catch {
    return false;
  }
}

async function probeMount(testDir: string): Promise<boolean> {
  await mkdir(testDir, { recursive: true });
  const scratch = await mkdtemp(join(testDir, '.strata-ovl-probe-'));
  try {
    const [lower, upper, work, merged] = ['lower', 'upper', 'work', 'merged'].map((name) => join(scratch, name)) as [string, string, string, string];
    for (const dir of [lower, upper, work, merged]) await mkdir(dir);
    await writeFile(join(lower, 'probe'), 'lower');
    let release: Unmount;
    try {
      release = await mountOverlay({ lowerDirs: [lower], upperDir: upper, workDir: work, target: merged });
    } catch {
      return false;
    }
    try {
      await writeFile(join(merged, 'probe'), 'upper');
      return (await stat(join(upper, 'probe'))).isFile();
    } catch {
      return false;
    } finally {
      await release();
      await rmdir(merged).catch(() => undefined);
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
