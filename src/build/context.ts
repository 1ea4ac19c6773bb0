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
 *   only lstat()s the files it copies. That path is the whole of a cached
 *   rebuild, so it is kept synchronous and allocation-light: plain (not
 *   bigint) stats, hashes memoised as strings, a promise only for a file that
 *   really has to be read.
 */
import { createHash } from 'node:crypto';
import type { Stats } from 'node:fs';
import { createReadStream, lstatSync, readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { isAbsolute, join, posix, relative, resolve } from 'node:path';
import { StrataError } from '../content/errors.js';
import { sortNames, type EntryHeader } from '../tar/entry.js';
import { directorySourceHash } from './dockerfile/history.js';
import { readTreeXattrs, walkTree, type WalkedEntry } from '../tar/walk.js';
import { loadDockerignore, type DockerignoreMatcher } from './dockerignore.js';
import { ContextStatCache, DirectoryFacts, fingerprintOf, type StatCacheEntry } from './statcache.js';
import { takeContextListing } from './context-listing.cjs';
import { containsWildcards, goMatch } from './gomatch.js';
import { entryTypeOf } from '../tar/walk.js';
import { errnoOf, lstatSyncOrUndefined } from '../util/fs.js';
import { Slicer } from '../util/slice.js';

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
/**
 * Walks of the context run synchronously in slices of this many
 * milliseconds, then let other work (a layer being written) run.
 */
const SLICE_MS = 4;
/** Steps of a context walk between looks at the clock, which costs more than a step. */
const STEPS_PER_CLOCK_CHECK = 64;

/** The pacing of a walk of the context. */
function contextSlicer(): Slicer {
  return new Slicer(SLICE_MS, STEPS_PER_CLOCK_CHECK);
}

/** A visible path below a directory, as {@link BuildContext.walkPaths} finds it. */
export interface WalkedPath {
  /** Context-relative. */
  rel: string;
  isDir: boolean;
  stats: Stats;
}

/** Files hashed at once while hashing a directory source. */
const HASH_CONCURRENCY = 8;
/** What {@link BuildContext} hashWithoutReading answers for a file whose content has to be read. */
const READ_NEEDED: unique symbol = Symbol('read needed');
/**
 * A file with other links: Docker hashes its second path as a hardlink to
 * the first in the whole context's walk order, which no lstat of it tells.
 */
function hasOtherLinks(stats: Stats): boolean {
  return stats.nlink > 1 && !stats.isDirectory();
}

/** What listedFingerprint answers when there is no listing of the context to use. */
const NOT_LISTED: unique symbol = Symbol('not listed');
/** Names fingerprints made from a find listing (and their way of being made). */
const LISTED_FINGERPRINT = 'find1';

/** find's listing of the context (see context-listing.cts) and its digest (see BuildContext.takenListing). */
interface FindListing {
  bytes: Buffer;
  digest: string;
}

/** lstatSync's options: a missing path is undefined, not an exception (one object, not one per call). */
const NO_THROW = { throwIfNoEntry: false } as const;
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
export const dockerDirHash = directorySourceHash;

/**
 * The exact identity of a multiply-linked file. Plain stats give the inode
 * as a double, which can round for the 64-bit inode numbers of overlayfs
 * (xino) or XFS, and two files must never be taken for one.
 */
async function inodeKey(path: string): Promise<string> {
  const stats = await lstat(path, { bigint: true });
  return `${stats.dev}:${stats.ino}`;
}

/** Go's filepath.Clean for a relative, '/'-separated path ('' for the root). */
function cleanRel(path: string): string {
  const cleaned = posix.normalize(path === '' ? '.' : path);
  const trimmed = cleaned.length > 1 && cleaned.endsWith('/') ? cleaned.slice(0, -1) : cleaned;
  return trimmed === '.' ? '' : trimmed;
}

/** The build context of one build. Open with {@link BuildContext.open}. */
export class BuildContext {
  /** The per-path part of the stat cache, once read. */
  private pathEntries: Map<string, StatCacheEntry> | undefined;
  /** Hashes by canonical path: the value once known, the pending read before. */
  private readonly hashes = new Map<string, string | undefined | Promise<string | undefined>>();
  private inodeFirst: Promise<Map<string, string>> | undefined;
  private xattrs: Promise<Map<string, Record<string, Buffer>> | undefined> | undefined;
  /**
   * Directory listings, read once per build: every COPY of the build sees the
   * same context, as Docker's, sent once, would be.
   */
  private readonly listings = new Map<string, WalkedPath[]>();
  /** Whether the ignore rules can exclude anything below a directory (see mayIgnoreBelow). */
  private readonly ignoreReach = new Map<string, boolean>();
  /** What lstat says of each directory's tree, gathered once per build; null where no fingerprint can be had (see treeFingerprint). */
  private readonly subtreeFacts = new Map<string, DirectoryFacts | null>();
  /** find's listing of the context and its digest, once taken (see takenListing). */
  private findListing: Promise<FindListing | undefined> | undefined;
  /** The listing's lines, split on first use (see listedPaths). */
  private listingParts: string[] | undefined;

  private constructor(
    /** Absolute, symlink-free path of the context directory. */
    readonly dir: string,
    /** The ignore rules in force. */
    readonly ignore: DockerignoreMatcher,
    private readonly statCache: ContextStatCache,
    /** The context directory's own mode (find lists only what is below it). */
    private readonly rootMode: number,
  ) {}

  /**
   * Opens the context directory: reads the ignore file and the stat cache.
   * @throws BuildContextError when the directory does not exist
   * @throws DockerignoreError for an ignore file Docker would refuse
   */
  static async open(opts: BuildContextOptions): Promise<BuildContext> {
    let dir: string;
    try {
      dir = realpathSync(resolve(opts.contextDir));
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') throw new BuildContextError(`unable to prepare context: path ${JSON.stringify(opts.contextDir)} not found`);
      throw err;
    }
    const rootStats = lstatSync(dir);
    if (!rootStats.isDirectory()) throw new BuildContextError(`unable to prepare context: context must be a directory: ${dir}`);
    const ignore = await loadDockerignore(dir, opts.dockerfile);
    return new BuildContext(dir, ignore, await ContextStatCache.open(opts.cacheDir, dir), rootStats.mode);
  }

  /** Writes the stat cache back, if anything in it changed. */
  async save(): Promise<void> {
    await this.statCache.save(this.hashes.keys());
  }

  /** The per-path stat cache, read on first use. */
  private async pathEntryMap(): Promise<Map<string, StatCacheEntry>> {
    this.pathEntries ??= await this.statCache.pathEntries();
    return this.pathEntries;
  }

  private hostPath(rel: string): string {
    // `dir` is canonical and `rel` is clean, so no join() is needed.
    return rel === '' ? this.dir : `${this.dir}/${rel}`;
  }

  /**
   * Whether `rel` is part of the context as the builder receives it. An
   * ignored directory stays when an exception pattern may bring back
   * something below it.
   */
  private visible(rel: string, isDir: boolean): boolean {
    if (rel === '' || this.ignore.patterns.length === 0) return true;
    if (!this.ignore.ignores(rel)) return true;
    return isDir && this.ignore.shouldDescend(rel);
  }

  /** lstat of `rel` when it is visible. */
  private visibleStats(rel: string): Stats | undefined {
    const stats = lstatSyncOrUndefined(this.hostPath(rel));
    if (stats === undefined || !this.visible(rel, stats.isDirectory())) return undefined;
    return stats;
  }

  /**
   * Follows symlinks in `rel` inside the context (moby FollowSymlinkInScope):
   * an absolute target restarts at the context root, `..` stops there.
   * Returns the canonical path and its stats, or undefined stats when it
   * does not exist (or is excluded).
   */
  private resolveInScope(rel: string, followLast: boolean): { rel: string; stats: Stats | undefined } {
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
      const stats = this.visibleStats(candidate);
      if (stats === undefined) {
        return { rel: [candidate, ...pending].join('/'), stats: undefined };
      }
      const isLast = pending.length === 0;
      if (stats.isSymbolicLink() && (!isLast || followLast)) {
        if (++links > MAX_SYMLINKS) return { rel: candidate, stats: undefined };
        const target = readlinkSync(this.hostPath(candidate));
        if (target.startsWith('/')) stack.length = 0;
        pending.unshift(...target.split('/').filter((p) => p !== '' && p !== '.'));
        continue;
      }
      if (!isLast && !stats.isDirectory()) return { rel: [candidate, ...pending].join('/'), stats: undefined };
      stack.push(part);
    }
    const final = stack.join('/');
    return { rel: final, stats: final === '' ? lstatSyncOrUndefined(this.dir) : this.visibleStats(final) };
  }

  /**
   * Docker's hash of the context path `rel` (its tarsum, symlinks followed
   * inside the context); undefined when it does not resolve to anything.
   */
  async entryHash(rel: string): Promise<string | undefined> {
    const { rel: resolved, stats } = this.resolveInScope(rel, true);
    if (stats === undefined) return undefined;
    return this.hashCanonical(resolved, stats, await this.pathEntryMap());
  }

  /** For every multiply-linked file of the visible context: its inode's first path in walk order. */
  private firstPathsOfInodes(): Promise<Map<string, string>> {
    this.inodeFirst ??= (async () => {
      const first = new Map<string, string>();
      for (const entry of await this.walkPaths('')) {
        if (entry.isDir || entry.stats.nlink <= 1) continue;
        const key = await inodeKey(this.hostPath(entry.rel));
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
  private hashCanonical(rel: string, stats: Stats, entries: Map<string, StatCacheEntry>): string | undefined | Promise<string | undefined> {
    if (this.hashes.has(rel)) return this.hashes.get(rel);
    const known = this.hashWithoutReading(rel, stats, entries);
    if (known !== READ_NEEDED) {
      this.hashes.set(rel, known);
      return known;
    }
    const reading = this.readAndHash(rel, stats, entries);
    this.hashes.set(rel, reading);
    // Later lookups get the value, not the promise, once it is known.
    reading.then((value) => this.hashes.set(rel, value), () => undefined);
    return reading;
  }

  /** The header part of Docker's per-path hash for `rel`; undefined for a type Docker does not send. */
  private hashedHeader(rel: string, stats: Stats): HashedHeader | undefined {
    const type = entryTypeOf(stats);
    if (type === undefined) return undefined;
    const header: HashedHeader = { name: rel, type, mode: stats.mode & 0o7777, uid: 0, gid: 0, size: type === 'file' ? stats.size : 0 };
    if (type === 'char' || type === 'block') {
      // Linux's dev_t layout (glibc major()/minor()); the numbers fit a double.
      const rdev = BigInt(stats.rdev);
      header.devmajor = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
      header.devminor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
    }
    return header;
  }

  /**
   * The hash of `rel` when it can be had without reading the file: anything
   * but a regular file, or a file the stat cache knows unchanged. Otherwise
   * {@link READ_NEEDED}.
   */
  private hashWithoutReading(rel: string, stats: Stats, entries: Map<string, StatCacheEntry>): string | undefined | typeof READ_NEEDED {
    if (!stats.isFile()) {
      // Directories, symlinks and devices hash their header only; the stat
      // cache saves even that (a sha256 per directory adds up).
      const cached = this.statCache.cachedSum(entries, rel, stats);
      if (cached !== undefined) return cached;
      const header = this.hashedHeader(rel, stats);
      if (header === undefined) return undefined;
      const sum = dockerEntryHasher(header).digest();
      this.statCache.remember(entries, rel, stats, sum);
      return sum;
    }
    // A second path of an inode is hashed as a hardlink to the first.
    if (stats.nlink > 1) return READ_NEEDED;
    return this.statCache.cachedSum(entries, rel, stats) ?? READ_NEEDED;
  }

  private async readAndHash(rel: string, stats: Stats, entries: Map<string, StatCacheEntry>): Promise<string | undefined> {
    const header = this.hashedHeader(rel, stats)!;
    if (stats.nlink > 1) {
      // The CLI sends the second path of an inode as a hardlink to the first (in walk order), which the daemon hashes as such.
      const first = (await this.firstPathsOfInodes()).get(await inodeKey(this.hostPath(rel)));
      if (first !== undefined && first !== rel) return dockerEntryHasher({ ...header, type: 'hardlink', size: 0, linkname: first }).digest();
    }
    const cached = this.statCache.cachedSum(entries, rel, stats);
    if (cached !== undefined) return cached;
    const capability = (await this.contextXattrs())?.get(rel)?.['security.capability'];
    if (capability !== undefined) header.xattrs = { 'security.capability': capability };
    const hasher = dockerEntryHasher(header);
    let size = 0;
    for await (const chunk of createReadStream(this.hostPath(rel)) as AsyncIterable<Buffer>) {
      hasher.update(chunk);
      size += chunk.length;
    }
    if (size !== stats.size) {
      throw new BuildContextError(`${join(this.dir, rel)} changed while it was being read (${stats.size} bytes expected, ${size} read)`);
    }
    const sum = hasher.digest();
    this.statCache.remember(entries, rel, stats, sum);
    return sum;
  }

  /**
   * The visible children of directory `dir`, in byte order, with their
   * lstats, read once per build. Synchronous: an unchanged rebuild is mostly
   * this, and a thread-pool round trip per lstat costs more than the lstat;
   * callers walking many directories yield between slices ({@link Slicer}).
   */
  private listing(dir: string): WalkedPath[] {
    const known = this.listings.get(dir);
    if (known !== undefined) return known;
    let names: string[];
    try {
      names = sortNames(readdirSync(this.hostPath(dir)));
    } catch (err) {
      const code = errnoOf(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return [];
      throw err;
    }
    const children: WalkedPath[] = [];
    const prefix = dir === '' ? '' : `${dir}/`;
    // Asking the ignore rules about every path costs; below a directory
    // whose subtree they cannot touch, nothing is asked.
    const mayIgnore = this.mayIgnoreBelow(dir);
    for (const name of names) {
      const child = prefix + name;
      const stats = lstatSync(this.hostPath(child), NO_THROW);
      if (stats === undefined) continue;
      const isDir = stats.isDirectory();
      if (mayIgnore && !this.visible(child, isDir)) continue;
      children.push({ rel: child, isDir, stats });
    }
    this.listings.set(dir, children);
    return children;
  }

  /**
   * Whether the ignore rules can exclude anything below directory `dir`:
   * not when there are none, nor below a directory that is not ignored and
   * deeper than every pattern reaches (a path there is ignored exactly when
   * its parent is).
   */
  private mayIgnoreBelow(dir: string): boolean {
    if (this.ignore.patterns.length === 0) return false;
    const known = this.ignoreReach.get(dir);
    if (known !== undefined) return known;
    const reach = this.ignore.maxDepth;
    const depth = dir === '' ? 0 : dir.split('/').length;
    const slash = dir.lastIndexOf('/');
    const parent = dir === '' ? undefined : slash < 0 ? '' : dir.slice(0, slash);
    const may =
      reach === undefined || depth < reach || (parent !== undefined && this.mayIgnoreBelow(parent) && this.ignore.ignores(dir));
    this.ignoreReach.set(dir, may);
    return may;
  }

  /**
   * Every visible path below `rel` (not `rel` itself), context-relative, in
   * Go's filepath.Walk order (byte order, parents first); symlinks are not
   * followed.
   */
  async walkPaths(rel: string): Promise<WalkedPath[]> {
    const out: WalkedPath[] = [];
    const slicer = contextSlicer();
    const stack: { children: WalkedPath[]; next: number }[] = [{ children: this.listing(rel), next: 0 }];
    while (stack.length > 0) {
      const frame = stack[stack.length - 1]!;
      if (frame.next >= frame.children.length) {
        stack.pop();
        continue;
      }
      const child = frame.children[frame.next++]!;
      out.push(child);
      if (child.isDir) stack.push({ children: this.listing(child.rel), next: 0 });
      if (slicer.due()) await slicer.pause();
    }
    return out;
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
        for (const candidate of await this.walkPaths('')) {
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
    const { rel: resolvedRel, stats } = this.resolveInScope(rel, true);
    if (stats === undefined) {
      const shown = rel === '' ? '.' : rel;
      throw new BuildContextError(`${cmd} failed: file not found in build context or excluded by .dockerignore: stat ${shown}: file does not exist`);
    }
    const hostPath = this.hostPath(resolvedRel);
    const source = (hash: string): ContextSource => ({ origPath, rel, resolvedRel, hostPath, isDir: stats.isDirectory(), hash });
    // What the source covers, as lstat sees it: unchanged since the hash was
    // recorded, the hash is reused without a look at any single path.
    const fingerprint = stats.isDirectory() ? await this.directoryFingerprint(resolvedRel, stats) : this.pathFingerprint(resolvedRel, stats);
    const known = fingerprint === undefined ? undefined : this.statCache.sourceHash(resolvedRel, fingerprint);
    if (known !== undefined) return source(known);

    let hash: string;
    if (!stats.isDirectory()) {
      const sum = await this.entryHash(resolvedRel);
      if (sum === undefined) throw new BuildContextError(`${cmd} failed: ${rel} is not a file, directory or symlink that can be copied`);
      hash = `file:${sum}`;
    } else {
      hash = await this.directoryHash(resolvedRel, await this.walkPaths(resolvedRel));
    }
    if (fingerprint !== undefined) this.statCache.rememberSource(resolvedRel, fingerprint, hash);
    return source(hash);
  }

  /**
   * The fingerprint of directory `rel` (canonical, with its lstat): from
   * find's listing of the context when the launcher started one, else from a
   * walk. Undefined when it has none (see {@link pathFingerprint}).
   */
  private async directoryFingerprint(rel: string, stats: Stats): Promise<string | undefined> {
    const listed = await this.listedFingerprint(rel, stats);
    return listed === NOT_LISTED ? this.treeFingerprint(rel, stats) : listed;
  }

  /**
   * find's listing of the whole context (see context-listing.cts) when the
   * launcher started one, with a digest of everything a fingerprint made
   * from it depends on: the listing's bytes, the ignore rules and the
   * context directory's mode. Undefined when there is none or it failed.
   */
  private takenListing(): Promise<FindListing | undefined> {
    this.findListing ??= (async () => {
      // Taken only now: a listing taken is waited for, and a build without COPY needs none.
      const bytes = await takeContextListing(this.dir);
      if (bytes === undefined) return undefined;
      const digest = createHash('sha256')
        .update(`${LISTED_FINGERPRINT} ${this.rootMode} ${JSON.stringify(this.ignore.patterns)}\n`)
        .update(bytes)
        .digest('hex');
      return { bytes, digest };
    })();
    return this.findListing;
  }

  /**
   * The fingerprint of directory `rel` from find's listing (see
   * {@link fingerprintFromListing}). While the listing is byte for byte the
   * one the last build had, its fingerprints are the ones recorded then and
   * are not made again: on a large context, going through the listing is
   * most of a cached rebuild.
   */
  private async listedFingerprint(rel: string, stats: Stats): Promise<string | undefined | typeof NOT_LISTED> {
    const listing = await this.takenListing();
    if (listing === undefined) return NOT_LISTED;
    const recorded = this.statCache.listedFingerprint(listing.digest, rel);
    if (recorded !== undefined) return recorded ?? undefined;
    const made = this.fingerprintFromListing(this.listedPaths(listing), rel, stats);
    if (made !== NOT_LISTED) this.statCache.rememberListedFingerprint(listing.digest, rel, made ?? null);
    return made;
  }

  /**
   * The listing's lines, split: path, fields, path, fields... in find's
   * order, which is depth first, so a directory's subtree follows it directly.
   */
  private listedPaths(listing: FindListing): string[] {
    this.listingParts ??= listing.bytes.toString('utf8').split('\0');
    return this.listingParts;
  }

  /**
   * The fingerprint of directory `rel` from find's listing: every visible
   * path below it with type, mode and (not for directories) size, times,
   * inode and links, in find's order; a symlink with where it leads.
   * {@link NOT_LISTED} when `rel` is not in the listing; undefined as in
   * {@link pathFingerprint}. The order is find's (the directories' own order,
   * unsorted): the same for an unchanged tree, and a tree that changed gives
   * other lines whatever their order.
   */
  private fingerprintFromListing(parts: string[], rel: string, stats: Stats): string | undefined | typeof NOT_LISTED {
    let start = 0;
    if (rel !== '') {
      while (start + 1 < parts.length && parts[start] !== rel) start += 2;
      // Not listed (made after find ran?): walk instead.
      if (start + 1 >= parts.length || parts[start + 1]![0] !== 'd') return NOT_LISTED;
      start += 2;
    }
    const prefix = rel === '' ? '' : `${rel}/`;
    let text = `${LISTED_FINGERPRINT} ${stats.mode}\n`;
    let hidden: string | undefined;
    for (let i = start; i + 1 < parts.length; i += 2) {
      const path = parts[i]!;
      if (!path.startsWith(prefix)) break;
      if (hidden !== undefined && path.startsWith(hidden)) continue;
      hidden = undefined;
      const fields = parts[i + 1]!;
      const type = fields[0];
      const isDir = type === 'd';
      const slash = path.lastIndexOf('/');
      if (this.mayIgnoreBelow(slash < 0 ? '' : path.slice(0, slash)) && !this.visible(path, isDir)) {
        if (isDir) hidden = `${path}/`;
        continue;
      }
      if (isDir) {
        // Name and mode: a directory's times move when ignored files come and go.
        text += `${path}\0${fields.slice(0, fields.indexOf(' ', 2))}\n`;
      } else if (type === 'f') {
        // Docker hashes a second link of an inode by the whole context's walk order.
        if (!fields.endsWith(' 1')) return undefined;
        text += `${path}\0${fields}\n`;
      } else if (type === 'l') {
        const leads = this.whereLinkLeads(path);
        if (leads === undefined) return undefined;
        text += `${path}\0${fields} ${leads}\n`;
      } else if (type === 'c' || type === 'b') {
        // find prints no device numbers.
        return undefined;
      } else {
        text += `${path}\0${fields}\n`;
      }
    }
    return `${LISTED_FINGERPRINT}:${createHash('sha256').update(text).digest('hex')}`;
  }

  /**
   * Where the symlink `rel` leads, for a fingerprint: the target followed in
   * the context and what lstat says of it. Undefined when the target's hash
   * cannot be fingerprinted (a file with other links).
   */
  private whereLinkLeads(rel: string): string | undefined {
    const target = this.resolveInScope(rel, true);
    if (target.stats === undefined) return `-> ${target.rel} (missing)`;
    return hasOtherLinks(target.stats) ? undefined : `-> ${DirectoryFacts.describe(target.rel, target.stats)}`;
  }

  /**
   * The fingerprint of a single path (not a directory), or undefined for a
   * file with other links: Docker hashes it as a hardlink to the first path
   * of its inode in the whole context, which its own lstat cannot tell.
   */
  private pathFingerprint(rel: string, stats: Stats): string | undefined {
    if (hasOtherLinks(stats)) return undefined;
    const facts = new DirectoryFacts(1);
    facts.add(rel, stats);
    return fingerprintOf(facts);
  }

  /**
   * The fingerprint of directory `rel` (canonical, with its lstat) and every
   * visible path below it: each with its lstat, a symlink with where it
   * leads, a subdirectory by its own fingerprint, so that nested sources
   * (`COPY node_modules` then `COPY .`) share the work. Undefined when some
   * path's hash depends on more than that (see {@link pathFingerprint}).
   */
  private async treeFingerprint(rel: string, stats: Stats): Promise<string | undefined> {
    const facts = await this.treeFacts(rel, stats);
    return facts === undefined ? undefined : fingerprintOf(facts);
  }

  /** The {@link DirectoryFacts} of directory `rel` and everything below it; see {@link treeFingerprint}. */
  private async treeFacts(rel: string, stats: Stats): Promise<DirectoryFacts | undefined> {
    interface Frame {
      dir: WalkedPath;
      children: WalkedPath[];
      next: number;
      facts: DirectoryFacts;
    }
    const open = (dir: WalkedPath): Frame => {
      const children = this.listing(dir.rel);
      const facts = new DirectoryFacts(children.length + 1);
      facts.add(dir.rel, dir.stats);
      return { dir, children, next: 0, facts };
    };
    const known = this.subtreeFacts.get(rel);
    if (known !== undefined) return known ?? undefined;
    const slicer = contextSlicer();
    const stack: Frame[] = [open({ rel, isDir: true, stats })];
    // Post-order: a directory's facts are complete when its last child is.
    while (stack.length > 0) {
      const frame = stack[stack.length - 1]!;
      if (frame.next < frame.children.length) {
        const child = frame.children[frame.next++]!;
        if (child.isDir) {
          const nested = this.subtreeFacts.get(child.rel);
          if (nested === undefined) stack.push(open(child));
          else if (nested === null) return this.unfingerprintable(stack);
          else frame.facts.add(child.rel, child.stats, '', nested);
          continue;
        }
        let note = '';
        if (child.stats.isSymbolicLink()) {
          const leads = this.whereLinkLeads(child.rel);
          if (leads === undefined) return this.unfingerprintable(stack);
          note = leads;
        } else if (hasOtherLinks(child.stats)) {
          return this.unfingerprintable(stack);
        }
        frame.facts.add(child.rel, child.stats, note);
      } else {
        stack.pop();
        this.subtreeFacts.set(frame.dir.rel, frame.facts);
        stack[stack.length - 1]?.facts.add(frame.dir.rel, frame.dir.stats, '', frame.facts);
      }
      if (slicer.due()) await slicer.pause();
    }
    return this.subtreeFacts.get(rel) ?? undefined;
  }

  /** Records that the directories on `stack` (and so the source) have no fingerprint. */
  private unfingerprintable(stack: readonly { dir: WalkedPath }[]): undefined {
    for (const frame of stack) this.subtreeFacts.set(frame.dir.rel, null);
    return undefined;
  }

  /** Docker's `dir:` hash of the directory `rel` (canonical) over the paths walked below it. */
  private async directoryHash(rel: string, walked: readonly WalkedPath[]): Promise<string> {
    const entries = await this.pathEntryMap();
    const hashes: string[] = [];
    if (rel !== '') {
      const own = await this.entryHash(rel);
      if (own !== undefined) hashes.push(own);
    }
    // Walked paths hold no symlink, so only symlink entries need resolving.
    // Hashes known without reading go straight in; files that must be read
    // are read a few at a time to overlap their I/O. Order does not matter:
    // the directory hash sorts them.
    const reading: Promise<string | undefined>[] = [];
    const flush = async (): Promise<void> => {
      for (const sum of await Promise.all(reading.splice(0))) {
        // Docker skips what it cannot hash (a dangling symlink).
        if (sum !== undefined) hashes.push(sum);
      }
    };
    for (const entry of walked) {
      const sum = entry.stats.isSymbolicLink() ? this.entryHash(entry.rel) : this.hashCanonical(entry.rel, entry.stats, entries);
      if (typeof sum === 'string') hashes.push(sum);
      else if (sum !== undefined) reading.push(sum);
      if (reading.length >= HASH_CONCURRENCY) await flush();
    }
    await flush();
    return dockerDirHash(hashes);
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
