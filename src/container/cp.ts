/**
 * `docker cp`, both ways, with Docker's rules and messages (checked against
 * Docker 20.10):
 *
 * Out of a container ({@link copyFromContainer}, `docker cp CTR:SRC -`): a tar
 * whose entries are named after SRC's last component (`app/`, `app/app.py`);
 * SRC ending in `/.` gives the directory's contents instead. Intermediate
 * symlinks are followed inside the container's root; a final symlink is
 * archived as a symlink unless `followLink` (`-L`), which archives its target.
 *
 * Into a container ({@link copyToContainer}): from a tar stream (`docker cp -
 * CTR:DEST`, DEST must be a directory) or from a host path, where Docker's
 * client decides where the copy lands:
 * - DEST is an existing directory: copied into it;
 * - DEST is an existing file: a file source replaces it, a directory source
 *   fails ("cannot copy directory");
 * - DEST does not exist: created with the source's content under DEST's name,
 *   provided its parent exists ("Could not find the file PARENT in container
 *   CTR" otherwise); a DEST ending in `/` must then be a directory, which a
 *   file source cannot make ("no such directory");
 * - SRC ending in `/.` copies the directory's contents.
 * Extraction never replaces a directory with a non-directory or the reverse
 * (Docker's `cannot overwrite directory ... with non-directory ...`), keeps
 * the archive's owners (or, with `copyUIDGID` and a container User, makes
 * everything that user's, as `docker cp -a` does), modes, times and xattrs,
 * and writes through {@link ContainerFs}, so copy-ups, whiteouts and opaque
 * directories are exactly what overlayfs would make. Every path is resolved
 * inside the container's root: a symlink in the container can never send a
 * write outside it.
 *
 * Differences from Docker: the `/.` form omits the `./` entry for the
 * directory itself (Docker skips that entry when extracting into an existing
 * directory anyway); archives are deterministic (Docker's are in directory
 * order).
 */
import { constants as fsConstants, createReadStream, type Stats } from 'node:fs';
import { lchown, lstat, lutimes, open, readlink, realpath, symlink } from 'node:fs/promises';
import { basename, dirname, join, resolve as hostResolve } from 'node:path';
import { Readable, finished } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StrataError } from '../content/errors.js';
import type { EntryHeader } from '../tar/entry.js';
import { setXattrs, type XattrRecord } from '../tar/extract.js';
import { readTar } from '../tar/read.js';
import { statsToHeader, walkTree } from '../tar/walk.js';
import { packEntries, sourceWithContent, type PackSource } from '../tar/write.js';
import { ContainerStateError, type Container } from './container-store.js';
import type { Pauser } from './commit.js';
import { entryFor, walkMerged } from './export.js';
import { ContainerFs } from './fs.js';
import { ContainerPathError, OverlayView, displayPath, pathComponents, type Resolved } from './view.js';

/** Why a copy cannot be done, in Docker's words. */
export class CopyError extends StrataError {
  constructor(code: string, message: string) {
    super(code, message);
  }
}

/** Docker's `ContainerPathStat`: what `docker cp` learns about a container path before copying. */
export interface ContainerPathStat {
  name: string;
  size: number;
  /** Mode bits with the file type, as Go's os.FileMode would not: plain st_mode. */
  mode: number;
  mtime: Date;
  /** For a symlink: its target fully resolved inside the container (an absolute container path). */
  linkTarget: string;
  isDirectory: boolean;
  isSymbolicLink: boolean;
}

/** Pausing a running container for the copy, as Docker does (see {@link CopyToOptions.pauser}). */
export interface PauseOptions {
  /**
   * How to freeze a running container's processes while its files are read
   * or written (the runtime's). Docker pauses a running container for `cp`,
   * since a process swapping a path component for a symlink at the right
   * moment could otherwise send the copy outside the container
   * (CVE-2018-15664). A running container without a pauser is refused
   * unless `pause: false`.
   */
  pauser?: Pauser;
  /** Set to false to copy from/to a running container without pausing it. */
  pause?: boolean;
}

/** Options of {@link copyFromContainer}. */
export interface CopyFromOptions extends PauseOptions {
  /** `-L`: when SRC is a symlink, archive what it points to. */
  followLink?: boolean;
}

/** Where {@link copyToContainer} reads from. */
export type CopySource = NodeJS.ReadableStream | { hostPath: string };

/** Options of {@link copyToContainer}. */
export interface CopyToOptions extends PauseOptions {
  /** With a host path: `-L`, copy what a symlink source points to. */
  followLink?: boolean;
  /** `-a`: make everything owned by the container's User (when it has one) instead of keeping the archive's owners. */
  copyUIDGID?: boolean;
}

function notFound(path: string, container: Container): CopyError {
  return new CopyError('ENOENT', `Could not find the file ${path} in container ${container.name}`);
}

/** Lexically cleans a container path (Go's path.Clean, rooted). */
function cleanPath(path: string): string {
  const out: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return `/${out.join('/')}`;
}

/** Whether a path names "the directory itself" (`…/.` or `.`). */
function specifiesCurrentDir(path: string): boolean {
  return path === '.' || path.endsWith('/.');
}

function assertsDirectory(path: string): boolean {
  return path.endsWith('/') || specifiesCurrentDir(path);
}

async function openView(container: Container): Promise<OverlayView> {
  return OverlayView.open([container.upperDir, ...(await container.mountLowerDirs())], {
    writableTop: true,
    overlayXattrs: container.store.snapshotter.overlayXattrs,
  });
}

async function resolveOrNotFound(view: OverlayView, container: Container, path: string, followFinal: boolean): Promise<Resolved & { node: NonNullable<Resolved['node']> }> {
  let resolved: Resolved;
  try {
    resolved = await view.resolve(path, followFinal, 'lstat');
  } catch (err) {
    if (err instanceof ContainerPathError && err.code === 'ENOENT') throw notFound(path, container);
    throw err;
  }
  if (!resolved.node) throw notFound(path, container);
  return resolved as Resolved & { node: NonNullable<Resolved['node']> };
}

/** Stats a container path the way Docker's `HEAD /containers/ID/archive` does (a final symlink is reported, with its resolved target). */
export async function statContainerPath(container: Container, path: string): Promise<ContainerPathStat> {
  const view = await openView(container);
  const followFinal = assertsDirectory(path);
  const { node } = await resolveOrNotFound(view, container, path, followFinal);
  let linkTarget = '';
  if (node.stats.isSymbolicLink()) {
    const target = await view.resolve(path, true, 'stat').catch(() => undefined);
    linkTarget = target ? displayPath(target.rel) : '';
  }
  const components = pathComponents(cleanPath(path));
  return {
    name: components.length > 0 ? components[components.length - 1]! : '/',
    size: node.stats.size,
    mode: node.stats.mode,
    mtime: node.stats.mtime,
    linkTarget,
    isDirectory: node.stats.isDirectory(),
    isSymbolicLink: node.stats.isSymbolicLink(),
  };
}

/**
 * `docker cp CONTAINER:SRC -`: resolves SRC (rejecting, before any data, with
 * Docker's "Could not find the file" for a missing one) and returns the tar.
 */
export async function copyFromContainer(container: Container, srcPath: string, opts: CopyFromOptions = {}): Promise<Readable> {
  const resume = await pauseIfRunning(container, opts);
  try {
    const stream = await archivePath(container, srcPath, opts);
    finished(stream, () => void resume());
    return stream;
  } catch (err) {
    await resume();
    throw err;
  }
}

async function archivePath(container: Container, srcPath: string, opts: CopyFromOptions): Promise<Readable> {
  const view = await openView(container);
  let path = srcPath;
  if (opts.followLink) {
    const first = await resolveOrNotFound(view, container, path, false);
    if (first.node.stats.isSymbolicLink()) {
      // The client asks the daemon for the link's fully resolved target, then archives that.
      const target = await view.resolve(path, true, 'stat');
      path = displayPath(target.rel);
    }
  }
  const contents = specifiesCurrentDir(path) || cleanPath(path) === '/';
  const followFinal = contents || path.endsWith('/');
  const { node } = await resolveOrNotFound(view, container, path, followFinal);
  if (followFinal && !node.stats.isDirectory()) throw new CopyError('ENOTDIR', `lstat ${path}: not a directory`);

  async function* entries(): AsyncGenerator<PackSource> {
    const links = new Map<string, string>();
    if (contents) {
      yield* walkMerged(view, node, '', links);
      return;
    }
    const components = pathComponents(cleanPath(path));
    const base = components[components.length - 1]!;
    const top = await entryFor(view, node, base, links);
    if (!top) return;
    yield top;
    if (node.stats.isDirectory()) yield* walkMerged(view, node, base, links);
  }
  return packEntries(entries());
}

/** One entry to extract: its path relative to the extraction directory ('.' is that directory itself). */
interface CopyEntry {
  header: EntryHeader;
  content?: () => NodeJS.ReadableStream | Buffer;
  /** A host file holding a 'file' entry's content, when `content` is not given. */
  sourcePath?: string;
}

/**
 * `docker cp SRC CONTAINER:DEST` (SRC a host path) or `docker cp -
 * CONTAINER:DEST` (a tar stream). Holds the container's lock while writing.
 */
export async function copyToContainer(container: Container, destPath: string, source: CopySource, opts: CopyToOptions = {}): Promise<void> {
  const resume = await pauseIfRunning(container, opts);
  try {
    await copyInto(container, destPath, source, opts);
  } finally {
    await resume();
  }
}

/** Pauses a running container (see {@link PauseOptions}); resolves to the function that resumes it. */
async function pauseIfRunning(container: Container, opts: PauseOptions): Promise<() => Promise<void>> {
  await container.refresh();
  if (!container.isRunning || opts.pause === false) return async () => undefined;
  if (!opts.pauser) {
    throw new ContainerStateError(
      `cannot copy files of running container ${container.id.slice(0, 12)} without pausing it: pass the runtime's pauser, or pause: false to copy while its processes run`,
    );
  }
  const { pauser } = opts;
  await pauser.pause();
  let resumed: Promise<void> | undefined;
  return () => (resumed ??= pauser.resume());
}

async function copyInto(container: Container, destPath: string, source: CopySource, opts: CopyToOptions): Promise<void> {
  await container.withLock(async () => {
    const fsys = await ContainerFs.open(container);
    const owner = opts.copyUIDGID ? await containerUser(fsys, container) : undefined;

    if (!('hostPath' in source)) {
      let resolved: Resolved | undefined;
      try {
        resolved = await fsys.locate(destPath, true, 'stat');
      } catch (err) {
        if (!(err instanceof ContainerPathError)) throw err;
      }
      if (!resolved?.node || !resolved.node.stats.isDirectory()) {
        throw new CopyError('NOT_A_DIRECTORY', `destination "${container.name}:${destPath}" must be a directory`);
      }
      await extract(fsys, displayPath(resolved.rel), tarEntries(source), owner);
      return;
    }

    const src = await hostSource(source.hostPath, opts.followLink ?? false);
    // The destination as the client sees it: a symlink is replaced by its (resolved) target.
    let dst = destPath;
    let dstStats = await statOrUndefined(fsys, dst);
    if (dstStats?.isSymbolicLink()) {
      dst = displayPath((await fsys.locate(dst, true, 'stat')).rel);
      dstStats = await statOrUndefined(fsys, dst);
    }
    const [dstDir, dstBase] = splitPathDirEntry(dst);
    const srcBase = src.rebaseName ?? splitPathDirEntry(src.path)[1];
    let extractDir: string;
    let topName: string;
    if (dstStats?.isDirectory()) {
      extractDir = dst;
      topName = srcBase;
    } else if (dstStats && src.isDir) {
      throw new CopyError('CANNOT_COPY_DIR', 'cannot copy directory');
    } else if (dstStats || src.isDir) {
      extractDir = dstDir;
      topName = dstBase;
    } else if (assertsDirectory(dst)) {
      throw new CopyError('NO_SUCH_DIRECTORY', 'no such directory');
    } else {
      extractDir = dstDir;
      topName = dstBase;
    }

    let point: Resolved;
    try {
      point = await fsys.locate(extractDir, true, 'stat');
    } catch (err) {
      if (err instanceof ContainerPathError && err.code === 'ENOTDIR') throw new CopyError('EXTRACTION_POINT', 'extraction point is not a directory');
      if (err instanceof ContainerPathError && err.code === 'ENOENT') throw notFound(cleanPath(extractDir), container);
      throw err;
    }
    if (!point.node) throw notFound(cleanPath(extractDir), container);
    if (!point.node.stats.isDirectory()) throw new CopyError('EXTRACTION_POINT', 'extraction point is not a directory');
    await extract(fsys, displayPath(point.rel), hostEntries(src, topName), owner);
  });
}

async function statOrUndefined(fsys: ContainerFs, path: string): Promise<Stats | undefined> {
  try {
    const { node } = await fsys.locate(path, assertsDirectory(path), 'lstat');
    // A trailing '/' on a non-directory is ENOTDIR, as lstat(2) says: the client then takes it as missing.
    if (node && assertsDirectory(path) && !node.stats.isDirectory()) return undefined;
    return node?.stats;
  } catch (err) {
    if (err instanceof ContainerPathError && (err.code === 'ENOENT' || err.code === 'ENOTDIR')) return undefined;
    throw err;
  }
}

/** Go's archive.SplitPathDirEntry: dir and base of a path, keeping a final `.`. */
function splitPathDirEntry(path: string): [string, string] {
  let cleaned = cleanPath(path);
  if (specifiesCurrentDir(path)) cleaned = cleaned === '/' ? '/.' : `${cleaned}/.`;
  const at = cleaned.lastIndexOf('/');
  const dir = at <= 0 ? '/' : cleaned.slice(0, at);
  return [dir, cleaned.slice(at + 1) || '/'];
}

interface HostSource {
  /** The path archived (symlinks resolved as Docker's client resolves them). */
  path: string;
  isDir: boolean;
  /** Name the entries take instead of the resolved path's base (a followed symlink keeps its own name). */
  rebaseName?: string;
}

/** Docker's CopyInfoSourcePath for a host path. */
async function hostSource(raw: string, followLink: boolean): Promise<HostSource> {
  const absolute = hostResolve(raw);
  const trailing = raw.endsWith('/') ? '/' : specifiesCurrentDir(raw) ? '/.' : '';
  let path: string;
  let rebaseName: string | undefined;
  try {
    if (followLink) {
      path = (await realpath(absolute)) + trailing;
      if (basename(absolute) !== basename(path.replace(/\/\.?$/, ''))) rebaseName = basename(absolute);
    } else {
      path = `${await realpath(dirname(absolute))}/${basename(absolute)}${trailing}`;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new CopyError('ENOENT', `lstat ${raw}: no such file or directory`);
    throw err;
  }
  let stats;
  try {
    stats = await lstat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CopyError('ENOENT', `lstat ${raw}: no such file or directory`);
    if (code === 'ENOTDIR') throw new CopyError('ENOTDIR', `lstat ${raw}: not a directory`);
    throw err;
  }
  const source: HostSource = { path, isDir: stats.isDirectory() };
  if (rebaseName !== undefined) source.rebaseName = rebaseName;
  return source;
}

/** The entries of a host source, the top one named `topName` ('.' for a `/.` source copied into an existing directory). */
async function* hostEntries(src: HostSource, topName: string): AsyncGenerator<CopyEntry> {
  const contents = specifiesCurrentDir(src.path);
  // A trailing '/' on a symlink to a directory means the directory: walk what it points to.
  const root = contents || src.path.endsWith('/') ? await realpath(src.path) : src.path;
  const stats = await lstat(root);
  const top = statsToHeader(topName, stats, stats.isSymbolicLink() ? await readlink(root) : undefined);
  if (!top) return;
  yield sourceWithContent({ header: top, sourcePath: root });
  if (!stats.isDirectory()) return;
  const prefix = topName === '.' ? '' : `${topName}/`;
  for await (const entry of walkTree(root, { xattrs: true })) {
    const header: EntryHeader = { ...entry.header, path: prefix + entry.header.path };
    if (header.type === 'hardlink') header.linkname = prefix + header.linkname!;
    yield sourceWithContent({ header, sourcePath: entry.sourcePath });
  }
}

async function* tarEntries(stream: NodeJS.ReadableStream): AsyncGenerator<CopyEntry> {
  for await (const entry of readTar(stream)) {
    yield { header: entry.header, content: () => entry.body };
  }
}

/** How many files a bulk extraction writes at once (they are independent; each is a handful of syscalls). */
const PARALLEL_FILES = 16;

/**
 * Writes entries under `dir` (a resolved container directory) the way
 * Docker's untar does with NoOverwriteDirNonDir: missing parents are made
 * (0755, root), an existing directory takes a directory entry's attributes,
 * anything else there is replaced, except that a directory and a
 * non-directory never replace each other. Directory times are set last.
 *
 * Entries go through {@link ContainerFs}, except inside directories this
 * extraction made itself that nothing in the image merges into: there the
 * upper dir alone is the truth, nothing can be in the way, and files and
 * symlinks are written straight into it (final component never followed),
 * several files at a time, with their xattrs set in one batch at the end.
 */
async function extract(fsys: ContainerFs, dir: string, entries: AsyncIterable<CopyEntry>, owner: { uid: number; gid: number } | undefined): Promise<void> {
  const dirTimes: [string, number][] = [];
  const madeParents = new Set<string>();
  // Directories this extraction created, and what it put in them: nothing else can be there.
  const fresh = new Map<string, Set<string>>();
  // Of those, the ones only the upper dir has: container path → host path.
  const direct = new Map<string, string>();
  const directXattrs: XattrRecord[] = [];
  const directXattrPaths: [string, Record<string, Buffer>][] = [];
  const inflight = new Set<Promise<void>>();
  let failure: unknown;
  const settle = async (): Promise<void> => {
    await Promise.allSettled([...inflight]);
    if (failure !== undefined) throw failure;
  };
  const at = (rel: string): string => (dir === '/' ? `/${rel}` : `${dir}/${rel}`);
  const bodyOf = (entry: CopyEntry): Readable => {
    const { header } = entry;
    const body = entry.content ? entry.content() : entry.sourcePath !== undefined && header.size > 0 ? createReadStream(entry.sourcePath, { start: 0, end: header.size - 1 }) : undefined;
    return body === undefined ? Readable.from([]) : body instanceof Uint8Array ? Readable.from([body]) : (body as Readable);
  };

  for await (const entry of entries) {
    const { header } = entry;
    if (header.path === '.') continue;
    if (failure !== undefined) break;
    const path = at(header.path);
    const slash = path.lastIndexOf('/');
    const parent = path.slice(0, slash) || '/';
    const name = path.slice(slash + 1);
    const uid = owner?.uid ?? header.uid;
    const gid = owner?.gid ?? header.gid;
    const siblings = fresh.get(parent);
    const hostParent = direct.get(parent);

    if (hostParent !== undefined && siblings !== undefined && !siblings.has(name) && (header.type === 'file' || header.type === 'symlink')) {
      siblings.add(name);
      const hostPath = join(hostParent, name);
      const xattrs = header.xattrs && Object.keys(header.xattrs).length > 0 ? header.xattrs : undefined;
      if (xattrs) {
        directXattrs.push({ path: hostPath, xattrs });
        directXattrPaths.push([path.slice(1), xattrs]);
      }
      if (header.type === 'symlink') {
        await symlink(header.linkname!, hostPath);
        await lchown(hostPath, uid, gid);
        await lutimes(hostPath, header.mtime, header.mtime);
        continue;
      }
      const data = bodyOf(entry);
      // A tar stream must be read in order: its files are written one by one. Host files can go several at once.
      const task = writeHostFile(hostPath, data, header, uid, gid).catch((err: unknown) => {
        failure ??= err;
      });
      inflight.add(task);
      void task.finally(() => inflight.delete(task));
      if (entry.content !== undefined || inflight.size >= PARALLEL_FILES) await Promise.race(inflight);
      continue;
    }
    await settle();

    if (!madeParents.has(parent)) {
      await fsys.mkdir(parent, { recursive: true, mode: 0o755, uid: 0, gid: 0 });
      madeParents.add(parent);
    }
    let existing: Stats | undefined;
    if (!siblings || siblings.has(name)) {
      try {
        existing = await fsys.lstat(path);
      } catch (err) {
        if (!(err instanceof ContainerPathError && (err.code === 'ENOENT' || err.code === 'ENOTDIR'))) throw err;
      }
    }
    siblings?.add(name);
    if (existing) {
      if (existing.isDirectory() && header.type !== 'directory') {
        throw new CopyError('CANNOT_OVERWRITE', `cannot overwrite directory "${path}" with non-directory "${header.path}"`);
      }
      if (!existing.isDirectory() && header.type === 'directory') {
        throw new CopyError('CANNOT_OVERWRITE', `cannot overwrite non-directory "${path}" with directory "${header.path}"`);
      }
      if (!existing.isDirectory()) await fsys.rm(path);
    }
    switch (header.type) {
      case 'directory':
        if (!existing) {
          await fsys.mkdir(path, { mode: header.mode, uid, gid });
          fresh.set(path, new Set());
          const { node } = await fsys.locate(path, false);
          if (node && node.layer === 0 && node.merge.length === 1) direct.set(path, node.hostPath);
        } else {
          await fsys.lchown(path, uid, gid);
          await fsys.chmod(path, header.mode);
        }
        madeParents.add(path);
        dirTimes.push([path, header.mtime]);
        break;
      case 'file':
        await pipeline(bodyOf(entry), fsys.createWriteStream(path, { flags: 'wx', mode: header.mode, uid, gid, mtime: header.mtime }));
        break;
      case 'symlink':
        await fsys.symlink(header.linkname!, path, { uid, gid });
        break;
      case 'hardlink':
        await fsys.link(at(header.linkname!), path);
        break;
      case 'fifo':
      case 'char':
      case 'block':
        await fsys.mknod(path, { type: header.type, major: header.devmajor ?? 0, minor: header.devminor ?? 0, mode: header.mode, uid, gid });
        break;
    }
    if (header.type === 'hardlink') continue;
    if (header.xattrs && Object.keys(header.xattrs).length > 0) await fsys.setXattrs(path, header.xattrs);
    if (header.type !== 'directory' && header.type !== 'file') await fsys.lutimes(path, header.mtime, header.mtime);
  }
  await settle();
  if (directXattrs.length > 0) {
    await setXattrs(directXattrs);
    for (const [rel, xattrs] of directXattrPaths) fsys.view.noteXattrs(rel, xattrs);
  }
  // Deepest first: setting a child's times would otherwise change its parent's again.
  dirTimes.sort((a, b) => b[0].split('/').length - a[0].split('/').length);
  for (const [path, mtime] of dirTimes) await fsys.lutimes(path, mtime, mtime);
}

/** Creates a new file in the upper dir (never through a symlink, never over something), with owner, mode, content and times. */
async function writeHostFile(hostPath: string, data: Readable, header: EntryHeader, uid: number, gid: number): Promise<void> {
  const handle = await open(hostPath, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600);
  try {
    await handle.chown(uid, gid);
    // After chown, which clears setuid/setgid.
    await handle.chmod(header.mode);
    for await (const chunk of data as AsyncIterable<Buffer>) {
      let offset = 0;
      while (offset < chunk.length) offset += (await handle.write(chunk, offset)).bytesWritten;
    }
    await handle.utimes(header.mtime, header.mtime);
  } finally {
    await handle.close();
  }
}

/**
 * The uid/gid of the container's configured User, looked up in its own
 * /etc/passwd and /etc/group (through the merged view); undefined when the
 * container has no User, in which case `docker cp -a` keeps the archive's
 * owners too.
 */
async function containerUser(fsys: ContainerFs, container: Container): Promise<{ uid: number; gid: number } | undefined> {
  const spec = container.record.Config.User ?? '';
  if (spec === '') return undefined;
  const [userPart, groupPart] = spec.split(':', 2) as [string, string | undefined];
  const readTable = async (path: string): Promise<string[][]> => {
    try {
      return (await fsys.readFile(path, 'utf8')).split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => l.split(':'));
    } catch (err) {
      if (err instanceof ContainerPathError) return [];
      throw err;
    }
  };
  let uid: number;
  let gid: number | undefined;
  if (/^\d+$/.test(userPart)) {
    uid = Number(userPart);
    const row = (await readTable('/etc/passwd')).find((r) => r[2] === userPart);
    if (row) gid = Number(row[3]);
  } else {
    const row = (await readTable('/etc/passwd')).find((r) => r[0] === userPart);
    if (!row) throw new CopyError('USER_NOT_FOUND', `unable to find user ${userPart}: no matching entries in passwd file`);
    uid = Number(row[2]);
    gid = Number(row[3]);
  }
  if (groupPart !== undefined && groupPart !== '') {
    if (/^\d+$/.test(groupPart)) gid = Number(groupPart);
    else {
      const row = (await readTable('/etc/group')).find((r) => r[0] === groupPart);
      if (!row) throw new CopyError('GROUP_NOT_FOUND', `unable to find group ${groupPart}: no matching entries in group file`);
      gid = Number(row[2]);
    }
  }
  return { uid, gid: gid ?? 0 };
}
