/**
 * Deterministic tar writing. Every header field is set here from the
 * {@link EntryHeader} alone (nothing from the clock, the host's user database or
 * the entry's access time), so the same entries always give the same bytes,
 * and so the same layer digest.
 *
 * Format: POSIX ustar headers laid out as tar-stream lays them out (which is
 * what this module produced when it wrote through tar-stream, and what layer
 * digests made since depend on), plus PAX extended headers for whatever ustar
 * cannot hold (long or non-ASCII names and link targets, ids above 262143,
 * long or non-ASCII user/group names, sizes of 8 GiB and more, times before
 * 1970 or past 2038, and xattrs as `SCHILY.xattr.*`, byte-exact so binary
 * values such as `security.capability` survive). Device numbers, which PAX has
 * no portable key for, get wider ustar fields instead.
 *
 * Speed: the archive is framed here into large output chunks, and file content
 * named by a source path is read straight into those chunks with synchronous
 * open/read/close calls, in slices of about a millisecond between turns of the
 * event loop. On trees of many small files this is what keeps the tar side of
 * a layer build off the critical path: a stream object and three round trips
 * through the libuv pool per file (which the compressor needs too) cost far
 * more than the copying. The price, as for the walk, is that on a slow or
 * remote file system one call holds the event loop for as long as that file
 * system takes to answer.
 */
import { closeSync, constants as fsConstants, openSync, readSync } from 'node:fs';
import { Readable } from 'node:stream';
import { ENTRY_TYPES, baseName, normalizeEntryPath, type EntryHeader, type EntryType } from './entry.js';
import { SYNC_SLICE_MS, openTreeWalk, type WalkOptions } from './walk.js';
import { Slicer } from '../util/slice.js';

/** One entry to pack: its header and, for a non-empty regular file, where its content comes from. */
export interface PackSource {
  header: EntryHeader;
  /**
   * Produces the content of a 'file' entry; called once, when the entry is
   * written, so at most one source is open at a time. Must yield exactly
   * `header.size` bytes.
   */
  content?: () => NodeJS.ReadableStream | Buffer;
  /**
   * A file to read the content of a non-empty 'file' entry from, when
   * `content` is not given. Read when the entry is written, with synchronous
   * reads (see the module notes); it must then still be a regular file (a
   * symlink in its place is not followed) holding exactly `header.size` bytes,
   * else the stream fails with {@link FileChangedError}.
   */
  sourcePath?: string;
}

/** Options of {@link packEntries}. */
export interface PackOptions {
  /**
   * SOURCE_DATE_EPOCH (seconds): mtimes later than this are clamped to it, for
   * reproducible layers. Leave undefined to keep mtimes (whole seconds).
   */
  sourceDateEpoch?: number;
}

/** Options of {@link tarFromTree}. */
export interface TreeTarOptions extends PackOptions, WalkOptions {}

/**
 * Raised when a file's content length differs from its header's size, or the
 * file is no longer a regular file by the time it is read.
 */
export class FileChangedError extends Error {
  constructor(
    readonly path: string,
    readonly expectedSize: number,
    readonly actualSize: string,
    /** Replaces the size comparison in the message when the change is of another kind. */
    why?: string,
  ) {
    super(`${path}: file changed as we read it (${why ?? `header says ${expectedSize} bytes, content has ${actualSize}`})`);
    this.name = 'FileChangedError';
  }
}

/** Raised for a header that cannot be written as given. */
export class InvalidEntryError extends Error {
  constructor(path: unknown, why: string) {
    super(`cannot write tar entry ${JSON.stringify(String(path))}: ${why}`);
    this.name = 'InvalidEntryError';
  }
}

/** The ustar typeflag of each entry type. */
const TYPEFLAG: Record<EntryType, string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  directory: '5',
  fifo: '6',
};
const PAX_TYPEFLAG = 'x';

/**
 * Largest id ustar fields hold as written here: six octal digits plus a space,
 * as tar-stream wrote them. Go's archive/tar, and so Docker, writes seven
 * digits and switches to PAX above 2097151; here ids above 262143 go to PAX.
 */
const MAX_USTAR_ID = 0o777777;
const MAX_USTAR_SIZE = 0o77777777777;
// The mtime field has always been written through a 32-bit integer conversion.
const MAX_USTAR_MTIME = 2 ** 31 - 1;
const USTAR_NAME_MAX = 100;
const USTAR_PREFIX_MAX = 155;
const USTAR_OWNER_NAME_MAX = 32;
const BLOCK = 512;
/**
 * How content files are opened. The header came from an earlier lstat, so a
 * path that has since become a symlink is refused rather than followed (no
 * reading outside the tree through a swapped-in link), and one that has
 * become a FIFO or a terminal is opened without blocking the event loop or
 * acquiring it; reading such a thing then fails or comes out at the wrong
 * length.
 */
const CONTENT_OPEN_FLAGS = fsConstants.O_RDONLY | (fsConstants.O_NOFOLLOW ?? 0) | (fsConstants.O_NONBLOCK ?? 0) | (fsConstants.O_NOCTTY ?? 0);
/** Two zero blocks end an archive (no padding to a record size follows). */
const END_OF_ARCHIVE = 2 * BLOCK;

/**
 * Output chunk size of {@link packEntries}: small enough that a slow reader
 * holds back a producer of header-only entries after a hundred or so.
 */
const PACK_CHUNK_BYTES = 64 * 1024;
/**
 * Output chunk size of {@link tarFromTree}: one chunk is one hand-off to the
 * consumer (hash, compressor, store writer), and a big file is read a chunk
 * at a time straight into it.
 */
const TREE_CHUNK_BYTES = 512 * 1024;

/**
 * Packs entries into a deterministic tar stream (ustar + PAX), reading each
 * file's content only when its turn comes and honouring backpressure, so
 * memory stays flat however many entries there are. Entries are written in the
 * order given. A directory's name gets a trailing '/', as Docker writes it;
 * mtimes are truncated to whole seconds (and clamped to `sourceDateEpoch`);
 * atime and ctime are never written. The stream fails with
 * {@link FileChangedError} when a file's content is longer or shorter than its
 * header says, and with {@link InvalidEntryError} for a header that is not
 * normalized or not representable. If the stream is destroyed early, the
 * entries' iterator is closed (its `return()` is called).
 */
export function packEntries(entries: AsyncIterable<PackSource> | Iterable<PackSource>, opts: PackOptions = {}): Readable {
  const epoch = checkEpoch(opts.sourceDateEpoch);
  return new TarStream(() => iteratorOf(entries), epoch, PACK_CHUNK_BYTES);
}

/**
 * Tars the tree under `root` (not including the root itself): {@link walkTree}
 * order and headers, file contents read as each file's turn comes. The same
 * tree gives the same bytes regardless of inode order or access times. The
 * walk and the reads are synchronous calls made in short slices between turns
 * of the event loop (see {@link walkTree}).
 */
export function tarFromTree(root: string, opts: TreeTarOptions = {}): Readable {
  const epoch = checkEpoch(opts.sourceDateEpoch);
  const walkOpts: WalkOptions = {};
  if (opts.xattrs !== undefined) walkOpts.xattrs = opts.xattrs;
  if (opts.filter !== undefined) walkOpts.filter = opts.filter;
  // A walked entry is already a PackSource: header plus the path to read from.
  return new TarStream(() => openTreeWalk(root, walkOpts), epoch, TREE_CHUNK_BYTES);
}

/**
 * A pack source for an entry that may have a file on disk: content from
 * `content` if given, else read from `sourcePath` when the entry is written
 * (for a non-empty regular file; other entries carry no content).
 */
export function sourceWithContent(entry: { header: EntryHeader; sourcePath?: string; content?: PackSource['content'] }): PackSource {
  const { header, sourcePath, content } = entry;
  if (content) return { header, content };
  if (header.type !== 'file' || header.size === 0 || sourcePath === undefined) return { header };
  return { header, sourcePath };
}

type SourceIterator = Iterator<PackSource, unknown, undefined> | AsyncIterator<PackSource, unknown, undefined>;

function iteratorOf(entries: AsyncIterable<PackSource> | Iterable<PackSource>): SourceIterator {
  if (Symbol.asyncIterator in entries) return (entries as AsyncIterable<PackSource>)[Symbol.asyncIterator]();
  return (entries as Iterable<PackSource>)[Symbol.iterator]();
}

/**
 * The tar byte stream: a producer that frames entries into output chunks,
 * pausing whenever the reader is behind (and, between entries or reads, when
 * it has been busy for a slice), so memory stays at about two chunks.
 */
class TarStream extends Readable {
  private chunk: Buffer;
  private used = 0;
  private started = false;
  private stopped = false;
  /** The last push was refused: wait for the reader before pushing more. */
  private full = false;
  private wakeProducer: (() => void) | undefined;
  /** Paces the synchronous framing and reads (see the module notes). */
  private readonly slicer = new Slicer(SYNC_SLICE_MS);

  constructor(
    private readonly open: () => SourceIterator | Promise<SourceIterator>,
    private readonly epoch: number | undefined,
    private readonly chunkSize: number,
  ) {
    super({ highWaterMark: chunkSize });
    this.chunk = Buffer.allocUnsafe(chunkSize);
  }

  override _read(): void {
    this.full = false;
    this.wake();
    if (this.started) return;
    this.started = true;
    this.produce().catch((err: unknown) => {
      if (this.stopped) return;
      this.stopped = true;
      this.destroy(err instanceof Error ? err : new Error(String(err)));
    });
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.stopped = true;
    this.wake();
    callback(err);
  }

  private wake(): void {
    const resume = this.wakeProducer;
    this.wakeProducer = undefined;
    resume?.();
  }

  /** Waits while the reader is behind; false once the stream is gone. */
  private async room(): Promise<boolean> {
    while (this.full && !this.stopped) await new Promise<void>((resolve) => (this.wakeProducer = resolve));
    return !this.stopped;
  }

  private async produce(): Promise<void> {
    const iterator = await this.open();
    this.slicer.restart();
    let exhausted = false;
    try {
      for (;;) {
        if (this.full && !(await this.room())) return;
        if (this.stopped) return;
        let step = iterator.next();
        if (isPromise(step)) {
          try {
            step = await step;
          } catch (err) {
            exhausted = true; // a failed iterator is finished; do not ask it to close
            throw err;
          }
        }
        if (this.stopped) return;
        if (step.done) {
          exhausted = true;
          break;
        }
        const pending = this.writeEntry(step.value);
        if (pending) await pending;
        if (this.stopped) return;
        // No promise per entry unless the slice is used up.
        if (this.slicer.due()) await this.slicer.pause();
      }
      this.writeZeros(END_OF_ARCHIVE);
      this.flush();
      this.push(null);
    } finally {
      if (!exhausted) {
        const closing = iterator.return?.();
        if (isPromise(closing)) await closing;
      }
    }
  }

  /** Writes one entry; returns a promise only when it has to wait (streamed content, big files). */
  private writeEntry(source: PackSource): Promise<void> | undefined {
    const { header } = source;
    const plan = planEntry(header, this.epoch);
    if (plan.pax.length > 0) this.writeBytes(encodePaxHeader(plan.tarName, plan.pax));
    this.reserve(BLOCK);
    encodeUstarHeader(plan.ustar, this.chunk, this.used);
    this.used += BLOCK;
    if (header.type !== 'file') return undefined;

    const expected = plan.ustar.size;
    if (source.content) {
      const content = source.content();
      if (content instanceof Uint8Array) {
        if (content.length !== expected) throw new FileChangedError(header.path, expected, `${content.length} bytes`);
        this.writeBytes(content);
        this.writeZeros(padding(expected));
        return undefined;
      }
      return this.copyStream(content, header.path, expected);
    }
    if (expected === 0) return undefined;
    if (source.sourcePath === undefined) throw new InvalidEntryError(header.path, `file of ${expected} bytes has no content`);
    return this.copyFile(source.sourcePath, header.path, expected);
  }

  private async copyStream(content: NodeJS.ReadableStream, path: string, expected: number): Promise<void> {
    // Content chunks are passed on as they are, after whatever is framed so far.
    this.flush();
    let seen = 0;
    for await (const chunk of content as AsyncIterable<Buffer | string>) {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      seen += bytes.length;
      if (seen > expected) throw new FileChangedError(path, expected, `more than ${expected} bytes`);
      if (this.stopped) throw new Error(`tar stream closed while writing ${path}`);
      if (bytes.length === 0) continue;
      if (!this.push(bytes)) this.full = true;
      if (this.full && !(await this.room())) throw new Error(`tar stream closed while writing ${path}`);
    }
    if (seen !== expected) throw new FileChangedError(path, expected, `${seen} bytes`);
    this.writeZeros(padding(expected));
  }

  /**
   * Reads a file into the output: all of it plus one byte (to see that it
   * grew since its header was made) with one read when it fits in the current
   * chunk, else a chunk at a time, pausing for the reader and the event loop
   * in between. A read that returns less than asked ends the file, as it does
   * for regular files.
   */
  private copyFile(sourcePath: string, path: string, expected: number): Promise<void> | undefined {
    if (expected + 1 > this.chunk.length - this.used && expected + 1 <= this.chunkSize / 4) this.flush();
    if (expected + 1 > this.chunk.length - this.used) return this.copyBigFile(sourcePath, path, expected);
    const fd = openContent(sourcePath, path, expected);
    try {
      let filled = 0;
      for (;;) {
        const want = expected + 1 - filled;
        const n = readContent(fd, this.chunk, this.used + filled, want, filled, sourcePath, path, expected);
        filled += n;
        if (filled > expected) throw new FileChangedError(path, expected, `more than ${expected} bytes`);
        if (n === 0) throw new FileChangedError(path, expected, `${filled} bytes`);
        if (filled === expected && n < want) break;
      }
    } finally {
      closeSync(fd);
    }
    this.used += expected;
    this.writeZeros(padding(expected));
    return undefined;
  }

  private async copyBigFile(sourcePath: string, path: string, expected: number): Promise<void> {
    const fd = openContent(sourcePath, path, expected);
    try {
      let done = 0;
      let ended = false;
      while (done < expected) {
        if (this.used === this.chunk.length) {
          this.flush();
          if (this.full && !(await this.room())) throw new Error(`tar stream closed while writing ${path}`);
          if (this.slicer.due()) await this.slicer.pause();
          if (this.stopped) throw new Error(`tar stream closed while writing ${path}`);
        }
        // One byte past the end, when there is room for it, shows growth without another read.
        const want = Math.min(this.chunk.length - this.used, expected + 1 - done);
        const n = readContent(fd, this.chunk, this.used, want, done, sourcePath, path, expected);
        if (done + n > expected) throw new FileChangedError(path, expected, `more than ${expected} bytes`);
        if (n === 0) throw new FileChangedError(path, expected, `${done} bytes`);
        this.used += n;
        done += n;
        if (done === expected && n < want) ended = true;
      }
      if (!ended && readContent(fd, Buffer.alloc(1), 0, 1, expected, sourcePath, path, expected) > 0) {
        throw new FileChangedError(path, expected, `more than ${expected} bytes`);
      }
    } finally {
      closeSync(fd);
    }
    this.writeZeros(padding(expected));
  }

  /** Makes room for `length` contiguous bytes in the current chunk. */
  private reserve(length: number): void {
    if (this.chunk.length - this.used >= length) return;
    this.flush();
    if (this.chunk.length < length) this.chunk = Buffer.allocUnsafe(length);
  }

  private writeBytes(bytes: Uint8Array): void {
    if (bytes.length >= this.chunkSize) {
      // Big enough to go as it is.
      this.flush();
      if (!this.push(bytes)) this.full = true;
      return;
    }
    let offset = 0;
    while (offset < bytes.length) {
      if (this.used === this.chunk.length) this.flush();
      const n = Math.min(bytes.length - offset, this.chunk.length - this.used);
      this.chunk.set(bytes.subarray(offset, offset + n), this.used);
      this.used += n;
      offset += n;
    }
  }

  private writeZeros(length: number): void {
    while (length > 0) {
      if (this.used === this.chunk.length) this.flush();
      const n = Math.min(length, this.chunk.length - this.used);
      this.chunk.fill(0, this.used, this.used + n);
      this.used += n;
      length -= n;
    }
  }

  /** Hands what is framed so far to the reader and starts a fresh chunk. */
  private flush(): void {
    if (this.used === 0) return;
    const out = this.chunk.subarray(0, this.used);
    this.chunk = Buffer.allocUnsafe(this.chunkSize);
    this.used = 0;
    if (!this.push(out)) this.full = true;
  }
}

function openContent(sourcePath: string, path: string, expected: number): number {
  try {
    return openSync(sourcePath, CONTENT_OPEN_FLAGS);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') {
      throw new FileChangedError(path, expected, 'a symlink', `${sourcePath} is now a symlink, which is not followed`);
    }
    throw err;
  }
}

/** Errors of reading something that is not a regular file (any more). */
const NOT_A_FILE_ERRORS = new Set(['ESPIPE', 'EISDIR', 'EAGAIN', 'EWOULDBLOCK', 'EINVAL']);

function readContent(fd: number, buffer: Buffer, offset: number, length: number, position: number, sourcePath: string, path: string, expected: number): number {
  try {
    return readSync(fd, buffer, offset, length, position);
  } catch (err) {
    if (NOT_A_FILE_ERRORS.has((err as NodeJS.ErrnoException).code ?? '')) {
      throw new FileChangedError(path, expected, 'not a regular file', `${sourcePath} is no longer a regular file (${(err as NodeJS.ErrnoException).code})`);
    }
    throw err;
  }
}

function isPromise<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | undefined)?.then === 'function';
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** The fields of a ustar header block. */
interface UstarFields {
  name: string;
  /** Permission bits (07777). */
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  size: number;
  /** Whole seconds, 0 ..= 2^31-1. */
  mtime: number;
  typeflag: string;
  linkname: string;
  devmajor: number;
  devminor: number;
}

interface EntryPlan {
  /** The entry's name as stored in the archive (directories end in '/'). */
  tarName: string;
  /** The ustar block's fields: always encodable (what does not fit is in `pax`). */
  ustar: UstarFields;
  /** PAX records, sorted by key. */
  pax: Array<[string, Buffer]>;
}

function planEntry(header: EntryHeader, epoch: number | undefined): EntryPlan {
  const { path, type } = validateHeader(header);
  const pax = new Map<string, Buffer>();
  const setPax = (key: string, value: string | Buffer): void => {
    pax.set(key, typeof value === 'string' ? Buffer.from(value, 'utf8') : value);
  };

  const tarName = type === 'directory' ? `${path}/` : path;
  let ustarName = tarName;
  if (!fitsUstarName(tarName)) {
    setPax('path', tarName);
    ustarName = asciiPrefix(tarName, USTAR_NAME_MAX) || 'PaxPath';
  }

  let ustarLinkname: string | undefined;
  if (type === 'symlink' || type === 'hardlink') {
    const linkname = header.linkname!;
    ustarLinkname = linkname;
    if (!isAscii(linkname) || linkname.length > USTAR_NAME_MAX) {
      setPax('linkpath', linkname);
      ustarLinkname = asciiPrefix(linkname, USTAR_NAME_MAX);
    }
  }

  const ustarId = (value: number, key: string): number => {
    if (value <= MAX_USTAR_ID) return value;
    setPax(key, String(value));
    return 0;
  };
  const uid = ustarId(header.uid, 'uid');
  const gid = ustarId(header.gid, 'gid');

  const ustarOwnerName = (value: string | undefined, key: string): string => {
    if (value === undefined || value === '') return '';
    if (isAscii(value) && value.length <= USTAR_OWNER_NAME_MAX) return value;
    setPax(key, value);
    return '';
  };
  const uname = ustarOwnerName(header.uname, 'uname');
  const gname = ustarOwnerName(header.gname, 'gname');

  const size = type === 'file' ? header.size : 0;
  if (size > MAX_USTAR_SIZE) setPax('size', String(size));

  const mtime = Math.floor(epoch === undefined ? header.mtime : Math.min(header.mtime, epoch));
  let ustarMtime = mtime;
  if (mtime < 0 || mtime > MAX_USTAR_MTIME) {
    setPax('mtime', String(mtime));
    ustarMtime = 0;
  }

  let devmajor = 0;
  let devminor = 0;
  if (type === 'char' || type === 'block') {
    devmajor = header.devmajor ?? 0;
    devminor = header.devminor ?? 0;
  }

  if (header.xattrs) {
    for (const [name, value] of Object.entries(header.xattrs)) setPax(`SCHILY.xattr.${name}`, Buffer.from(value));
  }

  const ustar: UstarFields = {
    name: ustarName,
    mode: header.mode,
    uid,
    gid,
    uname,
    gname,
    size,
    mtime: ustarMtime,
    typeflag: TYPEFLAG[type],
    linkname: ustarLinkname ?? '',
    devmajor,
    devminor,
  };
  const sorted = [...pax.entries()].sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return { tarName, ustar, pax: sorted };
}

function validateHeader(header: EntryHeader): { path: string; type: EntryType } {
  const { path, type } = header;
  if (typeof path !== 'string') throw new InvalidEntryError(path, 'path is not a string');
  let normalized: string | undefined;
  try {
    normalized = normalizeEntryPath(path);
  } catch (err) {
    throw new InvalidEntryError(path, (err as Error).message);
  }
  if (normalized === undefined) throw new InvalidEntryError(path, 'names the archive root');
  if (normalized !== path) throw new InvalidEntryError(path, `path is not normalized (expected ${JSON.stringify(normalized)})`);
  if (!ENTRY_TYPES.includes(type)) throw new InvalidEntryError(path, `unknown entry type ${JSON.stringify(type)}`);
  if (!Number.isInteger(header.mode) || header.mode < 0 || header.mode > 0o7777) {
    throw new InvalidEntryError(path, `mode ${header.mode} is not a permission mask within 07777`);
  }
  for (const key of ['uid', 'gid'] as const) {
    if (!Number.isSafeInteger(header[key]) || header[key] < 0) throw new InvalidEntryError(path, `${key} ${header[key]} is not a non-negative integer`);
  }
  if (!Number.isSafeInteger(header.size) || header.size < 0) throw new InvalidEntryError(path, `size ${header.size} is not a non-negative integer`);
  if (type !== 'file' && header.size !== 0) throw new InvalidEntryError(path, `a ${type} entry cannot have content (size ${header.size})`);
  if (!Number.isFinite(header.mtime)) throw new InvalidEntryError(path, `mtime ${header.mtime} is not a number of seconds`);
  for (const key of ['uname', 'gname'] as const) {
    const value = header[key];
    if (value !== undefined && (typeof value !== 'string' || value.includes('\0'))) {
      throw new InvalidEntryError(path, `${key} must be a string without NUL bytes`);
    }
  }
  if (type === 'symlink' || type === 'hardlink') {
    const linkname = header.linkname;
    if (typeof linkname !== 'string' || linkname === '') throw new InvalidEntryError(path, `${type} has no target`);
    if (linkname.includes('\0')) throw new InvalidEntryError(path, `${type} target contains a NUL byte`);
    if (type === 'hardlink' && normalizeEntryPathOrUndefined(linkname) !== linkname) {
      throw new InvalidEntryError(path, `hardlink target ${JSON.stringify(linkname)} is not a normalized entry path`);
    }
  } else if (header.linkname !== undefined && header.linkname !== '') {
    throw new InvalidEntryError(path, `a ${type} entry cannot have a link target`);
  }
  if (type === 'char' || type === 'block') {
    for (const key of ['devmajor', 'devminor'] as const) {
      const value = header[key] ?? 0;
      if (!Number.isSafeInteger(value) || value < 0) throw new InvalidEntryError(path, `${key} ${value} is not a non-negative integer`);
    }
  }
  if (header.xattrs) {
    for (const [name, value] of Object.entries(header.xattrs)) {
      if (name === '' || name.includes('=') || name.includes('\0') || name.includes('\n')) {
        throw new InvalidEntryError(path, `xattr name ${JSON.stringify(name)} cannot be stored in a PAX header`);
      }
      if (!(value instanceof Uint8Array)) throw new InvalidEntryError(path, `xattr ${name} value is not a Buffer`);
    }
  }
  return { path, type };
}

function normalizeEntryPathOrUndefined(path: string): string | undefined {
  try {
    return normalizeEntryPath(path);
  } catch {
    return undefined;
  }
}

function checkEpoch(epoch: number | undefined): number | undefined {
  if (epoch === undefined) return undefined;
  if (!Number.isFinite(epoch)) throw new RangeError(`sourceDateEpoch ${epoch} is not a number of seconds`);
  return Math.floor(epoch);
}

function isAscii(text: string): boolean {
  return /^[\x01-\x7f]*$/.test(text);
}

/**
 * Splits `name` into ustar prefix and name fields the way tar-stream does
 * (moving leading segments into the prefix until the rest fits), or returns
 * undefined when it cannot be stored without PAX.
 */
function splitUstarName(name: string): { prefix: string; name: string } | undefined {
  if (!isAscii(name)) return undefined;
  let rest = name;
  let prefix = '';
  while (rest.length > USTAR_NAME_MAX) {
    const slash = rest.indexOf('/');
    if (slash === -1) return undefined;
    prefix += prefix ? `/${rest.slice(0, slash)}` : rest.slice(0, slash);
    rest = rest.slice(slash + 1);
  }
  if (rest.length === 0 || prefix.length > USTAR_PREFIX_MAX) return undefined;
  return { prefix, name: rest };
}

function fitsUstarName(name: string): boolean {
  return splitUstarName(name) !== undefined;
}

/** The ASCII characters of `text`, cut to `max` bytes: the ustar stand-in for a PAX-carried string. */
function asciiPrefix(text: string, max: number): string {
  return text.replace(/[^\x01-\x7f]/g, '').slice(0, max);
}

/** A PAX extended header ('x') block followed by its records, padded to a block boundary. */
function encodePaxHeader(tarName: string, records: Array<[string, Buffer]>): Buffer {
  const body = Buffer.concat(records.map(([key, value]) => paxRecord(key, value)));
  const name = `PaxHeaders.0/${asciiPrefix(baseName(tarName), USTAR_NAME_MAX - 'PaxHeaders.0/'.length)}`;
  const padded = BLOCK + body.length + padding(body.length);
  const out = Buffer.alloc(padded);
  encodeUstarHeader(
    { name, mode: 0o644, uid: 0, gid: 0, uname: '', gname: '', size: body.length, mtime: 0, typeflag: PAX_TYPEFLAG, linkname: '', devmajor: 0, devminor: 0 },
    out,
    0,
  );
  body.copy(out, BLOCK);
  return out;
}

/** One "LEN KEY=VALUE\n" record, where LEN counts the whole record including its own digits. */
function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.byteLength(key) + value.length + 3; // ' ', '=', '\n'
  let length = rest + String(rest).length;
  if (String(length).length !== String(rest).length) length = rest + String(length).length;
  return Buffer.concat([Buffer.from(`${length} ${key}=`, 'utf8'), value, Buffer.from('\n')]);
}

/**
 * Writes a ustar header block into `block` at `offset`, laid out byte for byte
 * as tar-stream 3 lays out its own (six-digit octal fields with a space and a
 * NUL, eleven-digit size and mtime, `ustar\0` + `00`), so archives keep the
 * digests they had when written through tar-stream. Two extensions for what
 * tar-stream could not hold: device numbers above its six-digit fields get
 * seven octal digits (as Go's archive/tar writes them) or, past that, GNU
 * base-256; sizes of 8 GiB and more get base-256 (as tar-stream did, next to
 * the PAX size record).
 */
function encodeUstarHeader(header: UstarFields, block: Buffer, offset: number): void {
  const split = splitUstarName(header.name);
  if (!split) throw new Error(`internal: ustar name ${JSON.stringify(header.name)} does not fit`);
  block.fill(0, offset, offset + BLOCK);
  block.write(split.name, offset, USTAR_NAME_MAX, 'latin1');
  writeSmallNumber(block, offset + 100, header.mode & 0o7777);
  writeSmallNumber(block, offset + 108, header.uid);
  writeSmallNumber(block, offset + 116, header.gid);
  writeSize(block, offset + 124, header.size);
  block.write(`${header.mtime.toString(8).padStart(11, '0')} `, offset + 136, 12, 'latin1');
  block.write(header.typeflag, offset + 156, 1, 'latin1');
  if (header.linkname) block.write(header.linkname, offset + 157, USTAR_NAME_MAX, 'latin1');
  block.write('ustar\x0000', offset + 257, 8, 'latin1');
  if (header.uname) block.write(header.uname, offset + 265, USTAR_OWNER_NAME_MAX, 'latin1');
  if (header.gname) block.write(header.gname, offset + 297, USTAR_OWNER_NAME_MAX, 'latin1');
  writeSmallNumber(block, offset + 329, header.devmajor);
  writeSmallNumber(block, offset + 337, header.devminor);
  if (split.prefix) block.write(split.prefix, offset + 345, USTAR_PREFIX_MAX, 'latin1');
  let sum = 8 * 0x20; // the checksum field itself counts as spaces
  for (let i = offset; i < offset + 148; i++) sum += block[i]!;
  for (let i = offset + 156; i < offset + BLOCK; i++) sum += block[i]!;
  block.write(`${sum.toString(8).padStart(6, '0')} \0`, offset + 148, 8, 'latin1');
}

/** The 12-byte size field: eleven octal digits and a space, or base-256 when that is too small. */
function writeSize(block: Buffer, offset: number, size: number): void {
  if (size <= MAX_USTAR_SIZE) {
    block.write(`${size.toString(8).padStart(11, '0')} `, offset, 12, 'latin1');
    return;
  }
  block[offset] = 0x80;
  let rest = size;
  for (let i = 11; i > 0; i--) {
    block[offset + i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
}

/** An 8-byte numeric field: tar-stream's "%06o \0", "%07o\0" when that is too small, else base-256. */
function writeSmallNumber(block: Buffer, offset: number, value: number): void {
  if (value <= 0o777777) {
    block.write(`${value.toString(8).padStart(6, '0')} \0`, offset, 8, 'latin1');
  } else if (value <= 0o7777777) {
    block.write(`${value.toString(8).padStart(7, '0')}\0`, offset, 8, 'latin1');
  } else {
    block[offset] = 0x80;
    let rest = BigInt(value);
    for (let i = 7; i > 0; i--) {
      block[offset + i] = Number(rest & 0xffn);
      rest >>= 8n;
    }
  }
}
