/**
 * fsck: a thorough consistency check of a store root, reporting every fault
 * it finds by the object it concerns, and changing nothing.
 *
 * It runs in two phases. The reference graph (oci-layout, index.json, every
 * manifest, index and config reachable from it, the layer records) is
 * checked under the `store` lock, so a concurrent rmi + gc cannot make a
 * blob look missing. The expensive part (hashing every blob, decompressing
 * layers to recompute DiffIDs) then runs without the lock, so tagging is
 * not held up; a blob deleted meanwhile by gc is simply skipped.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { DigestCounter, parseDigest, type Digest } from '../content/digest.js';
import { BlobCorruptError, BlobNotFoundError } from '../content/errors.js';
import { withLock } from '../content/lock.js';
import { chainIdOf } from '../layer/chain.js';
import { createDecompressor, UnsupportedCompressionError } from '../layer/compress.js';
import type { LayerRecord } from '../layer/record.js';
import { TEMP_PREFIX } from '../util/atomic.js';
import { readdirOrEmpty } from '../util/fs.js';
import { compressionOfMediaType, type Compression } from './mediatypes.js';
import { Annotation, type Descriptor, type ImageIndex, type ImageManifest } from './types.js';
import { parseImageConfig } from './config.js';
import { processIsAlive } from '../util/process.js';
import { tempFileOwner } from '../util/atomic.js';
import { entryName, isImageManifestType, isIndexType, parseManifestDocument, type ImageStore } from './image-store.js';

/** Kinds of fault fsck reports. */
export type FsckFaultKind =
  | 'bad-layout'
  | 'bad-index'
  | 'missing-blob'
  | 'size-mismatch'
  | 'corrupt-blob'
  | 'bad-manifest'
  | 'bad-config'
  | 'layer-count-mismatch'
  | 'diffid-mismatch'
  | 'bad-layer'
  | 'bad-record'
  | 'record-missing-blob'
  | 'stray-temp'
  | 'unknown-file'
  | 'unverifiable';

/** One problem, naming the object (blob digest, file path, record ChainID) it is about. */
export interface FsckFault {
  kind: FsckFaultKind;
  /** `error`: data is wrong or missing. `warning`: untidy or unchecked, nothing lost. */
  severity: 'error' | 'warning';
  /** The blob digest, file path or ChainID at fault. */
  object: string;
  message: string;
}

/** Options of {@link checkStore}. */
export interface FsckOptions {
  /** Skip decompressing layers to recompute DiffIDs (blob hashes are still checked). */
  quick?: boolean;
}

/** The outcome of {@link checkStore}. */
export interface FsckReport {
  /** True when there is no fault of severity `error`. */
  ok: boolean;
  faults: FsckFault[];
  checked: {
    blobs: number;
    bytes: number;
    manifests: number;
    configs: number;
    layerRecords: number;
    /** Layers whose DiffID was recomputed. */
    diffIds: number;
  };
}

/** What the graph walk expects of a layer blob, for the second phase. */
interface LayerExpectation {
  compression: Compression;
  diffIds: Map<Digest, string>;
  uncompressedSize?: { size: number; chainId: Digest };
}

const HEX64_RE = /^[a-f0-9]{64}$/;
const MAX_DEPTH = 4;

/** Checks the store behind `store`; see the module comment. */
export async function checkStore(store: ImageStore, options: FsckOptions = {}): Promise<FsckReport> {
  const faults: FsckFault[] = [];
  const checked = { blobs: 0, bytes: 0, manifests: 0, configs: 0, layerRecords: 0, diffIds: 0 };
  const fault = (kind: FsckFaultKind, object: string, message: string, severity: 'error' | 'warning' = 'error'): void => {
    faults.push({ kind, severity, object, message });
  };
  /** Blobs already reported as corrupt, so phase two does not repeat them. */
  const corrupt = new Set<Digest>();
  const layers = new Map<Digest, LayerExpectation>();

  await withLock(store.root, 'store', async () => {
    await checkLayoutFile(store, fault);
    await walkGraph(store, fault, corrupt, layers, checked);
    await checkRecords(store, fault, layers, checked);
  });

  await hashBlobs(store, options, fault, corrupt, layers, checked);
  if (!options.quick) await recomputeDiffIds(store, fault, corrupt, layers, checked);
  await findStrayFiles(store, fault);

  return { ok: !faults.some((f) => f.severity === 'error'), faults, checked };
}

type FaultFn = (kind: FsckFaultKind, object: string, message: string, severity?: 'error' | 'warning') => void;

async function checkLayoutFile(store: ImageStore, fault: FaultFn): Promise<void> {
  const path = join(store.root, 'oci-layout');
  try {
    const layout = JSON.parse(await readFile(path, 'utf8')) as { imageLayoutVersion?: unknown };
    if (typeof layout.imageLayoutVersion !== 'string' || !/^1\.\d+\.\d+$/.test(layout.imageLayoutVersion)) {
      fault('bad-layout', path, `imageLayoutVersion is ${JSON.stringify(layout.imageLayoutVersion)}, expected 1.x.y`);
    }
  } catch (err) {
    fault('bad-layout', path, `cannot read the OCI layout marker: ${(err as Error).message}`);
  }
}

/** Walks index.json → manifests/indexes → configs and layers. */
async function walkGraph(
  store: ImageStore,
  fault: FaultFn,
  corrupt: Set<Digest>,
  layers: Map<Digest, LayerExpectation>,
  checked: FsckReport['checked'],
): Promise<void> {
  let index: ImageIndex;
  try {
    index = await store.readIndex();
  } catch (err) {
    fault('bad-index', store.indexPath, (err as Error).message);
    return;
  }
  const seenNames = new Map<string, number>();
  for (const entry of index.manifests) {
    const name = entryName(entry);
    if (name) seenNames.set(name.ref.toString(), (seenNames.get(name.ref.toString()) ?? 0) + 1);
    const ref = entry.annotations?.[Annotation.RefName];
    if (ref !== undefined && !name) {
      fault('bad-index', store.indexPath, `entry for ${entry.digest} has ref.name ${JSON.stringify(ref)}, which is not an image reference strata can use`, 'warning');
    }
  }
  for (const [name, count] of seenNames) {
    if (count > 1) fault('bad-index', store.indexPath, `name ${name} is given to ${count} entries`);
  }

  const visited = new Set<Digest>();
  const where = (entry: Descriptor): string => {
    const name = entryName(entry);
    return name ? name.ref.familiar() : `untagged ${entry.digest}`;
  };

  const checkBlob = async (digest: Digest, size: number, what: string, optional = false): Promise<boolean> => {
    const actual = await store.content.size(digest);
    if (actual === undefined) {
      if (!optional) fault('missing-blob', digest, `${what} is missing`);
      return false;
    }
    if (actual !== size) {
      fault('size-mismatch', digest, `${what} is ${actual} bytes, its descriptor says ${size}`);
      return false;
    }
    return true;
  };

  const readJson = async (digest: Digest, what: string, kind: 'bad-manifest' | 'bad-config'): Promise<unknown> => {
    try {
      return await store.content.readJson(digest);
    } catch (err) {
      if (err instanceof BlobCorruptError) {
        corrupt.add(digest);
        fault('corrupt-blob', digest, `${what}: ${err.message}`);
      } else if (err instanceof BlobNotFoundError) {
        fault('missing-blob', digest, `${what} is missing`);
      } else {
        fault(kind, digest, `${what}: ${(err as Error).message}`);
      }
      return undefined;
    }
  };

  const visit = async (desc: Descriptor, label: string, depth: number, optional: boolean): Promise<void> => {
    let digest: Digest;
    try {
      digest = parseDigest(desc.digest);
    } catch (err) {
      fault('bad-manifest', label, (err as Error).message);
      return;
    }
    // Every descriptor's size is checked, even for a manifest already walked through another.
    if (!(await checkBlob(digest, desc.size, `manifest of ${label}`, optional))) return;
    if (visited.has(digest)) return;
    visited.add(digest);
    const raw = await readJson(digest, `manifest of ${label}`, 'bad-manifest');
    if (raw === undefined) return;
    let doc: ImageManifest | ImageIndex;
    try {
      doc = parseManifestDocument(raw, digest);
    } catch (err) {
      fault('bad-manifest', digest, (err as Error).message);
      return;
    }
    checked.manifests++;
    const isIndex = Array.isArray((doc as ImageIndex).manifests);
    if (desc.mediaType && (isIndex ? !isIndexType(desc.mediaType) : !isImageManifestType(desc.mediaType))) {
      fault('bad-manifest', digest, `descriptor says ${desc.mediaType}, but the blob is ${isIndex ? 'an index' : 'an image manifest'}`);
    }
    if (isIndex) {
      if (depth >= MAX_DEPTH) {
        fault('bad-manifest', digest, `indexes nest more than ${MAX_DEPTH} levels deep`);
        return;
      }
      // A multi-platform image may hold only some platforms: absent children are fine.
      for (const child of (doc as ImageIndex).manifests) await visit(child, `${label} → ${child.platform ? `${child.platform.os}/${child.platform.architecture}` : child.digest}`, depth + 1, true);
      return;
    }
    const manifest = doc as ImageManifest;
    const configDigest = parseDigest(manifest.config.digest);
    let diffIds: Digest[] | undefined;
    if (await checkBlob(configDigest, manifest.config.size, `config of ${label}`)) {
      const rawConfig = await readJson(configDigest, `config of ${label}`, 'bad-config');
      if (rawConfig !== undefined) {
        try {
          diffIds = parseImageConfig(rawConfig).rootfs.diff_ids;
          checked.configs++;
        } catch (err) {
          fault('bad-config', configDigest, `config of ${label}: ${(err as Error).message}`);
        }
      }
    }
    if (diffIds && diffIds.length !== manifest.layers.length) {
      fault('layer-count-mismatch', digest, `manifest of ${label} has ${manifest.layers.length} layers, its config ${configDigest} lists ${diffIds.length} diff_ids`);
    }
    for (const [i, layer] of manifest.layers.entries()) {
      const layerDigest = parseDigest(layer.digest);
      const foreign = (layer.urls?.length ?? 0) > 0;
      if (!(await checkBlob(layerDigest, layer.size, `layer ${i} of ${label}`, foreign))) continue;
      const compression = compressionOfMediaType(layer.mediaType);
      if (compression === undefined) {
        fault('bad-manifest', digest, `layer ${i} (${layerDigest}) has media type ${layer.mediaType}, which is not a layer type`);
        continue;
      }
      const expectation = layers.get(layerDigest) ?? { compression, diffIds: new Map() };
      const diffId = diffIds?.[i];
      if (diffId !== undefined && diffIds!.length === manifest.layers.length) expectation.diffIds.set(diffId, `config ${configDigest} (${label}) diff_ids[${i}]`);
      layers.set(layerDigest, expectation);
    }
  };

  for (const entry of index.manifests) await visit(entry, where(entry), 0, false);
}

/** Checks each layer record file on its own, so one damaged record does not hide the others. */
async function checkRecords(store: ImageStore, fault: FaultFn, layers: Map<Digest, LayerExpectation>, checked: FsckReport['checked']): Promise<void> {
  const dir = store.layers.dir;
  const names = (await readdirOrEmpty(dir)).sort();
  const records: LayerRecord[] = [];
  for (const name of names) {
    if (name.startsWith(TEMP_PREFIX)) continue;
    const match = /^([a-f0-9]{64})\.json$/.exec(name);
    if (!match) {
      fault('unknown-file', join(dir, name), 'not a layer record', 'warning');
      continue;
    }
    const chainId = `sha256:${match[1]}` as Digest;
    try {
      const record = await store.layers.get(chainId);
      if (record) records.push(record);
    } catch (err) {
      fault('bad-record', chainId, (err as Error).message);
    }
  }
  const byChain = new Set(records.map((r) => r.chainId));
  for (const record of records) {
    checked.layerRecords++;
    if (record.chainId !== chainIdOf(record.parent, record.diffId)) {
      fault('bad-record', record.chainId, `ChainID does not follow from parent ${record.parent ?? '(none)'} and DiffID ${record.diffId}`);
    }
    if (record.parent !== undefined && !byChain.has(record.parent)) {
      fault('bad-record', record.chainId, `parent record ${record.parent} does not exist`, 'warning');
    }
    const size = await store.content.size(record.digest);
    if (size === undefined) {
      fault('record-missing-blob', record.chainId, `blob ${record.digest} is missing (gc removes such records)`, 'warning');
      continue;
    }
    if (size !== record.size) {
      fault('bad-record', record.chainId, `blob ${record.digest} is ${size} bytes, the record says ${record.size}`);
      continue;
    }
    const expectation: LayerExpectation = layers.get(record.digest) ?? { compression: record.compression, diffIds: new Map() };
    if (expectation.compression !== record.compression) {
      fault('bad-record', record.chainId, `record says blob ${record.digest} is ${record.compression}, a manifest says ${expectation.compression}`);
    }
    expectation.diffIds.set(record.diffId, `layer record ${record.chainId}`);
    expectation.uncompressedSize = { size: record.uncompressedSize, chainId: record.chainId };
    layers.set(record.digest, expectation);
  }
}

/** Re-hashes every blob (layers are hashed in the DiffID pass unless `quick`). */
async function hashBlobs(
  store: ImageStore,
  options: FsckOptions,
  fault: FaultFn,
  corrupt: Set<Digest>,
  layers: Map<Digest, LayerExpectation>,
  checked: FsckReport['checked'],
): Promise<void> {
  for await (const digest of store.content.list()) {
    const size = await store.content.size(digest);
    if (size === undefined) continue;
    checked.blobs++;
    checked.bytes += size;
    if (corrupt.has(digest)) continue;
    if (!options.quick && layers.has(digest)) continue;
    try {
      await store.content.verify(digest);
    } catch (err) {
      if (err instanceof BlobNotFoundError) continue;
      if (err instanceof BlobCorruptError) {
        corrupt.add(digest);
        fault('corrupt-blob', digest, err.message);
      } else {
        throw err;
      }
    }
  }
}

/** Decompresses each known layer once, hashing both the blob and the tar. */
async function recomputeDiffIds(
  store: ImageStore,
  fault: FaultFn,
  corrupt: Set<Digest>,
  layers: Map<Digest, LayerExpectation>,
  checked: FsckReport['checked'],
): Promise<void> {
  for (const [digest, expectation] of layers) {
    if (corrupt.has(digest)) continue;
    let decompressor;
    try {
      decompressor = createDecompressor(expectation.compression);
    } catch (err) {
      if (!(err instanceof UnsupportedCompressionError)) throw err;
      fault('unverifiable', digest, `DiffID not checked: ${err.message}`, 'warning');
      // The blob hash must still be checked.
      await store.content.verify(digest).catch((e: unknown) => {
        if (e instanceof BlobCorruptError) fault('corrupt-blob', digest, e.message);
        else if (!(e instanceof BlobNotFoundError)) throw e;
      });
      continue;
    }
    const counter = new DigestCounter();
    try {
      await pipeline(
        store.content.createReadStream(digest, { verify: true }),
        decompressor,
        new Writable({
          write(chunk: Buffer, _encoding, done) {
            counter.update(chunk);
            done();
          },
        }),
      );
    } catch (err) {
      if (err instanceof BlobNotFoundError) continue;
      if (err instanceof BlobCorruptError) {
        corrupt.add(digest);
        fault('corrupt-blob', digest, err.message);
        continue;
      }
      // The bytes may be intact but not a valid stream of the declared compression.
      const hashOk = await store.content.verify(digest).then(
        () => true,
        (e: unknown) => {
          if (e instanceof BlobCorruptError) {
            corrupt.add(digest);
            fault('corrupt-blob', digest, e.message);
            return false;
          }
          if (e instanceof BlobNotFoundError) return false;
          throw e;
        },
      );
      if (hashOk) fault('bad-layer', digest, `cannot decompress as ${expectation.compression}: ${(err as Error).message}`);
      continue;
    }
    checked.diffIds++;
    const actual = counter.digest();
    for (const [diffId, source] of expectation.diffIds) {
      if (diffId !== actual) fault('diffid-mismatch', digest, `uncompressed content hashes to ${actual}, but ${source} says ${diffId}`);
    }
    if (expectation.uncompressedSize && expectation.uncompressedSize.size !== counter.size) {
      fault('bad-record', expectation.uncompressedSize.chainId, `uncompressed size of ${digest} is ${counter.size}, the record says ${expectation.uncompressedSize.size}`);
    }
  }
}

/** Temp files left by dead processes, and files that do not belong. */
async function findStrayFiles(store: ImageStore, fault: FaultFn): Promise<void> {
  const dirs = [store.root, store.content.blobsDir, join(store.root, 'strata'), store.content.tempDir, store.layers.dir];
  for (const dir of dirs) {
    for (const name of await readdirOrEmpty(dir)) {
      const path = join(dir, name);
      if (name.startsWith(TEMP_PREFIX)) {
        const pid = tempFileOwner(name);
        if (pid !== undefined && processIsAlive(Number(pid))) continue;
        fault('stray-temp', path, pid !== undefined ? `temp file of process ${pid}, which is no longer running (gc removes it)` : 'temp file of an unknown process', 'warning');
      } else if (dir === store.content.blobsDir && !HEX64_RE.test(name)) {
        fault('unknown-file', path, 'not a blob (name is not a sha256 hex digest)', 'warning');
      }
    }
  }
  const trash = join(store.root, 'strata', 'trash');
  for (const name of await readdir(trash).catch(() => [] as string[])) {
    const inside = await readdir(join(trash, name)).catch(() => [] as string[]);
    if (inside.length > 0) fault('stray-temp', join(trash, name), `${inside.length} blob(s) left by an interrupted gc (the next gc puts them back)`, 'warning');
  }
  const blobsRoot = join(store.root, 'blobs');
  for (const name of await readdir(blobsRoot).catch(() => [] as string[])) {
    if (name !== 'sha256') {
      const info = await stat(join(blobsRoot, name)).catch(() => undefined);
      fault('unknown-file', join(blobsRoot, name), `${info?.isDirectory() ? 'blobs of algorithm' : 'unexpected file'} ${name}; strata stores sha256 only`, 'warning');
    }
  }
}
