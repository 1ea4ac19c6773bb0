/**
 * Applying layer tars to a directory tree with OCI image-layer semantics, the
 * way a container runtime's snapshotter does, without trusting the layer.
 *
 * Safety model. Every entry first passes {@link LayerLinter} (names, types,
 * link targets, whiteout forms, ordering within the layer). Then, at write
 * time, every parent component is resolved with lstat one by one from the
 * target root and any symlink is refused, whether this layer or a lower one put
 * it there, so no write, chmod, chown, unlink or link ever goes through a
 * symlink. The last component is never followed either: existing entries are
 * unlinked and new files are created with O_EXCL, and attributes of regular
 * files are set through the open descriptor. Hardlink targets must resolve the
 * same way to a regular file inside the root.
 *
 * This is stricter than Docker, which extracts inside a chroot and therefore
 * follows in-tree symlinks in parent paths (e.g. a layer writing `lib/x` over a
 * lower `lib -> usr/lib`): such a layer is refused here rather than
 * half-trusted. The checks assume nothing else modifies the tree while a layer
 * is being applied.
 *
 * Overlay format ({@link ApplyOptions.whiteouts} 'overlay') unpacks one layer
 * alone into an empty directory that is later stacked as an overlayfs lower
 * dir, the way Docker's overlay2 driver and containerd's overlay snapshotter
 * store layers: whiteouts stay in the tree as the kernel's own markers
 * instead of deleting anything.
 *
 * @module
 */
import { execFile, spawn } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { lstat, mkdir, open, rm, symlink, link, unlink, lchown, lutimes, chmod, readdir, realpath } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InvalidEntryPathError, type EntryHeader } from './entry.js';
import { readTar, TarFormatError } from './read.js';
import { LayerLinter, LayerSecurityError, type LintedEntry } from './validate.js';
import { errnoOf } from '../util/fs.js';

export { LayerSecurityError } from './validate.js';

/** What to do with character and block device entries. */
export type DeviceHandling = 'create' | 'skip' | 'refuse';

/** One contiguous range of a user-namespace id map (as in /proc/PID/uid_map). */
export interface IdMapping {
  /** First id inside the container (as stored in the layer). */
  containerId: number;
  /** First id on the host it maps to. */
  hostId: number;
  /** Number of consecutive ids mapped. */
  size: number;
}

/** Maps layer uids/gids to host ids, for rootless or user-namespaced trees. */
export interface IdMap {
  uids: IdMapping[];
  gids: IdMapping[];
}

/** Options of {@link applyLayer}. */
export interface ApplyOptions {
  /**
   * Device nodes: 'create' (needs root), 'skip' (leave them out, counted in
   * {@link ApplyStats.skippedDevices}) or 'refuse' (fail with
   * {@link LayerSecurityError}). Default 'create' when running as root, else
   * 'skip'.
   */
  devices?: DeviceHandling;
  /** lchown every entry to the layer's uid/gid. Default: true when running as root. */
  preserveOwners?: boolean;
  /** Translate layer ids before chown (implies owners are applied). */
  idMap?: IdMap;
  /**
   * Extended attributes: 'apply' (default) or 'skip'. When not root, only
   * `user.*` attributes are attempted and failures are counted, not thrown.
   */
  xattrs?: 'apply' | 'skip';
  /** Stops between entries when aborted. */
  signal?: AbortSignal;
  /**
   * 'apply' (default): whiteouts delete lower-layer paths from the target tree.
   * 'overlay': the target must be an empty directory that receives this one
   * layer alone, in overlayfs format: `.wh.NAME` becomes a 0/0 character
   * device NAME (owned like the whiteout entry), `.wh..wh..opq` becomes the
   * `<ns>.overlay.opaque=y` xattr on its directory. Creating 0/0 devices
   * without root needs Linux 5.8 or later. `trusted.overlay.*` and
   * `user.overlay.*` xattrs carried by the layer itself are dropped (counted
   * in {@link ApplyStats.skippedXattrs}): overlayfs would obey them. A 0/0
   * character device carried by the layer is created as such, and so acts as
   * a whiteout once stacked, as under Docker's overlay2.
   */
  whiteouts?: 'apply' | 'overlay';
  /**
   * With `whiteouts: 'overlay'`: the xattr namespace of opaque markers.
   * 'trusted' (default when root) is what overlayfs reads normally; 'user'
   * (default otherwise, since trusted.* needs CAP_SYS_ADMIN) is what it reads
   * when mounted with `userxattr` (Linux 5.11 or later).
   */
  overlayXattrs?: 'trusted' | 'user';
  /**
   * When owners are not applied (not root, or `preserveOwners: false`):
   * receives the owner the layer gives each entry it writes, by path
   * (relative, `/`-separated), so that the caller can keep them elsewhere.
   * Meant for one layer in overlay format: with `whiteouts: 'apply'`, paths a
   * later whiteout deletes stay in it.
   */
  ownersNotApplied?: Map<string, [uid: number, gid: number]>;
}

/** What {@link applyLayer} did. */
export interface ApplyStats {
  /** Entries created or updated (whiteouts and the root entry not counted). */
  entries: number;
  /** Bytes of regular-file content written. */
  bytes: number;
  /** Whiteout and opaque-whiteout entries processed. */
  whiteouts: number;
  /** Device entries left out because of `devices: 'skip'`. */
  skippedDevices: number;
  /** Extended attributes not applied (option 'skip', or not permitted without root). */
  skippedXattrs: number;
}

function emptyStats(): ApplyStats {
  return { entries: 0, bytes: 0, whiteouts: 0, skippedDevices: 0, skippedXattrs: 0 };
}

const isRoot = (): boolean => process.geteuid?.() === 0;

/** A directory whose mode and times are set once the whole layer is written. */
interface PendingDir {
  mode: number;
  atime: number;
  mtime: number;
}

/** A path with the extended attributes to restore on it at the end. */
export interface XattrRecord {
  path: string;
  xattrs: Record<string, Buffer>;
}

/** A whiteout waiting to be created as a 0/0 character device (overlay format). */
interface PendingWhiteout {
  rawName: string;
  path: string;
  uid: number;
  gid: number;
}

/** Extended attributes overlayfs interprets (its own bookkeeping), in either namespace. */
const OVERLAY_XATTR_RE = /^(trusted|user)\.overlay\./;

async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw err;
  }
}

function kindOf(stats: Stats): string {
  if (stats.isDirectory()) return 'directory';
  if (stats.isFile()) return 'regular file';
  if (stats.isSymbolicLink()) return 'symlink';
  if (stats.isFIFO()) return 'fifo';
  if (stats.isCharacterDevice()) return 'character device';
  if (stats.isBlockDevice()) return 'block device';
  if (stats.isSocket()) return 'socket';
  return 'special file';
}

function mapId(id: number, ranges: IdMapping[], what: string): number {
  for (const range of ranges) {
    if (id >= range.containerId && id < range.containerId + range.size) return range.hostId + (id - range.containerId);
  }
  throw new Error(`${what} ${id} is not mapped by the id map`);
}

function ancestorsOf(path: string): string[] {
  const out: string[] = [];
  let at = path.indexOf('/');
  while (at !== -1) {
    out.push(path.slice(0, at));
    at = path.indexOf('/', at + 1);
  }
  return out;
}

function describeEntry(rawName: string): string {
  return JSON.stringify(rawName);
}

/** Errors that mean the archive stopped early, whichever layer of the reader noticed. */
function looksTruncated(err: unknown): boolean {
  const message = err instanceof Error ? err.message : String(err);
  return /unexpected end|premature close|truncat|ERR_STREAM_PREMATURE_CLOSE/i.test(message) || errnoOf(err) === 'ERR_STREAM_PREMATURE_CLOSE';
}

/**
 * The reader refuses some hostile forms itself ('..' in a name or hardlink
 * target, unsupported types) before the linter sees them; those become
 * {@link LayerSecurityError}s like the linter's own. An archive that ends early
 * is reported as truncated, whichever stage noticed.
 */
function explainFailure(err: unknown, current: string | undefined): unknown {
  if (err instanceof LayerSecurityError || err instanceof TruncatedLayerError) return err;
  if (err instanceof InvalidEntryPathError) return new LayerSecurityError(err.rawPath, err.message);
  if (err instanceof TarFormatError && err.entry !== undefined && /unsupported|not supported/i.test(err.message)) {
    return new LayerSecurityError(err.entry, err.message);
  }
  if (looksTruncated(err)) {
    const where = current === undefined ? 'no complete entry could be read' : `the archive ends inside or right after entry ${describeEntry(current)}`;
    return new TruncatedLayerError(err instanceof Error ? err.message : where, err);
  }
  return err;
}

/** The layer tar ended before its end-of-archive marker or inside an entry's content. */
export class TruncatedLayerError extends Error {
  constructor(detail: string, cause?: unknown) {
    super(`layer tar is truncated: ${detail}`, cause === undefined ? undefined : { cause });
    this.name = 'TruncatedLayerError';
  }
}

/** Applies one layer; one instance per layer. */
class LayerApplier {
  private readonly linter = new LayerLinter();
  /** Relative paths verified (or made) to be real directories, not symlinks. */
  private readonly verifiedDirs = new Set<string>();
  /** Every path this layer created or wrote into (opaque whiteouts keep these). */
  private readonly touched = new Set<string>();
  private readonly pendingDirs = new Map<string, PendingDir>();
  private readonly pendingXattrs = new Map<string, Record<string, Buffer>>();
  /** Overlay format: whiteouts to create, and directories to mark opaque, once the layer is read. */
  private readonly pendingWhiteouts: PendingWhiteout[] = [];
  private readonly pendingOpaque = new Set<string>();
  readonly stats = emptyStats();
  private readonly devices: DeviceHandling;
  private readonly chownEntries: boolean;
  private readonly root: boolean;
  private readonly overlay: boolean;
  private readonly opaqueXattr: string;

  constructor(
    private readonly rootDir: string,
    private readonly opts: ApplyOptions,
  ) {
    this.root = isRoot();
    this.devices = opts.devices ?? (this.root ? 'create' : 'skip');
    this.chownEntries = opts.preserveOwners ?? (this.root || opts.idMap !== undefined);
    this.overlay = opts.whiteouts === 'overlay';
    this.opaqueXattr = `${opts.overlayXattrs ?? (this.root ? 'trusted' : 'user')}.overlay.opaque`;
  }

  private abs(rel: string): string {
    return rel === '' ? this.rootDir : join(this.rootDir, rel);
  }

  async apply(tar: NodeJS.ReadableStream): Promise<ApplyStats> {
    let current: string | undefined;
    try {
      for await (const entry of readTar(toReadable(tar))) {
        const { header, rawName, body } = entry;
        // The reader can fail a body (truncation) before any await of ours attaches a
        // listener; the failure still surfaces through pipeline/drain, which see the
        // stream's stored error, so this only keeps it from being an uncaught one.
        body.on('error', () => undefined);
        current = rawName;
        this.opts.signal?.throwIfAborted();
        // read.ts normalizes hardlink targets (a leading '/' is dropped, so the link
        // stays inside the root, as GNU tar and moby treat it); where the reader
        // also hands over the raw target, absolute targets are refused outright.
        const linkname = header.type === 'hardlink' ? ((entry as { rawLinkname?: string }).rawLinkname ?? header.linkname) : header.linkname;
        const linted = this.linter.check({ rawName, type: header.type, linkname });
        await this.applyEntry(linted, header, body);
      }
    } catch (err) {
      throw explainFailure(err, current);
    }
    await this.finish();
    return this.stats;
  }

  private async applyEntry(linted: LintedEntry, header: EntryHeader, body: Readable): Promise<void> {
    switch (linted.kind) {
      case 'root':
        // The target root belongs to the caller; its attributes are not the layer's to change.
        await drain(body);
        return;
      case 'whiteout':
        await drain(body);
        if (this.overlay) await this.overlayWhiteout(linted.rawName, linted.target, header);
        else await this.whiteout(linted.rawName, linted.target);
        this.stats.whiteouts++;
        return;
      case 'opaque':
        await drain(body);
        if (this.overlay) await this.overlayOpaque(linted.rawName, linted.dir);
        else await this.opaque(linted.rawName, linted.dir);
        this.stats.whiteouts++;
        return;
      case 'entry':
        break;
    }
    const { rawName, path } = linted;
    if ((linted.type === 'char' || linted.type === 'block') && this.devices !== 'create') {
      if (this.devices === 'refuse') {
        throw new LayerSecurityError(rawName, `${linted.type === 'char' ? 'character' : 'block'} device nodes are refused (devices: 'refuse')`);
      }
      await drain(body);
      this.stats.skippedDevices++;
      return;
    }
    await this.ensureParents(rawName, path);
    this.touched.add(path);
    if (!this.chownEntries) this.opts.ownersNotApplied?.set(path, [header.uid, header.gid]);
    const abs = this.abs(path);
    switch (linted.type) {
      case 'directory':
        await drain(body);
        await this.directory(path, abs, header);
        break;
      case 'file':
        await this.file(rawName, path, abs, header, body);
        break;
      case 'symlink':
        await drain(body);
        await this.clear(path, abs);
        await symlink(header.linkname!, abs);
        await this.chownPath(abs, header);
        await lutimes(abs, fsTime(header.atime ?? header.mtime), fsTime(header.mtime));
        break;
      case 'hardlink': {
        await drain(body);
        const targetAbs = await this.hardlinkTarget(rawName, linted.linkTarget!);
        await this.clear(path, abs);
        await link(targetAbs, abs);
        // A hardlink shares its target's inode, so its own header attributes are not applied.
        this.stats.entries++;
        return;
      }
      case 'fifo':
      case 'char':
      case 'block':
        await drain(body);
        await this.clear(path, abs);
        await this.special(rawName, abs, header);
        await this.chownPath(abs, header);
        await chmod(abs, header.mode & 0o7777);
        await lutimes(abs, fsTime(header.atime ?? header.mtime), fsTime(header.mtime));
        break;
    }
    if (header.xattrs && Object.keys(header.xattrs).length > 0) this.pendingXattrs.set(path, header.xattrs);
    this.stats.entries++;
  }

  /**
   * Makes sure every ancestor of `path` is a real directory inside the root,
   * creating missing ones. A symlink anywhere on the way is refused: following
   * it could lead outside the root.
   */
  private async ensureParents(rawName: string, path: string, includeSelf = false): Promise<void> {
    const dirs = ancestorsOf(path);
    if (includeSelf) dirs.push(path);
    for (const ancestor of dirs) {
      this.touched.add(ancestor);
      if (this.verifiedDirs.has(ancestor)) continue;
      const abs = this.abs(ancestor);
      const stats = await lstatOrUndefined(abs);
      if (stats === undefined) {
        // Parents the layer does not describe get Docker's defaults: 0755, owned by (mapped) root.
        await mkdir(abs);
        if (this.opts.idMap) await lchown(abs, mapId(0, this.opts.idMap.uids, 'uid'), mapId(0, this.opts.idMap.gids, 'gid'));
        await chmod(abs, 0o755);
      } else if (stats.isSymbolicLink()) {
        throw new LayerSecurityError(rawName, `parent '${ancestor}' is a symlink in the target tree`);
      } else if (!stats.isDirectory()) {
        throw new Error(`cannot apply layer entry ${describeEntry(rawName)}: parent '${ancestor}' is a ${kindOf(stats)}, not a directory`);
      }
      this.verifiedDirs.add(ancestor);
    }
  }

  /**
   * Resolves the ancestors of `path` without creating anything. Returns false
   * when one is missing or is not a directory (then `path` cannot exist).
   */
  private async parentsExist(rawName: string, path: string, what: string): Promise<boolean> {
    for (const ancestor of ancestorsOf(path)) {
      if (this.verifiedDirs.has(ancestor)) continue;
      const stats = await lstatOrUndefined(this.abs(ancestor));
      if (stats === undefined) return false;
      if (stats.isSymbolicLink()) throw new LayerSecurityError(rawName, `${what} '${path}' has a symlink parent '${ancestor}' in the target tree`);
      if (!stats.isDirectory()) return false;
      this.verifiedDirs.add(ancestor);
    }
    return true;
  }

  /** Removes whatever is at `path` (recursively for directories); never follows symlinks. */
  private async clear(path: string, abs: string): Promise<void> {
    const stats = await lstatOrUndefined(abs);
    if (stats === undefined) return;
    if (stats.isDirectory()) await this.removeTree(path, abs);
    else await unlink(abs);
  }

  private async removeTree(path: string, abs: string): Promise<void> {
    // fs.rm unlinks symlinks it meets instead of descending into them.
    await rm(abs, { recursive: true, force: true });
    const prefix = `${path}/`;
    for (const dir of this.verifiedDirs) if (dir === path || dir.startsWith(prefix)) this.verifiedDirs.delete(dir);
  }

  private async directory(path: string, abs: string, header: EntryHeader): Promise<void> {
    const stats = await lstatOrUndefined(abs);
    if (stats === undefined || !stats.isDirectory()) {
      if (stats !== undefined) await unlink(abs);
      // Owner-only until finish() applies the real mode: a 0555 directory must still take its children.
      await mkdir(abs, 0o700);
    }
    this.verifiedDirs.add(path);
    await this.chownPath(abs, header);
    this.pendingDirs.set(path, { mode: header.mode & 0o7777, atime: header.atime ?? header.mtime, mtime: header.mtime });
  }

  private async file(rawName: string, path: string, abs: string, header: EntryHeader, body: Readable): Promise<void> {
    await this.clear(path, abs);
    // O_EXCL: never reuse (and so never write through) whatever was at this name.
    const handle = await open(abs, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600);
    let written = 0;
    try {
      const sink = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          handle.write(chunk).then(
            ({ bytesWritten }) => {
              written += bytesWritten;
              callback(bytesWritten === chunk.length ? null : new Error('short write'));
            },
            callback,
          );
        },
      });
      try {
        await pipeline(body, sink);
      } catch (err) {
        if (looksTruncated(err)) throw new TruncatedLayerError(`entry ${describeEntry(rawName)} has ${written} of ${header.size} bytes`, err);
        throw err;
      }
      if (written !== header.size) {
        throw new TruncatedLayerError(`entry ${describeEntry(rawName)} has ${written} of ${header.size} bytes`);
      }
      if (this.chownEntries) {
        const { uid, gid } = this.ownerOf(header);
        await handle.chown(uid, gid);
      }
      // After chown, which clears setuid/setgid.
      await handle.chmod(header.mode & 0o7777);
      await handle.utimes(fsTime(header.atime ?? header.mtime), fsTime(header.mtime));
    } finally {
      await handle.close();
    }
    this.stats.bytes += written;
  }

  private async special(rawName: string, abs: string, header: EntryHeader): Promise<void> {
    if (header.type === 'fifo') {
      await run('mkfifo', ['-m', '600', '--', abs], rawName);
      return;
    }
    if (!this.root) {
      throw new Error(
        `cannot apply layer entry ${describeEntry(rawName)}: creating device nodes needs root (pass devices: 'skip' to leave them out)`,
      );
    }
    const kind = header.type === 'char' ? 'c' : 'b';
    await run('mknod', ['-m', '600', '--', abs, kind, String(header.devmajor ?? 0), String(header.devminor ?? 0)], rawName);
  }

  private ownerOf(header: Pick<EntryHeader, 'uid' | 'gid'>): { uid: number; gid: number } {
    const idMap = this.opts.idMap;
    if (!idMap) return { uid: header.uid, gid: header.gid };
    return { uid: mapId(header.uid, idMap.uids, 'uid'), gid: mapId(header.gid, idMap.gids, 'gid') };
  }

  private async chownPath(abs: string, header: EntryHeader): Promise<void> {
    if (!this.chownEntries) return;
    const { uid, gid } = this.ownerOf(header);
    await lchown(abs, uid, gid);
  }

  private async hardlinkTarget(rawName: string, target: string): Promise<string> {
    if (!(await this.parentsExist(rawName, target, 'hardlink target'))) {
      throw new Error(`cannot apply layer entry ${describeEntry(rawName)}: hardlink target '${target}' does not exist`);
    }
    const abs = this.abs(target);
    const stats = await lstatOrUndefined(abs);
    if (stats === undefined) {
      throw new Error(`cannot apply layer entry ${describeEntry(rawName)}: hardlink target '${target}' does not exist`);
    }
    if (!stats.isFile()) {
      throw new LayerSecurityError(rawName, `hardlink target '${target}' is a ${kindOf(stats)} in the target tree, not a regular file`);
    }
    return abs;
  }

  private async whiteout(rawName: string, target: string): Promise<void> {
    if (!(await this.parentsExist(rawName, target, 'whiteout target'))) return;
    const abs = this.abs(target);
    const stats = await lstatOrUndefined(abs);
    if (stats === undefined) return;
    if (stats.isDirectory()) await this.removeTree(target, abs);
    else await unlink(abs);
  }

  /** Hides every lower-layer child of `dir`, keeping what this layer wrote (before or after the marker). */
  private async opaque(rawName: string, dir: string): Promise<void> {
    if (dir !== '') {
      await this.ensureParents(rawName, dir, true);
    }
    await this.pruneUntouched(dir);
  }

  private async pruneUntouched(dir: string): Promise<void> {
    const abs = this.abs(dir);
    for (const name of await readdir(abs)) {
      const child = dir === '' ? name : `${dir}/${name}`;
      const childAbs = join(abs, name);
      if (!this.touched.has(child)) {
        await this.clear(child, childAbs);
        continue;
      }
      const stats = await lstat(childAbs);
      if (stats.isDirectory()) await this.pruneUntouched(child);
    }
  }

  /**
   * Overlay format: the whiteout becomes a 0/0 character device at `target`,
   * made in {@link finish} so that all of a layer's whiteouts cost one process.
   * The linter guarantees this layer puts nothing else at `target`.
   */
  private async overlayWhiteout(rawName: string, target: string, header: EntryHeader): Promise<void> {
    await this.ensureParents(rawName, target);
    this.pendingWhiteouts.push({ rawName, path: target, uid: header.uid, gid: header.gid });
  }

  /** Overlay format: the directory gets the opaque xattr in {@link finish}; nothing lower is here to prune. */
  private async overlayOpaque(rawName: string, dir: string): Promise<void> {
    if (dir !== '') await this.ensureParents(rawName, dir, true);
    this.pendingOpaque.add(dir);
  }

  private async createWhiteouts(): Promise<void> {
    const paths: string[] = [];
    for (const whiteout of this.pendingWhiteouts) {
      if (!(await this.parentsExist(whiteout.rawName, whiteout.path, 'whiteout'))) {
        throw new Error(`cannot apply layer entry ${describeEntry(whiteout.rawName)}: the parent of its overlay whiteout is gone`);
      }
      paths.push(this.abs(whiteout.path));
    }
    await makeWhiteouts(paths);
    if (!this.chownEntries) return;
    // As Docker's overlay2 does: the device takes the owner of the whiteout entry.
    for (const whiteout of this.pendingWhiteouts) {
      const { uid, gid } = this.ownerOf(whiteout);
      await lchown(this.abs(whiteout.path), uid, gid);
    }
  }

  private async markOpaque(): Promise<void> {
    const records: XattrRecord[] = [];
    for (const dir of this.pendingOpaque) {
      if (!(await this.parentsExist(dir, dir, 'opaque directory'))) continue;
      const stats = await lstatOrUndefined(this.abs(dir));
      if (stats === undefined || !stats.isDirectory()) continue;
      records.push({ path: this.abs(dir), xattrs: { [this.opaqueXattr]: Buffer.from('y') } });
    }
    try {
      await setXattrs(records);
    } catch (err) {
      const hint = this.opaqueXattr.startsWith('trusted.') && !this.root ? ' (trusted.* xattrs need root; use overlayXattrs: \'user\' with userxattr mounts)' : '';
      throw new Error(`cannot mark opaque directories with ${this.opaqueXattr}${hint}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Work that must wait for the whole layer: overlay markers, extended attributes, then directory modes and times. */
  private async finish(): Promise<void> {
    // Before directory modes are applied: a 0555 directory must still take its whiteouts.
    if (this.pendingWhiteouts.length > 0) await this.createWhiteouts();
    if (this.pendingOpaque.size > 0) await this.markOpaque();
    if (this.pendingXattrs.size > 0) await this.restoreXattrs();
    // Deepest first: setting a child's times or creating entries in it changes its parent's mtime.
    const dirs = [...this.pendingDirs.entries()].sort((a, b) => depth(b[0]) - depth(a[0]));
    for (const [path, pending] of dirs) {
      const abs = this.abs(path);
      if (!(await this.parentsExist(path, path, 'directory'))) continue;
      const stats = await lstatOrUndefined(abs);
      if (stats === undefined || !stats.isDirectory()) continue;
      await chmod(abs, pending.mode);
      await lutimes(abs, fsTime(pending.atime), fsTime(pending.mtime));
    }
  }

  private async restoreXattrs(): Promise<void> {
    const records: XattrRecord[] = [];
    for (const [path, xattrs] of this.pendingXattrs) {
      let names = Object.keys(xattrs);
      if (this.overlay) {
        const overlayOwn = names.filter((name) => OVERLAY_XATTR_RE.test(name));
        if (overlayOwn.length > 0) {
          this.stats.skippedXattrs += overlayOwn.length;
          names = names.filter((name) => !OVERLAY_XATTR_RE.test(name));
          if (names.length === 0) continue;
        }
      }
      if (this.opts.xattrs === 'skip') {
        this.stats.skippedXattrs += names.length;
        continue;
      }
      // Re-check the path: only paths whose parents are still real directories are handed to the tool.
      if (!(await this.parentsExist(path, path, 'entry')) || (await lstatOrUndefined(this.abs(path))) === undefined) continue;
      let wanted: Record<string, Buffer> = {};
      for (const name of names) wanted[name] = xattrs[name]!;
      if (!this.root) {
        // Only user.* is settable without privileges; the rest is dropped and counted.
        wanted = {};
        for (const name of names) {
          if (name.startsWith('user.')) wanted[name] = xattrs[name]!;
          else this.stats.skippedXattrs++;
        }
        if (Object.keys(wanted).length === 0) continue;
      }
      records.push({ path: this.abs(path), xattrs: wanted });
    }
    if (records.length === 0) return;
    try {
      await setXattrs(records);
    } catch (err) {
      if (this.root) throw err;
      this.stats.skippedXattrs += records.reduce((n, r) => n + Object.keys(r.xattrs).length, 0);
    }
  }
}

function depth(path: string): number {
  let n = 0;
  for (let i = 0; i < path.length; i++) if (path.charCodeAt(i) === 47) n++;
  return n;
}

async function drain(body: Readable): Promise<void> {
  for await (const _chunk of body) {
    // Discarded: whiteouts, directories and links carry no content worth keeping.
  }
}

function toReadable(stream: NodeJS.ReadableStream): Readable {
  return stream instanceof Readable ? stream : new Readable().wrap(stream);
}

/** Runs a helper tool (mkfifo, mknod); its stderr becomes the error message. */
function run(command: string, args: string[], rawName: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const why = errnoOf(err) === 'ENOENT' ? `${command} is not installed` : String(stderr).trim() || err.message;
      reject(new Error(`cannot apply layer entry ${describeEntry(rawName)}: ${command} failed: ${why}`));
    });
  });
}

/** Quotes a path or attribute name the way getfattr dumps do (octal escapes), so setfattr reads it back byte for byte. */
function quoteForDump(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const safe = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a) || '/._-+:@,'.includes(String.fromCharCode(byte));
    out += safe ? String.fromCharCode(byte) : `\\${byte.toString(8).padStart(3, '0')}`;
  }
  return out;
}

/** The `getfattr --dump` text for `records`, which `setfattr --restore` consumes. */
export function xattrDump(records: XattrRecord[]): string {
  let dump = '';
  for (const record of records) {
    dump += `# file: ${quoteForDump(record.path)}\n`;
    // setfattr --restore rejects an empty base64 value ("0s"); an empty string literal is how it spells "".
    for (const [name, value] of Object.entries(record.xattrs)) {
      dump += `${quoteForDump(name)}=${value.length === 0 ? '""' : `0s${value.toString('base64')}`}\n`;
    }
    dump += '\n';
  }
  return dump;
}

/** Same job as setfattr --restore, for hosts without the attr package; never follows symlinks. */
const PYTHON_SETXATTR = `
import base64, json, os, sys
failed = 0
for line in sys.stdin:
    record = json.loads(line)
    path = base64.b64decode(record["path"])
    for name, value in record["xattrs"].items():
        try:
            os.setxattr(path, base64.b64decode(name), base64.b64decode(value), follow_symlinks=False)
        except OSError as err:
            failed += 1
            sys.stderr.write("%s: %s: %s\\n" % (path.decode("utf-8", "replace"), base64.b64decode(name).decode("utf-8", "replace"), err.strerror))
sys.exit(1 if failed else 0)
`;

/**
 * Sets extended attributes on many paths with one process: `setfattr -h
 * --restore=-` (attr package) when installed, else python3's os.setxattr.
 * Symlinks are never followed (-h / follow_symlinks=False). Callers must pass
 * paths whose parents they have verified.
 *
 * @throws Error when a tool reports a failure, or when neither tool exists.
 */
export async function setXattrs(records: XattrRecord[], tool: 'auto' | 'setfattr' | 'python3' = 'auto'): Promise<void> {
  if (records.length === 0) return;
  if (tool !== 'python3') {
    try {
      await feed('setfattr', ['-h', '--restore=-'], xattrDump(records));
      return;
    } catch (err) {
      if (errnoOf(err) !== 'ENOENT' || tool === 'setfattr') throw err;
    }
  }
  const lines = records.map((record) => {
    const xattrs: Record<string, string> = {};
    for (const [name, value] of Object.entries(record.xattrs)) xattrs[Buffer.from(name).toString('base64')] = value.toString('base64');
    return JSON.stringify({ path: Buffer.from(record.path).toString('base64'), xattrs }) + '\n';
  });
  try {
    await feed('python3', ['-c', PYTHON_SETXATTR], lines.join(''));
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') {
      throw new Error('cannot set extended attributes: neither setfattr (package attr) nor python3 is installed (pass xattrs: \'skip\' to leave them out)');
    }
    throw err;
  }
}

/** Creates 0/0 character devices (mode 0) at NUL-separated paths read from stdin; never follows a symlink (mknod does not). */
const PYTHON_MKNOD = `
import os, stat, sys
failed = 0
for path in sys.stdin.buffer.read().split(b"\\0"):
    if not path:
        continue
    try:
        os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))
    except OSError as err:
        failed += 1
        sys.stderr.write("%s: %s\\n" % (path.decode("utf-8", "replace"), err.strerror))
sys.exit(1 if failed else 0)
`;

/**
 * A tar time (seconds, maybe negative or fractional) as Node's utimes needs it.
 * Node takes a negative *number* to mean "now", so every time goes in as a Date,
 * which keeps pre-1970 mtimes.
 */
function fsTime(seconds: number): Date {
  return new Date(seconds * 1000);
}

/**
 * Creates overlayfs whiteouts: a character device 0/0 with mode 0 at each
 * path (which must not exist; parents must be verified by the caller). One
 * python3 process does them all when python3 is installed, else mknod(1) runs
 * once per path. Without root this needs Linux 5.8 or later, which allows
 * unprivileged creation of exactly this device.
 *
 * @throws Error naming the first failing path, with a hint when the kernel
 *   refused an unprivileged whiteout.
 */
export async function makeWhiteouts(paths: string[], tool: 'auto' | 'python3' | 'mknod' = 'auto'): Promise<void> {
  if (paths.length === 0) return;
  const explain = (err: unknown): Error => {
    const message = (err as Error).message;
    const hint =
      /not permitted/i.test(message) && !isRoot()
        ? ' (creating whiteout devices without root needs Linux 5.8 or later; unpack as root on older kernels)'
        : '';
    return new Error(`cannot create overlay whiteouts: ${message}${hint}`, { cause: err });
  };
  if (tool !== 'mknod') {
    try {
      await feed('python3', ['-c', PYTHON_MKNOD], Buffer.concat(paths.map((path) => Buffer.from(`${path}\0`, 'utf8'))), 'create whiteouts');
      return;
    } catch (err) {
      // EACCES too: a python3 shim in a directory this user may not enter.
      const code = errnoOf(err);
      if ((code !== 'ENOENT' && code !== 'EACCES') || tool === 'python3') throw explain(err);
    }
  }
  for (const path of paths) {
    await new Promise<void>((resolve, reject) => {
      execFile('mknod', ['-m', '0', '--', path, 'c', '0', '0'], (err, _stdout, stderr) => {
        if (!err) return resolve();
        const why = errnoOf(err) === 'ENOENT' ? 'neither python3 nor mknod is installed' : `mknod: ${String(stderr).trim() || err.message}`;
        reject(explain(new Error(why, { cause: err })));
      });
    });
  }
}

/** Runs `command`, writes `input` to its stdin, rejects with its stderr on failure (ENOENT passes through). */
function feed(command: string, args: string[], input: string | Buffer, what = 'set extended attributes'): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      if (stderr.length < 4000) stderr += chunk;
    });
    child.on('error', reject);
    child.stdin.on('error', () => undefined);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`${command} could not ${what}: ${stderr.trim() || `exit code ${code}`}`));
    });
    child.stdin.end(input);
  });
}

/**
 * Applies one uncompressed layer tar over the tree at `targetDir` with OCI
 * semantics: `.wh.NAME` deletes the lower NAME, `.wh..wh..opq` hides the lower
 * children of its directory (keeping this layer's own, whatever their order in
 * the archive), a directory over a directory keeps its children and takes the
 * new attributes, anything else replaces what was there.
 *
 * File contents are streamed to disk. Directory modes and times, and extended
 * attributes, are applied after the last entry.
 *
 * @throws LayerSecurityError for an unsafe or ambiguous entry (nothing outside
 *   `targetDir` is touched; entries before it may have been applied).
 * @throws Error whose message starts "layer tar is truncated" when the archive
 *   ends early.
 */
export async function applyLayer(targetDir: string, tar: NodeJS.ReadableStream, opts: ApplyOptions = {}): Promise<ApplyStats> {
  const rootDir = await realpath(targetDir);
  const stats = await lstat(rootDir);
  if (!stats.isDirectory()) throw new Error(`cannot apply a layer to ${targetDir}: not a directory`);
  if (opts.whiteouts === 'overlay' && (await readdir(rootDir)).length > 0) {
    throw new Error(`cannot unpack a layer in overlay format into ${targetDir}: the directory is not empty (overlay format holds one layer alone)`);
  }
  return new LayerApplier(rootDir, opts).apply(tar);
}

/**
 * Applies `layers` in order, bottom layer first. Each factory is called only
 * when its turn comes, so at most one layer stream is open at a time.
 */
export async function applyLayers(
  targetDir: string,
  layers: Array<() => NodeJS.ReadableStream | Promise<NodeJS.ReadableStream>>,
  opts: ApplyOptions = {},
): Promise<ApplyStats> {
  const total = emptyStats();
  for (const [index, open] of layers.entries()) {
    opts.signal?.throwIfAborted();
    let layerStats: ApplyStats;
    const stream = await open();
    try {
      layerStats = await applyLayer(targetDir, stream, opts);
    } catch (err) {
      destroyQuietly(stream);
      if (err instanceof Error && !(err instanceof LayerSecurityError)) {
        err.message = `layer ${index + 1} of ${layers.length}: ${err.message}`;
      }
      throw err;
    }
    for (const key of Object.keys(total) as Array<keyof ApplyStats>) total[key] += layerStats[key];
  }
  return total;
}

function destroyQuietly(stream: NodeJS.ReadableStream): void {
  const destroy = (stream as Readable).destroy;
  if (typeof destroy === 'function') destroy.call(stream);
}
