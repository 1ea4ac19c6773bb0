/**
 * The build context: the directory `strata build` reads COPY and ADD sources
 * from, seen the way Docker's builder sees it.
 *
 * - What is visible: every path the `.dockerignore` does not exclude (the
 *   Dockerfile and `.dockerignore` themselves included, unless excluded, as
 *   the daemon drops them only then).
 * - How a source is found (moby `builder/dockerfile/copy.go`): a leading `/`
 *   or `./` is dropped; a path with wildcards is matched with Go's
 *   `filepath.Match` against every visible path; otherwise the path must
 *   exist, symlinks being followed inside the context (an absolute target is
 *   relative to the context root; nothing outside it can be reached). A path
 *   that climbs out with `..` is refused.
 * - How content is identified: Docker's per-path hash (the builder's tarsum:
 *   sha256 over name, mode with file-type bits, uid/gid 0, size, type, link
 *   target and device numbers, then the content — never the mtime or the
 *   owner on disk), so `created_by` strings (`COPY file:<hash> in /app`) are
 *   the ones Docker writes, and a cache key changes exactly when something
 *   COPY would copy changes.
 * - A persistent stat cache (`ROOT/strata/buildcache/stat-<context hash>.json`:
 *   path → size, mtime, ctime, inode, mode, hash) means an unchanged rebuild
 *   only lstat()s the files it copies.
 */
import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { createReadStream, lstatSync, readdirSync } from 'node:fs';
import { lstat, readFile, readlink, realpath } from 'node:fs/promises';
import { isAbsolute, join, posix, relative, resolve } from 'node:path';
import { StrataError } from '../content/errors.js';
import { compareNames, type EntryHeader } from '../tar/entry.js';
import { readTreeXattrs, walkTree, type WalkedEntry } from '../tar/walk.js';
import { writeJsonAtomic } from '../util/atomic.js';
import { loadDockerignore, type DockerignoreMatcher } from './dockerignore.js';
import { containsWildcards, goMatch } from './gomatch.js';
import { entryTypeOf } from '../tar/walk.js';

/** A COPY/ADD source problem, worded as Docker words it. */
export class BuildContextError extends StrataError {
  constructor(message: string) {
    super('BUILD_CONTEXT', message);
  }
}

/** One source of a COPY/ADD, found in the context. */
export interface ContextSource {
  /** The path as the instruction gave it (after variable expansion). */
  origPath: string;
  /** The context-relative path that matched, before symlinks are followed ('' is the context root). */
  rel: string;
  /** `rel` with every symlink followed inside the context. */
  resolvedRel: string;
  /** Host path of `resolvedRel`. */
  hostPath: string;
  isDir: boolean;
  /** Docker's source hash: `file:<hex>` or `dir:<hex>`. */
  hash: string;
}

/** Options of {@link BuildContext.open}. */
export interface BuildContextOptions {
  contextDir: string;
  /** The Dockerfile's path (absolute, or relative to the context); decides which ignore file applies. */
  dockerfile?: string;
  /** Where the stat cache lives (`ROOT/strata/buildcache`); without it nothing is remembered between builds. */
  cacheDir?: string;
}

interface StatCacheEntry {
  size: string;
  mtimeNs: string;
  ctimeNs: string;
  ino: string;
  mode: number;
  /** Docker's per-path hash (hex). */
  sum: string;
  /** sha256 of the content (hex). */
  sha256: string;
}

const STAT_CACHE_VERSION = 1;
/** Entries past which paths not used by the current build are dropped. */
const STAT_CACHE_LIMIT = 200_000;
const TYPEFLAG: Record<string, string> = { file: '0', hardlink: '1', symlink: '2', char: '3', block: '4', directory: '5', fifo: '6' };
const TYPE_BITS: Record<string, number> = {
  file: 0o100000,
  hardlink: 0o100000,
  directory: 0o040000,
  symlink: 0o120000,
  char: 0o020000,
  block: 0o060000,
  fifo: 0o010000,
};
/** lstat calls made between two yields to the event loop while walking a directory. */
const STAT_BATCH = 256;

/** One entry of a directory listing; `stats` is undefined when it is excluded or gone. */
interface ListedChild {
  rel: string;
  stats: BigIntStats | undefined;
}
/** Files hashed at once while hashing a directory source. */
const HASH_CONCURRENCY = 8;
/** Symlinks followed in one lookup before giving up, as Linux does. */
const MAX_SYMLINKS = 40;

/** The fields Docker's per-path hash covers. */
export interface HashedHeader {
  /** Path relative to the source root, no leading `/`. */
  name: string;
  type: EntryHeader['type'];
  /** Permission bits (07777). */
  mode: number;
  uid: number;
  gid: number;
  uname?: string;
  gname?: string;
  size: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes the hash covers (Docker: `security.capability`). */
  xattrs?: Record<string, Buffer>;
}

/**
 * A running Docker per-path hash (tarsum v1 header, then content): feed the
 * content of regular files with `update`, then `digest()`.
 */
export function dockerEntryHasher(h: HashedHeader): { update(chunk: Uint8Array): void; digest(): string } {
  const hash = createHash('sha256');
  const name = h.type === 'directory' && !h.name.endsWith('/') ? `${h.name}/` : h.name;
  const fields: [string, string][] = [
    ['name', name],
    ['mode', String((TYPE_BITS[h.type] ?? 0) | (h.mode & 0o7777))],
    ['uid', String(h.uid)],
    ['gid', String(h.gid)],
    ['size', String(h.type === 'file' ? h.size : 0)],
    ['typeflag', TYPEFLAG[h.type] ?? '0'],
    ['linkname', h.linkname ?? ''],
    ['uname', h.uname ?? ''],
    ['gname', h.gname ?? ''],
    ['devmajor', String(h.devmajor ?? 0)],
    ['devminor', String(h.devminor ?? 0)],
  ];
  for (const [key, value] of fields) hash.update(key + value);
  for (const key of Object.keys(h.xattrs ?? {}).sort()) {
    hash.update(key);
    hash.update(h.xattrs![key]!);
  }
  return {
    update: (chunk) => hash.update(chunk),
    digest: () => hash.digest('hex'),
  };
}

/** Docker's `dir:` hash: sha256 of the sorted, comma-joined hashes of a directory and everything in it. */
export function dockerDirHash(entryHashes: string[]): string {
  const sorted = [...entryHashes].sort(compareNames);
  return 'dir:' + createHash('sha256').update(sorted.join(',')).digest('hex');
}

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

async function lstatBig(path: string): Promise<BigIntStats | undefined> {
  try {
    return await lstat(path, { bigint: true });
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/** Go's filepath.Clean for a relative, '/'-separated path ('' for the root). */
function cleanRel(path: string): string {
  const cleaned = posix.normalize(path === '' ? '.' : path);
  const trimmed = cleaned.length > 1 && cleaned.endsWith('/') ? cleaned.slice(0, -1) : cleaned;
  return trimmed === '.' ? '' : trimmed;
}

/** The build context of one build. Open with {@link BuildContext.open}. */
export class BuildContext {
  private readonly statCache: Map<string, StatCacheEntry>;
  private readonly hashes = new Map<string, Promise<string | undefined>>();
  private inodeFirst: Promise<Map<string, string>> | undefined;
  private xattrs: Promise<Map<string, Record<string, Buffer>> | undefined> | undefined;
  /**
   * Directory listings, read once per build: every COPY of the build sees the
   * same context, as Docker's, sent once, would be.
   */
  private readonly listings = new Map<string, Promise<ListedChild[]>>();
  private dirty = false;

  private constructor(
    /** Absolute, symlink-free path of the context directory. */
    readonly dir: string,
    /** The ignore rules in force. */
    readonly ignore: DockerignoreMatcher,
    private readonly statCachePath: string | undefined,
    statCache: Map<string, StatCacheEntry>,
  ) {
    this.statCache = statCache;
  }

  /**
   * Opens the context directory: reads the ignore file and the stat cache.
   * @throws BuildContextError when the directory does not exist
   * @throws DockerignoreError for an ignore file Docker would refuse
   */
  static async open(opts: BuildContextOptions): Promise<BuildContext> {
    let dir: string;
    try {
      dir = await realpath(resolve(opts.contextDir));
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') throw new BuildContextError(`unable to prepare context: path ${JSON.stringify(opts.contextDir)} not found`);
      throw err;
    }
    if (!(await lstat(dir)).isDirectory()) throw new BuildContextError(`unable to prepare context: context must be a directory: ${dir}`);
    const ignore = await loadDockerignore(dir, opts.dockerfile);
    let statCachePath: string | undefined;
    let statCache = new Map<string, StatCacheEntry>();
    if (opts.cacheDir !== undefined) {
      const key = createHash('sha256').update(dir).digest('hex').slice(0, 32);
      statCachePath = join(opts.cacheDir, `stat-${key}.json`);
      statCache = await readStatCache(statCachePath);
    }
    return new BuildContext(dir, ignore, statCachePath, statCache);
  }

  /** Writes the stat cache back, if anything in it changed. */
  async save(): Promise<void> {
    if (!this.dirty || this.statCachePath === undefined) return;
    const entries: Record<string, StatCacheEntry> = {};
    // Paths this build did not look at are kept for other Dockerfiles of the
    // same context, unless the cache has grown past its bound.
    const keep = this.statCache.size > STAT_CACHE_LIMIT ? [...this.hashes.keys()].filter((k) => this.statCache.has(k)) : [...this.statCache.keys()];
    for (const key of keep.sort(compareNames)) entries[key] = this.statCache.get(key)!;
    await writeJsonAtomic(this.statCachePath, { version: STAT_CACHE_VERSION, context: this.dir, entries });
    this.dirty = false;
  }

  private hostPath(rel: string): string {
    return rel === '' ? this.dir : join(this.dir, rel);
  }

  /**
   * Whether `rel` is part of the context as the builder receives it. An
   * ignored directory stays when an exception pattern may bring back
   * something below it.
   */
  private visible(rel: string, isDir: boolean): boolean {
    if (rel === '') return true;
    if (!this.ignore.ignores(rel)) return true;
    return isDir && this.ignore.shouldDescend(rel);
  }

  /** lstat of `rel` when it is visible. */
  private async visibleStats(rel: string): Promise<BigIntStats | undefined> {
    const stats = await lstatBig(this.hostPath(rel));
    if (stats === undefined || !this.visible(rel, stats.isDirectory())) return undefined;
    return stats;
  }

  /**
   * Follows symlinks in `rel` inside the context (moby FollowSymlinkInScope):
   * an absolute target restarts at the context root, `..` stops there.
   * Returns the canonical path and its stats, or undefined stats when it
   * does not exist (or is excluded).
   */
  private async resolveInScope(rel: string, followLast: boolean): Promise<{ rel: string; stats: BigIntStats | undefined }> {
    const pending = rel.split('/').filter((p) => p !== '' && p !== '.');
    const stack: string[] = [];
    let links = 0;
    while (pending.length > 0) {
      const part = pending.shift()!;
      if (part === '..') {
        stack.pop();
        continue;
      }
      const candidate = [...stack, part].join('/');
      const stats = await this.visibleStats(candidate);
      if (stats === undefined) {
        return { rel: [candidate, ...pending].join('/'), stats: undefined };
      }
      const isLast = pending.length === 0;
      if (stats.isSymbolicLink() && (!isLast || followLast)) {
        if (++links > MAX_SYMLINKS) return { rel: candidate, stats: undefined };
        const target = await readlink(this.hostPath(candidate));
        if (target.startsWith('/')) stack.length = 0;
        pending.unshift(...target.split('/').filter((p) => p !== '' && p !== '.'));
        continue;
      }
      if (!isLast && !stats.isDirectory()) return { rel: [candidate, ...pending].join('/'), stats: undefined };
      stack.push(part);
    }
    const final = stack.join('/');
    return { rel: final, stats: final === '' ? await lstatBig(this.dir) : await this.visibleStats(final) };
  }

  /**
   * Docker's hash of the context path `rel` (its tarsum, symlinks followed
   * inside the context); undefined when it does not resolve to anything.
   */
  async entryHash(rel: string): Promise<string | undefined> {
    const { rel: resolved, stats } = await this.resolveInScope(rel, true);
    if (stats === undefined) return undefined;
    return this.hashCanonical(resolved, stats);
  }

  /** For every multiply-linked file of the visible context: its inode's first path in walk order. */
  private firstPathsOfInodes(): Promise<Map<string, string>> {
    this.inodeFirst ??= (async () => {
      const first = new Map<string, string>();
      for await (const entry of this.walkPaths('')) {
        if (entry.isDir || entry.stats.nlink <= 1n) continue;
        const key = `${entry.stats.dev}:${entry.stats.ino}`;
        if (!first.has(key)) first.set(key, entry.rel);
      }
      return first;
    })();
    return this.inodeFirst;
  }

  /**
   * The context's file capabilities (one getfattr run, only when a file has
   * to be hashed): Docker's hash covers `security.capability`. Without
   * getfattr none are seen.
   */
  private contextXattrs(): Promise<Map<string, Record<string, Buffer>> | undefined> {
    this.xattrs ??= readTreeXattrs(this.dir).catch(() => undefined);
    return this.xattrs;
  }

  /** {@link entryHash} of a path known to be canonical (no symlink on the way), with its lstat. */
  private hashCanonical(rel: string, stats: BigIntStats): Promise<string | undefined> {
    let pending = this.hashes.get(rel);
    if (pending === undefined) {
      pending = this.computeHash(rel, stats);
      this.hashes.set(rel, pending);
    }
    return pending;
  }

  private async computeHash(rel: string, stats: BigIntStats): Promise<string | undefined> {
    const type = entryTypeOf(stats);
    if (type === undefined) return undefined;
    const header: HashedHeader = {
      name: rel,
      type,
      mode: Number(stats.mode & 0o7777n),
      uid: 0,
      gid: 0,
      size: type === 'file' ? Number(stats.size) : 0,
    };
    if (type === 'char' || type === 'block') {
      const rdev = stats.rdev;
      header.devmajor = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
      header.devminor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
    }
    if (type !== 'file') return dockerEntryHasher(header).digest();
    if (stats.nlink > 1n) {
      // The CLI sends the second path of an inode as a hardlink to the first (in walk order), which the daemon hashes as such.
      const first = (await this.firstPathsOfInodes()).get(`${stats.dev}:${stats.ino}`);
      if (first !== undefined && first !== rel) return dockerEntryHasher({ ...header, type: 'hardlink', size: 0, linkname: first }).digest();
    }

    const cached = this.statCache.get(rel);
    if (
      cached !== undefined &&
      cached.size === String(stats.size) &&
      cached.mtimeNs === String(stats.mtimeNs) &&
      cached.ctimeNs === String(stats.ctimeNs) &&
      cached.ino === String(stats.ino) &&
      cached.mode === Number(stats.mode)
    ) {
      return cached.sum;
    }
    const capability = (await this.contextXattrs())?.get(rel)?.['security.capability'];
    if (capability !== undefined) header.xattrs = { 'security.capability': capability };
    const hasher = dockerEntryHasher(header);
    const content = createHash('sha256');
    let size = 0n;
    for await (const chunk of createReadStream(this.hostPath(rel)) as AsyncIterable<Buffer>) {
      hasher.update(chunk);
      content.update(chunk);
      size += BigInt(chunk.length);
    }
    if (size !== stats.size) {
      throw new BuildContextError(`${join(this.dir, rel)} changed while it was being read (${stats.size} bytes expected, ${size} read)`);
    }
    const sum = hasher.digest();
    this.statCache.set(rel, {
      size: String(stats.size),
      mtimeNs: String(stats.mtimeNs),
      ctimeNs: String(stats.ctimeNs),
      ino: String(stats.ino),
      mode: Number(stats.mode),
      sum,
      sha256: content.digest('hex'),
    });
    this.dirty = true;
    return sum;
  }

  /**
   * The visible children of directory `dir`, in byte order, with their
   * lstats. Synchronous calls in slices: an unchanged rebuild is mostly this,
   * and a thread-pool round trip per lstat costs more than the lstat.
   */
  private async listDir(dir: string): Promise<ListedChild[]> {
    let names: string[];
    try {
      names = readdirSync(this.hostPath(dir)).sort(compareNames);
    } catch (err) {
      const code = errnoOf(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return [];
      throw err;
    }
    const children: ListedChild[] = [];
    for (let i = 0; i < names.length; i++) {
      const child = dir === '' ? names[i]! : `${dir}/${names[i]!}`;
      const stats = lstatSync(this.hostPath(child), { bigint: true, throwIfNoEntry: false });
      children.push({ rel: child, stats: stats !== undefined && this.visible(child, stats.isDirectory()) ? stats : undefined });
      // Let other work (a layer being written) run between slices.
      if ((i + 1) % STAT_BATCH === 0) await new Promise((resume) => setImmediate(resume));
    }
    return children;
  }

  /**
   * Every visible path below `rel` (not `rel` itself), context-relative, in
   * Go's filepath.Walk order (byte order, parents first); symlinks are not
   * followed.
   */
  async *walkPaths(rel: string): AsyncGenerator<{ rel: string; isDir: boolean; stats: BigIntStats }> {
    const list = (dir: string): Promise<ListedChild[]> => {
      let pending = this.listings.get(dir);
      if (pending === undefined) {
        pending = this.listDir(dir);
        this.listings.set(dir, pending);
      }
      return pending;
    };
    const stack: { children: ListedChild[]; next: number }[] = [{ children: await list(rel), next: 0 }];
    while (stack.length > 0) {
      const frame = stack[stack.length - 1]!;
      if (frame.next >= frame.children.length) {
        stack.pop();
        continue;
      }
      const { rel: child, stats } = frame.children[frame.next++]!;
      if (stats === undefined) continue;
      yield { rel: child, isDir: stats.isDirectory(), stats };
      if (stats.isDirectory()) stack.push({ children: await list(child), next: 0 });
    }
  }


  /**
   * Finds the sources of a COPY/ADD (`cmd` names it in errors), with Docker's
   * rules: wildcards, symlinks followed inside the context, directories
   * hashed over their whole visible content.
   *
   * @throws BuildContextError `COPY failed: file not found in build context or
   *   excluded by .dockerignore: stat NAME: file does not exist`, `COPY failed:
   *   forbidden path outside the build context: NAME ()`, `COPY failed: no
   *   source files were specified`
   */
  async resolveSources(paths: readonly string[], cmd: string, opts: { allowEmpty?: boolean } = {}): Promise<ContextSource[]> {
    const out: ContextSource[] = [];
    for (const origPath of paths) {
      let path = origPath;
      if (path.length > 1 && path.startsWith('/')) path = path.slice(1);
      if (path.startsWith('./')) path = path.slice(2);
      if (containsWildcards(path)) {
        const pattern = path;
        for await (const candidate of this.walkPaths('')) {
          if (!goMatch(pattern, candidate.rel).matched) continue;
          out.push(await this.sourceFor(origPath, candidate.rel, cmd));
        }
        continue;
      }
      const cleaned = cleanRel(path === '/' ? '' : path);
      if (cleaned === '..' || cleaned.startsWith('../')) {
        throw new BuildContextError(`${cmd} failed: forbidden path outside the build context: ${origPath} ()`);
      }
      out.push(await this.sourceFor(origPath, cleaned, cmd));
    }
    if (out.length === 0 && !opts.allowEmpty) throw new BuildContextError(`${cmd} failed: no source files were specified`);
    return out;
  }

  private async sourceFor(origPath: string, rel: string, cmd: string): Promise<ContextSource> {
    const { rel: resolvedRel, stats } = await this.resolveInScope(rel, true);
    if (stats === undefined) {
      const shown = rel === '' ? '.' : rel;
      throw new BuildContextError(`${cmd} failed: file not found in build context or excluded by .dockerignore: stat ${shown}: file does not exist`);
    }
    const hostPath = this.hostPath(resolvedRel);
    if (!stats.isDirectory()) {
      const sum = await this.entryHash(resolvedRel);
      if (sum === undefined) throw new BuildContextError(`${cmd} failed: ${rel} is not a file, directory or symlink that can be copied`);
      return { origPath, rel, resolvedRel, hostPath, isDir: false, hash: `file:${sum}` };
    }
    const hashes: string[] = [];
    if (resolvedRel !== '') {
      const own = await this.entryHash(resolvedRel);
      if (own !== undefined) hashes.push(own);
    }
    // Walked paths hold no symlink, so only symlink entries need resolving;
    // a few files are hashed at once to overlap their reads.
    const pending: Promise<string | undefined>[] = [];
    const flush = async (): Promise<void> => {
      for (const sum of await Promise.all(pending.splice(0))) {
        // Docker skips what it cannot hash (a dangling symlink).
        if (sum !== undefined) hashes.push(sum);
      }
    };
    for await (const entry of this.walkPaths(resolvedRel)) {
      pending.push(entry.stats.isSymbolicLink() ? this.entryHash(entry.rel) : this.hashCanonical(entry.rel, entry.stats));
      if (pending.length >= HASH_CONCURRENCY) await flush();
    }
    await flush();
    return { origPath, rel, resolvedRel, hostPath, isDir: true, hash: dockerDirHash(hashes) };
  }

  /**
   * The visible entries below a directory source, for copying: paths relative
   * to the source, parents first, symlinks as symlinks, hardlinked files as
   * hardlink entries to the first path seen.
   */
  async *entries(source: ContextSource): AsyncGenerator<WalkedEntry> {
    const base = source.resolvedRel;
    const filter = (relPath: string, isDir: boolean): boolean => this.visible(base === '' ? relPath : `${base}/${relPath}`, isDir);
    yield* walkTree(source.hostPath, { filter });
  }

  /** True when `path` (absolute) is inside the context directory. */
  contains(path: string): boolean {
    const rel = relative(this.dir, resolve(path));
    return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
  }
}

async function readStatCache(path: string): Promise<Map<string, StatCacheEntry>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return new Map();
    throw err;
  }
  try {
    const parsed = JSON.parse(text) as { version?: unknown; entries?: Record<string, StatCacheEntry> };
    if (parsed.version !== STAT_CACHE_VERSION || typeof parsed.entries !== 'object' || parsed.entries === null) return new Map();
    const map = new Map<string, StatCacheEntry>();
    for (const [key, value] of Object.entries(parsed.entries)) {
      if (typeof value?.sum === 'string' && /^[a-f0-9]{64}$/.test(value.sum)) map.set(key, value);
    }
    return map;
  } catch {
    // A damaged cache only costs re-hashing.
    return new Map();
  }
}
