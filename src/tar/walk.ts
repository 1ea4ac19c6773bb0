/**
 * Deterministic directory walk: the order, the headers and the hardlink
 * detection that make `tarFromTree` produce the same bytes for the same tree,
 * whatever order the file system lists inodes in.
 */
import { spawn } from 'node:child_process';
import { lstatSync, readdirSync, readlinkSync, type BigIntStats, type Stats } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { EntryHeader, EntryType } from './entry.js';
import { Slicer } from '../util/slice.js';

/** Options of {@link walkTree}. */
export interface WalkOptions {
  /**
   * Record extended attributes (see {@link isArchivableXattr}). Read with one
   * `getfattr` run over the whole tree; when `getfattr` is not installed, no
   * xattrs are recorded and no error is raised.
   */
  xattrs?: boolean;
  /**
   * Called with each relative path; returning false leaves the entry out and,
   * for a directory, its whole subtree.
   */
  filter?: (relPath: string, isDir: boolean) => boolean;
}

/** One entry found by {@link walkTree}. */
export interface WalkedEntry {
  header: EntryHeader;
  /** Absolute path of the entry on disk (where its content is read from). */
  sourcePath: string;
}

interface Frame {
  /** The directory's path with a trailing '/', ready to have a name appended. */
  dirPrefix: string;
  rel: string;
  names: Buffer[];
  next: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Longest stretch of synchronous file system work (in ms) before the walk lets
 * the event loop run. Short enough that timers, I/O callbacks and whoever
 * consumes the walk (a compressor feeding its threads, say) are not starved.
 * @internal shared with the tar writer.
 */
export const SYNC_SLICE_MS = 1;

/**
 * Walks `root` depth-first, parents before children, siblings in UTF-8 byte
 * order of their names, using lstat (symlinks are entries, never followed).
 * The root itself is not an entry. Sockets are skipped, as Docker does. A
 * non-directory with more than one link whose inode was already emitted
 * becomes a `hardlink` entry pointing at the first path seen, as Docker does.
 * Entries that vanish between listing and lstat are skipped (the tree may be
 * live); other I/O errors are thrown. Memory stays flat apart from the sorted
 * listings of the directories on the current path and the inode table of
 * multiply-linked files.
 *
 * The listing, lstat and readlink calls are synchronous, made in slices of at
 * most about {@link SYNC_SLICE_MS} ms between turns of the event loop: on a
 * tree in the page cache each takes a microsecond or two, against tens of
 * microseconds for a round trip through the libuv thread pool (which a layer
 * build also needs for compression). On a slow or remote file system one call
 * can hold the event loop for as long as that file system takes to answer.
 */
export async function* walkTree(root: string, opts: WalkOptions = {}): AsyncGenerator<WalkedEntry> {
  const entries = await openTreeWalk(root, opts);
  const slicer = new Slicer(SYNC_SLICE_MS);
  for (const entry of entries) {
    yield entry;
    if (slicer.due()) await slicer.pause();
  }
}

/**
 * Checks the root and reads its xattrs (the asynchronous part of a walk), then
 * returns the walk itself as a synchronous iterator: {@link walkTree}'s
 * entries, for callers that pace the synchronous work themselves.
 * @internal used by tarFromTree.
 */
export async function openTreeWalk(root: string, opts: WalkOptions = {}): Promise<Generator<WalkedEntry, void, undefined>> {
  const absRoot = resolve(root);
  const rootStats = lstatSync(absRoot);
  if (!rootStats.isDirectory()) throw new Error(`walkTree: ${absRoot} is not a directory`);
  const xattrsByPath = opts.xattrs ? await readTreeXattrs(absRoot) : undefined;
  return walkEntries(absRoot, opts.filter, xattrsByPath);
}

function* walkEntries(
  absRoot: string,
  filter: WalkOptions['filter'],
  xattrsByPath: Map<string, Record<string, Buffer>> | undefined,
): Generator<WalkedEntry, void, undefined> {
  const firstPathOfInode = new Map<string, string>();
  const stack: Frame[] = [];
  const rootNames = listSorted(absRoot);
  if (rootNames) stack.push({ dirPrefix: withSlash(absRoot), rel: '', names: rootNames, next: 0 });

  while (stack.length > 0) {
    const frame = stack[stack.length - 1]!;
    if (frame.next >= frame.names.length) {
      stack.pop();
      continue;
    }
    const rawName = frame.names[frame.next++]!;
    let name: string;
    try {
      name = utf8.decode(rawName);
    } catch {
      throw new Error(`walkTree: file name is not valid UTF-8 and cannot be archived: ${join(frame.dirPrefix, rawName.toString('latin1'))}`);
    }
    const rel = frame.rel === '' ? name : `${frame.rel}/${name}`;
    const sourcePath = frame.dirPrefix + name;

    let stats: BigIntStats | undefined;
    try {
      stats = lstatSync(sourcePath, { bigint: true, throwIfNoEntry: false });
    } catch (err) {
      if (isNotFound(err)) continue;
      throw err;
    }
    if (stats === undefined) continue;
    const isDir = stats.isDirectory();
    if (filter && !filter(rel, isDir)) continue;
    if (stats.isSocket()) continue;

    let linkname: string | undefined;
    if (stats.isSymbolicLink()) {
      try {
        linkname = readlinkSync(sourcePath);
      } catch (err) {
        if (isNotFound(err)) continue;
        throw err;
      }
    }
    const header = statsToHeader(rel, stats, linkname);
    if (!header) continue;

    if (!isDir && stats.nlink > 1n) {
      const inode = `${stats.dev}:${stats.ino}`;
      const first = firstPathOfInode.get(inode);
      if (first === undefined) {
        firstPathOfInode.set(inode, rel);
      } else {
        header.type = 'hardlink';
        header.linkname = first;
        header.size = 0;
        delete header.devmajor;
        delete header.devminor;
      }
    }

    const xattrs = xattrsByPath?.get(rel);
    if (xattrs) header.xattrs = xattrs;

    yield { header, sourcePath };

    if (isDir) {
      const names = listSorted(sourcePath);
      if (names && names.length > 0) stack.push({ dirPrefix: withSlash(sourcePath), rel, names, next: 0 });
    }
  }
}

function withSlash(dir: string): string {
  return dir.endsWith('/') ? dir : `${dir}/`;
}

/**
 * Builds the header of an entry from its lstat result, the way Docker does:
 * permission bits only, numeric owner (no name lookups), mtime with its
 * sub-second part (the tar writer truncates it), size only for regular files,
 * device numbers only for devices. Returns `undefined` for sockets, which
 * archives never carry.
 */
export function statsToHeader(path: string, stats: Stats | BigIntStats, linkname?: string): EntryHeader | undefined {
  const type = entryTypeOf(stats);
  if (!type) return undefined;
  const header: EntryHeader = {
    path,
    type,
    mode: Number(stats.mode) & 0o7777,
    uid: Number(stats.uid),
    gid: Number(stats.gid),
    mtime: mtimeSeconds(stats),
    size: type === 'file' ? Number(stats.size) : 0,
  };
  if (type === 'symlink') {
    if (linkname === undefined) throw new Error(`statsToHeader: symlink ${path} needs its target`);
    header.linkname = linkname;
  }
  if (type === 'char' || type === 'block') {
    const rdev = BigInt(stats.rdev);
    // glibc's dev_t layout: major in bits 8-19 and 32-43, minor in bits 0-7 and 20-31.
    header.devmajor = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
    header.devminor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  }
  return header;
}

/** The entry type of an lstat result; undefined for sockets (layers skip them). */
export function entryTypeOf(stats: Stats | BigIntStats): EntryType | undefined {
  if (stats.isFile()) return 'file';
  if (stats.isDirectory()) return 'directory';
  if (stats.isSymbolicLink()) return 'symlink';
  if (stats.isFIFO()) return 'fifo';
  if (stats.isCharacterDevice()) return 'char';
  if (stats.isBlockDevice()) return 'block';
  return undefined;
}

function mtimeSeconds(stats: Stats | BigIntStats): number {
  if ('mtimeNs' in stats) {
    const ns = stats.mtimeNs;
    const whole = ns / 1_000_000_000n;
    const frac = ns % 1_000_000_000n;
    return Number(whole) + Number(frac) / 1e9;
  }
  return stats.mtimeMs / 1000;
}

function listSorted(dir: string): Buffer[] | undefined {
  let names: Buffer[];
  try {
    names = readdirSync(dir, { encoding: 'buffer' });
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
  return names.sort(Buffer.compare);
}

function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * Whether an xattr belongs in a layer. Like Docker: `security.capability` is
 * the one that matters; other user/trusted/security attributes are kept too,
 * but never `system.*` (ACLs and other kernel-managed state), `security.selinux`
 * (host labels), or overlayfs' own bookkeeping (`trusted.overlay.*`,
 * `user.overlay.*`), which describes the container's upper dir rather than the
 * files in it.
 */
export function isArchivableXattr(name: string): boolean {
  if (name.startsWith('system.')) return false;
  if (name === 'security.selinux') return false;
  if (name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.')) return false;
  return true;
}

/**
 * Normalizes an xattr value for archiving. A version-3 `security.capability`
 * (which names the root uid of a user namespace) becomes version 2, since that
 * uid means nothing outside the namespace the tree was built in; Docker does
 * the same.
 */
export function archivableXattrValue(name: string, value: Buffer): Buffer {
  const VFS_CAP_REVISION_MASK_BYTE = 3;
  const XATTR_CAPS_SZ_2 = 20;
  if (name === 'security.capability' && value.length > VFS_CAP_REVISION_MASK_BYTE && value[VFS_CAP_REVISION_MASK_BYTE] === 3) {
    const converted = Buffer.from(value.subarray(0, XATTR_CAPS_SZ_2));
    converted[VFS_CAP_REVISION_MASK_BYTE] = 2;
    return converted;
  }
  return value;
}

/**
 * Reads the archivable xattrs of every entry under `root` with a single
 * `getfattr` run (Node has no xattr API). Keys are paths relative to `root`
 * ('' is the root itself). Returns `undefined` when `getfattr` is not
 * installed. Set `all` to get every attribute, unfiltered and unconverted
 * (e.g. to see overlayfs' opaque markers).
 */
export async function readTreeXattrs(
  root: string,
  opts: { all?: boolean } = {},
): Promise<Map<string, Record<string, Buffer>> | undefined> {
  const absRoot = resolve(root);
  const child = spawn('getfattr', ['-d', '-m', '-', '-e', 'base64', '--absolute-names', '-P', '-h', '-R', absRoot], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let spawnError: NodeJS.ErrnoException | undefined;
  child.once('error', (err) => {
    spawnError = err;
  });
  // 'close' follows 'error' when the program cannot be started, so one wait covers both.
  const exit = new Promise<number | null>((resolveExit) => child.once('close', (code) => resolveExit(code)));
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    if (stderr.length < 4096) stderr += chunk;
  });

  const result = new Map<string, Record<string, Buffer>>();
  const parse = (async () => {
    let current: Record<string, Buffer> | undefined;
    for await (const line of createInterface({ input: child.stdout, crlfDelay: Infinity })) {
      if (line.startsWith('# file: ')) {
        const file = unescapeGetfattr(line.slice('# file: '.length)).toString('utf8');
        const rel = relativeTo(absRoot, file);
        current = undefined;
        if (rel === undefined) continue;
        current = {};
        result.set(rel, current);
        continue;
      }
      if (line === '' || current === undefined) continue;
      const eq = line.indexOf('=');
      const name = unescapeGetfattr(eq === -1 ? line : line.slice(0, eq)).toString('utf8');
      const encoded = eq === -1 ? '' : line.slice(eq + 1);
      const value = decodeGetfattrValue(encoded, name);
      if (opts.all) current[name] = value;
      else if (isArchivableXattr(name)) current[name] = archivableXattrValue(name, value);
    }
  })();

  const code = await exit;
  try {
    await parse;
  } catch (err) {
    if (!spawnError) throw err;
  }
  if (spawnError) {
    if (spawnError.code === 'ENOENT') return undefined;
    throw new Error(`cannot run getfattr to read xattrs of ${absRoot}: ${spawnError.message}`);
  }
  if (code !== 0) {
    throw new Error(`getfattr failed reading xattrs of ${absRoot} (exit ${code}): ${stderr.trim()}`);
  }
  for (const [rel, attrs] of result) if (Object.keys(attrs).length === 0) result.delete(rel);
  return result;
}

function relativeTo(absRoot: string, file: string): string | undefined {
  if (file === absRoot) return '';
  const prefix = absRoot.endsWith('/') ? absRoot : `${absRoot}/`;
  return file.startsWith(prefix) ? file.slice(prefix.length) : undefined;
}

/** getfattr prints unprintable bytes, '\\' and '=' as backslash + 3 octal digits. */
function unescapeGetfattr(text: string): Buffer {
  const raw = Buffer.from(text, 'utf8');
  if (!raw.includes(0x5c)) return raw;
  const out = Buffer.alloc(raw.length);
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    const byte = raw[i]!;
    if (byte === 0x5c && i + 3 < raw.length && isOctal(raw[i + 1]) && isOctal(raw[i + 2]) && isOctal(raw[i + 3])) {
      out[n++] = ((raw[i + 1]! - 0x30) << 6) | ((raw[i + 2]! - 0x30) << 3) | (raw[i + 3]! - 0x30);
      i += 3;
    } else if (byte === 0x5c && raw[i + 1] === 0x5c) {
      out[n++] = 0x5c;
      i += 1;
    } else {
      out[n++] = byte;
    }
  }
  return out.subarray(0, n);
}

function isOctal(byte: number | undefined): boolean {
  return byte !== undefined && byte >= 0x30 && byte <= 0x37;
}

function decodeGetfattrValue(encoded: string, name: string): Buffer {
  if (encoded === '') return Buffer.alloc(0);
  if (encoded.startsWith('0s')) return Buffer.from(encoded.slice(2), 'base64');
  if (encoded.startsWith('0x')) return Buffer.from(encoded.slice(2), 'hex');
  if (encoded.startsWith('"') && encoded.endsWith('"')) return unescapeGetfattr(encoded.slice(1, -1));
  throw new Error(`getfattr printed xattr ${name} in an unexpected encoding: ${encoded.slice(0, 40)}`);
}
