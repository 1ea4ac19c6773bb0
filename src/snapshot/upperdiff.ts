/**
 * Reading an overlayfs upper directory back as a layer changeset, the way
 * Docker's overlay2 driver commits a container or a RUN step: it tars the
 * upper ("diff") directory as it is, turning overlayfs' markers back into OCI
 * whiteouts. Nothing is compared against the lower layers; the upper already
 * holds exactly what changed, because overlayfs copies a file (and its parent
 * directories) up before the first change and records deletions as markers.
 *
 * Markers in an upper directory:
 * - a deleted lower path is a character device 0/0 (since Linux 5.8 the kernel
 *   hardlinks them all to one shared inode);
 * - a lower directory that was removed and made again is a directory with the
 *   xattr `trusted.overlay.opaque=y` (`user.overlay.opaque` on mounts with
 *   `userxattr`);
 * - with `redirect_dir=on`, a renamed lower directory carries
 *   `trusted.overlay.redirect` naming where its lower content lives; the
 *   upper then is not a self-contained diff. Docker mounts without it (rename
 *   of a lower directory then fails with EXDEV and `mv` copies instead), and so
 *   does strata's mountOverlay; a redirect is refused here;
 * - with `metacopy=on`, a chmod/chown copies up only metadata: the upper file
 *   carries `trusted.overlay.metacopy` and its data stays in a lower file. Its
 *   content is read from the lower directories when they are given.
 *
 * The module also exports the two primitives a userspace merged view over the
 * same format needs: {@link isOverlayWhiteout} and {@link readOpaque}.
 *
 * @module
 */
import { spawn } from 'node:child_process';
import type { BigIntStats, Stats } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { StrataError } from '../content/errors.js';
import { WHITEOUT_PREFIX } from '../tar/entry.js';
import type { Changeset, ChangesetEntry } from '../tar/changeset.js';
import { archivableXattrValue, isArchivableXattr, readTreeXattrs, walkTree } from '../tar/walk.js';

/** Which xattr namespace overlayfs keeps its markers in: 'trusted' normally, 'user' on `userxattr` mounts. */
export type OverlayXattrNamespace = 'trusted' | 'user';

/** The namespace a process uses by default: trusted.* needs CAP_SYS_ADMIN, so only root gets it. */
export function defaultOverlayXattrNamespace(): OverlayXattrNamespace {
  return process.geteuid?.() === 0 ? 'trusted' : 'user';
}

/** Options of {@link changesetFromUpper}. */
export interface UpperDiffOptions {
  /**
   * The lower directories of the mount the upper belonged to, topmost first.
   * Only needed for metadata-only copy-ups (`metacopy=on`), whose content is
   * read from there.
   */
  lowerDirs?: string[];
  /** Namespace of overlayfs' markers; default 'trusted' as root, else 'user'. */
  overlayXattrs?: OverlayXattrNamespace;
}

/** An upper directory that cannot be turned into a layer, with the reason. */
export class UpperDirError extends StrataError {
  constructor(message: string) {
    super('UPPER_DIR_UNSUPPORTED', message);
  }
}

/** True for an overlayfs whiteout: a character device with device number 0/0. */
export function isOverlayWhiteout(stats: Stats | BigIntStats): boolean {
  return stats.isCharacterDevice() && BigInt(stats.rdev) === 0n;
}

/**
 * Whether `dir` is an opaque overlay directory (xattr `<ns>.overlay.opaque`
 * is `y`; the value `x`, which newer kernels use for a directory holding
 * xattr-whiteouts, is not opacity). Symlinks are not followed. One getfattr
 * (else python3) run per call; to scan a whole tree, `readTreeXattrs(dir, { all: true })`
 * reads everything in one run.
 *
 * @throws Error when neither getfattr (package attr) nor python3 is installed, or `dir` cannot be read.
 */
export async function readOpaque(dir: string, ns: OverlayXattrNamespace = defaultOverlayXattrNamespace()): Promise<boolean> {
  const name = `${ns}.overlay.opaque`;
  const path = resolve(dir);
  let result = await capture('getfattr', ['--absolute-names', '-h', '--only-values', '-n', name, '--', path]);
  let tool = 'getfattr';
  if (result.missing) {
    result = await capture('python3', ['-c', PYTHON_GETXATTR, path, name]);
    tool = 'python3';
    if (result.missing) throw new Error('cannot read overlay opaque markers: neither getfattr (package attr) nor python3 is installed');
  }
  const { code, stdout, stderr } = result;
  if (code === 0) return stdout.toString('utf8') === 'y';
  if (/No such attribute|No data available|Operation not supported/i.test(stderr)) return false;
  throw new Error(`cannot read ${name} of ${dir}: ${stderr.trim() || `${tool} exited with status ${code}`}`);
}

/** getfattr --only-values for hosts without the attr package; never follows a symlink. */
const PYTHON_GETXATTR = `
import os, sys
try:
    sys.stdout.buffer.write(os.getxattr(sys.argv[1], sys.argv[2], follow_symlinks=False))
except OSError as err:
    sys.stderr.write("%s: %s\\n" % (sys.argv[1], err.strerror))
    sys.exit(1)
`;

/**
 * The changeset an overlay upper directory records, as Docker's overlay2
 * driver would commit it:
 * - every file, directory, symlink, fifo and device in the upper is an entry
 *   (sockets are left out), with its header from lstat (permission bits,
 *   numeric owner, mtime, size) and its archivable xattrs
 *   (`security.capability` and other user/trusted/security ones, never
 *   `trusted.overlay.*`, `user.overlay.*`, `system.*` or `security.selinux`);
 * - paths linked to one inode become hardlink entries to the first of them;
 * - a whiteout device is a deletion;
 * - an opaque directory is both an entry and an opaque dir.
 * Entries come in archive order (parents first, names in byte order);
 * deletions and opaque dirs in the same order. mtimes are kept as they are
 * (the tar writer truncates and clamps them).
 *
 * @throws UpperDirError for a redirected directory (`redirect_dir=on`), a
 *   metacopy file without `opts.lowerDirs` (or whose data cannot be found
 *   there), or a name starting with `.wh.`, which no layer can carry.
 * @throws Error when getfattr (package attr) is not installed: without it,
 *   opaque directories cannot be told apart.
 */
export async function changesetFromUpper(upperDir: string, opts: UpperDiffOptions = {}): Promise<Changeset> {
  const root = resolve(upperDir);
  const rootStats = await lstat(root);
  if (!rootStats.isDirectory()) throw new UpperDirError(`upper dir ${upperDir} is not a directory`);
  const ns = opts.overlayXattrs ?? defaultOverlayXattrNamespace();
  const opaqueName = `${ns}.overlay.opaque`;
  const redirectName = `${ns}.overlay.redirect`;
  const metacopyName = `${ns}.overlay.metacopy`;
  const xwhiteoutName = `${ns}.overlay.whiteout`;

  const xattrsByPath = await readTreeXattrs(root, { all: true });
  if (xattrsByPath === undefined) {
    throw new Error(`cannot read the changes in ${upperDir}: getfattr (package attr) is needed to see overlay opaque directories`);
  }
  const rootXattrs = xattrsByPath.get('') ?? {};
  if (rootXattrs[redirectName] !== undefined) throw redirectError(upperDir, '', rootXattrs[redirectName]!);

  const entries: ChangesetEntry[] = [];
  const deletions: string[] = [];
  const opaqueDirs: string[] = [];
  const whiteoutPaths = new Set<string>();
  if (rootXattrs[opaqueName]?.toString('utf8') === 'y') opaqueDirs.push('');

  for await (const { header, sourcePath } of walkTree(root)) {
    const path = header.path;
    const base = path.slice(path.lastIndexOf('/') + 1);
    if (base.startsWith(WHITEOUT_PREFIX)) {
      throw new UpperDirError(`${join(root, path)}: names starting with ${WHITEOUT_PREFIX} are reserved for whiteouts in layers, so this file cannot be committed`);
    }
    const xattrs = xattrsByPath.get(path) ?? {};
    if (xattrs[redirectName] !== undefined) throw redirectError(upperDir, path, xattrs[redirectName]!);

    const isDeviceWhiteout = header.type === 'char' && (header.devmajor ?? 0) === 0 && (header.devminor ?? 0) === 0;
    // Whiteouts share one inode, so all but the first come out of the walk as hardlinks to it.
    const isSharedWhiteout = header.type === 'hardlink' && whiteoutPaths.has(header.linkname!);
    const isXattrWhiteout = header.type === 'file' && header.size === 0 && xattrs[xwhiteoutName] !== undefined;
    if (isDeviceWhiteout || isSharedWhiteout || isXattrWhiteout) {
      whiteoutPaths.add(path);
      deletions.push(path);
      continue;
    }

    const archived: Record<string, Buffer> = {};
    for (const [name, value] of Object.entries(xattrs)) {
      if (isArchivableXattr(name)) archived[name] = archivableXattrValue(name, value);
    }
    if (Object.keys(archived).length > 0) header.xattrs = archived;

    const entry: ChangesetEntry = { header, sourcePath };
    if (header.type === 'file' && xattrs[metacopyName] !== undefined) {
      const data = await metacopyData(upperDir, path, opts.lowerDirs, ns);
      entry.sourcePath = data.path;
      header.size = data.size;
    }
    if (header.type === 'directory' && xattrs[opaqueName]?.toString('utf8') === 'y') opaqueDirs.push(path);
    entries.push(entry);
  }
  return { entries, deletions, opaqueDirs };
}

function redirectError(upperDir: string, path: string, target: Buffer): UpperDirError {
  return new UpperDirError(
    `${join(resolve(upperDir), path)} is a renamed lower directory (overlay redirect to ${JSON.stringify(target.toString('utf8'))}); ` +
      'its content lives in a lower layer, so the upper dir is not a self-contained diff. Mount with redirect_dir=off (as Docker and strata do), ' +
      'which makes such a rename copy the directory instead',
  );
}

/**
 * Where the data of a metadata-only copy-up lives: the same path in the
 * topmost lower directory that has it, as the merged view saw it before the
 * copy-up (a whiteout, an opaque directory or a non-directory on the way hides
 * everything further down).
 */
async function metacopyData(
  upperDir: string,
  path: string,
  lowerDirs: string[] | undefined,
  ns: OverlayXattrNamespace,
): Promise<{ path: string; size: number }> {
  const where = join(resolve(upperDir), path);
  if (lowerDirs === undefined || lowerDirs.length === 0) {
    throw new UpperDirError(`${where} is a metadata-only copy-up (metacopy=on) whose data is in a lower layer; pass lowerDirs, or mount with metacopy=off`);
  }
  const segments = path.split('/');
  for (const lower of lowerDirs) {
    let hiddenBelow = false;
    let present = true;
    for (let depth = 1; depth < segments.length; depth++) {
      const ancestor = join(lower, ...segments.slice(0, depth));
      const stats = await lstatOrUndefined(ancestor);
      if (stats === undefined) {
        present = false;
        break;
      }
      if (!stats.isDirectory()) {
        hiddenBelow = true;
        present = false;
        break;
      }
      if (await readOpaque(ancestor, ns)) hiddenBelow = true;
    }
    if (present) {
      const candidate = join(lower, path);
      const stats = await lstatOrUndefined(candidate);
      if (stats !== undefined) {
        if (stats.isFile()) return { path: candidate, size: stats.size };
        break;
      }
    }
    if (hiddenBelow) break;
  }
  throw new UpperDirError(`${where} is a metadata-only copy-up (metacopy=on), but no lower directory holds its data as a regular file`);
}

async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

interface Captured {
  code: number | null;
  stdout: Buffer;
  stderr: string;
  /** The program is not installed. */
  missing: boolean;
}

function capture(command: string, args: string[]): Promise<Captured> {
  return new Promise((resolvePromise) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    let stderr = '';
    let missing = false;
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      if (stderr.length < 4096) stderr += chunk;
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') missing = true;
      else stderr += err.message;
    });
    child.on('close', (code) => resolvePromise({ code, stdout: Buffer.concat(stdout), stderr, missing }));
  });
}
