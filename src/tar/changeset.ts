/**
 * Changesets: what a layer records relative to the layers below it (added or
 * modified entries, deletions, opaque directories), and their deterministic
 * tar form with AUFS-style whiteouts, as Docker and the OCI image spec use.
 */
import type { Readable } from 'node:stream';
import {
  OPAQUE_WHITEOUT,
  WHITEOUT_PREFIX,
  compareNames,
  normalizeEntryPath,
  opaqueWhiteoutPathFor,
  whiteoutPathFor,
  type EntryHeader,
} from './entry.js';
import { packEntries, sourceWithContent, type PackOptions, type PackSource } from './write.js';

/** One added or modified entry of a {@link Changeset}. */
export interface ChangesetEntry {
  header: EntryHeader;
  /** Where a 'file' entry's content is read from, when `content` is not given. */
  sourcePath?: string;
  /** Produces a 'file' entry's content (exactly `header.size` bytes). */
  content?: () => NodeJS.ReadableStream | Buffer;
}

/** What a layer records. */
export interface Changeset {
  /** Added or modified entries, directories included. */
  entries: ChangesetEntry[];
  /** Paths deleted from lower layers; each becomes `DIR/.wh.NAME`. */
  deletions: string[];
  /** Directories whose lower-layer children are all hidden; each becomes `DIR/.wh..wh..opq` ('' or '.' is the root). */
  opaqueDirs: string[];
}

/** Raised for a changeset that contradicts itself or cannot be represented. */
export class InvalidChangesetError extends Error {
  constructor(message: string) {
    super(`invalid changeset: ${message}`);
    this.name = 'InvalidChangesetError';
  }
}

/**
 * Tars a changeset deterministically: see {@link changesetEntries} for the
 * order and the whiteout headers. Validation happens before the stream is
 * returned, so a contradictory changeset throws {@link InvalidChangesetError}
 * here rather than failing the stream halfway.
 */
export function tarFromChangeset(cs: Changeset, opts: PackOptions = {}): Readable {
  return packEntries(changesetEntries(cs), opts);
}

interface Item {
  segments: string[];
  source: PackSource;
}

/**
 * The validated entries a changeset's tar holds, in archive order: sorted by
 * path segment in UTF-8 byte order, parents before children; within a
 * directory, the opaque marker first, then `.wh.NAME` whiteouts sorted, then
 * the other children. Whiteouts are empty regular files with mode 0 and owner
 * 0:0, as Docker and containerd write them for deletions; an opaque marker
 * takes its directory's permission bits and owner when the directory is in
 * the changeset (as Docker's overlay differ does), else the same as a
 * whiteout. Whiteout mtimes are 0 (containerd 2.0 does the same) so the tar
 * does not depend on when it was made.
 *
 * @throws InvalidChangesetError when a path is both deleted and added, is
 *   listed twice, lies under a deleted path, uses a `.wh.` name, or names the
 *   root (except an opaque root); or when an opaque dir is added as a non-directory.
 */
export function changesetEntries(cs: Changeset): PackSource[] {
  const items: Item[] = [];
  const entryByPath = new Map<string, ChangesetEntry & { header: EntryHeader }>();

  for (const entry of cs.entries) {
    const path = checkedPath(entry.header.path, 'entry');
    if (path === undefined) throw new InvalidChangesetError('an entry names the root directory, which a layer cannot carry');
    if (entryByPath.has(path)) throw new InvalidChangesetError(`entry ${JSON.stringify(path)} is listed twice`);
    const header: EntryHeader = { ...entry.header, path };
    if (header.type === 'hardlink' && header.linkname !== undefined) {
      const target = checkedPath(header.linkname, `hardlink target of ${JSON.stringify(path)}`);
      if (target === undefined) throw new InvalidChangesetError(`hardlink ${JSON.stringify(path)} points at the root`);
      header.linkname = target;
    }
    const normalized = { ...entry, header };
    entryByPath.set(path, normalized);
    items.push({ segments: path.split('/'), source: sourceWithContent(normalized) });
  }

  const deleted = new Set<string>();
  for (const raw of cs.deletions) {
    const path = checkedPath(raw, 'deletion');
    if (path === undefined) throw new InvalidChangesetError('a deletion names the root directory');
    if (deleted.has(path)) throw new InvalidChangesetError(`deletion ${JSON.stringify(path)} is listed twice`);
    if (entryByPath.has(path)) throw new InvalidChangesetError(`${JSON.stringify(path)} is both deleted and added`);
    deleted.add(path);
  }
  const deletedAncestor = (path: string): string | undefined => {
    for (let slash = path.lastIndexOf('/'); slash > 0; slash = path.lastIndexOf('/', slash - 1)) {
      const ancestor = path.slice(0, slash);
      if (deleted.has(ancestor)) return ancestor;
    }
    return undefined;
  };
  for (const path of deleted) {
    const ancestor = deletedAncestor(path);
    if (ancestor !== undefined) {
      throw new InvalidChangesetError(`deletion ${JSON.stringify(path)} lies under deleted ${JSON.stringify(ancestor)}; delete only the top`);
    }
    const whiteout = whiteoutPathFor(path);
    items.push({ segments: whiteout.split('/'), source: { header: whiteoutHeader(whiteout) } });
  }
  for (const path of entryByPath.keys()) {
    const ancestor = deletedAncestor(path);
    if (ancestor !== undefined) {
      throw new InvalidChangesetError(`entry ${JSON.stringify(path)} lies under deleted ${JSON.stringify(ancestor)} (a replaced directory is an opaque dir, not a deletion)`);
    }
  }

  const opaque = new Set<string>();
  for (const raw of cs.opaqueDirs) {
    const dir = checkedPath(raw, 'opaque dir') ?? '';
    if (opaque.has(dir)) throw new InvalidChangesetError(`opaque dir ${JSON.stringify(dir)} is listed twice`);
    opaque.add(dir);
    if (dir !== '' && (deleted.has(dir) || deletedAncestor(dir) !== undefined)) {
      throw new InvalidChangesetError(`opaque dir ${JSON.stringify(dir)} is deleted or lies under a deleted path`);
    }
    const dirEntry = entryByPath.get(dir);
    if (dirEntry && dirEntry.header.type !== 'directory') {
      throw new InvalidChangesetError(`opaque dir ${JSON.stringify(dir)} is added as a ${dirEntry.header.type}, not a directory`);
    }
    const marker = opaqueWhiteoutPathFor(dir);
    items.push({ segments: marker.split('/'), source: { header: opaqueHeader(marker, dirEntry?.header) } });
  }

  items.sort((a, b) => compareSegments(a.segments, b.segments));
  return items.map((item) => item.source);
}

function checkedPath(raw: string, what: string): string | undefined {
  if (typeof raw !== 'string') throw new InvalidChangesetError(`${what} path ${String(raw)} is not a string`);
  let path: string | undefined;
  try {
    path = normalizeEntryPath(raw);
  } catch (err) {
    throw new InvalidChangesetError(`${what}: ${(err as Error).message}`);
  }
  if (path !== undefined && path.split('/').some((segment) => segment.startsWith(WHITEOUT_PREFIX))) {
    throw new InvalidChangesetError(`${what} ${JSON.stringify(raw)} uses a ${WHITEOUT_PREFIX} name, which layers reserve for whiteouts`);
  }
  return path;
}

/**
 * Whiteouts are empty regular files owned by root with mode 0600: what moby's
 * overlay2 differ writes when it turns a 0/0 device into a `.wh.` entry, so our
 * layers match Docker's entry for entry. mtime 0 keeps them reproducible.
 */
function whiteoutHeader(path: string): EntryHeader {
  return { path, type: 'file', mode: 0o600, uid: 0, gid: 0, mtime: 0, size: 0 };
}

function opaqueHeader(path: string, dir: EntryHeader | undefined): EntryHeader {
  const header = whiteoutHeader(path);
  if (dir) {
    header.mode = dir.mode & 0o777;
    header.uid = dir.uid;
    header.gid = dir.gid;
    if (dir.uname) header.uname = dir.uname;
    if (dir.gname) header.gname = dir.gname;
  }
  return header;
}

/** Opaque marker first, then whiteouts, then everything else; byte order within each. */
function segmentRank(segment: string): number {
  if (segment === OPAQUE_WHITEOUT) return 0;
  return segment.startsWith(WHITEOUT_PREFIX) ? 1 : 2;
}

function compareSegments(a: string[], b: string[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x === y) continue;
    const rank = segmentRank(x) - segmentRank(y);
    return rank !== 0 ? rank : compareNames(x, y);
  }
  return a.length - b.length;
}
