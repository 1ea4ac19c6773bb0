/**
 * Layer compression: a parallel, deterministic gzip built on node:zlib, plus
 * zstd where the running Node has it.
 *
 * Why a home-made gzip: `zlib.createGzip()` runs one deflate stream on one
 * libuv thread, so on a 2-core machine it caps the whole layer pipeline at
 * single-core deflate speed. Following pigz, the input is cut into fixed-size
 * blocks that are deflated independently and concurrently; each block is primed
 * with the previous block's last 32 KiB as the deflate dictionary, so
 * back-references across block boundaries are kept and the ratio stays within a
 * fraction of a percent of serial gzip. Every block but the last ends in a sync
 * flush (byte-aligned, not final), the last one in Z_FINISH, so the raw blocks
 * concatenate into one valid deflate stream inside one gzip member.
 *
 * Determinism: block boundaries depend only on byte offsets (never on how the
 * input was chunked or on which block finished first), the header is fixed, and
 * outputs are emitted in input order. The same input, level and block size give
 * the same bytes whatever `threads` is.
 */
import { availableParallelism } from 'node:os';
import { PassThrough, Transform, type TransformCallback } from 'node:stream';
import * as zlib from 'node:zlib';
import { StrataError } from '../content/errors.js';
import type { Compression } from '../image/mediatypes.js';

/**
 * Default gzip level: 5.
 *
 * Measured on a distro-like 295 MB tar (npm, /usr/share/doc, python3 stdlib,
 * /usr/include; 17k files) with node:zlib on a 2-vCPU Xeon, deflate CPU time
 * and output relative to level 6:
 *
 *   level 1: 0.56x CPU, +8.6% bytes     level 4: 0.71x CPU, +2.2% bytes
 *   level 3: 0.78x CPU, +5.5% bytes     level 5: 0.82x CPU, +0.5% bytes
 *   level 6: 1.00x (4.0 s, 102.4 MB; GNU gzip -6: 6.0 s, 101.9 MB)
 *
 * Levels 1–3 (zlib's greedy matcher) save CPU but give 5–9% larger blobs,
 * paid again on every push, pull and save; level 5 keeps gzip -6's ratio at
 * a fifth less CPU, and run on two threads it makes the whole layer
 * pipeline well under 0.6x the time of `tar | gzip -6 | sha256sum`.
 * Pass `level` to trade differently; the output stays deterministic per level.
 */
export const DEFAULT_GZIP_LEVEL = 5;

/**
 * Bytes of input per parallel deflate block. Large enough that per-block
 * overhead (a zlib handle, a thread-pool round trip, 4 bytes of sync marker)
 * is noise, small enough that a few blocks in flight stay well under a few MB.
 */
export const GZIP_BLOCK_SIZE = 512 * 1024;

/** Deflate's window; the dictionary carried from one block into the next. */
const DEFLATE_WINDOW = 32 * 1024;

/**
 * Fixed gzip member header (RFC 1952): no name, no comment, mtime 0, and OS 255
 * ("unknown", as Go's compress/gzip writes), so the bytes never depend on the
 * host or the clock. XFL is set per level the way gzip and Go do.
 */
function gzipHeader(level: number): Buffer {
  const xfl = level === 9 ? 2 : level === 1 ? 4 : 0;
  return Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, xfl, 0xff]);
}

/**
 * CRC-32 (the gzip trailer's), continued from `previous`. node:zlib has it from
 * Node 20.15 / 22.2; older Node 20 releases get a table-driven fallback, which
 * is slower but keeps the same output.
 */
const crc32: (data: Uint8Array, previous: number) => number =
  typeof zlib.crc32 === 'function' ? (data, previous) => zlib.crc32(data, previous) : crc32Fallback;

let crcTable: Uint32Array | undefined;

/** @internal the pure-JS CRC-32, exported so tests can check it against node:zlib. */
export function crc32Fallback(data: Uint8Array, previous: number): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = ~previous >>> 0;
  for (let i = 0; i < data.length; i++) crc = crcTable[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}

/** Options for {@link createCompressor}. */
export interface CompressorOptions {
  /** Compression level: gzip 0–9 (default {@link DEFAULT_GZIP_LEVEL}), zstd 1–22 (default 3). */
  level?: number;
  /** gzip only: blocks deflated concurrently (default `os.availableParallelism()`). Does not change the output. */
  threads?: number;
  /** gzip only: input bytes per block (default {@link GZIP_BLOCK_SIZE}, at least 32 KiB). Changes the output. */
  blockSize?: number;
}

/** Raised when a compression is requested that this runtime or this module cannot do. */
export class UnsupportedCompressionError extends StrataError {
  constructor(message: string) {
    super('UNSUPPORTED_COMPRESSION', message);
  }
}

/** zstd bindings that Node 22.15+/23.8+ adds to node:zlib; absent from older typings. */
interface ZstdZlib {
  createZstdCompress(options?: { params?: Record<number, number> }): Transform;
  createZstdDecompress(options?: object): Transform;
  constants: { ZSTD_c_compressionLevel: number };
}

function zstdZlib(): ZstdZlib | undefined {
  const candidate = zlib as unknown as Partial<ZstdZlib>;
  return typeof candidate.createZstdCompress === 'function' && typeof candidate.createZstdDecompress === 'function'
    ? (candidate as ZstdZlib)
    : undefined;
}

/** True when node:zlib has zstd (Node >= 22.15 or >= 23.8). */
export function zstdAvailable(): boolean {
  return zstdZlib() !== undefined;
}

function requireZstd(): ZstdZlib {
  const z = zstdZlib();
  if (!z) {
    throw new UnsupportedCompressionError(
      `zstd layers need node:zlib zstd support (Node >= 22.15.0 or >= 23.8.0); this is Node ${process.versions.node}. ` +
        `Use gzip or none, or run on a newer Node.`,
    );
  }
  return z;
}

function checkLevel(level: number, min: number, max: number, what: string): number {
  if (!Number.isInteger(level) || level < min || level > max) {
    throw new RangeError(`${what} level must be an integer from ${min} to ${max}, got ${String(level)}`);
  }
  return level;
}

/**
 * A compressing Transform for a layer blob. `none` is a pass-through; `gzip` is
 * the parallel deterministic gzip described above; `zstd` uses node:zlib's zstd
 * and throws {@link UnsupportedCompressionError} where Node lacks it.
 */
export function createCompressor(compression: Compression, opts: CompressorOptions = {}): Transform {
  switch (compression) {
    case 'none':
      return new PassThrough();
    case 'gzip':
      return new ParallelGzip(opts);
    case 'zstd': {
      const z = requireZstd();
      const level = checkLevel(opts.level ?? 3, 1, 22, 'zstd');
      return z.createZstdCompress({ params: { [z.constants.ZSTD_c_compressionLevel]: level } });
    }
    default:
      throw new UnsupportedCompressionError(`unknown compression ${JSON.stringify(compression)}`);
  }
}

/** A decompressing Transform: the inverse of {@link createCompressor} (gzip accepts any valid gzip, multi-member too). */
export function createDecompressor(compression: Compression): Transform {
  switch (compression) {
    case 'none':
      return new PassThrough();
    case 'gzip':
      return zlib.createGunzip();
    case 'zstd':
      return requireZstd().createZstdDecompress();
    default:
      throw new UnsupportedCompressionError(`unknown compression ${JSON.stringify(compression)}`);
  }
}

/** One block handed to the thread pool, kept in input order. */
interface Job {
  output?: Buffer;
}

/**
 * pigz-style gzip: fixed-size input blocks deflated concurrently on the libuv
 * pool, emitted in order, wrapped in one gzip member.
 */
class ParallelGzip extends Transform {
  private readonly level: number;
  private readonly blockSize: number;
  /** Blocks being deflated at once: one per thread. */
  private readonly maxRunning: number;
  /**
   * Blocks dispatched but not yet emitted (running or finished out of order).
   * Larger than maxRunning so one slow block does not idle the other threads;
   * bounded so memory is at most a few blocks per thread.
   */
  private readonly maxQueued: number;
  private running = 0;
  private readonly deflateChunkSize: number;
  private block: Buffer;
  private filled = 0;
  private dictionary: Buffer | undefined;
  private readonly jobs: Job[] = [];
  private crc = 0;
  private inputBytes = 0;
  private headerPushed = false;
  private failed = false;
  /** The chunk being cut into blocks, and how far into it we are. */
  private input: Buffer | undefined;
  private inputOffset = 0;
  /** The write waiting for its chunk to be taken in, or the flush waiting for the last block. */
  private waiting: TransformCallback | undefined;
  private flushing = false;

  constructor(opts: CompressorOptions) {
    // Room for a few compressed blocks on the way out, so a consumer that reads
    // in bursts (a file writer) does not hold up taking in more input.
    super({ readableHighWaterMark: 2 * 1024 * 1024, writableHighWaterMark: 1024 * 1024 });
    this.level = checkLevel(opts.level ?? DEFAULT_GZIP_LEVEL, 0, 9, 'gzip');
    this.blockSize = opts.blockSize ?? GZIP_BLOCK_SIZE;
    if (!Number.isInteger(this.blockSize) || this.blockSize < DEFLATE_WINDOW) {
      // The dictionary for block n+1 is the tail of block n alone, so a block must cover a full window.
      throw new RangeError(`gzip blockSize must be an integer >= ${DEFLATE_WINDOW}, got ${String(opts.blockSize)}`);
    }
    const threads = opts.threads ?? availableParallelism();
    if (!Number.isInteger(threads) || threads < 1) {
      throw new RangeError(`gzip threads must be a positive integer, got ${String(opts.threads)}`);
    }
    this.maxRunning = threads;
    this.maxQueued = threads * 4;
    // Room for a whole block's worst case (stored blocks add ~5 bytes per 16 KiB) so
    // each block is one round trip to the pool rather than many 16 KiB ones.
    this.deflateChunkSize = this.blockSize + (this.blockSize >> 8) + 1024;
    this.block = Buffer.allocUnsafe(this.blockSize);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (!Buffer.isBuffer(chunk)) chunk = Buffer.from(chunk as Uint8Array);
    this.pushHeader();
    this.crc = crc32(chunk, this.crc);
    this.inputBytes += chunk.length;
    this.input = chunk;
    this.inputOffset = 0;
    this.waiting = callback;
    this.fill();
  }

  /**
   * Copies the current input chunk into blocks, dispatching full ones, and
   * stops (to be resumed by {@link drain}) while all threads are busy or too
   * many blocks await emission, so memory stays bounded even for huge chunks.
   */
  private fill(): void {
    const chunk = this.input;
    if (!chunk) return;
    while (this.inputOffset < chunk.length) {
      if (this.filled === this.blockSize) {
        if (this.running >= this.maxRunning || this.jobs.length >= this.maxQueued) return;
        // Only now, with more input in hand, is the full block known not to be the last.
        this.dispatch(false);
      }
      const n = Math.min(this.blockSize - this.filled, chunk.length - this.inputOffset);
      chunk.copy(this.block, this.filled, this.inputOffset, this.inputOffset + n);
      this.filled += n;
      this.inputOffset += n;
    }
    this.input = undefined;
    const callback = this.waiting;
    this.waiting = undefined;
    callback?.();
  }

  override _flush(callback: TransformCallback): void {
    this.pushHeader();
    this.dispatch(true);
    this.flushing = true;
    this.waiting = callback;
    this.drain();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.failed = true;
    this.waiting = undefined;
    callback(err);
  }

  private pushHeader(): void {
    if (this.headerPushed) return;
    this.headerPushed = true;
    this.push(gzipHeader(this.level));
  }

  private dispatch(final: boolean): void {
    const input = this.block.subarray(0, this.filled);
    const options: zlib.ZlibOptions = {
      level: this.level,
      chunkSize: this.deflateChunkSize,
      finishFlush: final ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH,
    };
    if (this.dictionary) options.dictionary = this.dictionary;
    const job: Job = {};
    this.jobs.push(job);
    this.running++;
    zlib.deflateRaw(input, options, (err, output) => {
      this.running--;
      if (this.failed) return;
      if (err) {
        this.failed = true;
        this.destroy(err);
        return;
      }
      job.output = output;
      this.drain();
    });
    if (!final) {
      // The job still reads `input`; the next block gets a fresh buffer. The tail
      // view keeps this block alive just until the next block's job is queued.
      this.dictionary = input.subarray(input.length - DEFLATE_WINDOW);
      this.block = Buffer.allocUnsafe(this.blockSize);
      this.filled = 0;
    }
  }

  /** Emits finished blocks in input order, then resumes whatever waits for room. */
  private drain(): void {
    while (this.jobs.length > 0 && this.jobs[0]!.output !== undefined) {
      this.push(this.jobs.shift()!.output);
    }
    if (this.flushing) {
      if (this.jobs.length > 0 || !this.waiting) return;
      const callback = this.waiting;
      this.waiting = undefined;
      this.push(this.trailer());
      callback();
    } else if (this.input && this.running < this.maxRunning && this.jobs.length < this.maxQueued) {
      this.fill();
    }
  }

  private trailer(): Buffer {
    const trailer = Buffer.allocUnsafe(8);
    trailer.writeUInt32LE(this.crc >>> 0, 0);
    // ISIZE is the input length modulo 2^32 (RFC 1952).
    trailer.writeUInt32LE(this.inputBytes % 0x1_0000_0000, 4);
    return trailer;
  }
}
