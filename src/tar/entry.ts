/**
 * The normalized tar entry model shared by the walker, the tar writer, the tar
 * reader, changesets and extraction. Paths here are always relative,
 * '/'-separated and free of '.'/'..' segments, so a header can be compared,
 * sorted and joined onto a root without re-checking it.
 */

/** Kinds of file system object a layer can carry. Sockets are never archived. */
export type EntryType = 'file' | 'directory' | 'symlink' | 'hardlink' | 'fifo' | 'char' | 'block';

/** All entry types, in a fixed order (handy for validation and property tests). */
export const ENTRY_TYPES: readonly EntryType[] = ['file', 'directory', 'symlink', 'hardlink', 'fifo', 'char', 'block'];

/** Metadata of one archive entry, independent of how a tar encodes it. */
export interface EntryHeader {
  /** Relative, '/'-separated; no leading '/' or './', no trailing '/', never '.' and no '..' segments. */
  path: string;
  type: EntryType;
  /** Permission bits including setuid/setgid/sticky (07777); never file-type bits. */
  mode: number;
  uid: number;
  gid: number;
  uname?: string;
  gname?: string;
  /** Seconds since the epoch; may be fractional (the writer stores whole seconds). */
  mtime: number;
  /** Read from archives that carry it; the writer never stores it (it changes on every read). */
  atime?: number;
  /** Read from archives that carry it; the writer never stores it. */
  ctime?: number;
  /** Bytes of content for 'file'; 0 for every other type. */
  size: number;
  /** Symlink target (verbatim) or hardlink target path (normalized like `path`). */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes by full name (e.g. `security.capability`), raw bytes. */
  xattrs?: Record<string, Buffer>;
}

/** Basename prefix of an AUFS-style whiteout: `.wh.NAME` deletes NAME from lower layers. */
export const WHITEOUT_PREFIX = '.wh.';
/** Basename prefix of whiteout metadata files (`.wh..wh.*`), which delete nothing by name. */
export const WHITEOUT_META_PREFIX = '.wh..wh.';
/** Basename marking its directory opaque: lower layers' children of that directory are hidden. */
export const OPAQUE_WHITEOUT = '.wh..wh..opq';

/** Error for an entry path that cannot be made safe (e.g. it climbs out with '..'). */
export class InvalidEntryPathError extends Error {
  constructor(
    /** The entry's name as given. */
    readonly rawPath: string,
    /** Why it was refused (the message without the name). */
    readonly reason: string,
  ) {
    super(`invalid entry path ${JSON.stringify(rawPath)}: ${reason}`);
    this.name = 'InvalidEntryPathError';
  }
}

/**
 * Normalizes a path as found in an archive or given by a caller: strips leading
 * '/' and './', a trailing '/', empty and '.' segments. Returns `undefined` for
 * the root itself ('', '.', './', '/'). Throws {@link InvalidEntryPathError}
 * (naming the entry) for a '..' segment or a NUL byte, rather than resolving
 * them, because an archive that needs '..' is either broken or hostile.
 */
export function normalizeEntryPath(raw: string): string | undefined {
  if (raw.includes('\0')) throw new InvalidEntryPathError(raw, 'contains a NUL byte');
  const kept: string[] = [];
  for (const segment of raw.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') throw new InvalidEntryPathError(raw, "contains a '..' segment");
    kept.push(segment);
  }
  return kept.length === 0 ? undefined : kept.join('/');
}

/** The last segment of a normalized (or raw) path. */
export function baseName(path: string): string {
  const trimmed = path.endsWith('/') ? path.slice(0, -1) : path;
  return trimmed.slice(trimmed.lastIndexOf('/') + 1);
}

/** The parent of a normalized path, '' for a top-level entry. */
export function parentPath(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash === -1 ? '' : path.slice(0, slash);
}

/** True when the basename of `name` (a basename or a path) starts with `.wh.` (plain, opaque or meta). */
export function isWhiteout(name: string): boolean {
  return baseName(name).startsWith(WHITEOUT_PREFIX);
}

/** True when the basename of `name` is the opaque-directory marker `.wh..wh..opq`. */
export function isOpaqueWhiteout(name: string): boolean {
  return baseName(name) === OPAQUE_WHITEOUT;
}

/**
 * The path a plain whiteout deletes: `a/b/.wh.c` → `a/b/c`. Returns `undefined`
 * for names that are not whiteouts and for `.wh..wh.*` metadata names (the
 * opaque marker included: its directory is `parentPath(path)`). Throws when the
 * whiteout names nothing (`.wh.` alone).
 */
export function whiteoutTarget(path: string): string | undefined {
  const base = baseName(path);
  if (!base.startsWith(WHITEOUT_PREFIX) || base.startsWith(WHITEOUT_META_PREFIX)) return undefined;
  const target = base.slice(WHITEOUT_PREFIX.length);
  if (target === '' || target === '.' || target === '..') {
    throw new InvalidEntryPathError(path, `whiteout names no deletable file (${JSON.stringify(target)})`);
  }
  const parent = parentPath(path.endsWith('/') ? path.slice(0, -1) : path);
  return parent === '' ? target : `${parent}/${target}`;
}

/** The whiteout entry path that deletes `path`: `a/b` → `a/.wh.b`. */
export function whiteoutPathFor(path: string): string {
  const parent = parentPath(path);
  const name = `${WHITEOUT_PREFIX}${baseName(path)}`;
  return parent === '' ? name : `${parent}/${name}`;
}

/** The opaque-marker entry path for directory `dir` ('' or undefined for the root). */
export function opaqueWhiteoutPathFor(dir: string | undefined): string {
  return dir ? `${dir}/${OPAQUE_WHITEOUT}` : OPAQUE_WHITEOUT;
}

/**
 * Compares two normalized paths the way archives are ordered: segment by
 * segment, by UTF-8 byte order, so a directory sorts right before its own
 * children and the order never depends on locale.
 */
export function comparePaths(a: string, b: string): number {
  const as = a.split('/');
  const bs = b.split('/');
  const n = Math.min(as.length, bs.length);
  for (let i = 0; i < n; i++) {
    if (as[i] !== bs[i]) return compareNames(as[i]!, bs[i]!);
  }
  return as.length - bs.length;
}

/** Byte-order (UTF-8) comparison of two names, independent of locale. */
export function compareNames(a: string, b: string): number {
  if (a === b) return 0;
  // UTF-16 code-unit order equals UTF-8 byte order except where surrogates meet
  // U+E000..U+FFFF, so only those strings pay for the byte comparison.
  if (!SURROGATE_OR_HIGH.test(a) && !SURROGATE_OR_HIGH.test(b)) return a < b ? -1 : 1;
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

const SURROGATE_OR_HIGH = /[\uD800-\uFFFF]/;

/**
 * Sorts `names` in place in byte (UTF-8) order, as {@link compareNames}
 * would, checking once for the rare strings that need byte comparison
 * instead of twice per comparison.
 */
export function sortNames<T extends string>(names: T[]): T[] {
  if (!names.some((name) => SURROGATE_OR_HIGH.test(name))) return names.sort();
  return names.sort(compareNames);
}
