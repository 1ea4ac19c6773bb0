/**
 * Making layers: a tar (from a directory, a changeset or an existing tar) goes
 * through one streaming pass — hashed into its DiffID while being counted,
 * compressed, and written to the content store, which hashes the blob digest
 * as it writes — and ends in a {@link LayerRecord}. Nothing holds a whole layer
 * in memory; the pass's memory is a few compression blocks and stream buffers.
 */
import { open } from 'node:fs/promises';
import { Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DigestCounter, parseDigest, type Digest } from '../content/digest.js';
import { BlobNotFoundError, StrataError } from '../content/errors.js';
import type { Lease } from '../content/lease.js';
import type { ContentStore } from '../content/store.js';
import { compressionOfMediaType, layerMediaType, sniffCompression, type Compression } from '../image/mediatypes.js';
import { tarFromChangeset, type Changeset } from '../tar/changeset.js';
import { tarFromTree } from '../tar/write.js';
import { chainIdOf } from './chain.js';
import { createCompressor, createDecompressor } from './compress.js';
import { LayerRecords, type LayerRecord } from './record.js';

/** Where a layer's tar comes from. */
export type LayerSource =
  /** A directory tree, tarred deterministically (its root is not an entry). */
  | { dir: string }
  /** A changeset (files added/changed/deleted against a parent), whiteouts included. */
  | { changeset: Changeset }
  /** An existing uncompressed tar, hashed and stored byte for byte. */
  | { tar: NodeJS.ReadableStream };

/** Options of {@link makeLayer}. */
export interface MakeLayerOptions {
  /** Compression of the stored blob (default gzip). */
  compression?: Compression;
  /** Compression level (see createCompressor for ranges and defaults). */
  level?: number;
  /** gzip threads (default: available parallelism); does not change the output. */
  threads?: number;
  /**
   * SOURCE_DATE_EPOCH in seconds: later mtimes are clamped to it. Only for `dir`
   * and `changeset` sources; an existing tar is stored as it is, so passing it
   * with a `tar` source is an error.
   */
  sourceDateEpoch?: number;
  /** `dir` sources: record extended attributes (security.capability and the like), as tarFromTree does. */
  xattrs?: boolean;
  /** ChainID of the stack this layer goes on top of (absent for a base layer). */
  parentChainId?: Digest;
  /** Lease protecting the new blob from garbage collection until the caller references it. */
  lease?: Lease;
  /** Where to write the record (default: the records of `store.root`). */
  records?: LayerRecords;
  /** Called as the uncompressed tar flows, with the total number of tar bytes so far. */
  onProgress?: (bytes: number) => void;
}

/** Raised for a source or option combination makeLayer cannot honour. */
export class InvalidLayerSourceError extends StrataError {
  constructor(message: string) {
    super('INVALID_LAYER_SOURCE', message);
  }
}

/**
 * Makes a layer from `source` in one streaming pass: tar → DiffID hash and
 * byte count → compressor → content store. On success the blob is committed
 * (under `opts.lease` if given) and the record for its ChainID is written; on
 * failure nothing is stored and the temp file is removed.
 *
 * The same tree, options and sourceDateEpoch give the same DiffID and the same
 * blob digest every time.
 */
export async function makeLayer(store: ContentStore, source: LayerSource, opts: MakeLayerOptions = {}): Promise<LayerRecord> {
  const compression = opts.compression ?? 'gzip';
  const parent = opts.parentChainId === undefined ? undefined : parseDigest(opts.parentChainId);
  // Built before any I/O so bad options fail before a temp file exists.
  const compressor = compression === 'none' ? undefined : createCompressor(compression, compressorOptions(opts));
  const tar = openSource(source, opts);
  // Uncompressed, the blob is the diff, and the writer already hashes what it
  // stores: hashing the tar here too was a fifth of a cold build's time.
  const diff = compressor ? new DigestingStream(opts.onProgress) : new CountingStream(opts.onProgress);
  const writer = store.writer(opts.lease ? { lease: opts.lease } : {});
  let blob: { digest: Digest; size: number };
  try {
    if (compressor) await pipeline(tar, new Coalesce(), diff, compressor, writer);
    else await pipeline(tar, new Coalesce(), diff, writer);
    blob = await writer.commit();
  } catch (err) {
    await writer.abort();
    throw err;
  }
  const diffId = diff instanceof DigestingStream ? diff.digest() : blob.digest;
  const records = opts.records ?? new LayerRecords(store.root);
  return records.put({
    chainId: chainIdOf(parent, diffId),
    ...(parent !== undefined ? { parent } : {}),
    diffId,
    digest: blob.digest,
    size: blob.size,
    mediaType: layerMediaType(compression),
    compression,
    uncompressedSize: diff.size,
    createdAt: new Date().toISOString(),
  });
}

/** Options of {@link recordForBlob}. */
export interface RecordForBlobOptions {
  /** Where to write the record (default: the records of `store.root`). */
  records?: LayerRecords;
}

/**
 * Writes the layer record for a blob that is already in the store (loaded or
 * imported): decompresses and hashes it to learn its DiffID and uncompressed
 * size. The blob's first bytes must agree with `mediaType`'s compression; a
 * layer declared uncompressed but stored gzipped (or the reverse) is refused,
 * so a record never describes bytes it does not match. An existing record for
 * the same ChainID and blob is returned unchanged.
 */
export async function recordForBlob(
  store: ContentStore,
  digest: Digest,
  mediaType: string,
  parentChainId?: Digest,
  opts: RecordForBlobOptions = {},
): Promise<LayerRecord> {
  const blobDigest = parseDigest(digest);
  const parent = parentChainId === undefined ? undefined : parseDigest(parentChainId);
  const compression = compressionOfMediaType(mediaType);
  if (compression === undefined) throw new InvalidLayerSourceError(`blob ${blobDigest}: ${JSON.stringify(mediaType)} is not a layer media type`);
  const size = await store.size(blobDigest);
  if (size === undefined) throw new BlobNotFoundError(blobDigest);
  const actual = await sniffStoredBlob(store, blobDigest);
  if (actual !== compression) {
    throw new InvalidLayerSourceError(`blob ${blobDigest} is declared ${mediaType} (${compression}) but its content is ${actual === 'none' ? 'not compressed' : actual}`);
  }
  const records = opts.records ?? new LayerRecords(store.root);

  let diffId: Digest;
  let uncompressedSize: number;
  const known = await records.findByBlob(blobDigest);
  if (known) {
    // Same blob already recorded (e.g. under another parent): its DiffID is known.
    diffId = known.diffId;
    uncompressedSize = known.uncompressedSize;
  } else if (compression === 'none') {
    // The store verified these bytes against their name on the way in.
    diffId = blobDigest;
    uncompressedSize = size;
  } else {
    const diff = new DigestingStream();
    await pipeline(store.createReadStream(blobDigest), createDecompressor(compression), diff, discard());
    diffId = diff.digest();
    uncompressedSize = diff.size;
  }
  const chainId = chainIdOf(parent, diffId);
  const existing = await records.get(chainId);
  if (existing && existing.digest === blobDigest && existing.mediaType === mediaType) return existing;
  return records.put({
    chainId,
    ...(parent !== undefined ? { parent } : {}),
    diffId,
    digest: blobDigest,
    size,
    mediaType,
    compression,
    uncompressedSize,
    createdAt: new Date().toISOString(),
  });
}

/** A pass-through that counts what flows through it and reports the count. @internal */
export class CountingStream extends Transform {
  private counted = 0;

  constructor(private readonly onProgress?: (bytes: number) => void) {
    // Larger than the default so a 2-core box is not ping-ponging 16 KiB chunks.
    super({ highWaterMark: 1024 * 1024 });
  }

  /** Bytes seen so far. */
  get size(): number {
    return this.counted;
  }

  /** Called with each chunk before it is passed on. */
  protected see(_chunk: Buffer): void {}

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.see(chunk);
    this.counted += chunk.length;
    this.onProgress?.(this.counted);
    callback(null, chunk);
  }
}

/**
 * A pass-through that hashes and counts what flows through it. @internal shared
 * by the layer modules.
 */
export class DigestingStream extends CountingStream {
  private readonly hash = new DigestCounter();

  /** sha256 of everything seen (call once, after the stream ended). */
  digest(): Digest {
    return this.hash.digest();
  }

  protected override see(chunk: Buffer): void {
    this.hash.update(chunk);
  }
}

/**
 * Gathers small chunks into larger ones. A tar stream arrives as 512-byte
 * headers and per-file buffers; handing each to the hash, the compressor and
 * the store writer separately costs a call (and, for the writer, a thread-pool
 * write) per piece, which dominated on trees of many small files.
 */
class Coalesce extends Transform {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(private readonly target = 512 * 1024) {
    super({ highWaterMark: 1024 * 1024 });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (chunk.length >= this.target && this.pendingBytes === 0) return callback(null, chunk);
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes >= this.target) this.release();
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.pendingBytes > 0) this.release();
    callback();
  }

  private release(): void {
    this.push(this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending, this.pendingBytes));
    this.pending = [];
    this.pendingBytes = 0;
  }
}

/** A sink that drops everything (for passes that only hash). */
export function discard(): Writable {
  return new Writable({
    highWaterMark: 1024 * 1024,
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
}

/** The first `length` bytes of a stored blob (fewer if it is shorter). @internal */
export async function readBlobHead(store: ContentStore, digest: Digest, length: number): Promise<Buffer> {
  const handle = await open(store.blobPath(digest), 'r');
  try {
    const head = Buffer.alloc(length);
    const { bytesRead } = await handle.read(head, 0, length, 0);
    return head.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** The compression of a stored blob, from its first bytes. @internal */
export async function sniffStoredBlob(store: ContentStore, digest: Digest): Promise<Compression> {
  return sniffCompression(await readBlobHead(store, digest, 4));
}

function compressorOptions(opts: MakeLayerOptions): { level?: number; threads?: number } {
  const result: { level?: number; threads?: number } = {};
  if (opts.level !== undefined) result.level = opts.level;
  if (opts.threads !== undefined) result.threads = opts.threads;
  return result;
}

function openSource(source: LayerSource, opts: MakeLayerOptions): NodeJS.ReadableStream {
  if (typeof source !== 'object' || source === null) throw new InvalidLayerSourceError('layer source must be { dir }, { changeset } or { tar }');
  const kinds = (['dir', 'changeset', 'tar'] as const).filter((key) => key in source);
  if (kinds.length !== 1) throw new InvalidLayerSourceError(`layer source must have exactly one of dir, changeset, tar; got ${kinds.join(', ') || 'none'}`);
  const { sourceDateEpoch } = opts;
  const epochOpts = sourceDateEpoch === undefined ? {} : { sourceDateEpoch };
  if ('dir' in source) {
    if (typeof source.dir !== 'string' || source.dir === '') throw new InvalidLayerSourceError('layer source dir must be a non-empty path');
    return tarFromTree(source.dir, { ...epochOpts, xattrs: opts.xattrs === true });
  }
  if (opts.xattrs !== undefined) throw new InvalidLayerSourceError('xattrs applies only to dir sources');
  if ('changeset' in source) return tarFromChangeset(source.changeset, epochOpts);
  if (sourceDateEpoch !== undefined) {
    throw new InvalidLayerSourceError('sourceDateEpoch cannot be applied to an existing tar stream; it is stored byte for byte');
  }
  return source.tar;
}
