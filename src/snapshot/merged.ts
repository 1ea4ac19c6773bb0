/**
 * A read-only merged view over a stack of snapshot directories in overlayfs
 * format, computed in userspace: what an overlay mount of the same lower
 * directories would show, without mounting anything (so without root).
 *
 * Rules, as overlayfs applies them:
 * - the topmost layer holding a name decides what it is;
 * - a character device 0/0 is a whiteout: the name does not exist, whatever
 *   lower layers hold;
 * - a directory merges with same-named directories below it, until a layer
 *   has a non-directory or a whiteout there, or the directory is opaque
 *   (`trusted.overlay.opaque=y`, or `user.overlay.opaque=y` for snapshots
 *   unpacked without root).
 *
 * Paths are container paths, resolved component by component from the root
 * of the merged tree; symlinks are followed the way the kernel follows them
 * inside a chroot (an absolute target restarts at the root, `..` stops at the
 * root), so a lookup never reaches a host path outside the layer directories.
 *
 * The layers must not change while a view is in use: lookups are cached.
 */
import { createReadStream, type Dirent, type Stats } from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { StrataError } from '../content/errors.js';
import type { Changeset } from '../tar/changeset.js';
import { compareNames, type EntryHeader } from '../tar/entry.js';
import { readTreeXattrs, statsToHeader } from '../tar/walk.js';
import { errnoOf, lstatOrUndefined } from '../util/fs.js';
import { layerOwners } from './owners.js';
import { isOverlayWhiteout } from './upperdiff.js';

/** Linux's limit on symlinks followed in one lookup. */
export const MAX_SYMLINKS = 40;
const OPAQUE_XATTRS = ['trusted.overlay.opaque', 'user.overlay.opaque'];

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'no such file or directory',
  ENOTDIR: 'not a directory',
  EISDIR: 'illegal operation on a directory',
  ELOOP: 'too many levels of symbolic links',
  EINVAL: 'invalid argument',
};

/**
 * A failed lookup in a merged view, shaped like Node's errors (`code` is the
 * errno name) but naming the path as the container sees it.
 */
export class MergedPathError extends StrataError {
  constructor(
    code: string,
    readonly syscall: string,
    readonly path: string,
  ) {
    super(code, `${code}: ${ERRNO_TEXT[code] ?? 'error'}, ${syscall} '${path}'`);
  }
}

/** One entry of the merged tree. */
export interface MergedNode {
  /** Path relative to the root, '/'-separated, no symlinks in it; '' for the root. */
  rel: string;
  /** Index (top = 0) of the layer whose instance is visible; -1 for the root of an empty stack. */
  layer: number;
  /**
   * Host path of the visible instance; undefined for the root of an empty
   * stack and for an instance in a {@link LayerIndex} not yet unpacked.
   */
  hostPath: string | undefined;
  /** lstat of the visible instance; undefined for the root of an empty stack and for an indexed layer's instance. */
  stats: Stats | undefined;
  /** The entry as a layer would record it (path = rel; symlinks carry their target). */
  header: EntryHeader;
  /** Directories: the layers merged into it, top first. Empty for other types. */
  merge: number[];
}

/** What {@link MergedView.resolve} found. */
export interface ResolvedPath {
  /** The canonical path (every symlink on the way resolved), relative to the root. */
  rel: string;
  /** The entry there, or undefined when it does not exist. */
  node: MergedNode | undefined;
  /** With `allowMissing`: how many trailing components of `rel` do not exist (0 when `node` is set). */
  missing: number;
}

/** Options of {@link MergedView.resolve}. */
export interface ResolveOptions {
  /** Follow a symlink in the last component (default false: the link itself). */
  followLast?: boolean;
  /**
   * Allow intermediate components to be missing: the rest of the path is then
   * taken literally (`..` still stops at the root) and `node` is undefined.
   * Without it a missing intermediate component is ENOENT.
   */
  allowMissing?: boolean;
}

/** Extended attributes of the entries of one layer directory, by relative path. */
export type XattrMap = Map<string, Record<string, Buffer>>;

/** Xattr maps of layer directories, which never change once published. */
const xattrCache = new Map<string, Promise<XattrMap>>();
/** Layers whose xattr maps are kept; the oldest go first beyond that. */
const XATTR_CACHE_LIMIT = 256;

/**
 * Every xattr of every entry under `dir`, with one getfattr run. Read-only
 * layers never change, so their maps are cached for the process (`cache`);
 * a directory that changes (a container's upper dir) is read afresh.
 */
export function layerXattrs(dir: string, cache = true): Promise<XattrMap> {
  const load = async (): Promise<XattrMap> => {
    const map = await readTreeXattrs(dir, { all: true });
    if (map === undefined) {
      throw new StrataError(
        'XATTR_TOOL_MISSING',
        `cannot read overlay metadata (opaque directories, file capabilities) of ${dir}: getfattr is not installed (install the attr package)`,
      );
    }
    return map;
  };
  if (!cache) return load();
  let pending = xattrCache.get(dir);
  if (pending === undefined) {
    pending = load();
    if (xattrCache.size >= XATTR_CACHE_LIMIT) xattrCache.delete(xattrCache.keys().next().value!);
    xattrCache.set(dir, pending);
    pending.catch(() => xattrCache.delete(dir));
  }
  return pending;
}

/** Relative container path of `name` in directory `dir` ('' is the root). */
export function childRel(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

/** Splits a container path into its components, dropping '' and '.'. */
export function pathComponents(path: string): string[] {
  return path.split('/').filter((part) => part !== '' && part !== '.');
}

/** One layer's instance of a path, as a lookup through a layer stack finds it. */
export interface LayerEntry {
  /** Index (top = 0) of the layer whose instance is visible. */
  layer: number;
  /** Host path of that instance. */
  hostPath: string;
  /** lstat of that instance. */
  stats: Stats;
  /** Directories: the layers merged into it, top first. Empty for other types. */
  merge: number[];
}

/** How {@link lookupInLayers} and {@link listInLayers} reach the layers of a stack. */
export interface LayerAccess {
  /** Host path of `rel` in layer `layer`. */
  hostPath(layer: number, rel: string): string;
  /** Whether directory `rel` of layer `layer` is marked opaque. */
  isOpaque(layer: number, rel: string): boolean | Promise<boolean>;
}

/**
 * Looks `rel` up through `layers` (top first: the layers merged into its
 * parent directory) with overlayfs' rules: the topmost instance decides; a
 * whiteout hides the name; a directory merges with directories below until a
 * non-directory, a whiteout or an opaque directory ends it.
 *
 * `below`, when given, answers for layers beneath `layers` (in the same
 * numbering) and is asked only when nothing above ended the lookup: a caller
 * whose bottom layers are served by a cached {@link MergedView} looks up its
 * own changing top layer here and lets the view do the rest.
 */
export async function lookupInLayers(
  access: LayerAccess,
  layers: readonly number[],
  rel: string,
  below?: () => Promise<LayerEntry | undefined>,
): Promise<LayerEntry | undefined> {
  let found: LayerEntry | undefined;
  for (let i = 0; i < layers.length; i++) {
    const layer = layers[i]!;
    const hostPath = access.hostPath(layer, rel);
    const stats = await lstatOrUndefined(hostPath);
    if (stats === undefined) continue;
    if (isOverlayWhiteout(stats)) return found;
    if (!stats.isDirectory()) return found ?? { layer, hostPath, stats, merge: [] };
    found ??= { layer, hostPath, stats, merge: [] };
    found.merge.push(layer);
    // Opacity only matters when something below could merge in.
    if ((i < layers.length - 1 || below !== undefined) && (await access.isOpaque(layer, rel))) return found;
  }
  if (below === undefined) return found;
  const lower = await below();
  if (found === undefined) return lower;
  if (lower?.stats.isDirectory()) found.merge.push(...lower.merge);
  return found;
}

/**
 * The merged listing of directory `rel` over `layers` (the layers merged
 * into it, top first): names in byte order, whiteouts and the names they
 * hide left out. `below` lists the layers beneath `layers`, as in
 * {@link lookupInLayers}.
 */
export async function listInLayers(
  access: LayerAccess,
  layers: readonly number[],
  rel: string,
  below?: () => Promise<string[]>,
): Promise<string[]> {
  const seen = new Set<string>();
  const hidden = new Set<string>();
  for (const layer of layers) {
    const dir = access.hostPath(layer, rel);
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      const code = errnoOf(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') continue;
      throw err;
    }
    for (const entry of entries) {
      if (seen.has(entry.name) || hidden.has(entry.name)) continue;
      // Only a character device can be a whiteout; nothing else needs an lstat.
      if (entry.isCharacterDevice()) {
        const stats = await lstatOrUndefined(join(dir, entry.name));
        if (stats === undefined) continue;
        if (isOverlayWhiteout(stats)) {
          hidden.add(entry.name);
          continue;
        }
      }
      seen.add(entry.name);
    }
  }
  if (below !== undefined) for (const name of await below()) if (!hidden.has(name)) seen.add(name);
  return [...seen].sort(compareNames);
}

/**
 * A layer known entry by entry (say, one a build has just made from a
 * changeset), standing in for its unpacked snapshot directory: lookups are
 * answered from memory, and the directory is only asked for (and unpacked)
 * when file contents or extended attributes are needed.
 */
export interface LayerIndex {
  /** Every entry as an unpacked snapshot's lstat would show it (see {@link indexChangeset}), by relative path. */
  readonly entries: ReadonlyMap<string, EntryHeader>;
  /** Directories marked opaque in the layer. */
  readonly opaqueDirs: ReadonlySet<string>;
  /** The layer's snapshot directory, unpacked on first call. */
  materialize(): Promise<string>;
}

/** A layer of a {@link MergedView}: an overlay-format directory, or a {@link LayerIndex}. */
export type ViewLayer = string | LayerIndex;

/**
 * The {@link LayerIndex} of a layer made from `changeset`, or undefined when
 * the changeset has something whose unpacked form is not known exactly from
 * its header (deletions, hardlinks, whiteout-like devices, implicit parent
 * directories) or when not running as root (owners would not be kept): such
 * layers are looked at through their unpacked snapshot instead.
 *
 * Headers are normalized the way writing and unpacking changes them: mtimes
 * truncated to whole seconds and clamped to `sourceDateEpoch`, symlinks mode
 * 0777, no names, xattrs or access times.
 */
export function indexChangeset(
  changeset: Changeset,
  materialize: () => Promise<string>,
  opts: { sourceDateEpoch?: number } = {},
): LayerIndex | undefined {
  if (process.getuid?.() !== 0) return undefined;
  if (changeset.deletions.length > 0) return undefined;
  const entries = new Map<string, EntryHeader>();
  for (const { header } of changeset.entries) {
    if (header.type === 'hardlink') return undefined;
    if (header.type === 'char' && (header.devmajor ?? 0) === 0 && (header.devminor ?? 0) === 0) return undefined;
    if (header.path === '' || entries.has(header.path)) return undefined;
    const mtime = Math.floor(opts.sourceDateEpoch === undefined ? header.mtime : Math.min(header.mtime, opts.sourceDateEpoch));
    const normalized: EntryHeader = {
      path: header.path,
      type: header.type,
      mode: header.type === 'symlink' ? 0o777 : header.mode & 0o7777,
      uid: header.uid,
      gid: header.gid,
      mtime,
      size: header.type === 'file' ? header.size : 0,
    };
    if (header.type === 'symlink') normalized.linkname = header.linkname ?? '';
    if (header.type === 'char' || header.type === 'block') {
      normalized.devmajor = header.devmajor ?? 0;
      normalized.devminor = header.devminor ?? 0;
    }
    entries.set(header.path, normalized);
  }
  // An unlisted parent would be made by the unpack with a mode and time no header says.
  for (const path of entries.keys()) {
    const slash = path.lastIndexOf('/');
    if (slash >= 0 && entries.get(path.slice(0, slash))?.type !== 'directory') return undefined;
  }
  const opaqueDirs = new Set<string>();
  for (const dir of changeset.opaqueDirs) {
    const rel = dir === '.' ? '' : dir;
    if (rel === '' || entries.get(rel)?.type !== 'directory') return undefined;
    opaqueDirs.add(rel);
  }
  let dir: Promise<string> | undefined;
  return {
    entries,
    opaqueDirs,
    materialize: () => {
      dir ??= materialize();
      dir.catch(() => (dir = undefined));
      return dir;
    },
  };
}

/** The merged, read-only tree of a stack of overlay-format layer directories. */
export class MergedView {
  /** Layers, topmost first. */
  readonly layers: readonly ViewLayer[];
  private readonly nodes = new Map<string, Promise<MergedNode | undefined>>();
  private readonly access: LayerAccess = {
    hostPath: (layer, rel) => this.hostPathOf(layer, rel),
    isOpaque: (layer, rel) => this.isOpaque(layer, rel),
  };

  /**
   * @param layers the layer directories (or indexes standing in for them),
   *   topmost first; empty for an empty tree (`FROM scratch`).
   */
  constructor(layers: readonly ViewLayer[]) {
    this.layers = [...layers];
  }

  /** Host path of `rel` in directory layer `layer`. */
  private hostPathOf(layer: number, rel: string): string {
    const dir = this.layers[layer]!;
    if (typeof dir !== 'string') throw new Error(`layer ${layer} of the view is an index, not a directory`);
    return rel === '' ? dir : join(dir, rel);
  }

  /** The directory of layer `layer`, unpacking an indexed one. */
  private async dirOf(layer: number): Promise<string> {
    const source = this.layers[layer]!;
    return typeof source === 'string' ? source : source.materialize();
  }

  /** Host path of the visible instance of `node`, unpacking its layer if it is an indexed one. */
  private async hostPathOfNode(node: MergedNode): Promise<string | undefined> {
    if (node.hostPath !== undefined || node.layer < 0) return node.hostPath;
    const dir = await this.dirOf(node.layer);
    return node.rel === '' ? dir : join(dir, node.rel);
  }

  private async isOpaque(layer: number, rel: string): Promise<boolean> {
    const source = this.layers[layer]!;
    if (typeof source !== 'string') return source.opaqueDirs.has(rel);
    const xattrs = (await layerXattrs(source)).get(rel);
    if (xattrs === undefined) return false;
    return OPAQUE_XATTRS.some((name) => xattrs[name]?.toString('latin1') === 'y');
  }

  private async makeNode(rel: string, layer: number, hostPath: string, stats: Stats, merge: number[]): Promise<MergedNode> {
    const linkname = stats.isSymbolicLink() ? await readlink(hostPath) : undefined;
    const header = statsToHeader(rel, stats, linkname) ?? { path: rel, type: 'file', mode: 0, uid: 0, gid: 0, mtime: 0, size: 0 };
    // A snapshot unpacked without root: the layer's owner, not the unpacking user.
    const source = this.layers[layer];
    const owner = typeof source === 'string' ? layerOwners(source)?.get(rel) : undefined;
    if (owner !== undefined) [header.uid, header.gid] = owner;
    return { rel, layer, hostPath, stats, header, merge };
  }

  /**
   * Every extended attribute of the visible instance of `node` (overlayfs'
   * own included), or undefined when it has none.
   */
  async xattrs(node: MergedNode): Promise<Record<string, Buffer> | undefined> {
    if (node.layer < 0) return undefined;
    return (await layerXattrs(await this.dirOf(node.layer))).get(node.rel);
  }

  /** The root of the merged tree. */
  root(): Promise<MergedNode> {
    return this.lookup('') as Promise<MergedNode>;
  }

  /**
   * The entry at canonical path `rel` (relative, no symlinks followed on the
   * way: every ancestor must be a directory), or undefined.
   */
  lookup(rel: string): Promise<MergedNode | undefined> {
    let pending = this.nodes.get(rel);
    if (pending === undefined) {
      pending = this.computeNode(rel);
      this.nodes.set(rel, pending);
    }
    return pending;
  }

  private async computeNode(rel: string): Promise<MergedNode | undefined> {
    if (rel === '') {
      if (this.layers.length === 0) {
        return {
          rel: '',
          layer: -1,
          hostPath: undefined,
          stats: undefined,
          header: { path: '', type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: 0, size: 0 },
          merge: [],
        };
      }
      const merge: number[] = [];
      for (let layer = 0; layer < this.layers.length; layer++) {
        merge.push(layer);
        if (layer < this.layers.length - 1 && (await this.isOpaque(layer, ''))) break;
      }
      const top = this.layers[0]!;
      if (typeof top !== 'string') {
        // Nothing reads the root's own metadata from a view; an indexed layer's root is a plain directory.
        return { rel: '', layer: 0, hostPath: undefined, stats: undefined, header: { path: '', type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: 0, size: 0 }, merge };
      }
      const stats = await lstat(top);
      return this.makeNode('', 0, top, stats, merge);
    }
    const slash = rel.lastIndexOf('/');
    const parent = await this.lookup(slash < 0 ? '' : rel.slice(0, slash));
    if (parent === undefined) return undefined;
    return this.childNode(parent, rel);
  }

  /** The entry `rel` of directory `parent`, bypassing the cache. */
  private async childNode(parent: MergedNode, rel: string): Promise<MergedNode | undefined> {
    if (parent.header.type !== 'directory') return undefined;
    const layers = parent.merge;
    const indexed = layers.findIndex((layer) => typeof this.layers[layer] !== 'string');
    if (indexed < 0) {
      const entry = await lookupInLayers(this.access, layers, rel);
      return entry && this.makeNode(rel, entry.layer, entry.hostPath, entry.stats, entry.merge);
    }
    // The same rules as lookupInLayers, with indexed layers answered from memory.
    let found: MergedNode | undefined;
    for (let i = 0; i < layers.length; i++) {
      const layer = layers[i]!;
      const source = this.layers[layer]!;
      if (typeof source === 'string') {
        const below = layers.slice(i);
        const entry = await lookupInLayers(this.access, below, rel);
        if (entry === undefined) return found;
        if (found === undefined) return this.makeNode(rel, entry.layer, entry.hostPath, entry.stats, entry.merge);
        if (entry.stats.isDirectory()) found.merge.push(...entry.merge);
        return found;
      }
      const header = source.entries.get(rel);
      if (header === undefined) continue;
      if (header.type !== 'directory') return found ?? { rel, layer, hostPath: undefined, stats: undefined, header, merge: [] };
      found ??= { rel, layer, hostPath: undefined, stats: undefined, header, merge: [] };
      found.merge.push(layer);
      if (i < layers.length - 1 && source.opaqueDirs.has(rel)) return found;
    }
    return found;
  }

  /**
   * Resolves a container path (absolute or relative to the root) to its
   * canonical form, following symlinks inside the root. Intermediate
   * components must be directories (or symlinks to them).
   *
   * @throws MergedPathError ENOENT (a missing intermediate without
   *   `allowMissing`), ENOTDIR (a non-directory in the middle), ELOOP.
   */
  async resolve(path: string, opts: ResolveOptions = {}, syscall = 'lstat'): Promise<ResolvedPath> {
    const pending = pathComponents(path);
    const stack: string[] = [];
    let node: MergedNode | undefined = await this.root();
    let missing = 0;
    let links = 0;
    while (pending.length > 0) {
      const part = pending.shift()!;
      if (part === '..') {
        if (stack.length > 0) stack.pop();
        if (missing > 0) missing--;
        if (missing === 0) node = await this.lookup(stack.join('/'));
        continue;
      }
      if (missing > 0) {
        stack.push(part);
        missing++;
        continue;
      }
      if (node === undefined || node.header.type !== 'directory') throw new MergedPathError('ENOTDIR', syscall, path);
      const child = await this.lookup(childRel(stack.join('/'), part));
      const isLast = pending.length === 0;
      if (child === undefined) {
        if (!isLast && !opts.allowMissing) throw new MergedPathError('ENOENT', syscall, path);
        stack.push(part);
        missing = 1;
        node = undefined;
        continue;
      }
      if (child.header.type === 'symlink' && (!isLast || opts.followLast)) {
        if (++links > MAX_SYMLINKS) throw new MergedPathError('ELOOP', syscall, path);
        const target = child.header.linkname ?? '';
        if (target.startsWith('/')) stack.length = 0;
        pending.unshift(...pathComponents(target));
        node = await this.lookup(stack.join('/'));
        continue;
      }
      stack.push(part);
      node = child;
    }
    return { rel: stack.join('/'), node: missing > 0 ? undefined : node, missing };
  }

  /** The entry at `path`, the last symlink not followed; undefined when it does not exist. */
  async find(path: string, followLast = false): Promise<MergedNode | undefined> {
    try {
      return (await this.resolve(path, { followLast, allowMissing: true })).node;
    } catch (err) {
      if (err instanceof MergedPathError && err.code === 'ENOTDIR') return undefined;
      throw err;
    }
  }

  private async existing(path: string, followLast: boolean, syscall: string): Promise<MergedNode> {
    const { node } = await this.resolve(path, { followLast }, syscall);
    if (node === undefined) throw new MergedPathError('ENOENT', syscall, path);
    return node;
  }

  /** lstat: the entry itself, a final symlink not followed. */
  lstat(path: string): Promise<MergedNode> {
    return this.existing(path, false, 'lstat');
  }

  /** stat: the entry, a final symlink followed. */
  stat(path: string): Promise<MergedNode> {
    return this.existing(path, true, 'stat');
  }

  /** Whether `path` exists (a dangling final symlink exists). */
  async exists(path: string): Promise<boolean> {
    return (await this.find(path)) !== undefined;
  }

  /** The target of the symlink at `path`. */
  async readlink(path: string): Promise<string> {
    const node = await this.existing(path, false, 'readlink');
    if (node.header.type !== 'symlink') throw new MergedPathError('EINVAL', 'readlink', path);
    return node.header.linkname ?? '';
  }

  /** Names in the directory at `path`, whiteouts and hidden names left out, in byte order. */
  async readdir(path: string): Promise<string[]> {
    const node = await this.existing(path, true, 'scandir');
    return this.list(node, path);
  }

  private async list(node: MergedNode, path = `/${node.rel}`): Promise<string[]> {
    if (node.header.type !== 'directory') throw new MergedPathError('ENOTDIR', 'scandir', path);
    const indexed = node.merge.findIndex((layer) => typeof this.layers[layer] !== 'string');
    if (indexed < 0) return listInLayers(this.access, node.merge, node.rel);
    // Listing an indexed layer means scanning its entries: rare (COPY reads destinations by name), so unpack instead.
    const dirs = await Promise.all(node.merge.map((layer) => this.dirOf(layer)));
    const access: LayerAccess = {
      hostPath: (layer, rel) => (rel === '' ? dirs[node.merge.indexOf(layer)]! : join(dirs[node.merge.indexOf(layer)]!, rel)),
      isOpaque: (layer, rel) => this.isOpaque(layer, rel),
    };
    return listInLayers(access, node.merge, node.rel);
  }

  /** A stream of the regular file at `path` (a final symlink followed). */
  async createReadStream(path: string): Promise<Readable> {
    const node = await this.existing(path, true, 'open');
    if (node.header.type === 'directory') throw new MergedPathError('EISDIR', 'open', path);
    const hostPath = await this.hostPathOfNode(node);
    if (hostPath === undefined || node.header.type !== 'file') throw new MergedPathError('EINVAL', 'open', path);
    return createReadStream(hostPath);
  }

  /** The whole content of a small regular file (e.g. /etc/passwd), or undefined when it is missing or not a file. */
  async readSmallFile(path: string, limit = 16 * 1024 * 1024): Promise<Buffer | undefined> {
    const node = await this.find(path, true);
    if (node === undefined || node.header.type !== 'file') return undefined;
    const hostPath = await this.hostPathOfNode(node);
    if (hostPath === undefined) return undefined;
    if (node.header.size > limit) throw new StrataError('FILE_TOO_LARGE', `${path} is larger than ${limit} bytes`);
    return readFile(hostPath);
  }

  /**
   * Every entry below the directory `node` (not `node` itself), parents
   * before children, siblings in byte order; symlinks are entries, never
   * followed.
   */
  async *walk(node: MergedNode): AsyncGenerator<MergedNode> {
    if (node.header.type !== 'directory') return;
    const stack: { dir: MergedNode; names: string[]; next: number }[] = [{ dir: node, names: await this.list(node), next: 0 }];
    while (stack.length > 0) {
      const frame = stack[stack.length - 1]!;
      if (frame.next >= frame.names.length) {
        stack.pop();
        continue;
      }
      // Not cached: a long walk would only fill the cache.
      const child = await this.childNode(frame.dir, childRel(frame.dir.rel, frame.names[frame.next++]!));
      if (child === undefined) continue;
      // A walk is read for contents: give indexed instances their host path.
      child.hostPath ??= await this.hostPathOfNode(child);
      yield child;
      if (child.header.type === 'directory') stack.push({ dir: child, names: await this.list(child), next: 0 });
    }
  }
}
