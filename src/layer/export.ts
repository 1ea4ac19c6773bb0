/**
 * Exporting a layer in the compression a consumer wants: the stored blob
 * verbatim when it already is in that form, otherwise decompressed (and
 * recompressed) on the fly, without a temporary copy.
 */
import { PassThrough, Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DigestCounter, parseDigest, type Digest } from '../content/digest.js';
import { StrataError } from '../content/errors.js';
import type { ContentStore } from '../content/store.js';
import { sniffCompression, type Compression } from '../image/mediatypes.js';
import { createCompressor, createDecompressor } from './compress.js';
import { readBlobHead } from './make.js';
import { LayerNotFoundError, LayerRecords, type LayerRecord } from './record.js';

/** Options of {@link exportLayer}. */
export interface ExportLayerOptions {
  /** Compression of the exported bytes. */
  compression: Compression;
  /** Level when recompressing (see createCompressor). */
  level?: number;
  /** gzip threads when recompressing. */
  threads?: number;
  /** Records to resolve DiffIDs and ChainIDs with (default: the records of `store.root`). */
  records?: LayerRecords;
}

/** The uncompressed tar of an exported layer does not hash to the layer's DiffID. */
export class LayerDiffIdMismatchError extends StrataError {
  constructor(
    readonly diffId: Digest,
    readonly actual: Digest,
  ) {
    super('LAYER_DIFFID_MISMATCH', `layer ${diffId}: uncompressed content hashes to ${actual}`);
  }
}

/** What {@link resolveLayer} found for a reference. */
export interface ResolvedLayer {
  /** The stored blob. */
  digest: Digest;
  /** Its compression. */
  compression: Compression;
  /** The layer's DiffID, when a record tells it (or the blob is uncompressed). */
  diffId?: Digest;
  /** The record used, if any. */
  record?: LayerRecord;
}

/**
 * Finds the stored blob for `reference`, which may be a layer blob digest, a
 * DiffID or a ChainID. When several blobs hold the same DiffID, one already in
 * `preferred` compression wins, so export can stream it verbatim.
 */
export async function resolveLayer(store: ContentStore, reference: string, records: LayerRecords, preferred?: Compression): Promise<ResolvedLayer> {
  const ref = parseDigest(reference);
  if (await store.has(ref)) {
    const record = await records.findByBlob(ref);
    if (record) return { digest: ref, compression: record.compression, diffId: record.diffId, record };
    const head = await readBlobHead(store, ref, TAR_BLOCK);
    const compression = sniffCompression(head);
    if (compression !== 'none') return { digest: ref, compression };
    // Unrecorded and uncompressed: make sure it is a tar, not a config or manifest blob.
    if (!startsLikeTar(head)) throw new StrataError('NOT_A_LAYER', `blob ${ref} is neither a recorded layer nor a tar archive`);
    return { digest: ref, compression, diffId: ref };
  }
  const byChain = await records.get(ref);
  const record =
    (byChain && (await store.has(byChain.digest)) ? byChain : undefined) ??
    (preferred !== undefined ? await findStored(store, records, ref, preferred) : undefined) ??
    (await findStored(store, records, ref));
  if (!record) throw new LayerNotFoundError(ref);
  return { digest: record.digest, compression: record.compression, diffId: record.diffId, record };
}

async function findStored(store: ContentStore, records: LayerRecords, diffId: Digest, compression?: Compression): Promise<LayerRecord | undefined> {
  const record = await records.findByDiffId(diffId, compression);
  return record && (await store.has(record.digest)) ? record : undefined;
}

/**
 * Streams a layer in `opts.compression`. `reference` is a layer blob digest, a
 * DiffID or a ChainID. When the stored blob already has that compression its
 * bytes are streamed verbatim (and verified against the blob digest);
 * otherwise it is decompressed, checked against its DiffID when that is
 * known, and recompressed if asked. Verification failures surface as a stream
 * error at the end, so consumers must not trust the bytes until `end`.
 * Resolution errors ({@link LayerNotFoundError}) surface as stream errors too;
 * a malformed reference throws at once.
 */
export function exportLayer(store: ContentStore, reference: string, opts: ExportLayerOptions): Readable {
  parseDigest(reference);
  // Fail fast on a compression this runtime cannot produce.
  if (opts.compression !== 'none' && opts.compression !== 'gzip') createCompressor(opts.compression).destroy();
  const out = new PassThrough({ highWaterMark: 1024 * 1024 });
  const records = opts.records ?? new LayerRecords(store.root);
  run().catch((err: unknown) => out.destroy(err instanceof Error ? err : new Error(String(err))));
  return out;

  async function run(): Promise<void> {
    const layer = await resolveLayer(store, reference, records, opts.compression);
    const blob = store.createReadStream(layer.digest);
    if (layer.compression === opts.compression) {
      await pipeline(blob, out);
      return;
    }
    const stages: NodeJS.ReadWriteStream[] = [createDecompressor(layer.compression)];
    if (layer.diffId !== undefined) stages.push(new DiffIdCheck(layer.diffId));
    if (opts.compression !== 'none') {
      const level = opts.level === undefined ? {} : { level: opts.level };
      const threads = opts.threads === undefined ? {} : { threads: opts.threads };
      stages.push(createCompressor(opts.compression, { ...level, ...threads }));
    }
    await pipeline([blob, ...stages, out]);
  }
}

const TAR_BLOCK = 512;

/**
 * Whether `head` (a blob's first 512 bytes) opens a tar archive: a header block
 * whose checksum holds (POSIX, GNU and V7 headers alike), or the zero block of
 * an empty archive.
 */
function startsLikeTar(head: Buffer): boolean {
  if (head.length < TAR_BLOCK) return false;
  if (head.every((byte) => byte === 0)) return true;
  const field = head.subarray(148, 156).toString('latin1').replace(/[\0 ]+$/, '').trim();
  if (!/^[0-7]+$/.test(field)) return false;
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : head[i]!;
  return sum === parseInt(field, 8);
}

/** Passes a tar through and fails at its end if it does not hash to the expected DiffID. */
class DiffIdCheck extends Transform {
  private readonly counter = new DigestCounter();

  constructor(private readonly diffId: Digest) {
    super({ highWaterMark: 1024 * 1024 });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.counter.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    const actual = this.counter.digest();
    callback(actual === this.diffId ? null : new LayerDiffIdMismatchError(this.diffId, actual));
  }
}
