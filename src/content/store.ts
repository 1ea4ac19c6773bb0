/**
 * The content-addressed blob store. Its root is itself a valid OCI image layout:
 *
 * ```
 * ROOT/oci-layout            {"imageLayoutVersion":"1.0.0"}
 * ROOT/index.json            tagged images (owned by the image store)
 * ROOT/blobs/sha256/<hex>    blobs, mode 0444, named by the sha256 of their bytes
 * ROOT/strata/tmp/           ingest temp files (same file system as blobs)
 * ROOT/strata/leases/        leases (see lease.ts)
 * ROOT/strata/trash/         blobs a sweep is about to delete
 * ```
 *
 * A blob appears under `blobs/sha256` only by an atomic rename of a complete,
 * hashed and fsynced temp file, so a reader never sees a partial blob, whatever
 * happens to the writer.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { type FileHandle, chmod, link, mkdir, open, opendir, readdir, rename, rm, rmdir, stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { DigestCounter, digestHex, isDigest, parseDigest, sha256Of, type Digest } from './digest.js';
import { BlobCorruptError, BlobNotFoundError, BlobTooLargeError, DigestMismatchError, SizeMismatchError, StrataError } from './errors.js';
import { Lease, scanLeases } from './lease.js';
import { TEMP_PREFIX, fsyncDir, removeDeadTempFiles, tempPathFor } from '../util/atomic.js';
import { readFileOrUndefined } from '../util/fs.js';

/** What a caller knows in advance about content being ingested. */
export interface ExpectedContent {
  /** The digest the content must hash to. */
  digest?: Digest;
  /** The exact size the content must have. */
  size?: number;
}

/** Options of {@link ContentStore.writer}. */
export interface WriterOptions extends ExpectedContent {
  /** Lease that protects the blob from garbage collection once committed. */
  lease?: Lease;
}

/** A committed blob. */
export interface BlobInfo {
  digest: Digest;
  size: number;
}

/** Options of {@link ContentStore.createReadStream}. */
export interface ReadOptions {
  /** Re-hash while reading and fail at the end if the bytes do not match (default true). */
  verify?: boolean;
}

/** Options of {@link ContentStore.sweep}. */
export interface SweepOptions {
  /**
   * How many blobs are moved to the trash between two looks at the leases. Smaller
   * batches keep a racing blob out of `blobs/` for less time. Default 256.
   */
  batchSize?: number;
  /** @internal test hook: runs after the first look at the leases of a batch. */
  afterLeaseScan?: (candidates: readonly Digest[]) => Promise<void>;
  /** @internal test hook: runs after a batch was moved to the trash, before the second look. */
  afterTrash?: (trashed: readonly Digest[]) => Promise<void>;
}

/** What {@link ContentStore.sweep} did. */
export interface SweepResult {
  /** Blobs deleted. */
  removed: Digest[];
  /** Their total size. */
  bytes: number;
  /** Ids of dead leases that were deleted. */
  deadLeases: string[];
}

const OCI_LAYOUT = { imageLayoutVersion: '1.0.0' };
const EMPTY_INDEX = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] };
const INGEST_PREFIX = `${TEMP_PREFIX}ingest-`;
const READ_CHUNK = 256 * 1024;
const DEFAULT_MAX_IN_MEMORY = 32 * 1024 * 1024;
/** Blobs up to this size are read into memory with one synchronous call. */
const SMALL_BLOB = 1024 * 1024;

/** A content-addressed store of blobs rooted at an OCI image layout directory. */
export class ContentStore {
  private constructor(
    /** Absolute path of the store root. */
    readonly root: string,
  ) {}

  /**
   * Opens the store at `root`, creating the layout (directories, `oci-layout`,
   * an empty `index.json`) where it is missing. Safe to run concurrently from
   * several processes: existing files are never replaced.
   */
  static async open(root: string): Promise<ContentStore> {
    const store = new ContentStore(resolve(root));
    // Synchronous: directories that almost always exist already; a thread-pool
    // round trip each costs more than the mkdir (and opening is on every command's path).
    for (const dir of [store.blobsDir, store.tempDir, join(store.root, 'strata', 'leases'), store.trashDir]) mkdirSync(dir, { recursive: true });
    await createIfMissing(join(store.root, 'oci-layout'), JSON.stringify(OCI_LAYOUT));
    await createIfMissing(join(store.root, 'index.json'), JSON.stringify(EMPTY_INDEX));
    checkLayoutVersion(join(store.root, 'oci-layout'));
    return store;
  }

  /** Directory holding the blobs. */
  get blobsDir(): string {
    return join(this.root, 'blobs', 'sha256');
  }

  /** Directory of ingest temp files. */
  get tempDir(): string {
    return join(this.root, 'strata', 'tmp');
  }

  private get trashDir(): string {
    return join(this.root, 'strata', 'trash');
  }

  /** Path of the blob `digest` (which need not exist). Throws InvalidDigestError for a malformed digest. */
  blobPath(digest: string): string {
    return join(this.blobsDir, digestHex(digest));
  }

  /** Whether the blob is in the store. */
  async has(digest: string): Promise<boolean> {
    return (await this.size(digest)) !== undefined;
  }

  /** Size of the blob in bytes, or undefined when it is not in the store. */
  async size(digest: string): Promise<number | undefined> {
    // One stat: synchronous, as a pool round trip costs more than the call.
    const info = statSync(this.blobPath(digest), { throwIfNoEntry: false });
    return info?.isFile() ? info.size : undefined;
  }

  /**
   * A writable that stores what is written to it as a blob once
   * {@link BlobWriter.commit} is called. Nothing is visible in the store before
   * the commit succeeds. Without `lease`, a concurrent {@link sweep} may delete
   * the blob again before anything references it.
   */
  writer(options: WriterOptions = {}): BlobWriter {
    if (options.digest !== undefined) parseDigest(options.digest);
    if (options.size !== undefined && !(Number.isSafeInteger(options.size) && options.size >= 0)) {
      throw new RangeError(`expected size must be a non-negative integer, got ${options.size}`);
    }
    const tempPath = join(this.tempDir, `${INGEST_PREFIX}${process.pid}-${randomBytes(8).toString('hex')}`);
    return new BlobWriter(this, tempPath, options);
  }

  /**
   * Stores everything `source` yields as a blob. With `expected`, content that
   * does not match is refused (DigestMismatchError / SizeMismatchError) and
   * nothing is stored.
   */
  async ingest(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array> | NodeJS.ReadableStream, expected: ExpectedContent = {}, lease?: Lease): Promise<BlobInfo> {
    const blobWriter = this.writer({ ...expected, lease });
    try {
      await pipeline(source as AsyncIterable<Uint8Array>, blobWriter);
      return await blobWriter.commit();
    } catch (err) {
      await blobWriter.abort();
      throw err;
    }
  }

  /**
   * Stores a small in-memory value (strings are UTF-8). A blob already there
   * is kept (claimed for `lease` first): the bytes are hashed in memory, so
   * a rebuild that makes the same config and manifest again writes nothing.
   */
  async putBytes(data: Uint8Array | string, lease?: Lease): Promise<BlobInfo> {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    const digest = sha256Of(bytes);
    // Lease first, then look (see claim); a stored copy of the wrong size is replaced below.
    if (lease !== undefined) await lease.add(digest);
    if ((await this.size(digest)) === bytes.length) return { digest, size: bytes.length };
    const blobWriter = this.writer({ lease });
    blobWriter.end(bytes);
    return blobWriter.commit();
  }

  /** Stores `value` as compact JSON (no spaces), the form manifests and configs are hashed in. */
  async putJson(value: unknown, lease?: Lease): Promise<BlobInfo> {
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`cannot store ${typeof value} as JSON`);
    return this.putBytes(text, lease);
  }

  /**
   * Reads a blob. With `verify` (the default) the bytes are re-hashed on the way
   * and the stream fails with BlobCorruptError, in place of ending, if they do not
   * hash to `digest`; a missing blob fails with BlobNotFoundError.
   *
   * Corruption can only be detected at the end, after all data was delivered:
   * consumers must not commit anything derived from the stream (a blob, an
   * extracted file tree) until it has ended cleanly.
   */
  createReadStream(digest: string, { verify = true }: ReadOptions = {}): Readable {
    const valid = parseDigest(digest);
    return new BlobReadStream(this, valid, verify);
  }

  /** Reads a whole (verified) blob into memory; refuses blobs larger than `maxSize`. */
  async readBytes(digest: string, maxSize = DEFAULT_MAX_IN_MEMORY): Promise<Buffer> {
    const valid = parseDigest(digest);
    const size = await this.size(valid);
    if (size === undefined) throw new BlobNotFoundError(valid);
    if (size > maxSize) throw new BlobTooLargeError(valid, size, maxSize);
    if (size <= SMALL_BLOB) {
      // A manifest or config: one synchronous read and a hash, not a stream.
      const bytes = readFileOrUndefined(this.blobPath(valid));
      if (bytes !== undefined) {
        if (bytes.length > maxSize) throw new BlobTooLargeError(valid, bytes.length, maxSize);
        const actual = sha256Of(bytes);
        if (actual !== valid) throw new BlobCorruptError(valid, actual);
        return bytes;
      }
      // Gone since the stat: a sweep may have it in the trash, which the stream looks in.
    }
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of this.createReadStream(valid) as AsyncIterable<Buffer>) {
      total += chunk.length;
      // The file cannot legitimately change, but a bound must hold regardless.
      if (total > maxSize) throw new BlobTooLargeError(valid, total, maxSize);
      chunks.push(chunk);
    }
    return Buffer.concat(chunks, total);
  }

  /** Reads and parses a JSON blob (verified, at most 32 MiB). */
  async readJson<T = unknown>(digest: string): Promise<T> {
    const bytes = await this.readBytes(digest);
    try {
      return JSON.parse(bytes.toString('utf8')) as T;
    } catch (err) {
      throw new StrataError('BLOB_NOT_JSON', `blob ${digest} is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Re-hashes the whole blob; throws BlobCorruptError or BlobNotFoundError. */
  async verify(digest: string): Promise<void> {
    const stream = this.createReadStream(digest);
    for await (const _ of stream) {
      // Hashing happens inside the stream; the data itself is not needed.
    }
  }

  /** Deletes a blob; resolves to whether it was there. Callers are responsible for it being unreferenced. */
  async delete(digest: string): Promise<boolean> {
    try {
      await unlink(this.blobPath(digest));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  /** The digests of all stored blobs, in directory order. Files with other names are skipped. */
  async *list(): AsyncIterable<Digest> {
    const dir = await opendir(this.blobsDir);
    for await (const entry of dir) {
      const digest = `sha256:${entry.name}`;
      if (entry.isFile() && isDigest(digest)) yield digest;
    }
  }

  /**
   * Removes ingest temp files whose creating process is no longer running (the
   * pid is part of the name). Resolves to the paths removed.
   *
   * Limitation: a pid reused by an unrelated process keeps its dead predecessor's
   * temp files until that process exits too; and processes in another pid
   * namespace sharing the store cannot be told apart.
   */
  cleanTemp(): Promise<string[]> {
    return removeDeadTempFiles(this.tempDir);
  }

  /** Creates a lease: blobs added to it survive {@link sweep} until it is released. */
  lease(): Promise<Lease> {
    return Lease.create(this.root);
  }

  /** Runs `fn` with a fresh lease and releases the lease afterwards. */
  async withLease<T>(fn: (lease: Lease) => Promise<T>): Promise<T> {
    const lease = await this.lease();
    try {
      return await fn(lease);
    } finally {
      await lease.release();
    }
  }

  /**
   * Adds `digest` to `lease`, then reports whether the blob exists. `true` means
   * the blob stays in the store until the lease is released: this is how an
   * operation safely reuses a blob it did not write. (Checking {@link has} first
   * and adding afterwards would leave a window for a sweep to delete it.)
   */
  async claim(digest: string, lease: Lease): Promise<boolean> {
    await lease.add(digest);
    return this.has(digest);
  }

  /**
   * Garbage-collection primitive: deletes every blob that is neither in
   * `referenced` nor listed in a live lease, and deletes dead leases.
   *
   * The caller must hold the store mutex (`withLock(root, 'store', …)`), so that
   * sweeps do not overlap; ordinary writers and readers need no lock.
   *
   * Why leases suffice without a lock for writers: writers (and {@link claim})
   * add a digest to their lease *before* checking whether the blob exists, and a
   * sweep looks at the leases twice: before moving a batch of candidates to the
   * trash (a candidate listed then is skipped) and again after (a trashed blob
   * listed now is put back). Take a writer whose lease entry for blob B appears
   * after the first look. Either its existence check ran before B was moved to
   * the trash, in which case its lease entry, written earlier still, is visible
   * to the second look and B is put back; or the check ran after the move, in
   * which case the writer saw B missing and stored its own copy. Either way B
   * exists once the writer is done. Readers racing a sweep may briefly find a
   * leased blob in the trash; {@link createReadStream} looks there too.
   *
   * A sweep that crashed may leave blobs in the trash; the next sweep first puts
   * them all back, and reconsiders them.
   */
  async sweep(referenced: ReadonlySet<string>, options: SweepOptions = {}): Promise<SweepResult> {
    const batchSize = options.batchSize ?? 256;
    if (!(Number.isSafeInteger(batchSize) && batchSize > 0)) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
    await this.restoreTrash();

    const result: SweepResult = { removed: [], bytes: 0, deadLeases: [] };
    // Collected up front: renaming entries out of a directory being iterated may
    // make the iteration skip others.
    const all: Digest[] = [];
    for await (const digest of this.list()) if (!referenced.has(digest)) all.push(digest);

    const trash = join(this.trashDir, `sweep-${process.pid}-${randomBytes(6).toString('hex')}`);
    await mkdir(trash, { recursive: true });
    try {
      for (let start = 0; start < all.length; start += batchSize) {
        const batch = all.slice(start, start + batchSize);
        const firstLook = await scanLeases(this.root, { checkLiveness: true });
        result.deadLeases.push(...firstLook.dead);
        await options.afterLeaseScan?.(batch);

        const trashed: { digest: Digest; size: number }[] = [];
        for (const digest of batch) {
          if (firstLook.protected.has(digest)) continue;
          const from = this.blobPath(digest);
          try {
            const { size } = await stat(from);
            await rename(from, join(trash, digestHex(digest)));
            trashed.push({ digest, size });
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
          }
        }
        await options.afterTrash?.(trashed.map((t) => t.digest));

        // Every lease file counts here, live or not: see the method comment.
        const secondLook = await scanLeases(this.root, { checkLiveness: false });
        for (const { digest, size } of trashed) {
          const inTrash = join(trash, digestHex(digest));
          if (secondLook.protected.has(digest)) {
            await this.putBack(inTrash, digest);
          } else {
            await unlink(inTrash);
            result.removed.push(digest);
            result.bytes += size;
          }
        }
      }
    } finally {
      // Whatever is still in the trash after a failure goes back, not away.
      await this.restoreTrash();
    }
    if (result.removed.length > 0) await fsyncDir(this.blobsDir);
    return result;
  }

  /** Moves every blob left in the trash back to blobs/, then removes the trash directories. */
  private async restoreTrash(): Promise<void> {
    for (const sweepDir of await readdir(this.trashDir).catch(ignoreMissingDir)) {
      const dir = join(this.trashDir, sweepDir);
      for (const name of await readdir(dir).catch(ignoreMissingDir)) {
        const digest = `sha256:${name}`;
        if (isDigest(digest)) await this.putBack(join(dir, name), digest);
        else await rm(join(dir, name), { recursive: true, force: true });
      }
      await rmdir(dir).catch(ignoreMissingDir);
    }
  }

  /** Returns a trashed blob to blobs/, unless a writer has meanwhile stored a fresh copy. */
  private async putBack(inTrash: string, digest: Digest): Promise<void> {
    const target = this.blobPath(digest);
    try {
      // link() never replaces: a copy written meanwhile (identical by name) wins.
      await link(inTrash, target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    await unlink(inTrash);
  }

  /**
   * Opens a blob for reading. A blob can be in a sweep's trash for a moment
   * before being put back (see {@link sweep}); an open descriptor stays valid
   * whatever happens to the name afterwards, so looking there is safe.
   * @internal
   */
  async openBlob(digest: Digest): Promise<FileHandle> {
    const path = this.blobPath(digest);
    const hex = digestHex(digest);
    // Two rounds: a blob moves to the trash and back at most once per sweep.
    for (let round = 0; round < 2; round++) {
      const handle = await openIfExists(path);
      if (handle) return handle;
      for (const sweepDir of await readdir(this.trashDir).catch(ignoreMissingDir)) {
        const inTrash = await openIfExists(join(this.trashDir, sweepDir, hex));
        if (inTrash) return inTrash;
      }
    }
    throw new BlobNotFoundError(digest);
  }
}

/**
 * Writable side of an ingest. Hashes and counts what it is given while writing it
 * to a temp file; {@link commit} checks it and moves it into place. Errors and
 * {@link abort} remove the temp file.
 */
export class BlobWriter extends Writable {
  private handle: FileHandle | undefined;
  private readonly counter = new DigestCounter();
  private result: BlobInfo | undefined;
  /** Set once the temp file is complete and must survive the stream's auto-destroy for commit. */
  private keepTemp = false;
  private committing: Promise<BlobInfo> | undefined;

  /** @internal use {@link ContentStore.writer}. */
  constructor(
    private readonly store: ContentStore,
    /** The temp file being written. */
    readonly tempPath: string,
    private readonly options: WriterOptions,
  ) {
    super({ highWaterMark: 1024 * 1024 });
  }

  override _construct(callback: (error?: Error | null) => void): void {
    open(this.tempPath, 'wx', 0o600).then(
      (handle) => {
        this.handle = handle;
        callback();
      },
      callback,
    );
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const expectedSize = this.options.size;
    if (expectedSize !== undefined && this.counter.size + chunk.length > expectedSize) {
      // Fail as soon as the content overruns, rather than after filling the disk.
      callback(new SizeMismatchError(expectedSize, this.counter.size + chunk.length, true, this.options.digest));
      return;
    }
    this.counter.update(chunk);
    writeFully(this.handle!, chunk).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    const handle = this.handle!;
    this.result = { digest: this.counter.digest(), size: this.counter.size };
    handle
      .sync()
      .then(() => handle.close())
      .then(() => {
        this.handle = undefined;
        this.keepTemp = true;
        callback();
      }, callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const handle = this.handle;
    this.handle = undefined;
    const closed = handle ? handle.close().catch(() => undefined) : Promise.resolve();
    closed
      .then(() => (this.keepTemp ? undefined : unlink(this.tempPath).catch(() => undefined)))
      .then(() => callback(error));
  }

  /**
   * Finishes the blob: ends the stream if the caller has not, waits for all data
   * to be on disk, checks the expected digest and size, and moves the file into
   * the store. If the blob already exists the new copy is dropped. Calling it
   * again returns the same result.
   */
  commit(): Promise<BlobInfo> {
    this.committing ??= this.doCommit();
    return this.committing;
  }

  /** Discards the content; nothing is stored. Harmless after a successful commit. */
  async abort(): Promise<void> {
    if (this.committing) {
      const committed = await this.committing.then(
        () => true,
        () => false,
      );
      if (committed) return;
    }
    this.keepTemp = false;
    this.destroy();
    // The temp file may still be being created (destroy waits for _construct);
    // unlinking before the stream has closed could leave it behind.
    if (!this.closed) await new Promise((resolve) => this.once('close', resolve));
    await unlink(this.tempPath).catch(() => undefined);
  }

  private async doCommit(): Promise<BlobInfo> {
    if (!this.writableEnded) this.end();
    try {
      await finished(this, { readable: false });
    } catch (err) {
      await this.dropTemp();
      throw err;
    }
    const result = this.result!;
    const { digest: expectedDigest, size: expectedSize, lease } = this.options;
    try {
      if (expectedSize !== undefined && result.size !== expectedSize) throw new SizeMismatchError(expectedSize, result.size, false, expectedDigest);
      if (expectedDigest !== undefined && result.digest !== expectedDigest) throw new DigestMismatchError(expectedDigest, result.digest);
      await chmod(this.tempPath, 0o444);
      // Lease entry strictly before the existence check: see ContentStore.sweep.
      if (lease) await lease.add(result.digest);
      const target = this.store.blobPath(result.digest);
      const existingSize = await this.store.size(result.digest);
      // Same name and same size: the existing copy is this content (a damaged copy
      // of the right size is for verify/fsck to find). A different size means the
      // stored copy is damaged, and the fresh one replaces it.
      if (existingSize === result.size) {
        await this.dropTemp();
      } else {
        await rename(this.tempPath, target);
        this.keepTemp = false;
        await fsyncDir(this.store.blobsDir);
      }
      return result;
    } catch (err) {
      await this.dropTemp();
      throw err;
    }
  }

  private async dropTemp(): Promise<void> {
    this.keepTemp = false;
    await unlink(this.tempPath).catch(() => undefined);
  }
}

/** Readable of one blob that re-hashes as it goes. @internal use {@link ContentStore.createReadStream}. */
class BlobReadStream extends Readable {
  private handle: FileHandle | undefined;
  private readonly counter: DigestCounter | undefined;
  /** Bytes left according to the size at open; sizes read buffers, EOF is still what ends the stream. */
  private remaining = 0;

  constructor(
    private readonly store: ContentStore,
    private readonly digest: Digest,
    verify: boolean,
  ) {
    super({ highWaterMark: READ_CHUNK });
    this.counter = verify ? new DigestCounter() : undefined;
  }

  override _construct(callback: (error?: Error | null) => void): void {
    this.store
      .openBlob(this.digest)
      .then(async (handle) => {
        this.handle = handle;
        this.remaining = (await handle.stat()).size;
      })
      .then(() => callback(), callback);
  }

  override _read(size: number): void {
    // Small blobs (manifests, configs) get small buffers rather than a full chunk each.
    const buffer = Buffer.allocUnsafe(Math.min(Math.max(size, READ_CHUNK), Math.max(this.remaining, 4096)));
    this.handle!.read(buffer, 0, buffer.length, null).then(({ bytesRead }) => {
      if (bytesRead === 0) return this.finish();
      this.remaining -= bytesRead;
      const chunk = bytesRead < buffer.length ? buffer.subarray(0, bytesRead) : buffer;
      this.counter?.update(chunk);
      this.push(chunk);
    }, (err: Error) => this.destroy(err));
  }

  private finish(): void {
    if (this.counter) {
      const actual = this.counter.digest();
      if (actual !== this.digest) return void this.destroy(new BlobCorruptError(this.digest, actual));
    }
    this.push(null);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const handle = this.handle;
    this.handle = undefined;
    (handle ? handle.close() : Promise.resolve()).then(
      () => callback(error),
      () => callback(error),
    );
  }
}

async function writeFully(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.length) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.length - offset, null);
    offset += bytesWritten;
  }
}

async function openIfExists(path: string): Promise<FileHandle | undefined> {
  try {
    return await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Creates `target` with `data` unless it exists, atomically and without ever
 * replacing a file another process created meanwhile (link() fails on an
 * existing name where rename() would overwrite, say, a freshly tagged index).
 */
async function createIfMissing(target: string, data: string): Promise<void> {
  if (statSync(target, { throwIfNoEntry: false }) !== undefined) return;
  const temp = tempPathFor(target);
  const handle = await open(temp, 'wx', 0o644);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(temp, target);
    await fsyncDir(resolve(target, '..'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

function checkLayoutVersion(path: string): void {
  const text = readFileSync(path, 'utf8');
  let version: unknown;
  try {
    version = (JSON.parse(text) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
  } catch {
    throw new StrataError('BAD_LAYOUT', `${path} is not valid JSON; is this directory an OCI image layout?`);
  }
  if (version !== '1.0.0') {
    throw new StrataError('BAD_LAYOUT', `${path} declares imageLayoutVersion ${JSON.stringify(version)}; only 1.0.0 is supported`);
  }
}

function ignoreMissingDir(err: NodeJS.ErrnoException): string[] {
  if (err.code === 'ENOENT') return [];
  throw err;
}
