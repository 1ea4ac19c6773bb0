/**
 * The build cache: what each build step produced, keyed by everything the
 * step's result depends on, so an unchanged step is not run again.
 *
 * ```
 * ROOT/strata/buildcache/<key hex>.json   one entry per step (written atomically)
 * ```
 *
 * A key is the sha256 of the previous step's key (or, for a FROM, the base
 * image's ID) and of the step itself after variable expansion: the
 * instruction, the build args a RUN sees, the content hashes of what a
 * COPY/ADD reads (never mtimes). An entry holds the image config after the
 * step (history and diff_ids included) and the layer it added, if any.
 *
 * Layers named by cache entries are gc roots, so `strata gc` keeps what a
 * rebuild would reuse; removing the entries (or the directory) releases them.
 */
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isDigest, type Digest } from '../content/digest.js';
import { registerGcRoots } from '../image/gc.js';
import type { ImageConfig } from '../image/types.js';
import { writeJsonAtomic } from '../util/atomic.js';
import { readFileOrUndefined } from '../util/fs.js';

/** Version of the key scheme and entry format; bumping it invalidates every entry. */
const CACHE_VERSION = 1;
const KEY_RE = /^[a-f0-9]{64}$/;
/** Entries are small; anything much larger is not one. */
const MAX_ENTRY_BYTES = 8 * 1024 * 1024;

/** A layer a step added, enough to put it in a manifest again. */
export interface CachedLayer {
  chainId: Digest;
  diffId: Digest;
  digest: Digest;
  size: number;
  mediaType: string;
}

/** What one step produced. */
export interface CacheEntry {
  version: number;
  /** The image config after the step. */
  config: ImageConfig;
  /** The layer the step added, or null for an empty one. */
  layer: CachedLayer | null;
  /** When the entry was written (RFC 3339). */
  createdAt: string;
}

/** Directory of the build cache of a store root. */
export function buildCacheDir(root: string): string {
  return join(root, 'strata', 'buildcache');
}

/** A cache key: sha256 (hex) of the parent key and a description of the step. */
export function cacheKey(parent: string, step: unknown): string {
  return createHash('sha256')
    .update(JSON.stringify({ v: CACHE_VERSION, parent, step }))
    .digest('hex');
}

function isCachedLayer(value: unknown): value is CachedLayer {
  const v = value as Partial<CachedLayer> | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    isDigest(v.chainId) &&
    isDigest(v.diffId) &&
    isDigest(v.digest) &&
    typeof v.size === 'number' &&
    typeof v.mediaType === 'string'
  );
}

/** The build cache of one store root. */
export class BuildCache {
  readonly dir: string;

  constructor(root: string) {
    this.dir = buildCacheDir(root);
  }

  private pathFor(key: string): string {
    if (!KEY_RE.test(key)) throw new Error(`invalid build cache key ${JSON.stringify(key)}`);
    return join(this.dir, `${key}.json`);
  }

  /** The entry for `key`, or undefined when there is none (or it is unreadable: a damaged entry is a miss). */
  async get(key: string): Promise<CacheEntry | undefined> {
    const data = readFileOrUndefined(this.pathFor(key));
    if (data === undefined || data.length > MAX_ENTRY_BYTES) return undefined;
    const text = data.toString('utf8');
    try {
      const entry = JSON.parse(text) as CacheEntry;
      if (entry.version !== CACHE_VERSION || typeof entry.config !== 'object' || entry.config === null) return undefined;
      if (entry.layer !== null && !isCachedLayer(entry.layer)) return undefined;
      return entry;
    } catch {
      return undefined;
    }
  }

  /** Records what the step `key` produced. */
  async put(key: string, config: ImageConfig, layer: CachedLayer | null): Promise<void> {
    const entry: CacheEntry = { version: CACHE_VERSION, config, layer, createdAt: new Date().toISOString() };
    await writeJsonAtomic(this.pathFor(key), entry);
  }

  /** Every layer blob the entries name (the gc roots). */
  async *layerBlobs(): AsyncGenerator<Digest> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const name of names) {
      const match = /^([a-f0-9]{64})\.json$/.exec(name);
      if (!match) continue;
      const entry = await this.get(match[1]!).catch(() => undefined);
      if (entry?.layer) yield entry.layer.digest;
    }
  }
}

registerGcRoots((root) => new BuildCache(root).layerBlobs());
