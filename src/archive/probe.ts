/**
 * A side-channel reader for layer bytes: it is written the same chunks that go
 * into the content store and works out, in that one pass, what the blob is
 * (gzip, zstd, plain tar, or not a layer at all), the diffID (sha256 of the
 * uncompressed tar), the uncompressed size, and whether every entry of the
 * layer is safe. Nothing is buffered beyond the first 512 bytes.
 */
import { Writable, PassThrough, type Transform } from 'node:stream';
import { extract as createExtract } from 'tar-stream';
import { DigestCounter, type Digest } from '../content/digest.js';
import { sniffCompression, type Compression } from '../image/mediatypes.js';
import { createDecompressor } from '../layer/compress.js';
import { LayerLinter } from '../tar/validate.js';

/** What {@link LayerProbe} found out about a blob. */
export interface ProbeResult {
  /** 'other' when the bytes are neither a tar nor a compressed tar. */
  kind: 'layer' | 'other';
  compression: Compression;
  diffId?: Digest;
  uncompressedSize?: number;
  /** Set when the blob is a layer whose entries are unsafe or malformed. */
  lintError?: Error;
}

const TAR_MAGIC_OFFSET = 257;

function looksLikeTar(head: Buffer): boolean {
  if (head.length >= TAR_MAGIC_OFFSET + 5 && head.subarray(TAR_MAGIC_OFFSET, TAR_MAGIC_OFFSET + 5).toString('latin1') === 'ustar') {
    return true;
  }
  // An empty layer is a tar of only zero blocks.
  return head.length >= 512 && head.subarray(0, 512).every((b) => b === 0);
}

/** Writable that classifies and inspects a blob as it streams by. */
export class LayerProbe extends Writable {
  private head: Buffer[] = [];
  private headSize = 0;
  private decided = false;
  private inner?: Writable;
  private readonly counter = new DigestCounter();
  private compression: Compression = 'none';
  private kind: 'layer' | 'other' = 'other';
  private lintError?: Error;
  private innerDone?: Promise<void>;
  /** Once the inner pipeline fails, the rest of the blob is only counted out. */
  private innerFailed = false;
  private pendingWrite?: (error?: Error | null) => void;

  constructor(private readonly label: string) {
    super({ highWaterMark: 1 << 20 });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.decided) {
      this.forward(chunk, callback);
      return;
    }
    this.head.push(chunk);
    this.headSize += chunk.length;
    if (this.headSize < 512) {
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
    if (this.kind === 'other') return { kind: 'other', compression: 'none' };
    return {
      kind: 'layer',
      compression: this.compression,
      diffId: this.counter.digest(),
      uncompressedSize: this.counter.size,
      ...(this.lintError ? { lintError: this.lintError } : {}),
    };
  }

  private finishInner(callback: (error?: Error | null) => void): void {
    if (!this.inner || this.innerFailed) {
      if (this.innerDone) {
        this.innerDone.then(() => callback(), (err: Error) => {
          this.lintError ??= err;
          callback();
        });
        return;
      }
      callback();
      return;
    }
    this.inner.end();
    this.innerDone!.then(() => callback(), (err: Error) => {
      // A compressed blob that does not decompress is not a usable layer.
      this.lintError ??= err;
      callback();
    });
  }

  private decide(): void {
    this.decided = true;
    const head = Buffer.concat(this.head);
    const compression = sniffCompression(head);
    if (compression === 'none' && !looksLikeTar(head)) return;
    this.kind = 'layer';
    this.compression = compression;

    const extract = createExtract();
    const linter = new LayerLinter();
    const hashing = new PassThrough();
    hashing.on('data', (chunk: Buffer) => this.counter.update(chunk));
    let decompressor: Transform | undefined;
    if (compression !== 'none') {
      try {
        decompressor = createDecompressor(compression);
      } catch (err) {
        this.kind = 'other';
        this.lintError = err as Error;
        return;
      }
    }
    extract.on('entry', (header, stream, next) => {
      if (!this.lintError) {
        try {
          linter.check({ rawName: header.name, type: header.type, linkname: header.linkname });
        } catch (err) {
          this.lintError = err as Error;
        }
      }
      stream.on('end', () => next());
      stream.resume();
    });
    this.innerDone = new Promise<void>((resolve, reject) => {
      const fail = (err: Error): void => {
        this.innerFailed = true;
        const pending = this.pendingWrite;
        this.pendingWrite = undefined;
        pending?.();
        reject(err);
      };
      extract.on('finish', () => resolve());
      extract.on('error', (err: Error) => fail(new Error(`${this.label}: malformed layer tar: ${err.message}`)));
      hashing.on('error', fail);
      decompressor?.on('error', (err: Error) => fail(new Error(`${this.label}: cannot decompress ${compression} layer: ${err.message}`)));
    });
    // Errors are collected by innerDone; the probe itself never fails the copy.
    this.innerDone.catch(() => undefined);
    hashing.pipe(extract as unknown as NodeJS.WritableStream);
    if (decompressor) {
      decompressor.pipe(hashing);
      this.inner = decompressor;
    } else {
      this.inner = hashing;
    }
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

/** Feeds `source` to several writables at once, honouring each one's backpressure. */
export async function teeInto(source: AsyncIterable<Buffer>, targets: Writable[]): Promise<void> {
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
