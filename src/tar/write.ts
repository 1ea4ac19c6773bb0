/**
 * Deterministic tar writing. Every header field is set here from the
 * {@link EntryHeader} alone (nothing from the clock, the host's user database or
 * the entry's access time), so the same entries always give the same bytes,
 * and so the same layer digest.
 *
 * Format: POSIX ustar headers as written by tar-stream, plus PAX extended
 * headers for whatever ustar cannot hold (long or non-ASCII names and link
 * targets, ids above 262143, long or non-ASCII user/group names, sizes of
 * 8 GiB and more, times before 1970 or past 2038, and xattrs as
 * `SCHILY.xattr.*`). Device numbers, which PAX has no portable key for, get
 * wider ustar fields instead. tar-stream's own PAX support writes only
 * UTF-8 text, which would corrupt binary xattr values such as
 * `security.capability`, so PAX headers are encoded here, byte-exact, and
 * tar-stream is handed a header it can encode without PAX.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pack as createPack, type Header as TarStreamHeader, type Pack } from 'tar-stream';
import { ENTRY_TYPES, baseName, normalizeEntryPath, type EntryHeader, type EntryType } from './entry.js';
import { walkTree, type WalkOptions } from './walk.js';

/** One entry to pack: its header and, for a non-empty regular file, its content. */
export interface PackSource {
  header: EntryHeader;
  /**
   * Produces the content of a 'file' entry; called once, when the entry is
   * written, so at most one source is open at a time. Must yield exactly
   * `header.size` bytes.
   */
  content?: () => NodeJS.ReadableStream | Buffer;
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

/** Raised when a file's content length differs from its header's size. */
export class FileChangedError extends Error {
  constructor(
    readonly path: string,
    readonly expectedSize: number,
    readonly actualSize: string,
  ) {
    super(`${path}: file changed as we read it (header says ${expectedSize} bytes, content has ${actualSize})`);
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

const TAR_STREAM_TYPE: Record<EntryType, TarStreamHeader['type']> = {
  file: 'file',
  directory: 'directory',
  symlink: 'symlink',
  hardlink: 'link',
  fifo: 'fifo',
  char: 'character-device',
  block: 'block-device',
};

// tar-stream replaces a zero mode with 0644/0755 but masks the field to 07777,
// so the file-type bits ride along to keep mode 0000 intact.
const TYPE_MODE_BITS: Record<EntryType, number> = {
  file: 0o100000,
  directory: 0o040000,
  symlink: 0o120000,
  hardlink: 0o100000,
  fifo: 0o010000,
  char: 0o020000,
  block: 0o060000,
};

/**
 * Largest id and device number tar-stream's ustar fields hold: it writes six
 * octal digits plus a space. Go's archive/tar, and so Docker, writes seven
 * digits and switches to PAX above 2097151; here ids above 262143 go to PAX.
 */
const MAX_USTAR_ID = 0o777777;
const MAX_USTAR_SIZE = 0o77777777777;
// tar-stream encodes mtime through a 32-bit integer conversion.
const MAX_USTAR_MTIME = 2 ** 31 - 1;
const USTAR_NAME_MAX = 100;
const USTAR_PREFIX_MAX = 155;
const USTAR_OWNER_NAME_MAX = 32;
const BLOCK = 512;

/**
 * Packs entries into a deterministic tar stream (ustar + PAX), reading each
 * file's content only when its turn comes and honouring backpressure, so
 * memory stays flat however many entries there are. Entries are written in the
 * order given. A directory's name gets a trailing '/', as Docker writes it;
 * mtimes are truncated to whole seconds (and clamped to `sourceDateEpoch`);
 * atime and ctime are never written. The stream fails with
 * {@link FileChangedError} when a file's content is longer or shorter than its
 * header says, and with {@link InvalidEntryError} for a header that is not
 * normalized or not representable.
 */
export function packEntries(entries: AsyncIterable<PackSource> | Iterable<PackSource>, opts: PackOptions = {}): Readable {
  const epoch = checkEpoch(opts.sourceDateEpoch);
  const tar = createPack();
  let started = false;
  let stopped = false;
  let outputFull = false;
  let wakeProducer: (() => void) | undefined;

  const wake = (): void => {
    const resume = wakeProducer;
    wakeProducer = undefined;
    resume?.();
  };

  const output = new Readable({
    read() {
      outputFull = false;
      tar.resume();
      wake();
      if (!started) {
        started = true;
        produce().catch((err: unknown) => {
          if (stopped) return;
          stopped = true;
          tar.destroy();
          output.destroy(err instanceof Error ? err : new Error(String(err)));
        });
      }
    },
    destroy(err, callback) {
      stopped = true;
      tar.destroy();
      wake();
      callback(err);
    },
  });

  tar.on('data', (chunk: unknown) => {
    if (!output.push(chunk)) {
      outputFull = true;
      tar.pause();
    }
  });
  tar.on('end', () => output.push(null));
  tar.on('error', (err: Error) => {
    if (!stopped) output.destroy(err);
  });

  // Header-only entries are pushed without waiting for the reader, so the
  // producer itself pauses whenever the consumer is behind.
  const roomForMore = async (): Promise<void> => {
    while (outputFull && !stopped) await new Promise<void>((resolve) => (wakeProducer = resolve));
  };

  async function produce(): Promise<void> {
    for await (const source of entries) {
      await roomForMore();
      if (stopped) return;
      await writeEntry(tar, source, epoch);
      if (stopped) return;
    }
    tar.finalize();
  }

  return output;
}

/**
 * Tars the tree under `root` (not including the root itself): {@link walkTree}
 * order and headers, file contents streamed one file at a time. The same tree
 * gives the same bytes regardless of inode order or access times.
 */
export function tarFromTree(root: string, opts: TreeTarOptions = {}): Readable {
  const walkOpts: WalkOptions = {};
  if (opts.xattrs !== undefined) walkOpts.xattrs = opts.xattrs;
  if (opts.filter !== undefined) walkOpts.filter = opts.filter;
  return packEntries(withFileContent(walkTree(root, walkOpts)), { sourceDateEpoch: opts.sourceDateEpoch });
}

/**
 * Attaches lazily-opened file content to entries that have a source path on
 * disk. The read is capped at one byte past the header's size: enough to see
 * that the file grew, without reading all of a growing file.
 */
export async function* withFileContent(
  entries: AsyncIterable<{ header: EntryHeader; sourcePath?: string; content?: PackSource['content'] }>,
): AsyncGenerator<PackSource> {
  for await (const entry of entries) {
    yield sourceWithContent(entry);
  }
}

/** One entry of {@link withFileContent}: content from `content`, else read from `sourcePath`. */
export function sourceWithContent(entry: { header: EntryHeader; sourcePath?: string; content?: PackSource['content'] }): PackSource {
  const { header, sourcePath, content } = entry;
  if (content || header.type !== 'file' || header.size === 0 || sourcePath === undefined) {
    return content ? { header, content } : { header };
  }
  return { header, content: () => createReadStream(sourcePath, { start: 0, end: header.size }) };
}

async function writeEntry(tar: Pack, source: PackSource, epoch: number | undefined): Promise<void> {
  const { header } = source;
  const plan = planEntry(header, epoch);
  if (plan.pax.length > 0) tar.push(encodePaxHeader(plan.tarName, plan.pax));
  if (plan.ustar.devmajor > MAX_USTAR_ID || plan.ustar.devminor > MAX_USTAR_ID) {
    // Header-only entry that tar-stream's fields cannot hold: written here instead.
    tar.push(encodeUstarHeader(plan.ustar));
    return;
  }

  await new Promise<void>((resolve, reject) => {
    let failed = false;
    const fail = (err: unknown): void => {
      if (failed) return;
      failed = true;
      reject(err);
    };
    const sink = tar.entry(plan.ustar, (err) => (err ? fail(err) : resolve()));
    // Failures reach us through the entry callback; the sink's own 'error' event would otherwise be unhandled.
    sink.on('error', () => undefined);
    if (header.type === 'file') {
      copyContent(sink, source, header).catch((err: unknown) => {
        fail(err);
        tar.destroy(err instanceof Error ? err : new Error(String(err)));
      });
    }
  });
}

type Sink = ReturnType<Pack['entry']>;

async function copyContent(sink: Sink, source: PackSource, header: EntryHeader): Promise<void> {
  const expected = header.size;
  if (!source.content) {
    if (expected !== 0) throw new InvalidEntryError(header.path, `file of ${expected} bytes has no content`);
    sink.end(undefined);
    return;
  }
  const content = source.content();
  if (content instanceof Uint8Array) {
    if (content.length !== expected) throw new FileChangedError(header.path, expected, `${content.length} bytes`);
    sink.end(content.length > 0 ? content : undefined);
    return;
  }
  let seen = 0;
  for await (const chunk of content as AsyncIterable<Buffer | string>) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    seen += bytes.length;
    if (seen > expected) throw new FileChangedError(header.path, expected, `more than ${expected} bytes`);
    if (sink.destroyed) throw new Error(`tar stream closed while writing ${header.path}`);
    if (bytes.length > 0 && !sink.write(bytes)) await drained(sink);
  }
  if (seen !== expected) throw new FileChangedError(header.path, expected, `${seen} bytes`);
  sink.end(undefined);
}

function drained(sink: Sink): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      sink.off('drain', done);
      sink.off('close', done);
      resolve();
    };
    sink.on('drain', done);
    sink.on('close', done);
  });
}

interface EntryPlan {
  /** The entry's name as stored in the archive (directories end in '/'). */
  tarName: string;
  /** What tar-stream writes: always encodable without its own PAX fallback. */
  ustar: TarStreamHeader;
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

  const ustar: TarStreamHeader = {
    name: ustarName,
    mode: TYPE_MODE_BITS[type] | header.mode,
    uid,
    gid,
    uname,
    gname,
    size,
    mtime: new Date(ustarMtime * 1000),
    type: TAR_STREAM_TYPE[type],
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
  const header = encodeUstarHeader({
    name,
    mode: 0o644,
    uid: 0,
    gid: 0,
    uname: '',
    gname: '',
    size: body.length,
    mtime: new Date(0),
    type: 'pax-header' as TarStreamHeader['type'],
    linkname: '',
    devmajor: 0,
    devminor: 0,
  });
  const padding = (BLOCK - (body.length % BLOCK)) % BLOCK;
  return Buffer.concat([header, body, Buffer.alloc(padding)]);
}

/** One "LEN KEY=VALUE\n" record, where LEN counts the whole record including its own digits. */
function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.byteLength(key) + value.length + 3; // ' ', '=', '\n'
  let length = rest + String(rest).length;
  if (String(length).length !== String(rest).length) length = rest + String(length).length;
  return Buffer.concat([Buffer.from(`${length} ${key}=`, 'utf8'), value, Buffer.from('\n')]);
}

const TYPEFLAG: Record<string, string> = {
  file: '0',
  link: '1',
  symlink: '2',
  'character-device': '3',
  'block-device': '4',
  directory: '5',
  fifo: '6',
  'pax-header': 'x',
};

/**
 * A ustar header block laid out exactly as tar-stream lays out its own, for
 * the blocks tar-stream cannot produce: PAX extended headers (it cannot emit a
 * body for them) and device numbers above its six-digit fields, which get
 * seven octal digits (as Go's archive/tar writes them) or, past that, GNU
 * base-256.
 */
function encodeUstarHeader(header: TarStreamHeader): Buffer {
  const split = splitUstarName(header.name);
  if (!split) throw new Error(`internal: ustar name ${JSON.stringify(header.name)} does not fit`);
  const block = Buffer.alloc(BLOCK);
  block.write(split.name, 0, USTAR_NAME_MAX, 'latin1');
  writeSmallNumber(block, 100, header.mode & 0o7777);
  writeSmallNumber(block, 108, header.uid);
  writeSmallNumber(block, 116, header.gid);
  block.write(`${header.size.toString(8).padStart(11, '0')} `, 124, 12, 'latin1');
  block.write(`${Math.floor(header.mtime.getTime() / 1000).toString(8).padStart(11, '0')} `, 136, 12, 'latin1');
  block.write(TYPEFLAG[header.type] ?? '0', 156, 1, 'latin1');
  if (header.linkname) block.write(header.linkname, 157, USTAR_NAME_MAX, 'latin1');
  block.write('ustar\x0000', 257, 8, 'latin1');
  if (header.uname) block.write(header.uname, 265, USTAR_OWNER_NAME_MAX, 'latin1');
  if (header.gname) block.write(header.gname, 297, USTAR_OWNER_NAME_MAX, 'latin1');
  writeSmallNumber(block, 329, header.devmajor);
  writeSmallNumber(block, 337, header.devminor);
  if (split.prefix) block.write(split.prefix, 345, USTAR_PREFIX_MAX, 'latin1');
  let sum = 8 * 0x20; // the checksum field itself counts as spaces
  for (let i = 0; i < BLOCK; i++) if (i < 148 || i >= 156) sum += block[i]!;
  block.write(`${sum.toString(8).padStart(6, '0')} \0`, 148, 8, 'latin1');
  return block;
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
