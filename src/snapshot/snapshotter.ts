/**
 * Snapshots: every layer unpacked once, alone, in overlayfs format, shared by
 * every container and build that stacks it. This is the layout of Docker's
 * overlay2 driver and containerd's overlay snapshotter: a stack of snapshots
 * is mounted as overlay lower directories (topmost first) instead of being
 * merged into one tree per container.
 *
 * ```
 * ROOT/strata/snapshots/<chainId hex>/fs          the layer's diff alone (an overlay lowerdir)
 * ROOT/strata/snapshots/<chainId hex>/.complete   JSON description, written last
 * ROOT/strata/snapshots/.tmp-<chainId hex>-<pid>-<random>/   an unpack or a removal in progress
 * ```
 *
 * A snapshot is keyed by ChainID rather than DiffID because the same diff on
 * top of different parents is a different stack; the directory itself only
 * holds that one layer's diff.
 *
 * Creation: under the inter-process lock `snapshot-<hex>`, the layer blob is
 * streamed from the content store (digest verified), decompressed, checked
 * against its DiffID and unpacked into a temp directory beside the final one
 * (see applyLayer with `whiteouts: 'overlay'`); `.complete` is written; then
 * one rename publishes it. A process killed mid-unpack leaves only a temp
 * directory, which the next holder of the lock deletes before starting over;
 * a snapshot directory without `.complete` is treated the same way. The lock
 * means one unpack per layer however many processes ask at once; should two
 * processes race anyway (say, from different network namespaces, where locks
 * do not meet), the loser's rename fails, it discards its copy and uses the
 * winner's.
 *
 * Read-only in practice: a snapshot is never written after it is published.
 * Mounts use it as a lower directory only, and the snapshot directory (not its
 * `fs`, whose mode is the root of the image) is made mode 0555.
 *
 * Durability: unpacked files are not fsynced (neither are Docker's nor
 * containerd's). A process crash is always recovered from; after a power loss
 * a published snapshot could have lost data and must be removed by hand.
 *
 * Layers are unpacked alone, so a hardlink to a file of a lower layer cannot
 * be made and fails the unpack, as under Docker's overlay2 (the image spec
 * allows that: "extracting a layer with hardlink references to files outside
 * of the layer may fail"); Docker's own differ never writes such links.
 *
 * Without root: owners are not applied (every file belongs to the user
 * unpacking; the layer's owners are kept in `owners.json` beside `fs`, see
 * owners.ts, and the merged view reports them), device nodes are skipped,
 * only `user.*` xattrs are kept, opaque directories are marked with
 * `user.overlay.opaque` (for overlay mounts with `userxattr`, Linux 5.11+),
 * and whiteouts, 0/0 character devices, need Linux 5.8 or later; older
 * kernels fail with an error that says so.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { chmod, lstat, mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream';
import { digestHex, isDigest, parseDigest, type Digest } from '../content/digest.js';
import { StrataError } from '../content/errors.js';
import { withLock } from '../content/lock.js';
import type { ContentStore } from '../content/store.js';
import { createDecompressor } from '../layer/compress.js';
import { writeLayerOwners, type OwnerMap } from './owners.js';
import { LayerNotFoundError, type LayerRecord, type LayerRecords } from '../layer/record.js';
import { applyLayer, type ApplyOptions, type ApplyStats } from '../tar/extract.js';
import { TEMP_PREFIX, fsyncDir, writeJsonAtomic } from '../util/atomic.js';
import { defaultOverlayXattrNamespace, readOpaque, type OverlayXattrNamespace } from './upperdiff.js';
import { readdirOrEmpty } from '../util/fs.js';
import { DigestingStream } from '../layer/make.js';

/** What a published snapshot says about itself (its `.complete` file). */
export interface SnapshotInfo {
  /** The stack this snapshot's layer tops. */
  chainId: Digest;
  /** ChainID of the stack below; absent for a base layer. */
  parent?: Digest;
  /** The layer's DiffID (its uncompressed tar). */
  diffId: Digest;
  /** The blob it was unpacked from. */
  blob: Digest;
  /** The layer's diff alone, in overlay format: use it as a lower directory. */
  dir: string;
  /**
   * The layer hides everything below it (an opaque marker at its root).
   * overlayfs ignores opacity of a layer's root directory, so
   * {@link Snapshotter.lowerDirs} ends the stack here instead.
   */
  rootOpaque: boolean;
  /** Namespace of its opaque markers: 'user' needs overlay's `userxattr` mount option. */
  overlayXattrs: OverlayXattrNamespace;
  /** When it was unpacked (RFC 3339). */
  createdAt: string;
}

/** Disk used, counting each inode once. */
export interface SnapshotUsage {
  /** Allocated bytes (st_blocks × 512). */
  bytes: number;
  inodes: number;
}

/** Reported around each unpack, e.g. for progress output. */
export type UnpackEvent =
  | { phase: 'start'; chainId: Digest; diffId: Digest; blob: Digest; size: number }
  | { phase: 'done'; chainId: Digest; dir: string; stats: ApplyStats };

/** Options of {@link Snapshotter}. */
export interface SnapshotterOptions {
  /**
   * Passed to applyLayer for every unpack (id mapping for user namespaces,
   * device handling, xattrs). Snapshots are keyed by ChainID alone, so every
   * Snapshotter of one store root must use the same settings.
   */
  apply?: Pick<ApplyOptions, 'devices' | 'preserveOwners' | 'idMap' | 'xattrs'>;
  /** Namespace of opaque markers; default 'trusted' as root, else 'user'. */
  overlayXattrs?: OverlayXattrNamespace;
  /** Called (synchronously) when this process starts and finishes unpacking a layer. */
  onUnpack?: (event: UnpackEvent) => void;
}

/** What {@link Snapshotter.prune} removed. */
export interface PruneResult {
  /** Snapshots removed (complete or not). */
  removed: Digest[];
  /** Leftover temp directories of interrupted unpacks and removals. */
  temp: number;
}

/** A snapshot could not be made or used. */
export class SnapshotError extends StrataError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SNAPSHOT_FAILED', message, options);
  }
}

const COMPLETE_FILE = '.complete';
const FS_DIR = 'fs';
const HEX_RE = /^[a-f0-9]{64}$/;
const TEMP_RE = new RegExp(`^${TEMP_PREFIX.replace('.', '\\.')}([a-f0-9]{64})-\\d+-[a-f0-9]+$`);
/** A snapshot description is tiny; anything larger is not one. */
const MAX_COMPLETE_BYTES = 64 * 1024;

/** Each layer of a store unpacked once, in overlayfs format. */
export class Snapshotter {
  /** Directory holding the snapshots. */
  readonly dir: string;
  /** Namespace of the opaque markers of snapshots this instance makes. */
  readonly overlayXattrs: OverlayXattrNamespace;
  private readonly root: string;

  /**
   * @param root the store root (the OCI layout directory)
   * @param content where layer blobs are read from
   * @param records which blob and parent each ChainID has
   */
  constructor(
    root: string,
    private readonly content: ContentStore,
    private readonly records: LayerRecords,
    private readonly opts: SnapshotterOptions = {},
  ) {
    this.root = resolve(root);
    this.dir = join(this.root, 'strata', 'snapshots');
    this.overlayXattrs = opts.overlayXattrs ?? defaultOverlayXattrNamespace();
  }

  /** The lower directory `chainId`'s snapshot has or will have (nothing is checked or created). */
  fsDir(chainId: string): string {
    return join(this.snapshotDir(chainId), FS_DIR);
  }

  /** The published snapshot of `chainId`, or undefined when there is none (or only an unfinished one). */
  async get(chainId: string): Promise<SnapshotInfo | undefined> {
    return this.readComplete(parseDigest(chainId));
  }

  /**
   * Makes sure the snapshots of `chainId` and of every stack below it exist,
   * unpacking (each layer alone) those that do not, bottom first. Returns the
   * snapshot's lower directory.
   *
   * @throws LayerNotFoundError when a layer of the stack has no record
   * @throws SnapshotError when the unpacked tar does not hash to its DiffID
   * @throws whatever the content store or applyLayer throws (missing or corrupt
   *   blob, unsafe layer); nothing is published then
   */
  async ensure(chainId: string, options: { signal?: AbortSignal } = {}): Promise<string> {
    const stack = await this.ensureStack(parseDigest(chainId), options.signal);
    return stack[0]!.dir;
  }

  /**
   * The lower directories for mounting the stack `chainId`, topmost first,
   * each ensured. The list stops at a layer whose root is opaque (see
   * {@link SnapshotInfo.rootOpaque}): nothing below it is visible.
   */
  async lowerDirs(chainId: string, options: { signal?: AbortSignal } = {}): Promise<string[]> {
    const stack = await this.ensureStack(parseDigest(chainId), options.signal);
    const dirs: string[] = [];
    for (const info of stack) {
      dirs.push(info.dir);
      if (info.rootOpaque) break;
    }
    return dirs;
  }

  /** Every published snapshot, sorted by ChainID. */
  async list(): Promise<SnapshotInfo[]> {
    const infos: SnapshotInfo[] = [];
    for (const name of (await this.names()).sort()) {
      if (!HEX_RE.test(name)) continue;
      const info = await this.readComplete(`sha256:${name}`);
      if (info) infos.push(info);
    }
    return infos;
  }

  /**
   * Removes the snapshot of `chainId` (finished or not); true when there was
   * one. Its directory first moves aside in one rename, so a reader never sees
   * it half deleted. The caller must know that nothing has it mounted:
   * snapshots above it stay valid, and will unpack it again when stacked.
   */
  async remove(chainId: string): Promise<boolean> {
    const id = parseDigest(chainId);
    return withLock(this.root, lockName(id), () => this.removeLocked(id));
  }

  /**
   * Disk used by the snapshot of `chainId`, or by all snapshots (temp
   * directories included) when no ChainID is given.
   */
  async usage(chainId?: string): Promise<SnapshotUsage> {
    const seen = new Set<string>();
    const total: SnapshotUsage = { bytes: 0, inodes: 0 };
    if (chainId !== undefined) {
      await addUsage(this.snapshotDir(chainId), seen, total);
      return total;
    }
    for (const name of await this.names()) await addUsage(join(this.dir, name), seen, total);
    return total;
  }

  /**
   * Removes every snapshot whose ChainID is not in `keep` (nor below a kept
   * one: a kept stack keeps its whole chain of parents), every unfinished one,
   * and the temp directories of interrupted unpacks and removals. Meant to run
   * from garbage collection with the ChainIDs of every image and container
   * still around; a stack being unpacked right now is waited for, not removed
   * from under its unpacker.
   */
  async prune(keep: ReadonlySet<string>): Promise<PruneResult> {
    const names = await this.names();
    const kept = new Set<Digest>();
    for (const id of keep) {
      if (!isDigest(id)) continue;
      // Walk down through the snapshots that exist; a missing one ends the chain.
      for (let at: Digest | undefined = id; at !== undefined && !kept.has(at); ) {
        kept.add(at);
        at = (await this.readComplete(at))?.parent;
      }
    }
    const result: PruneResult = { removed: [], temp: 0 };
    for (const name of names.sort()) {
      if (HEX_RE.test(name)) {
        const id: Digest = `sha256:${name}`;
        if (kept.has(id)) continue;
        if (await this.remove(id)) result.removed.push(id);
        continue;
      }
      const temp = TEMP_RE.exec(name);
      if (!temp) continue;
      // Every unpack and removal works under its chain's lock, so once we hold it a temp directory is garbage.
      const removed = await withLock(this.root, lockName(`sha256:${temp[1]!}`), async () => {
        if ((await lstatOrUndefined(join(this.dir, name))) === undefined) return false;
        await forceRemove(join(this.dir, name));
        return true;
      });
      if (removed) result.temp++;
    }
    return result;
  }

  private snapshotDir(chainId: string): string {
    return join(this.dir, digestHex(chainId));
  }

  private names(): Promise<string[]> {
    return readdirOrEmpty(this.dir);
  }

  /** The stack from `top` down to its base, each snapshot ensured; topmost first. */
  private async ensureStack(top: Digest, signal: AbortSignal | undefined): Promise<SnapshotInfo[]> {
    const ids: Digest[] = [];
    const seen = new Set<Digest>();
    for (let at: Digest | undefined = top; at !== undefined; ) {
      if (seen.has(at)) throw new SnapshotError(`the parents of ${top} form a cycle at ${at}; the layer records or snapshots are damaged`);
      seen.add(at);
      ids.push(at);
      const published = await this.readComplete(at);
      if (published) {
        at = published.parent;
        continue;
      }
      const record = await this.records.get(at);
      if (!record) throw new LayerNotFoundError(at);
      at = record.parent;
    }
    const stack: SnapshotInfo[] = [];
    // Bottom first, so an interrupted call leaves the lower part of the stack done.
    for (const id of ids.reverse()) stack.push(await this.ensureOne(id, signal));
    return stack.reverse();
  }

  private async ensureOne(id: Digest, signal: AbortSignal | undefined): Promise<SnapshotInfo> {
    const published = await this.readComplete(id);
    if (published) return published;
    return withLock(
      this.root,
      lockName(id),
      async () => {
        // Another process may have finished it while we waited for the lock.
        const done = await this.readComplete(id);
        if (done) return done;
        await this.discardLeftovers(id);
        return this.unpack(id, signal);
      },
      signal ? { signal } : {},
    );
  }

  /** Under the chain lock: an unfinished snapshot directory and every temp directory of this chain are garbage. */
  private async discardLeftovers(id: Digest): Promise<void> {
    const hex = digestHex(id);
    if ((await lstatOrUndefined(this.snapshotDir(id))) !== undefined) await this.removeLocked(id);
    for (const name of await this.names()) {
      if (TEMP_RE.exec(name)?.[1] === hex) await forceRemove(join(this.dir, name));
    }
  }

  private async removeLocked(id: Digest): Promise<boolean> {
    const final = this.snapshotDir(id);
    const aside = this.tempPath(id);
    try {
      await rename(final, aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    await fsyncDir(this.dir);
    await forceRemove(aside);
    return true;
  }

  private tempPath(id: Digest): string {
    return join(this.dir, `${TEMP_PREFIX}${digestHex(id)}-${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  private async unpack(id: Digest, signal: AbortSignal | undefined): Promise<SnapshotInfo> {
    const record = await this.records.get(id);
    if (!record) throw new LayerNotFoundError(id);
    await mkdir(this.dir, { recursive: true });
    const temp = this.tempPath(id);
    const fs = join(temp, FS_DIR);
    await mkdir(temp, { mode: 0o700 });
    try {
      await mkdir(fs);
      // Not left to the umask: this is the root directory of the layer's tree.
      await chmod(fs, 0o755);
      this.opts.onUnpack?.({ phase: 'start', chainId: id, diffId: record.diffId, blob: record.digest, size: record.size });
      const owners: OwnerMap = new Map();
      const stats = await this.applyBlob(fs, record, signal, owners);
      // Unpacked without root: the files are ours, the layer's owners are kept beside them.
      if (owners.size > 0) await writeLayerOwners(temp, owners);
      const info: SnapshotInfo = {
        chainId: id,
        ...(record.parent !== undefined ? { parent: record.parent } : {}),
        diffId: record.diffId,
        blob: record.digest,
        dir: this.fsDir(id),
        // Only a layer with whiteouts can have made its root opaque.
        rootOpaque: stats.whiteouts > 0 && (await readOpaque(fs, this.overlayXattrs)),
        overlayXattrs: this.overlayXattrs,
        createdAt: new Date().toISOString(),
      };
      const { dir: _dir, ...described } = info;
      await writeJsonAtomic(join(temp, COMPLETE_FILE), described);
      await chmod(temp, 0o555);
      try {
        await rename(temp, this.snapshotDir(id));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // Someone published it without our lock (see the module notes): theirs wins.
        const winner = code === 'ENOTEMPTY' || code === 'EEXIST' ? await this.readComplete(id) : undefined;
        if (!winner) throw err;
        await forceRemove(temp);
        return winner;
      }
      await fsyncDir(this.dir);
      this.opts.onUnpack?.({ phase: 'done', chainId: id, dir: info.dir, stats });
      return info;
    } catch (err) {
      await forceRemove(temp).catch(() => undefined);
      // Extraction errors name an entry but not the layer; say which one (typed errors keep their message).
      if (err instanceof Error && err.constructor === Error && !signal?.aborted) {
        err.message = `unpacking layer ${record.diffId} (ChainID ${id}): ${err.message}`;
      }
      throw err;
    }
  }

  /**
   * Streams the blob (verified by the content store) through the
   * decompressor and a DiffID hash into applyLayer. The hash is only known
   * once everything is unpacked, so a mismatch fails the unpack afterwards and
   * the temp directory is discarded.
   */
  private async applyBlob(fs: string, record: LayerRecord, signal: AbortSignal | undefined, owners: OwnerMap): Promise<ApplyStats> {
    const hasher = new DigestingStream();
    let streamError: Error | undefined;
    const streamed = new Promise<void>((done) => {
      pipeline(this.content.createReadStream(record.digest), createDecompressor(record.compression), hasher, (err) => {
        streamError = err ?? undefined;
        done();
      });
    });
    let stats: ApplyStats;
    try {
      stats = await applyLayer(fs, hasher, {
        ...this.opts.apply,
        whiteouts: 'overlay',
        overlayXattrs: this.overlayXattrs,
        ownersNotApplied: owners,
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      hasher.destroy();
      await streamed;
      // A corrupt or missing blob shows up in the tar reader as a truncated archive; name the real cause.
      if (streamError && (streamError as NodeJS.ErrnoException).code !== 'ERR_STREAM_PREMATURE_CLOSE') throw streamError;
      throw err;
    }
    await streamed;
    // The store verifies a blob when it reaches the end, which can be after the tar's end-of-archive blocks were read.
    if (streamError) throw streamError;
    const diffId = hasher.digest();
    if (diffId !== record.diffId || hasher.size !== record.uncompressedSize) {
      throw new SnapshotError(
        `layer ${record.chainId}: blob ${record.digest} unpacks to ${diffId} (${hasher.size} bytes), not its DiffID ${record.diffId} (${record.uncompressedSize} bytes); the layer record is wrong`,
      );
    }
    return stats;
  }

  /** The snapshot's description when it is published and sound; undefined otherwise. */
  private async readComplete(id: Digest): Promise<SnapshotInfo | undefined> {
    let text: string;
    try {
      const path = join(this.snapshotDir(id), COMPLETE_FILE);
      const stats = await lstat(path);
      if (!stats.isFile() || stats.size > MAX_COMPLETE_BYTES) return undefined;
      text = await readFile(path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw err;
    }
    let value: Record<string, unknown>;
    try {
      value = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return undefined;
    }
    if (typeof value !== 'object' || value === null) return undefined;
    const { chainId, parent, diffId, blob, rootOpaque, overlayXattrs, createdAt } = value;
    if (chainId !== id || !isDigest(diffId) || !isDigest(blob) || (parent !== undefined && !isDigest(parent))) return undefined;
    if (typeof rootOpaque !== 'boolean' || (overlayXattrs !== 'trusted' && overlayXattrs !== 'user') || typeof createdAt !== 'string') return undefined;
    return {
      chainId: id,
      ...(parent !== undefined ? { parent: parent as Digest } : {}),
      diffId,
      blob,
      dir: this.fsDir(id),
      rootOpaque,
      overlayXattrs,
      createdAt,
    };
  }
}

function lockName(id: Digest): string {
  return `snapshot-${digestHex(id)}`;
}

async function lstatOrUndefined(path: string): Promise<BigIntStats | undefined> {
  try {
    return await lstat(path, { bigint: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * rm -rf that also gets through directories without write permission, which
 * layers have (a 0555 /usr) and which stop a non-root owner from deleting
 * their children. Symlinks are never followed.
 */
async function forceRemove(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') throw err;
  }
  await makeDirsWritable(path);
  await rm(path, { recursive: true, force: true });
}

async function makeDirsWritable(path: string): Promise<void> {
  const stack = [path];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    const stats = await lstatOrUndefined(dir);
    if (stats === undefined || !stats.isDirectory()) continue;
    await chmod(dir, 0o700);
    for (const name of await readdir(dir)) stack.push(join(dir, name));
  }
}

/** Adds the allocated size of the tree at `path` to `total`, each inode once. */
async function addUsage(path: string, seen: Set<string>, total: SnapshotUsage): Promise<void> {
  const stack = [path];
  while (stack.length > 0) {
    const at = stack.pop()!;
    const stats = await lstatOrUndefined(at);
    if (stats === undefined) continue;
    const inode = `${stats.dev}:${stats.ino}`;
    if (!seen.has(inode)) {
      seen.add(inode);
      total.inodes++;
      total.bytes += Number(stats.blocks) * 512;
    }
    if (stats.isDirectory()) {
      try {
        for (const name of await readdir(at)) stack.push(join(at, name));
      } catch (err) {
        // A snapshot removed meanwhile is simply not counted.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
  }
}
