/**
 * A file-system API on a container's merged view (its upper dir over its
 * init layer, once the runtime made one, and the image's snapshot dirs; see
 * {@link Container.mountLowerDirs}), writing in overlayfs format so that a real overlay
 * mount of the same directories sees exactly what this API sees, and so that
 * the upper dir means the same whether a process in the container or this API
 * changed it.
 *
 * What it does, the way overlayfs (mounted with redirect_dir=off,
 * metacopy=off, index=off, as strata and Docker mount it) does it:
 *
 * - Copy-up on the first change to a lower entry: parent directories first,
 *   each with its mode, owner, xattrs and times; file content by a reflink
 *   where the file system can, else copy_file_range in the kernel (no bytes
 *   pass through JavaScript; see {@link SPAWN_COPY_BYTES} for big files);
 *   then owner, mode, xattrs (security.capability and the rest, overlay's
 *   private ones excepted) and times. The copy is assembled in the
 *   container's tmp dir and renamed into place, and the upper parent's times
 *   are put back afterwards, as the kernel does, so a copy-up alone does not
 *   show as a change of the directory. Opening with O_TRUNC copies no data.
 * - Deleting an entry the lower layers have leaves a whiteout (a 0/0
 *   character device). All whiteouts of a container are hard links to one
 *   inode made once with mknod(1), as the kernel shares one whiteout inode,
 *   so a deletion costs a link(2), not a process.
 * - Creating a directory over a whiteout makes it opaque
 *   (`trusted.overlay.opaque=y`, set with setfattr(1)).
 * - Renaming a directory that lower layers contribute to cannot be done in
 *   the upper dir alone without redirects; like `mv` on such a mount (where
 *   rename fails with EXDEV), the merged subtree is copied to the new name and
 *   the old one is deleted.
 * - A hard link to a lower file copies the file up first.
 *
 * The snapshot dirs are never written. Paths are container paths
 * (`/app/app.py`); symlinks are resolved inside the container's root and can
 * never lead out of it.
 *
 * Changes go through one queue per ContainerFs, so concurrent calls on one
 * object are safe. The upper dir's xattrs (opaque markers, capabilities) are
 * read once when the object is opened and then tracked: open a fresh
 * ContainerFs after something else (a running process) changed the upper
 * dir, and hold {@link Container.withLock} to keep other strata processes out.
 * On a running container, its processes can swap a path component while it
 * is being resolved: pause the container first (cp and commit do).
 */
import { execFile } from 'node:child_process';
import { constants as fsConstants, createReadStream as fsCreateReadStream, type Stats } from 'node:fs';
import {
  chmod as fsChmod,
  copyFile,
  lchown,
  link as fsLink,
  lstat,
  lutimes,
  mkdir as fsMkdir,
  open,
  readFile as fsReadFile,
  readlink as fsReadlink,
  rename as fsRename,
  rm as fsRm,
  symlink as fsSymlink,
  truncate as fsTruncate,
  unlink,
  utimes as fsUtimes,
  chown as fsChown,
  type FileHandle,
} from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { PassThrough, Readable, Writable, pipeline } from 'node:stream';
import { StrataError } from '../content/errors.js';
import { processIsAlive } from '../util/process.js';
import type { OverlayXattrNamespace } from '../snapshot/upperdiff.js';
import { setXattrs, type XattrRecord } from '../tar/extract.js';
import { TEMP_PREFIX } from '../util/atomic.js';
import { errnoOf, lstatOrUndefined, readdirOrEmpty } from '../util/fs.js';
import type { Container } from './container-store.js';
import {
  ContainerPathError,
  OverlayView,
  childRel,
  displayPath,
  isWhiteoutStats,
  pathComponents,
  type Resolved,
  type ViewNode,
} from './view.js';

export { ContainerPathError } from './view.js';

/** Where a {@link ContainerFs} works. */
export interface ContainerFsDirs {
  /** The writable overlay upper dir. */
  upperDir: string;
  /** Read-only layer dirs in overlay format, top first. */
  lowerDirs: string[];
  /** Scratch dir on the upper dir's file system (copy-ups are assembled here). */
  tmpDir: string;
  /** Where the shared whiteout inode lives (same file system as the upper dir). */
  whiteoutPath: string;
  /** Namespace of opaque markers (default 'trusted' as root, 'user' otherwise), as the snapshots were made. */
  overlayXattrs?: OverlayXattrNamespace;
}

/** Owner and permissions for entries a call creates. */
export interface CreateOptions {
  /** Permission bits (default 0644 for files, 0755 for directories); the umask does not apply. */
  mode?: number;
  /** Owner (default: the calling process's). */
  uid?: number;
  gid?: number;
}

/** Options of {@link ContainerFs.writeFile}. */
export interface WriteFileOptions extends CreateOptions {
  /** 'w' (default: create or truncate), 'wx' (create, fail if it exists), 'a' (append). */
  flag?: 'w' | 'wx' | 'a';
}

/** Options of {@link ContainerFs.createWriteStream}. */
export interface WriteStreamOptions extends CreateOptions {
  /** 'w' (default), 'wx', 'a', or 'r+' (write in place without truncating; the file must exist). */
  flags?: 'w' | 'wx' | 'a' | 'r+';
  /** Byte offset to start writing at ('r+' only). */
  start?: number;
  /** Times to give the file once everything is written (seconds or Date), as an extractor sets them. */
  atime?: number | Date;
  mtime?: number | Date;
}

/** Options of {@link ContainerFs.mkdir}. */
export interface MkdirOptions extends CreateOptions {
  /** Create missing parents too; an existing directory is not an error. */
  recursive?: boolean;
}

/** Options of {@link ContainerFs.rm}. */
export interface RmOptions {
  /** Remove directories and their contents. */
  recursive?: boolean;
  /** A missing path is not an error. */
  force?: boolean;
}

/** A device or fifo for {@link ContainerFs.mknod}. */
export interface SpecialFileOptions extends CreateOptions {
  type: 'fifo' | 'char' | 'block';
  major?: number;
  minor?: number;
}

type OpenFlag = 'w' | 'wx' | 'a' | 'r+';

const OPEN_FLAGS: Record<OpenFlag, number> = {
  w: fsConstants.O_WRONLY | fsConstants.O_TRUNC,
  wx: fsConstants.O_WRONLY,
  a: fsConstants.O_WRONLY | fsConstants.O_APPEND,
  'r+': fsConstants.O_RDWR,
};

/** Xattrs worth carrying to a copy: everything but overlayfs' own bookkeeping. */
export function copyableXattrs(xattrs: Record<string, Buffer> | undefined): Record<string, Buffer> | undefined {
  if (!xattrs) return undefined;
  const out: Record<string, Buffer> = {};
  for (const [name, value] of Object.entries(xattrs)) {
    if (name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.')) continue;
    out[name] = value;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

function seconds(ms: number): number {
  return ms / 1000;
}

/** Runs a helper program; its stderr becomes the error message. */
function runTool(command: string, args: string[], what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const why = errnoOf(err) === 'ENOENT' ? `${command} is not installed` : String(stderr).trim() || err.message;
      reject(new StrataError('CONTAINER_FS_TOOL', `${what}: ${command} failed: ${why}`));
    });
  });
}

/**
 * Files at least this big are copied by a cp(1) process rather than by
 * fs.copyFile. Both end in the same copy_file_range(2) (or a reflink), but
 * measured on Linux 6.x/ext4 with a 1 GiB file in the page cache, the call
 * made from the Node process took about twice as long (~600 ms against
 * ~290 ms from cp or python3, the same system time, the rest spent waiting),
 * while a spawn costs a few milliseconds.
 */
const SPAWN_COPY_BYTES = 32 * 1024 * 1024;

let cpMissing = false;

/**
 * Copies a regular file's data to a new file `dest` (which must not exist),
 * never through JavaScript buffers: a reflink where the file system can,
 * else an in-kernel copy.
 */
async function copyFileData(source: string, dest: string, size: number): Promise<void> {
  if (size >= SPAWN_COPY_BYTES && !cpMissing) {
    try {
      await runTool('cp', ['--', source, dest], 'cannot copy up');
      return;
    } catch (err) {
      if (!(err instanceof StrataError && /cp is not installed/.test(err.message))) throw err;
      cpMissing = true;
    }
  }
  await copyFile(source, dest, fsConstants.COPYFILE_FICLONE);
}

/** Creates a fifo or device node at a host path (mode applied separately). */
async function makeSpecial(path: string, type: 'fifo' | 'char' | 'block', major: number, minor: number): Promise<void> {
  if (type === 'fifo') return runTool('mkfifo', ['-m', '600', '--', path], `cannot create fifo`);
  return runTool('mknod', ['-m', '600', '--', path, type === 'char' ? 'c' : 'b', String(major), String(minor)], `cannot create device node`);
}

function deviceNumbers(stats: Stats): { major: number; minor: number } {
  const rdev = BigInt(stats.rdev);
  return {
    major: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)),
    minor: Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)),
  };
}

/** The copy-on-write file-system API of one container. */
export class ContainerFs {
  private queue: Promise<unknown> = Promise.resolve();
  private whiteoutReady: Promise<void> | undefined;

  private constructor(
    /** The merged view (read side). */
    readonly view: OverlayView,
    readonly dirs: ContainerFsDirs,
  ) {}

  /** Opens the file system of `container` (its snapshot dirs are unpacked if they are not yet). */
  static async open(container: Container): Promise<ContainerFs> {
    return ContainerFs.openDirs({
      upperDir: container.upperDir,
      lowerDirs: await container.mountLowerDirs(),
      tmpDir: container.tmpDir,
      whiteoutPath: join(container.dir, 'whiteout'),
      overlayXattrs: container.store.snapshotter.overlayXattrs,
    });
  }

  /** Opens a ContainerFs over explicit directories (an overlay upper dir and its lowers). */
  static async openDirs(dirs: ContainerFsDirs): Promise<ContainerFs> {
    await fsMkdir(dirs.tmpDir, { recursive: true, mode: 0o700 });
    await cleanTmp(dirs.tmpDir);
    const view = await OverlayView.open([dirs.upperDir, ...dirs.lowerDirs], {
      writableTop: true,
      ...(dirs.overlayXattrs ? { overlayXattrs: dirs.overlayXattrs } : {}),
    });
    return new ContainerFs(view, { ...dirs, lowerDirs: [...dirs.lowerDirs] });
  }

  /** Runs `fn` after every change queued before it. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private upperPath(rel: string): string {
    return this.view.hostPath(0, rel);
  }

  private tmpPath(): string {
    return join(this.dirs.tmpDir, `${TEMP_PREFIX}cu-${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  // ------------------------------------------------------------ reading

  /**
   * Resolves a container path (intermediate symlinks followed inside the
   * root; the last one only with `followFinal`). For callers that need the
   * layer an entry comes from (export, cp).
   */
  locate(path: string, followFinal: boolean, syscall = 'lstat'): Promise<Resolved> {
    return this.view.resolve(path, followFinal, syscall);
  }

  private async existing(path: string, followFinal: boolean, syscall: string): Promise<ViewNode> {
    const { node } = await this.view.resolve(path, followFinal, syscall);
    if (!node) throw new ContainerPathError('ENOENT', syscall, path);
    return node;
  }

  /** lstat of the entry (a symlink itself, not its target). */
  async lstat(path: string): Promise<Stats> {
    return (await this.existing(path, false, 'lstat')).stats;
  }

  /** stat of the entry, following symlinks (inside the root). */
  async stat(path: string): Promise<Stats> {
    return (await this.existing(path, true, 'stat')).stats;
  }

  /** Whether the path exists (a dangling symlink exists). */
  async exists(path: string): Promise<boolean> {
    try {
      return (await this.view.resolve(path, false)).node !== undefined;
    } catch (err) {
      if (err instanceof ContainerPathError && (err.code === 'ENOENT' || err.code === 'ENOTDIR')) return false;
      throw err;
    }
  }

  /** The merged listing of a directory, sorted by name in byte order. */
  async readdir(path: string): Promise<string[]> {
    const node = await this.existing(path, true, 'scandir');
    if (!node.stats.isDirectory()) throw new ContainerPathError('ENOTDIR', 'scandir', path);
    return this.view.list(node);
  }

  /** A symlink's target, verbatim. */
  async readlink(path: string): Promise<string> {
    const node = await this.existing(path, false, 'readlink');
    if (!node.stats.isSymbolicLink()) throw new ContainerPathError('EINVAL', 'readlink', path);
    return fsReadlink(node.hostPath);
  }

  /** The path with every symlink resolved inside the root (`/usr/lib/x`). */
  async realpath(path: string): Promise<string> {
    return displayPath((await this.existing(path, true, 'realpath')).rel);
  }

  /** A whole file (for small files; stream big ones with {@link createReadStream}). */
  async readFile(path: string): Promise<Buffer>;
  async readFile(path: string, encoding: BufferEncoding): Promise<string>;
  async readFile(path: string, encoding?: BufferEncoding): Promise<Buffer | string> {
    const node = await this.existing(path, true, 'open');
    if (node.stats.isDirectory()) throw new ContainerPathError('EISDIR', 'read', path);
    return encoding ? fsReadFile(node.hostPath, encoding) : fsReadFile(node.hostPath);
  }

  /** Streams a file's content (from whichever layer holds it). `end` is inclusive, as in fs.createReadStream. */
  createReadStream(path: string, opts: { start?: number; end?: number } = {}): Readable {
    const out = new PassThrough();
    this.existing(path, true, 'open').then(
      (node) => {
        if (node.stats.isDirectory()) return void out.destroy(new ContainerPathError('EISDIR', 'read', path));
        // pipeline, not pipe: a consumer that stops early must close the file too.
        pipeline(fsCreateReadStream(node.hostPath, opts), out, () => undefined);
      },
      (err: unknown) => out.destroy(err as Error),
    );
    return out;
  }

  // ------------------------------------------------------------ writing files

  /** Writes a whole file (creating it, or replacing its content), following a final symlink inside the root. */
  async writeFile(path: string, data: string | Uint8Array, opts: WriteFileOptions = {}): Promise<void> {
    const handle = await this.exclusive(() => this.openForWrite(path, opts.flag ?? 'w', opts));
    try {
      await handle.writeFile(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    } finally {
      await handle.close();
    }
  }

  /**
   * A writable stream to a file. The copy-up (for a lower file) happens
   * before the first byte is written; with 'w' no data is copied, since the
   * file is truncated anyway.
   */
  createWriteStream(path: string, opts: WriteStreamOptions = {}): Writable {
    const flag = opts.flags ?? 'w';
    if (opts.start !== undefined && flag !== 'r+') throw new StrataError('INVALID_ARGUMENT', `start is only allowed with flags 'r+'`);
    let handle: FileHandle | undefined;
    let position = opts.start ?? 0;
    const fsys = this;
    return new Writable({
      highWaterMark: 1024 * 1024,
      construct(callback) {
        fsys.exclusive(() => fsys.openForWrite(path, flag, opts)).then(
          (h) => {
            handle = h;
            callback();
          },
          (err: unknown) => callback(err as Error),
        );
      },
      write(chunk: Buffer, _encoding, callback) {
        const at = flag === 'a' ? null : position;
        writeAll(handle!, chunk, at).then(() => {
          position += chunk.length;
          callback();
        }, callback);
      },
      writev(chunks, callback) {
        const buffer = Buffer.concat(chunks.map((c) => c.chunk as Buffer));
        const at = flag === 'a' ? null : position;
        writeAll(handle!, buffer, at).then(() => {
          position += buffer.length;
          callback();
        }, callback);
      },
      final(callback) {
        const h = handle;
        handle = undefined;
        const finish = async (): Promise<void> => {
          if (!h) return;
          try {
            if (opts.mtime !== undefined) await h.utimes(opts.atime ?? opts.mtime, opts.mtime);
          } finally {
            await h.close();
          }
        };
        finish().then(() => callback(), callback);
      },
      destroy(err, callback) {
        const h = handle;
        handle = undefined;
        (h ? h.close() : Promise.resolve()).then(
          () => callback(err),
          () => callback(err),
        );
      },
    });
  }

  /** Opens (creating or copying up as needed) the upper instance of a file; the caller closes it. */
  private async openForWrite(path: string, flag: OpenFlag, opts: CreateOptions): Promise<FileHandle> {
    const resolved = await this.view.resolve(path, true, 'open');
    const { node } = resolved;
    if (node) {
      if (flag === 'wx') throw new ContainerPathError('EEXIST', 'open', path);
      if (node.stats.isDirectory()) throw new ContainerPathError('EISDIR', 'open', path);
      if (!node.stats.isFile()) throw new ContainerPathError('EINVAL', 'open', path, 'not a regular file');
      if (node.layer !== 0) await this.copyUp(node, flag !== 'w');
      return open(this.upperPath(node.rel), OPEN_FLAGS[flag] | fsConstants.O_NOFOLLOW);
    }
    if (flag === 'r+') throw new ContainerPathError('ENOENT', 'open', path);
    if (!resolved.parent.stats.isDirectory()) throw new ContainerPathError('ENOTDIR', 'open', path);
    await this.ensureUpperDir(resolved.parent);
    const upper = this.upperPath(resolved.rel);
    const flags = OPEN_FLAGS[flag] | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;
    let handle: FileHandle;
    try {
      handle = await open(upper, flags, 0o600);
    } catch (err) {
      if (errnoOf(err) !== 'EEXIST') throw err;
      // Something is there that the view did not show: a whiteout, which the new file replaces.
      const existing = await lstatOrUndefined(upper);
      if (!existing || !isWhiteoutStats(existing)) throw new ContainerPathError('EEXIST', 'open', path);
      await unlink(upper);
      handle = await open(upper, flags, 0o600);
    }
    try {
      if (opts.uid !== undefined || opts.gid !== undefined) await handle.chown(opts.uid ?? process.getuid?.() ?? 0, opts.gid ?? process.getgid?.() ?? 0);
      await handle.chmod(opts.mode ?? 0o644);
    } catch (err) {
      await handle.close();
      throw err;
    }
    return handle;
  }

  /** Truncates (or extends) a file, following a final symlink. */
  truncate(path: string, length = 0): Promise<void> {
    return this.exclusive(async () => {
      const node = await this.existing(path, true, 'truncate');
      if (node.stats.isDirectory()) throw new ContainerPathError('EISDIR', 'truncate', path);
      if (!node.stats.isFile()) throw new ContainerPathError('EINVAL', 'truncate', path);
      if (node.layer !== 0) await this.copyUp(node, length > 0);
      await fsTruncate(this.upperPath(node.rel), length);
    });
  }

  // ------------------------------------------------------------ creating other entries

  /** Creates a directory (mode default 0755); over a whiteout it becomes opaque. */
  mkdir(path: string, opts: MkdirOptions = {}): Promise<void> {
    return this.exclusive(() => this.mkdirUnlocked(path, opts));
  }

  private async mkdirUnlocked(path: string, opts: MkdirOptions): Promise<void> {
    let resolved: Resolved;
    // mkdir(2) does not follow a final symlink: a dangling one is EEXIST, not a directory made at its target.
    try {
      resolved = await this.view.resolve(path, false, 'mkdir');
    } catch (err) {
      if (!(opts.recursive && err instanceof ContainerPathError && err.code === 'ENOENT')) throw err;
      const parts = pathComponents(path);
      if (parts.length <= 1) throw err;
      await this.mkdirUnlocked(`/${parts.slice(0, -1).join('/')}`, { ...opts, mode: 0o755 });
      resolved = await this.view.resolve(path, false, 'mkdir');
    }
    if (resolved.node) {
      if (opts.recursive) {
        const node = resolved.node.stats.isSymbolicLink() ? (await this.view.resolve(path, true, 'mkdir')).node : resolved.node;
        if (node?.stats.isDirectory()) return;
      }
      throw new ContainerPathError('EEXIST', 'mkdir', path);
    }
    await this.createDir(resolved.parent, resolved.name, path, opts);
  }

  /** Makes a new directory `name` in `parent` (which must not have it), via tmp + rename. */
  private async createDir(parent: ViewNode, name: string, path: string, opts: CreateOptions): Promise<void> {
    const overWhiteout = await this.prepareCreate(parent, name, path, false);
    const tmp = this.tmpPath();
    await fsMkdir(tmp, 0o700);
    try {
      if (opts.uid !== undefined || opts.gid !== undefined) await lchown(tmp, opts.uid ?? process.getuid?.() ?? 0, opts.gid ?? process.getgid?.() ?? 0);
      await fsChmod(tmp, opts.mode ?? 0o755);
      if (overWhiteout) await setXattrs([{ path: tmp, xattrs: { [this.view.opaqueXattr]: Buffer.from('y') } }]);
      const rel = childRel(parent.rel, name);
      await this.placeOverWhiteout(tmp, rel);
      if (overWhiteout) this.view.noteXattrs(rel, { [this.view.opaqueXattr]: Buffer.from('y') });
    } catch (err) {
      await fsRm(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  /** Creates a symlink at `path` pointing at `target` (stored verbatim). */
  symlink(target: string, path: string, opts: Omit<CreateOptions, 'mode'> = {}): Promise<void> {
    return this.exclusive(async () => {
      const resolved = await this.view.resolve(path, false, 'symlink');
      if (resolved.node) throw new ContainerPathError('EEXIST', 'symlink', path);
      await this.prepareCreate(resolved.parent, resolved.name, path);
      const upper = this.upperPath(resolved.rel);
      await fsSymlink(target, upper);
      if (opts.uid !== undefined || opts.gid !== undefined) await lchown(upper, opts.uid ?? 0, opts.gid ?? 0);
    });
  }

  /** A hard link `newPath` to the file `existingPath` (a lower file is copied up first, as overlayfs does). */
  link(existingPath: string, newPath: string): Promise<void> {
    return this.exclusive(async () => {
      const source = await this.existing(existingPath, false, 'link');
      if (source.stats.isDirectory()) throw new ContainerPathError('EPERM', 'link', existingPath);
      // Every check before any change: a failed link must not have copied anything up.
      const target = await this.view.resolve(newPath, false, 'link');
      if (target.node) throw new ContainerPathError('EEXIST', 'link', newPath);
      if (!target.parent.stats.isDirectory()) throw new ContainerPathError('ENOTDIR', 'link', newPath);
      if (source.layer !== 0) await this.copyUp(source, true);
      const resolved = await this.view.resolve(newPath, false, 'link');
      await this.prepareCreate(resolved.parent, resolved.name, newPath);
      await fsLink(this.upperPath(source.rel), this.upperPath(resolved.rel));
    });
  }

  /** Creates a fifo or a device node (devices need root). */
  mknod(path: string, opts: SpecialFileOptions): Promise<void> {
    return this.exclusive(async () => {
      const resolved = await this.view.resolve(path, false, 'mknod');
      if (resolved.node) throw new ContainerPathError('EEXIST', 'mknod', path);
      if (opts.type !== 'fifo' && (opts.major ?? 0) === 0 && (opts.minor ?? 0) === 0 && opts.type === 'char') {
        throw new ContainerPathError('EINVAL', 'mknod', path, 'a 0/0 character device is an overlay whiteout; use rm to delete');
      }
      await this.prepareCreate(resolved.parent, resolved.name, path, false);
      const tmp = this.tmpPath();
      await makeSpecial(tmp, opts.type, opts.major ?? 0, opts.minor ?? 0);
      try {
        if (opts.uid !== undefined || opts.gid !== undefined) await lchown(tmp, opts.uid ?? 0, opts.gid ?? 0);
        await fsChmod(tmp, opts.mode ?? 0o644);
        await this.placeOverWhiteout(tmp, resolved.rel);
      } catch (err) {
        await unlink(tmp).catch(() => undefined);
        throw err;
      }
    });
  }

  // ------------------------------------------------------------ attributes

  /** chmod, following a final symlink. */
  chmod(path: string, mode: number): Promise<void> {
    return this.exclusive(async () => {
      const node = await this.ensureUpper(await this.existing(path, true, 'chmod'));
      await fsChmod(this.upperPath(node.rel), mode);
    });
  }

  /** chown, following a final symlink. */
  chown(path: string, uid: number, gid: number): Promise<void> {
    return this.exclusive(async () => {
      const node = await this.ensureUpper(await this.existing(path, true, 'chown'));
      await fsChown(this.upperPath(node.rel), uid, gid);
    });
  }

  /** chown of the entry itself (a symlink is not followed). */
  lchown(path: string, uid: number, gid: number): Promise<void> {
    return this.exclusive(async () => {
      const node = await this.ensureUpper(await this.existing(path, false, 'lchown'));
      await lchown(this.upperPath(node.rel), uid, gid);
    });
  }

  /** Sets access and modification times (seconds, Date or numeric string), following a final symlink. */
  utimes(path: string, atime: number | Date, mtime: number | Date): Promise<void> {
    return this.exclusive(async () => {
      const node = await this.ensureUpper(await this.existing(path, true, 'utime'));
      await fsUtimes(this.upperPath(node.rel), atime, mtime);
    });
  }

  /** Sets times of the entry itself (a symlink is not followed). */
  lutimes(path: string, atime: number | Date, mtime: number | Date): Promise<void> {
    return this.exclusive(async () => {
      const node = await this.ensureUpper(await this.existing(path, false, 'lutime'));
      await lutimes(this.upperPath(node.rel), atime, mtime);
    });
  }

  /** Sets extended attributes on the entry itself (overlay's own `trusted.overlay.*` are refused). */
  setXattrs(path: string, xattrs: Record<string, Buffer>): Promise<void> {
    return this.exclusive(async () => {
      for (const name of Object.keys(xattrs)) {
        if (name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.')) {
          throw new ContainerPathError('EPERM', 'setxattr', path, `${name} is overlayfs metadata`);
        }
      }
      if (Object.keys(xattrs).length === 0) return;
      const node = await this.ensureUpper(await this.existing(path, false, 'setxattr'));
      await setXattrs([{ path: this.upperPath(node.rel), xattrs }]);
      this.view.noteXattrs(node.rel, xattrs);
    });
  }

  // ------------------------------------------------------------ removing

  /** Removes a file, symlink or (with `recursive`) directory tree; a final symlink is removed, not followed. */
  rm(path: string, opts: RmOptions = {}): Promise<void> {
    return this.exclusive(async () => {
      let resolved: Resolved;
      try {
        resolved = await this.view.resolve(path, false, 'rm');
      } catch (err) {
        if (opts.force && err instanceof ContainerPathError && (err.code === 'ENOENT' || err.code === 'ENOTDIR')) return;
        throw err;
      }
      const { node } = resolved;
      if (!node) {
        if (opts.force) return;
        throw new ContainerPathError('ENOENT', 'rm', path);
      }
      if (node.rel === '') throw new ContainerPathError('EBUSY', 'rm', path, 'cannot remove the root directory');
      if (node.stats.isDirectory() && !opts.recursive) throw new ContainerPathError('EISDIR', 'rm', path);
      await this.removeEntry(resolved.parent, resolved.name, node);
    });
  }

  /** Removes an empty directory. */
  rmdir(path: string): Promise<void> {
    return this.exclusive(async () => {
      const resolved = await this.view.resolve(path, false, 'rmdir');
      const { node } = resolved;
      if (!node) throw new ContainerPathError('ENOENT', 'rmdir', path);
      if (!node.stats.isDirectory()) throw new ContainerPathError('ENOTDIR', 'rmdir', path);
      if (node.rel === '') throw new ContainerPathError('EBUSY', 'rmdir', path);
      if ((await this.view.list(node)).length > 0) throw new ContainerPathError('ENOTEMPTY', 'rmdir', path);
      await this.removeEntry(resolved.parent, resolved.name, node);
    });
  }

  /** Removes a non-directory. */
  unlink(path: string): Promise<void> {
    return this.exclusive(async () => {
      const resolved = await this.view.resolve(path, false, 'unlink');
      const { node } = resolved;
      if (!node) throw new ContainerPathError('ENOENT', 'unlink', path);
      if (node.stats.isDirectory()) throw new ContainerPathError('EISDIR', 'unlink', path);
      await this.removeEntry(resolved.parent, resolved.name, node);
    });
  }

  /**
   * Renames an entry, replacing `to` if it exists (a file by a file, a
   * directory by a directory that is empty), like rename(2). A directory that
   * lower layers contribute to is copied to the new name and then deleted, as
   * `mv` does on an overlay mount without redirect_dir.
   */
  rename(from: string, to: string): Promise<void> {
    return this.exclusive(() => this.renameUnlocked(from, to));
  }

  private async renameUnlocked(from: string, to: string): Promise<void> {
    const src = await this.view.resolve(from, false, 'rename');
    if (!src.node) throw new ContainerPathError('ENOENT', 'rename', from);
    if (src.node.rel === '') throw new ContainerPathError('EBUSY', 'rename', from);
    const dst = await this.view.resolve(to, false, 'rename');
    if (dst.rel === src.rel) return;
    const srcIsDir = src.node.stats.isDirectory();
    if (srcIsDir && dst.rel.startsWith(`${src.rel}/`)) throw new ContainerPathError('EINVAL', 'rename', from, `cannot move a directory into itself (${to})`);
    if (dst.node) {
      if (dst.node.rel === '') throw new ContainerPathError('EBUSY', 'rename', to);
      if (srcIsDir) {
        if (!dst.node.stats.isDirectory()) throw new ContainerPathError('ENOTDIR', 'rename', to);
        if ((await this.view.list(dst.node)).length > 0) throw new ContainerPathError('ENOTEMPTY', 'rename', to);
      } else if (dst.node.stats.isDirectory()) {
        throw new ContainerPathError('EISDIR', 'rename', to);
      }
    }

    const pureUpperDir = srcIsDir && src.node.layer === 0 && src.node.merge.length === 1;
    if (srcIsDir && !pureUpperDir) {
      if (dst.node) await this.removeEntry(dst.parent, dst.name, dst.node);
      const target = await this.view.resolve(to, false, 'rename');
      await this.copyTreeTo(src.node, target.parent, target.name, to);
      const again = await this.view.resolve(from, false, 'rename');
      if (again.node) await this.removeEntry(again.parent, again.name, again.node);
      return;
    }

    if (src.node.layer !== 0) await this.copyUp(src.node, true);
    const source = await this.view.resolve(from, false, 'rename');
    const target = await this.view.resolve(to, false, 'rename');
    await this.ensureUpperDir(target.parent);
    const sourceLowerHas = await this.view.lowerHas(source.parent, source.name);
    const targetUpper = this.upperPath(target.rel);
    const existing = await lstatOrUndefined(targetUpper);
    if (existing && (existing.isDirectory() || (srcIsDir && isWhiteoutStats(existing)))) {
      // An upper directory here holds only whiteouts (the merged one is empty); rename(2) cannot replace it.
      await fsRm(targetUpper, { recursive: true, force: true });
      this.view.forgetXattrs(target.rel, true);
    }
    await fsRename(this.upperPath(source.rel), targetUpper);
    this.view.moveXattrs(source.rel, target.rel);
    if (sourceLowerHas) await this.makeWhiteout(source.rel);
    // overlayfs marks a directory it moves into a directory that lower layers
    // merge into opaque, whether or not anything below has its new name (it
    // cannot know without a lookup); so does this, for the same upper dir.
    if (srcIsDir && target.parent.merge.length > 1 && !this.view.isUpperOpaque(target.rel)) await this.setOpaque(target.rel);
  }

  // ------------------------------------------------------------ overlay mechanics

  /** Makes sure `node` is in the upper dir (directories: copied up alone; others: with their data). */
  private async ensureUpper(node: ViewNode): Promise<ViewNode> {
    if (node.layer === 0) return node;
    if (node.stats.isDirectory()) await this.ensureUpperDir(node);
    else await this.copyUp(node, true);
    return node;
  }

  /** Makes sure directory `dir` exists in the upper dir, copying it (and its parents) up. */
  private async ensureUpperDir(dir: ViewNode): Promise<void> {
    if (dir.layer === 0) return;
    await this.copyUp(dir, false);
  }

  /**
   * Copies a lower entry into the upper dir at the same path: parents first,
   * then the entry (regular files with their data when `withData`), its
   * owner, mode, xattrs and times. The upper parent's times are restored
   * afterwards, as overlayfs does. Updates `node` to point at the copy.
   */
  private async copyUp(node: ViewNode, withData: boolean): Promise<void> {
    if (node.layer === 0) return;
    const parent = node.parent!;
    await this.ensureUpperDir(parent);
    const parentUpper = this.upperPath(parent.rel);
    const parentTimes = await lstat(parentUpper);
    const { stats } = node;
    const tmp = this.tmpPath();
    try {
      if (stats.isDirectory()) await fsMkdir(tmp, 0o700);
      else if (stats.isFile()) {
        if (withData) await copyFileData(node.hostPath, tmp, stats.size);
        else await (await open(tmp, 'wx', 0o600)).close();
      } else if (stats.isSymbolicLink()) await fsSymlink(await fsReadlink(node.hostPath), tmp);
      else if (stats.isFIFO()) await makeSpecial(tmp, 'fifo', 0, 0);
      else if (stats.isCharacterDevice() || stats.isBlockDevice()) {
        const { major, minor } = deviceNumbers(stats);
        await makeSpecial(tmp, stats.isCharacterDevice() ? 'char' : 'block', major, minor);
      } else throw new ContainerPathError('EPERM', 'copyup', displayPath(node.rel), 'sockets cannot be copied up');
      await lchown(tmp, stats.uid, stats.gid);
      // After chown, which clears setuid/setgid; symlinks have no mode of their own.
      if (!stats.isSymbolicLink()) await fsChmod(tmp, stats.mode & 0o7777);
      const xattrs = copyableXattrs(await this.view.xattrsOf(node.layer, node.rel));
      if (xattrs) await setXattrs([{ path: tmp, xattrs }]);
      await lutimes(tmp, seconds(stats.atimeMs), seconds(stats.mtimeMs));
      await fsRename(tmp, this.upperPath(node.rel));
      if (xattrs) this.view.noteXattrs(node.rel, xattrs);
    } catch (err) {
      await fsRm(tmp, { recursive: true, force: true });
      throw err;
    }
    await lutimes(parentUpper, seconds(parentTimes.atimeMs), seconds(parentTimes.mtimeMs));
    node.layer = 0;
    node.hostPath = this.upperPath(node.rel);
    node.stats = await lstat(node.hostPath);
    if (stats.isDirectory()) node.merge = [0, ...node.merge];
  }

  /**
   * Gets `parent` ready to receive a new entry `name`: copied up, and any
   * whiteout at the name removed now (`removeWhiteout`, for entries created in
   * place) or left for {@link placeOverWhiteout} to replace. Resolves to
   * whether there was one (a new directory there must then be opaque).
   */
  private async prepareCreate(parent: ViewNode, name: string, path: string, removeWhiteout = true): Promise<boolean> {
    if (!parent.stats.isDirectory()) throw new ContainerPathError('ENOTDIR', 'open', path);
    await this.ensureUpperDir(parent);
    const upper = this.upperPath(childRel(parent.rel, name));
    const existing = await lstatOrUndefined(upper);
    if (existing === undefined) return false;
    if (!isWhiteoutStats(existing)) throw new ContainerPathError('EEXIST', 'open', path);
    if (removeWhiteout) await unlink(upper);
    return true;
  }

  /** Renames a prepared tmp entry to `rel` in the upper dir, replacing a whiteout there. */
  private async placeOverWhiteout(tmp: string, rel: string): Promise<void> {
    const upper = this.upperPath(rel);
    const existing = await lstatOrUndefined(upper);
    if (existing && isWhiteoutStats(existing)) await unlink(upper);
    else if (existing) throw new ContainerPathError('EEXIST', 'rename', displayPath(rel));
    await fsRename(tmp, upper);
  }

  /** Deletes an entry from the merged view: its upper instance goes, and a whiteout hides any lower one. */
  private async removeEntry(parent: ViewNode, name: string, node: ViewNode): Promise<void> {
    await this.ensureUpperDir(parent);
    const rel = childRel(parent.rel, name);
    const lowerHas = await this.view.lowerHas(parent, name);
    if (node.layer === 0) {
      await fsRm(this.upperPath(rel), { recursive: true, force: true });
      this.view.forgetXattrs(rel, true);
    }
    if (lowerHas) await this.makeWhiteout(rel);
  }

  /** Puts a whiteout at `rel` in the upper dir (a hard link to the container's whiteout inode). */
  private async makeWhiteout(rel: string): Promise<void> {
    const upper = this.upperPath(rel);
    const existing = await lstatOrUndefined(upper);
    if (existing && isWhiteoutStats(existing)) return;
    if (existing) {
      await fsRm(upper, { recursive: true, force: true });
      this.view.forgetXattrs(rel, true);
    }
    await this.ensureWhiteoutInode();
    try {
      await fsLink(this.dirs.whiteoutPath, upper);
    } catch (err) {
      if (errnoOf(err) !== 'EMLINK') throw err;
      // The shared inode is at the file system's link limit: start a new one.
      await unlink(this.dirs.whiteoutPath);
      this.whiteoutReady = undefined;
      await this.ensureWhiteoutInode();
      await fsLink(this.dirs.whiteoutPath, upper);
    }
  }

  private ensureWhiteoutInode(): Promise<void> {
    this.whiteoutReady ??= (async () => {
      const existing = await lstatOrUndefined(this.dirs.whiteoutPath);
      if (existing) {
        if (isWhiteoutStats(existing)) return;
        throw new StrataError('CONTAINER_CORRUPT', `${this.dirs.whiteoutPath} should be a 0/0 character device (the container's whiteout) but is not`);
      }
      const tmp = this.tmpPath();
      await runTool('mknod', ['-m', '000', '--', tmp, 'c', '0', '0'], 'cannot create the whiteout device');
      try {
        await fsRename(tmp, this.dirs.whiteoutPath);
      } catch (err) {
        await unlink(tmp).catch(() => undefined);
        throw err;
      }
    })();
    this.whiteoutReady.catch(() => (this.whiteoutReady = undefined));
    return this.whiteoutReady;
  }

  private async setOpaque(rel: string): Promise<void> {
    const xattrs = { [this.view.opaqueXattr]: Buffer.from('y') };
    await setXattrs([{ path: this.upperPath(rel), xattrs }]);
    this.view.noteXattrs(rel, xattrs);
  }

  /**
   * Copies the merged subtree at `source` to a new directory `name` in
   * `parent`, leaving the upper dir as `mv SRC DEST` leaves it on an overlay
   * mount, where the rename fails with EXDEV and mv copies instead: owners,
   * modes, xattrs (overlayfs shows mv none of its own) and times kept, hard
   * links within the subtree kept; the new directory opaque only where it
   * replaces a whiteout. Assembled in the tmp dir, then renamed into place.
   * (`mv -T`, for one, renames the entries one by one instead, which breaks
   * hard links between lower files: tools differ, and this follows plain mv.)
   */
  private async copyTreeTo(source: ViewNode, parent: ViewNode, name: string, path: string): Promise<void> {
    const overWhiteout = await this.prepareCreate(parent, name, path, false);
    const tmp = this.tmpPath();
    const xattrRecords: XattrRecord[] = [];
    const upperXattrs: [string, Record<string, Buffer>][] = [];
    const linked = new Map<string, string>();
    const dirTimes: [string, Stats][] = [];
    const rel = childRel(parent.rel, name);

    const copyEntry = async (node: ViewNode, dest: string, destRel: string): Promise<void> => {
      const { stats } = node;
      if (stats.isDirectory()) {
        await fsMkdir(dest, 0o700);
        for (const childName of await this.view.list(node)) {
          const child = await this.view.child(node, childName);
          if (child) await copyEntry(child, join(dest, childName), childRel(destRel, childName));
        }
        dirTimes.push([dest, stats]);
      } else {
        // Hard links within the subtree are kept, as mv's copy keeps them.
        const inode = `${stats.dev}:${stats.ino}`;
        const first = stats.nlink > 1 ? linked.get(inode) : undefined;
        if (first !== undefined) {
          await fsLink(first, dest);
          return;
        }
        if (stats.nlink > 1) linked.set(inode, dest);
        if (stats.isFile()) await copyFileData(node.hostPath, dest, stats.size);
        else if (stats.isSymbolicLink()) await fsSymlink(await fsReadlink(node.hostPath), dest);
        else if (stats.isFIFO()) await makeSpecial(dest, 'fifo', 0, 0);
        else if (stats.isCharacterDevice() || stats.isBlockDevice()) {
          const { major, minor } = deviceNumbers(stats);
          await makeSpecial(dest, stats.isCharacterDevice() ? 'char' : 'block', major, minor);
        } else return; // sockets are not copied, as cp -a and Docker's archive skip them
      }
      await lchown(dest, stats.uid, stats.gid);
      if (!stats.isSymbolicLink()) await fsChmod(dest, stats.mode & 0o7777);
      const xattrs = copyableXattrs(await this.view.xattrsOf(node.layer, node.rel));
      if (xattrs) {
        xattrRecords.push({ path: dest, xattrs });
        upperXattrs.push([destRel, xattrs]);
      }
      if (!stats.isDirectory()) await lutimes(dest, seconds(stats.atimeMs), seconds(stats.mtimeMs));
    };

    try {
      await copyEntry(source, tmp, rel);
      if (overWhiteout) {
        const opaque = { [this.view.opaqueXattr]: Buffer.from('y') };
        const top = xattrRecords.find((r) => r.path === tmp);
        if (top) Object.assign(top.xattrs, opaque);
        else xattrRecords.push({ path: tmp, xattrs: opaque });
        upperXattrs.push([rel, opaque]);
      }
      if (xattrRecords.length > 0) await setXattrs(xattrRecords);
      // Children were all created before their directory's times are set (dirTimes is in post-order).
      for (const [dir, stats] of dirTimes) await lutimes(dir, seconds(stats.atimeMs), seconds(stats.mtimeMs));
      await this.placeOverWhiteout(tmp, rel);
    } catch (err) {
      await fsRm(tmp, { recursive: true, force: true });
      throw err;
    }
    for (const [key, xattrs] of upperXattrs) this.view.noteXattrs(key, xattrs);
  }
}

async function writeAll(handle: FileHandle, data: Buffer, position: number | null): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const { bytesWritten } = await handle.write(data, offset, data.length - offset, position === null ? null : position + offset);
    offset += bytesWritten;
  }
}

/** Removes copy-up leftovers of processes that died mid-operation. */
async function cleanTmp(dir: string): Promise<void> {
  for (const name of await readdirOrEmpty(dir)) {
    const pid = /^\.tmp-cu-(\d+)-[a-f0-9]+$/.exec(name)?.[1];
    if (pid === undefined || processIsAlive(Number(pid))) continue;
    await fsRm(join(dir, name), { recursive: true, force: true });
  }
}
