/**
 * What a build remembers about its context between builds, so that a rebuild
 * of an unchanged context reads no file content and little else.
 *
 * Two files under `ROOT/strata/buildcache`, named by a hash of the context's
 * canonical path:
 *
 * - `stat-<key>.json`, per path: what lstat said of it when it was hashed
 *   (size, mtime, ctime, inode, mode) and Docker's per-path hash. A path whose
 *   lstat still says the same is not read again. Read only when some source
 *   has changed, since on a large context parsing it is a good part of a
 *   cached rebuild.
 * - `sources-<key>.json`, per COPY/ADD source: a fingerprint of the lstat of
 *   everything the source covers (see {@link DirectoryFacts}) and the
 *   source's hash. An unchanged fingerprint gives the hash with no per-path
 *   work at all. With it, the fingerprints last made from a `find` listing
 *   of the whole context, under that listing's digest: while no byte of the
 *   listing changes, they are taken as they are rather than made again.
 *
 * Both rest on the same trust as git's index and BuildKit's file-hash cache:
 * content does not change while size, mtime, ctime and inode stay the same.
 * Either file, damaged or from another version, only costs re-hashing.
 */
import { createHash, type Hash } from 'node:crypto';
import type { Stats } from 'node:fs';
import { join } from 'node:path';
import { writeJsonAtomic } from '../util/atomic.js';
import { sortNames } from '../tar/entry.js';
import { readFileOrUndefined } from '../util/fs.js';

/** What lstat said of a path when it was hashed, and the hash. */
export interface StatCacheEntry {
  /**
   * Size, mtime and ctime (ms, as lstat's doubles give them:
   * sub-microsecond), inode, mode. Any difference means it is read again.
   */
  stat: [size: number, mtimeMs: number, ctimeMs: number, ino: number, mode: number];
  /** Docker's per-path hash (hex). */
  sum: string;
}

interface SourceEntry {
  fingerprint: string;
  hash: string;
}

/** The fingerprints made from one listing of the context: null where none could be made. */
interface ListedFingerprints {
  digest: string;
  fingerprints: Map<string, string | null>;
}

const STAT_CACHE_VERSION = 2;
const SOURCES_VERSION = 1;
/** Entries past which paths not used by the current build are dropped. */
const STAT_CACHE_LIMIT = 200_000;
/** Sources past which those not used by the current build are dropped. */
const SOURCES_LIMIT = 10_000;
const HEX64 = /^[a-f0-9]{64}$/;

/** The parsed JSON of `path`; undefined when it is missing or not JSON (a damaged cache only costs re-hashing). */
function readJson(path: string): unknown {
  const bytes = readFileOrUndefined(path);
  if (bytes === undefined) return undefined;
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/** The recorded fields of `stats`, in {@link StatCacheEntry.stat} order. */
function statFacts(stats: Stats): StatCacheEntry['stat'] {
  return [stats.size, stats.mtimeMs, stats.ctimeMs, stats.ino, stats.mode];
}

/** Numbers {@link DirectoryFacts} records per path. */
const FACTS_PER_PATH = 6;

/**
 * What lstat says of the children of one directory (and of the directory),
 * as far as their hashes can tell: names (with, for a symlink, where it
 * leads) as text, the numbers as raw doubles, since turning a fractional
 * mtime into a string costs more than hashing it. Subdirectories come as
 * their own DirectoryFacts, so nested sources (`COPY node_modules` then
 * `COPY .`) share them; {@link fingerprintOf} hashes a whole tree of them.
 */
export class DirectoryFacts {
  private names = '';
  private readonly facts: Float64Array;
  private count = 0;
  /** Subdirectories, in the order they were added. */
  private readonly nested: DirectoryFacts[] = [];

  /** `paths`: how many paths will be added (the directory itself included). */
  constructor(paths: number) {
    this.facts = new Float64Array(FACTS_PER_PATH * Math.max(1, paths));
  }

  /** How `rel` looks to lstat, as far as its hash can tell, as text (for a symlink's target). */
  static describe(rel: string, stats: Stats): string {
    return `${rel} ${DirectoryFacts.factsOf(stats).join(' ')}`;
  }

  private static factsOf(stats: Stats): number[] {
    // A directory's own hash covers only its name and mode; what changes
    // below it is seen path by path, so its times (which also move when an
    // ignored file comes or goes) are left out.
    if (stats.isDirectory()) return [stats.mode, -1, -1, -1, -1, -1];
    return [stats.mode, stats.size, stats.mtimeMs, stats.ctimeMs, stats.ino, stats.rdev];
  }

  /**
   * Adds `rel` as lstat describes it; `note` carries anything else its hash
   * depends on (where a symlink leads); `nested` is a subdirectory's own facts.
   */
  add(rel: string, stats: Stats, note = '', nested?: DirectoryFacts): void {
    this.names += `${rel}\0${note}\n`;
    const at = this.count++ * FACTS_PER_PATH;
    if (stats.isDirectory()) {
      this.facts[at] = stats.mode;
      this.facts.fill(-1, at + 1, at + FACTS_PER_PATH);
    } else {
      this.facts[at] = stats.mode;
      this.facts[at + 1] = stats.size;
      this.facts[at + 2] = stats.mtimeMs;
      this.facts[at + 3] = stats.ctimeMs;
      this.facts[at + 4] = stats.ino;
      this.facts[at + 5] = stats.rdev;
    }
    if (nested !== undefined) this.nested.push(nested);
  }

  /** Feeds this directory and everything below it to `hash`, depth first. */
  feed(hash: Hash): void {
    const stack: DirectoryFacts[] = [this];
    while (stack.length > 0) {
      const dir = stack.pop()!;
      hash.update(dir.names);
      hash.update(new Uint8Array(dir.facts.buffer, 0, dir.count * FACTS_PER_PATH * 8));
      for (let i = dir.nested.length - 1; i >= 0; i--) stack.push(dir.nested[i]!);
    }
  }
}

/** The fingerprint of a source: sha256 over the facts of everything it covers. */
export function fingerprintOf(facts: DirectoryFacts): string {
  const hash = createHash('sha256');
  facts.feed(hash);
  return hash.digest('hex');
}

/** The stat cache of one build context. Open with {@link ContextStatCache.open}. */
export class ContextStatCache {
  private entries: Promise<Map<string, StatCacheEntry>> | undefined;
  private entriesDirty = false;
  private sourcesDirty = false;
  /** Sources asked about by this build. */
  private readonly usedSources = new Set<string>();

  private constructor(
    /** The context's canonical path, recorded in the files for whoever reads them. */
    private readonly contextDir: string,
    private readonly statPath: string | undefined,
    private readonly sourcesPath: string | undefined,
    private readonly sources: Map<string, SourceEntry>,
    private listed: ListedFingerprints | undefined,
  ) {}

  /**
   * Opens the cache of `contextDir` (canonical) in `cacheDir`; without a
   * `cacheDir` nothing is remembered between builds. Reads only the sources file.
   */
  static async open(cacheDir: string | undefined, contextDir: string): Promise<ContextStatCache> {
    if (cacheDir === undefined) return new ContextStatCache(contextDir, undefined, undefined, new Map(), undefined);
    const key = createHash('sha256').update(contextDir).digest('hex').slice(0, 32);
    const sourcesPath = join(cacheDir, `sources-${key}.json`);
    const sources = new Map<string, SourceEntry>();
    const parsed = readJson(sourcesPath) as
      | { version?: unknown; sources?: Record<string, SourceEntry>; listing?: { digest?: unknown; fingerprints?: Record<string, unknown> } }
      | undefined;
    let listed: ListedFingerprints | undefined;
    if (parsed?.version === SOURCES_VERSION && typeof parsed.sources === 'object' && parsed.sources !== null) {
      for (const [rel, entry] of Object.entries(parsed.sources)) {
        if (typeof entry?.fingerprint === 'string' && typeof entry.hash === 'string') sources.set(rel, { fingerprint: entry.fingerprint, hash: entry.hash });
      }
      const listing = parsed.listing;
      if (typeof listing?.digest === 'string' && typeof listing.fingerprints === 'object' && listing.fingerprints !== null) {
        const fingerprints = new Map<string, string | null>();
        for (const [rel, fingerprint] of Object.entries(listing.fingerprints)) {
          if (typeof fingerprint === 'string' || fingerprint === null) fingerprints.set(rel, fingerprint);
        }
        listed = { digest: listing.digest, fingerprints };
      }
    }
    return new ContextStatCache(contextDir, join(cacheDir, `stat-${key}.json`), sourcesPath, sources, listed);
  }

  /** The hash recorded for source `rel` when its fingerprint was `fingerprint`. */
  sourceHash(rel: string, fingerprint: string): string | undefined {
    this.usedSources.add(rel);
    const entry = this.sources.get(rel);
    return entry?.fingerprint === fingerprint ? entry.hash : undefined;
  }

  rememberSource(rel: string, fingerprint: string, hash: string): void {
    this.usedSources.add(rel);
    const entry = this.sources.get(rel);
    if (entry?.fingerprint === fingerprint && entry.hash === hash) return;
    this.sources.set(rel, { fingerprint, hash });
    this.sourcesDirty = true;
  }

  /**
   * The fingerprint made for directory `rel` from a listing with digest
   * `digest` (see {@link rememberListedFingerprint}): null when none could be
   * made, undefined when it is not known for that listing.
   */
  listedFingerprint(digest: string, rel: string): string | null | undefined {
    return this.listed?.digest === digest ? this.listed.fingerprints.get(rel) : undefined;
  }

  /**
   * Records the fingerprint made for directory `rel` from the listing with
   * digest `digest`; a listing with another digest replaces what was
   * recorded for the last one.
   */
  rememberListedFingerprint(digest: string, rel: string, fingerprint: string | null): void {
    if (this.listed?.digest !== digest) this.listed = { digest, fingerprints: new Map() };
    if (this.listed.fingerprints.get(rel) === fingerprint) return;
    this.listed.fingerprints.set(rel, fingerprint);
    this.sourcesDirty = true;
  }

  /** The per-path entries, read on first use. */
  pathEntries(): Promise<Map<string, StatCacheEntry>> {
    this.entries ??= this.readEntries();
    return this.entries;
  }

  /**
   * The recorded hash of `rel` if lstat still says what it said then. Only
   * after {@link pathEntries} has resolved; before, nothing is known.
   */
  cachedSum(entries: Map<string, StatCacheEntry>, rel: string, stats: Stats): string | undefined {
    const cached = entries.get(rel);
    if (cached === undefined) return undefined;
    const [size, mtimeMs, ctimeMs, ino, mode] = cached.stat;
    const unchanged = size === stats.size && mtimeMs === stats.mtimeMs && ctimeMs === stats.ctimeMs && ino === stats.ino && mode === stats.mode;
    return unchanged ? cached.sum : undefined;
  }

  remember(entries: Map<string, StatCacheEntry>, rel: string, stats: Stats, sum: string): void {
    entries.set(rel, { stat: statFacts(stats), sum });
    this.entriesDirty = true;
  }

  /**
   * Writes back what changed. `usedPaths` are the paths this build hashed:
   * past the size bound, only those are kept.
   */
  async save(usedPaths: Iterable<string>): Promise<void> {
    if (this.entriesDirty && this.statPath !== undefined && this.entries !== undefined) {
      const map = await this.entries;
      const used = new Set(usedPaths);
      // Paths this build did not look at are kept for other Dockerfiles of the
      // same context, unless the cache has grown past its bound.
      const keep = map.size > STAT_CACHE_LIMIT ? [...map.keys()].filter((k) => used.has(k)) : [...map.keys()];
      const out: Record<string, StatCacheEntry> = {};
      for (const key of sortNames(keep)) out[key] = map.get(key)!;
      await writeJsonAtomic(this.statPath, { version: STAT_CACHE_VERSION, context: this.contextDir, entries: out });
      this.entriesDirty = false;
    }
    if (this.sourcesDirty && this.sourcesPath !== undefined) {
      const keep = this.sources.size > SOURCES_LIMIT ? [...this.sources.keys()].filter((k) => this.usedSources.has(k)) : [...this.sources.keys()];
      const out: Record<string, SourceEntry> = {};
      for (const key of sortNames(keep)) out[key] = this.sources.get(key)!;
      const listing = this.listed === undefined ? undefined : { digest: this.listed.digest, fingerprints: Object.fromEntries(this.listed.fingerprints) };
      await writeJsonAtomic(this.sourcesPath, { version: SOURCES_VERSION, context: this.contextDir, sources: out, listing });
      this.sourcesDirty = false;
    }
  }

  private async readEntries(): Promise<Map<string, StatCacheEntry>> {
    const map = new Map<string, StatCacheEntry>();
    if (this.statPath === undefined) return map;
    const parsed = (readJson(this.statPath)) as { version?: unknown; entries?: Record<string, StatCacheEntry> } | undefined;
    if (parsed?.version !== STAT_CACHE_VERSION || typeof parsed.entries !== 'object' || parsed.entries === null) return map;
    for (const [key, value] of Object.entries(parsed.entries)) {
      const stat = value?.stat;
      const wellFormed = Array.isArray(stat) && stat.length === 5 && stat.every((n) => typeof n === 'number');
      if (wellFormed && typeof value.sum === 'string' && HEX64.test(value.sum)) map.set(key, value);
    }
    return map;
  }
}
