/**
 * A side-channel reader for layer bytes: it is written the same chunks that go
 * into the content store and works out, in that one pass, what the blob is
 * (gzip, zstd, plain tar, or not a layer at all), the diffID (sha256 of the
 * uncompressed tar), the uncompressed size, and whether every entry of the
 * layer is safe. Nothing is buffered beyond the first 512 bytes.
 *
 * Entries are vetted by the linter extraction uses ({@link LayerLinter}), and
 * parsed the way extraction's reader ({@link readTar}) parses them, so that
 * what `load` accepts is what extraction accepts: two parsers that disagree
 * about a crafted archive would let one see names the other does not. Both
 * take names, link targets and types from tar-stream (PAX and GNU long names
 * applied) with V7 headers allowed; like readTar, a regular-file entry whose
 * name ends in '/' is a directory and a GNU sparse file is refused. readTar
 * itself is not used here because its per-entry body streams cost a third
 * more CPU on a layer of many small files, and the probe reads no bodies.
 */
import { Writable, Transform, type TransformCallback } from 'node:stream';
import { DigestCounter, type Digest } from '../content/digest.js';
import { sniffCompression, type Compression } from '../image/mediatypes.js';
import { createDecompressor } from '../layer/compress.js';
import { extract as createExtract, type Header as TarHeader } from 'tar-stream';
import { LayerLinter, LayerSecurityError } from '../tar/validate.js';

/** What {@link LayerProbe} found out about a blob. */
export interface ProbeResult {
  /** 'other' when the bytes are neither a tar nor a compressed tar. */
  kind: 'layer' | 'other';
  compression: Compression;
  /** Absent for an uncompressed layer probed with `hashUncompressed: false`. */
  diffId?: Digest;
  uncompressedSize?: number;
  /** Set when the blob is a layer whose entries are unsafe or malformed. */
  lintError?: Error;
}

/** Options of {@link LayerProbe}. */
export interface LayerProbeOptions {
  /**
   * Hash an uncompressed layer too (default true). A caller that stores the
   * same bytes as a blob already has their digest, which for a plain tar is
   * the diffID: it passes false and takes the diffID from the blob, so the
   * bytes are hashed once rather than twice.
   */
  hashUncompressed?: boolean;
}

const BLOCK = 512;
const TAR_MAGIC_OFFSET = 257;
const CHECKSUM_OFFSET = 148;

/**
 * Whether a first block is a tar header: the ustar magic, an all-zero block
 * (an empty layer is only its end-of-archive marker), or for a V7 header
 * without magic, a checksum that adds up (which JSON, say, never does).
 */
function looksLikeTar(head: Buffer): boolean {
  if (head.length < BLOCK) return false;
  if (head.subarray(TAR_MAGIC_OFFSET, TAR_MAGIC_OFFSET + 5).toString('latin1') === 'ustar') return true;
  const block = head.subarray(0, BLOCK);
  if (block.every((b) => b === 0)) return true;
  const field = block.subarray(CHECKSUM_OFFSET, CHECKSUM_OFFSET + 8).toString('latin1').replace(/[\0 ]+$/, '').trim();
  if (!/^[0-7]{1,7}$/.test(field)) return false;
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= CHECKSUM_OFFSET && i < CHECKSUM_OFFSET + 8 ? 0x20 : block[i]!;
  return sum === Number.parseInt(field, 8);
}

/** Writable that classifies and inspects a blob as it streams by. */
export class LayerProbe extends Writable {
  private head: Buffer[] = [];
  private headSize = 0;
  private decided = false;
  /** Where the blob's bytes go once classified as a layer (decompressor, hasher or tar reader input). */
  private inner?: Writable;
  private readonly counter = new DigestCounter();
  private compression: Compression = 'none';
  private kind: 'layer' | 'other' = 'other';
  private lintError?: Error;
  private innerDone?: Promise<void>;
  /** Once the inner pipeline fails, the rest of the blob is only counted out. */
  private innerFailed = false;
  private pendingWrite?: (error?: Error | null) => void;
  private readonly hashUncompressed: boolean;

  constructor(
    private readonly label: string,
    options: LayerProbeOptions = {},
  ) {
    super({ highWaterMark: 1 << 20 });
    this.hashUncompressed = options.hashUncompressed ?? true;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.decided) {
      this.forward(chunk, callback);
      return;
    }
    this.head.push(chunk);
    this.headSize += chunk.length;
    if (this.headSize < BLOCK) {
      callback();
      return;
    }
    this.decide();
    const buffered = Buffer.concat(this.head);
    this.head = [];
    this.forward(buffered, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (!this.decided) {
      this.decide();
      const buffered = Buffer.concat(this.head);
      this.head = [];
      if (buffered.length > 0) {
        this.forward(buffered, (err) => (err ? callback(err) : this.finishInner(callback)));
        return;
      }
    }
    this.finishInner(callback);
  }

  /** The findings; valid once the probe has finished. */
  async result(): Promise<ProbeResult> {
    if (!this.writableFinished) {
      await new Promise<void>((resolve, reject) => {
        this.once('finish', resolve);
        this.once('error', reject);
      });
    }
    if (this.kind === 'other') return { kind: 'other', compression: 'none', ...(this.lintError ? { lintError: this.lintError } : {}) };
    const hashed = this.compression !== 'none' || this.hashUncompressed;
    return {
      kind: 'layer',
      compression: this.compression,
      ...(hashed ? { diffId: this.counter.digest(), uncompressedSize: this.counter.size } : {}),
      ...(this.lintError ? { lintError: this.lintError } : {}),
    };
  }

  private finishInner(callback: (error?: Error | null) => void): void {
    if (!this.innerDone) {
      callback();
      return;
    }
    if (!this.innerFailed) this.inner!.end();
    this.innerDone.then(
      () => callback(),
      (err: Error) => {
        // A compressed blob that does not decompress, or a tar that does not parse, is not a usable layer.
        this.lintError ??= err;
        callback();
      },
    );
  }

  private decide(): void {
    this.decided = true;
    const head = Buffer.concat(this.head);
    const compression = sniffCompression(head);
    if (compression === 'none' && !looksLikeTar(head)) return;
    let decompressor: Transform | undefined;
    if (compression !== 'none') {
      try {
        decompressor = createDecompressor(compression);
      } catch (err) {
        // This runtime cannot read it (zstd before Node 22.15): not a layer load can vouch for.
        this.lintError = err as Error;
        return;
      }
    }
    this.kind = 'layer';
    this.compression = compression;

    const { sink: tarInput, done: linted } = this.startLinting();
    const counter = this.counter;
    const hashing =
      compression !== 'none' || this.hashUncompressed
        ? new Transform({
            highWaterMark: 1 << 20,
            transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
              counter.update(chunk);
              done(null, chunk);
            },
          })
        : undefined;
    hashing?.pipe(tarInput);
    const tarSink: Writable = hashing ?? tarInput;
    if (decompressor) decompressor.pipe(tarSink);
    this.inner = decompressor ?? tarSink;

    let failed: ((err: Error) => void) | undefined;
    const failure = new Promise<never>((_, reject) => {
      failed = reject;
    });
    const fail = (err: Error): void => {
      if (this.innerFailed) return;
      this.innerFailed = true;
      const pending = this.pendingWrite;
      this.pendingWrite = undefined;
      pending?.();
      tarInput.destroy();
      failed!(err);
    };
    decompressor?.on('error', (err: Error) => fail(new Error(`${this.label}: cannot decompress ${compression} layer: ${err.message}`)));
    hashing?.on('error', fail);
    const reading = linted.catch((err: Error) => {
      // Malformed or truncated: the reader has stopped, so whatever is still written is only counted out.
      fail(new Error(`${this.label}: malformed layer tar: ${err.message}`));
    });
    this.innerDone = Promise.race([reading, failure]);
    // Errors are collected by innerDone; the probe itself never fails the copy.
    this.innerDone.catch(() => undefined);
  }

  /**
   * A tar parser that lints every entry as it goes (after the first refusal
   * the rest is only read through); `done` settles when the tar has ended.
   */
  private startLinting(): { sink: Writable; done: Promise<void> } {
    const linter = new LayerLinter();
    // V7 headers (no ustar magic) are valid tar to extraction's reader too.
    const extract = createExtract({ allowUnknownFormat: true } as Parameters<typeof createExtract>[0]);
    extract.on('entry', (header: TarHeader, stream, next) => {
      if (!this.lintError) {
        try {
          this.check(linter, header);
        } catch (err) {
          this.lintError = err as Error;
        }
      }
      stream.on('end', () => next());
      // A truncated layer fails the entry too; the extract's own error reports it.
      stream.on('error', () => undefined);
      stream.resume();
    });
    const done = new Promise<void>((resolve, reject) => {
      extract.on('finish', () => resolve());
      extract.on('error', (err: Error) => reject(new Error(/Unexpected end of data/i.test(err.message) ? 'unexpected end of tar archive' : err.message)));
      extract.on('close', () => resolve());
    });
    return { sink: extract as unknown as Writable, done };
  }

  /** One entry through the linter, typed as extraction's reader types it. */
  private check(linter: LayerLinter, header: TarHeader): void {
    const pax = (header as TarHeader & { pax?: Record<string, string> }).pax;
    if (pax && Object.keys(pax).some((key) => key.startsWith('GNU.sparse.'))) {
      throw new LayerSecurityError(header.name, 'GNU sparse files are not supported');
    }
    // Pre-POSIX archives mark directories only by a trailing slash on a regular-file entry.
    const type = header.type === 'file' && header.name.endsWith('/') ? 'directory' : (header.type ?? 'file');
    linter.check({ rawName: header.name, type, linkname: header.linkname });
  }

  private forward(chunk: Buffer, callback: (error?: Error | null) => void): void {
    if (!this.inner || this.innerFailed) {
      callback();
      return;
    }
    if (this.inner.write(chunk)) {
      callback();
      return;
    }
    this.pendingWrite = callback;
    this.inner.once('drain', () => {
      const pending = this.pendingWrite;
      this.pendingWrite = undefined;
      pending?.();
    });
  }
}

/**
 * Feeds `source` to several writables at once, honouring each one's
 * backpressure, then ends them. Resolves once every target has finished, or
 * with `waitForFinish: false` as soon as all data is written and `end()`
 * called on each (for a target whose finishing, an fsync say, the caller
 * awaits elsewhere).
 */
export async function teeInto(source: AsyncIterable<Buffer>, targets: Writable[], options: { waitForFinish?: boolean } = {}): Promise<void> {
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const onError = (err: Error): void => {
    failure ??= err;
    wake?.();
  };
  for (const target of targets) target.on('error', onError);
  for await (const chunk of source) {
    if (failure) throw failure;
    let waiting = 0;
    await new Promise<void>((resolve) => {
      wake = resolve;
      for (const target of targets) {
        if (!target.write(chunk)) {
          waiting++;
          target.once('drain', () => {
            if (--waiting === 0) resolve();
          });
        }
      }
      if (waiting === 0) resolve();
    });
    if (failure) throw failure;
  }
  if (options.waitForFinish === false) {
    for (const target of targets) target.end();
    return;
  }
  await Promise.all(
    targets.map(
      (target) =>
        new Promise<void>((resolve, reject) => {
          target.once('error', reject);
          target.end(() => resolve());
        }),
    ),
  );
}
