/**
 * Garbage collection of the content store: mark everything reachable from
 * index.json (and from roots other subsystems register), sweep the rest,
 * then drop layer records whose blob is gone and temp files of dead
 * processes.
 */
import { join } from 'node:path';
import { isDigest, parseDigest, type Digest } from '../content/digest.js';
import { StrataError } from '../content/errors.js';
import { withLock } from '../content/lock.js';
import { removeDeadTempFiles } from '../util/atomic.js';
import type { ImageIndex, ImageManifest } from './types.js';
import type { ImageStore } from './image-store.js';
import { readdirOrEmpty } from '../util/fs.js';

/** Yields digests that must survive gc (e.g. images of containers, build cache). */
export type GcRootsProvider = (root: string) => AsyncIterable<Digest>;

const providers = new Set<GcRootsProvider>();

/**
 * Registers extra gc roots for every store this process collects. A root
 * that is a manifest or index keeps everything it references too. Returns a
 * function that unregisters the provider.
 */
export function registerGcRoots(provider: GcRootsProvider): () => void {
  providers.add(provider);
  return () => providers.delete(provider);
}

/** What a collection removed. */
export interface GcResult {
  /** Blobs deleted. */
  removed: Digest[];
  /** Their total size in bytes. */
  bytes: number;
  /** Layer records deleted because their blob was gone. */
  records: number;
  /** Temp files of dead processes deleted. */
  temp: string[];
}

/** gc refuses to sweep when it cannot be sure what is referenced. */
export class GcMarkError extends StrataError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GC_MARK_FAILED', message, options);
  }
}

/** Blobs larger than this are never manifests, so a root of that size is not parsed. */
const MAX_MANIFEST_SIZE = 4 * 1024 * 1024;

/**
 * Collects garbage in `store`, holding the `store` lock throughout, so no
 * index.json update interleaves. Blobs protected by live leases survive
 * (the content store's sweep honours them). If a reachable manifest cannot
 * be read, nothing is swept: run fsck.
 */
export async function collectGarbage(store: ImageStore): Promise<GcResult> {
  return withLock(store.root, 'store', async () => {
    const referenced = await markReachable(store);
    const swept = await store.content.sweep(referenced);
    let records = 0;
    for (const chainId of await recordIds(store)) {
      // A damaged record is left for fsck to report rather than failing the collection.
      const record = await store.layers.get(chainId).catch(() => undefined);
      if (record && !(await store.content.has(record.digest))) {
        if (await store.layers.delete(chainId)) records++;
      }
    }
    const temp = [...(await store.content.cleanTemp()), ...(await removeDeadTempFiles(store.root)), ...(await removeDeadTempFiles(join(store.root, 'strata', 'layers')))];
    return { removed: swept.removed, bytes: swept.bytes, records, temp };
  });
}

/** Every digest reachable from index.json and the registered roots. */
export async function markReachable(store: ImageStore): Promise<Set<Digest>> {
  const marked = new Set<Digest>();
  const visit = async (digest: Digest, mediaTypeKnownManifest: boolean | undefined, where: string): Promise<void> => {
    if (marked.has(digest)) return;
    marked.add(digest);
    const size = await store.content.size(digest);
    if (size === undefined) return;
    if (mediaTypeKnownManifest === false) return;
    if (mediaTypeKnownManifest === undefined && size > MAX_MANIFEST_SIZE) return;
    let doc: unknown;
    try {
      doc = await store.content.readJson(digest);
    } catch (err) {
      if (mediaTypeKnownManifest === undefined) return; // a root that is not JSON is a plain blob
      throw new GcMarkError(`gc: cannot read manifest ${digest} (${where}): ${(err as Error).message}; nothing was removed (run fsck)`, { cause: err });
    }
    const children = childrenOf(doc);
    if (children === undefined) {
      if (mediaTypeKnownManifest) throw new GcMarkError(`gc: ${digest} (${where}) is not a manifest or index; nothing was removed (run fsck)`);
      return;
    }
    for (const child of children) await visit(child.digest, child.manifest, `${where} → ${digest}`);
  };

  const index = await store.readIndex();
  for (const entry of index.manifests) await visit(parseDigest(entry.digest), true, 'index.json');
  for (const provider of providers) {
    for await (const digest of provider(store.root)) await visit(parseDigest(digest), undefined, 'gc root');
  }
  return marked;
}

/** The blobs a manifest or index names, or undefined when `doc` is neither. */
function childrenOf(doc: unknown): { digest: Digest; manifest: boolean }[] | undefined {
  if (typeof doc !== 'object' || doc === null) return undefined;
  const index = doc as Partial<ImageIndex>;
  const manifest = doc as Partial<ImageManifest>;
  const digestOf = (d: unknown): Digest | undefined => {
    const value = (d as { digest?: unknown } | null)?.digest;
    return isDigest(value) ? value : undefined;
  };
  if (Array.isArray(index.manifests)) {
    return index.manifests.flatMap((d) => {
      const digest = digestOf(d);
      return digest ? [{ digest, manifest: true }] : [];
    });
  }
  if (manifest.config !== undefined && Array.isArray(manifest.layers)) {
    const out: { digest: Digest; manifest: boolean }[] = [];
    const config = digestOf(manifest.config);
    if (config) out.push({ digest: config, manifest: false });
    for (const layer of manifest.layers) {
      const digest = digestOf(layer);
      if (digest) out.push({ digest, manifest: false });
    }
    // OCI 1.1 referrers: a manifest may point at the one it is about.
    const subject = digestOf((doc as { subject?: unknown }).subject);
    if (subject) out.push({ digest: subject, manifest: true });
    return out;
  }
  return undefined;
}

/** ChainIDs of the record files present (read one by one, so one bad file does not stop the rest). */
async function recordIds(store: ImageStore): Promise<Digest[]> {
  const names = await readdirOrEmpty(store.layers.dir);
  return names.flatMap((name) => {
    const match = /^([a-f0-9]{64})\.json$/.exec(name);
    return match ? [`sha256:${match[1]}` as Digest] : [];
  });
}
