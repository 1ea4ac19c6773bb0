/**
 * Streaming tar reading into normalized {@link EntryHeader}s: ustar, GNU
 * (long names, base-256 numbers), V7 and PAX archives, as written by Docker,
 * GNU tar, busybox and {@link packEntries}.
 *
 * tar-stream parses the framing; PAX records are re-parsed here from their raw
 * bytes because tar-stream decodes values as UTF-8 text, which corrupts binary
 * xattrs such as `security.capability`, applies only path/linkpath/size, and
 * drops global headers for entries without their own PAX header.
 */
import { Readable } from 'node:stream';
import { extract as createExtract, type Extract, type Header as TarStreamHeader } from 'tar-stream';
import { normalizeEntryPath, InvalidEntryPathError, type EntryHeader, type EntryType } from './entry.js';

/** One entry of {@link readTar}. */
export interface TarEntry {
  header: EntryHeader;
  /** The entry's name exactly as the archive gives it (after PAX/GNU long-name resolution); use it in messages. */
  rawName: string;
  /** A link's target exactly as the archive gives it (`header.linkname` is normalized for hardlinks). */
  rawLinkname?: string;
  /**
   * The entry's content (empty for everything but regular files). Read it, or
   * call `body.resume()` to skip it, before asking for the next entry: asking
   * for the next entry discards whatever is still unread.
   */
  body: Readable;
}

/** Raised for an archive that is malformed, truncated or uses an unsupported feature. */
export class TarFormatError extends Error {
  constructor(
    message: string,
    /** Raw name of the entry concerned, when there is one. */
    readonly entry?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TarFormatError';
  }
}

const ENTRY_TYPE: Partial<Record<string, EntryType>> = {
  file: 'file',
  'contiguous-file': 'file',
  link: 'hardlink',
  symlink: 'symlink',
  directory: 'directory',
  'character-device': 'char',
  'block-device': 'block',
  fifo: 'fifo',
};

type PaxRecords = Map<string, Buffer>;

interface ExtractInternals {
  _header: TarStreamHeader | null;
  _decodeLongHeader(buf: Buffer): void;
}

/**
 * Reads a tar stream entry by entry. Each entry's body must be consumed (or
 * skipped with `body.resume()`) before the next one is requested; unread
 * content is discarded when iteration moves on. Directory entries naming the
 * archive root ('./', '/') carry nothing to apply and are not yielded. Rejects
 * with {@link TarFormatError} for a truncated archive ("unexpected end of tar
 * archive in entry X"), a corrupt header, an entry type strata cannot represent
 * (GNU sparse files, volume labels, multi-volume continuations, ...), and with
 * {@link InvalidEntryPathError} for a name or hardlink target containing '..'.
 * Stopping early (break, throw) stops reading and destroys `stream`.
 */
export async function* readTar(stream: NodeJS.ReadableStream | AsyncIterable<Uint8Array | string>): AsyncGenerator<TarEntry> {
  // V7 headers (no ustar magic) are valid tar, as Go's reader and GNU tar accept them.
  const extract = createExtract({ allowUnknownFormat: true } as Parameters<typeof createExtract>[0]);
  let globalPax: PaxRecords | undefined;
  let entryPax: PaxRecords | undefined;
  hookPaxDecoding(extract, (kind, records) => {
    if (kind === 'global') globalPax = new Map([...(globalPax ?? []), ...records]);
    else entryPax = records;
  });

  let lastEntry: string | undefined;
  let bodyComplete = true;
  let finished = false;
  const feeding = feed(stream, extract);
  const iterator = extract[Symbol.asyncIterator]();

  try {
    for (;;) {
      let next: IteratorResult<TarStreamHeaderSource>;
      try {
        next = (await iterator.next()) as IteratorResult<TarStreamHeaderSource>;
      } catch (err) {
        throw describeFailure(err, lastEntry, bodyComplete);
      }
      if (next.done) break;
      const source = next.value;
      const pax = mergePax(globalPax, entryPax);
      entryPax = undefined;
      const rawName = source.header.name;
      lastEntry = rawName;
      bodyComplete = false;

      const header = toEntryHeader(source.header, pax, rawName);
      // tar-stream streams no data for empty entries and directories (like Go's reader, a directory's size is ignored).
      const empty = source.header.size === 0 || source.header.type === 'directory';
      if (empty) bodyComplete = true;
      const body = empty ? emptyBody() : bridgeBody(source, rawName, () => (bodyComplete = true));
      if (header === undefined) {
        body.resume();
        continue;
      }
      const entry: TarEntry = { header, rawName, body };
      if (header.linkname !== undefined) entry.rawLinkname = source.header.linkname ?? '';
      try {
        yield entry;
      } finally {
        body.discard();
      }
    }
    finished = true;
    await feeding;
  } finally {
    if (!finished) {
      extract.destroy();
      const destroyable = stream as { destroy?: (err?: Error) => void };
      if (typeof destroyable.destroy === 'function') destroyable.destroy();
      await feeding.catch(() => undefined);
    }
  }
}

interface TarStreamHeaderSource extends NodeJS.EventEmitter {
  header: TarStreamHeader;
  pause(): this;
  resume(): this;
}

function emptyBody(): Readable & { discard(): void } {
  const body = new Readable({
    read() {
      this.push(null);
    },
  }) as Readable & { discard(): void };
  body.discard = () => undefined;
  return body;
}

/** A Node Readable over tar-stream's entry stream, which can be told to drop what is left. */
function bridgeBody(source: TarStreamHeaderSource, rawName: string, onEnd: () => void): Readable & { discard(): void } {
  let discarding = false;
  const body = new Readable({
    read() {
      source.resume();
    },
    destroy(err, callback) {
      discard();
      callback(err);
    },
  }) as Readable & { discard(): void };
  // A failure can arrive before the consumer attaches to the body; it is kept
  // on the stream (pipeline and iteration still see it) and also surfaces from
  // the entry iterator, so an unobserved body must not crash the process.
  body.on('error', () => undefined);
  const discard = (): void => {
    discarding = true;
    source.resume();
  };
  body.discard = discard;
  source.on('data', (chunk: Buffer) => {
    if (discarding) return;
    if (!body.push(chunk)) source.pause();
  });
  source.on('end', () => {
    onEnd();
    if (!discarding) body.push(null);
  });
  source.on('error', (err: Error) => {
    if (!discarding) body.destroy(describeFailure(err, rawName, false));
  });
  return body;
}

async function feed(stream: NodeJS.ReadableStream | AsyncIterable<Uint8Array | string>, extract: Extract): Promise<void> {
  try {
    for await (const chunk of stream as AsyncIterable<Uint8Array | string>) {
      if (extract.destroying || extract.destroyed) return;
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      if (!extract.write(bytes)) await drainedOrClosed(extract);
    }
    if (!extract.destroying && !extract.destroyed) extract.end(undefined);
  } catch (err) {
    extract.destroy(err instanceof Error ? err : new Error(String(err)));
  }
}

function drainedOrClosed(extract: Extract): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      extract.off('drain', done);
      extract.off('close', done);
      resolve();
    };
    extract.on('drain', done);
    extract.on('close', done);
  });
}

/**
 * Captures the raw bytes of every PAX header tar-stream parses, so records
 * keep binary values. tar-stream has no public hook for them; if its
 * internals change this fails loudly rather than silently losing xattrs.
 */
function hookPaxDecoding(extract: Extract, onRecords: (kind: 'entry' | 'global', records: PaxRecords) => void): void {
  const internals = extract as unknown as ExtractInternals;
  const original = internals._decodeLongHeader;
  if (typeof original !== 'function') {
    throw new Error('tar-stream no longer exposes _decodeLongHeader; readTar must be updated for this tar-stream version');
  }
  internals._decodeLongHeader = function (this: ExtractInternals, buf: Buffer): void {
    const type = this._header?.type as string | undefined;
    if (type === 'pax-header') onRecords('entry', parsePaxRecords(buf));
    else if (type === 'pax-global-header') onRecords('global', parsePaxRecords(buf));
    original.call(this, buf);
  };
}

/** Parses "LEN KEY=VALUE\n" records, keeping values as raw bytes. */
export function parsePaxRecords(data: Buffer): PaxRecords {
  const records: PaxRecords = new Map();
  let offset = 0;
  while (offset < data.length) {
    // Archivers pad the record area with NULs.
    if (data[offset] === 0) break;
    const space = data.indexOf(0x20, offset);
    const lengthText = space === -1 ? '' : data.toString('latin1', offset, space);
    const length = /^[0-9]+$/.test(lengthText) ? Number(lengthText) : NaN;
    if (!Number.isSafeInteger(length) || length <= space - offset + 1 || offset + length > data.length) {
      throw new TarFormatError(`malformed PAX extended header record at byte ${offset}`);
    }
    const record = data.subarray(space + 1, offset + length);
    if (record[record.length - 1] !== 0x0a) throw new TarFormatError(`PAX extended header record at byte ${offset} does not end in a newline`);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) throw new TarFormatError(`PAX extended header record at byte ${offset} has no keyword`);
    records.set(record.toString('utf8', 0, eq), Buffer.from(record.subarray(eq + 1, record.length - 1)));
    offset += length;
  }
  return records;
}

function mergePax(global: PaxRecords | undefined, entry: PaxRecords | undefined): PaxRecords | undefined {
  if (!global) return entry;
  if (!entry) return global;
  return new Map([...global, ...entry]);
}

function toEntryHeader(source: TarStreamHeader, pax: PaxRecords | undefined, rawName: string): EntryHeader | undefined {
  let type = source.type ? ENTRY_TYPE[source.type] : undefined;
  // Pre-POSIX archives mark directories only by a trailing slash on a regular-file entry.
  if (type === 'file' && source.type === 'file' && rawName.endsWith('/')) type = 'directory';
  if (!type) {
    throw new TarFormatError(
      `unsupported tar entry type for entry ${JSON.stringify(rawName)}: only files, directories, links, fifos and devices are supported (GNU sparse files, volume labels and multi-volume parts are not)`,
      rawName,
    );
  }
  if (pax && [...pax.keys()].some((key) => key.startsWith('GNU.sparse.'))) {
    const realName = pax.get('GNU.sparse.name')?.toString('utf8') ?? rawName;
    throw new TarFormatError(`entry ${JSON.stringify(realName)} is a GNU sparse file, which is not supported`, rawName);
  }
  const path = normalizeEntryPath(rawName);
  if (path === undefined) {
    if (type === 'directory') return undefined;
    throw new InvalidEntryPathError(rawName, `names the archive root but is a ${type}`);
  }

  const text = (key: string): string | undefined => {
    const value = pax?.get(key);
    return value === undefined || value.length === 0 ? undefined : value.toString('utf8');
  };
  const number = (key: string, integer: boolean): number | undefined => {
    const value = text(key);
    if (value === undefined) return undefined;
    const parsed = Number(value);
    if (!/^-?[0-9]+(\.[0-9]*)?$/.test(value) || !Number.isFinite(parsed) || (integer && !Number.isSafeInteger(parsed))) {
      throw new TarFormatError(`entry ${JSON.stringify(rawName)} has an invalid PAX ${key} value ${JSON.stringify(value)}`, rawName);
    }
    return parsed;
  };

  const header: EntryHeader = {
    path,
    type,
    mode: source.mode & 0o7777,
    uid: number('uid', true) ?? source.uid,
    gid: number('gid', true) ?? source.gid,
    mtime: number('mtime', false) ?? source.mtime.getTime() / 1000,
    size: type === 'file' ? source.size : 0,
  };
  if (header.uid < 0 || header.gid < 0) throw new TarFormatError(`entry ${JSON.stringify(rawName)} has a negative uid or gid`, rawName);
  const uname = text('uname') ?? source.uname;
  const gname = text('gname') ?? source.gname;
  if (uname) header.uname = uname;
  if (gname) header.gname = gname;
  const atime = number('atime', false);
  const ctime = number('ctime', false);
  if (atime !== undefined) header.atime = atime;
  if (ctime !== undefined) header.ctime = ctime;

  if (type === 'symlink') {
    header.linkname = source.linkname ?? '';
  } else if (type === 'hardlink') {
    const rawTarget = source.linkname ?? '';
    let target: string | undefined;
    try {
      target = normalizeEntryPath(rawTarget);
    } catch (err) {
      throw new InvalidEntryPathError(rawName, `hardlink target ${JSON.stringify(rawTarget)} ${err instanceof InvalidEntryPathError ? err.reason : String(err)}`);
    }
    if (target === undefined) throw new InvalidEntryPathError(rawName, `hardlink target ${JSON.stringify(rawTarget)} is the archive root`);
    header.linkname = target;
  }
  if (type === 'char' || type === 'block') {
    header.devmajor = number('SCHILY.devmajor', true) ?? source.devmajor;
    header.devminor = number('SCHILY.devminor', true) ?? source.devminor;
  }

  const xattrs = xattrsFrom(pax);
  if (xattrs) header.xattrs = xattrs;
  return header;
}

/** SCHILY.xattr.* (GNU tar, Go, Docker), falling back to libarchive's base64 LIBARCHIVE.xattr.*. */
function xattrsFrom(pax: PaxRecords | undefined): Record<string, Buffer> | undefined {
  if (!pax) return undefined;
  let xattrs: Record<string, Buffer> | undefined;
  for (const [key, value] of pax) {
    if (key.startsWith('SCHILY.xattr.')) {
      xattrs ??= {};
      xattrs[key.slice('SCHILY.xattr.'.length)] = value;
    }
  }
  for (const [key, value] of pax) {
    if (!key.startsWith('LIBARCHIVE.xattr.')) continue;
    let name: string;
    try {
      name = decodeURIComponent(key.slice('LIBARCHIVE.xattr.'.length));
    } catch {
      continue;
    }
    xattrs ??= {};
    if (!(name in xattrs)) xattrs[name] = Buffer.from(value.toString('latin1'), 'base64');
  }
  return xattrs;
}

function describeFailure(err: unknown, entry: string | undefined, bodyComplete: boolean): Error {
  if (err instanceof TarFormatError || err instanceof InvalidEntryPathError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const where = entry === undefined ? 'before the first entry' : bodyComplete ? `after entry ${JSON.stringify(entry)}` : `in entry ${JSON.stringify(entry)}`;
  if (/Unexpected end of data/i.test(message)) {
    return new TarFormatError(`unexpected end of tar archive ${where}`, entry, { cause: err });
  }
  if (/Invalid tar header/i.test(message)) {
    return new TarFormatError(`invalid tar header ${where} (checksum mismatch: corrupt, or still compressed?)`, entry, { cause: err });
  }
  if (/Header exceeds max size/i.test(message)) {
    return new TarFormatError(`oversized extended header ${where}`, entry, { cause: err });
  }
  return err instanceof Error ? err : new Error(message);
}
