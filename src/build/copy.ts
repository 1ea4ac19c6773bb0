/**
 * COPY and ADD as changesets, computed without mounting anything (so without
 * root): the entries the step writes, plus every existing directory on the
 * way to them, which is exactly what overlayfs puts in a container's upper
 * directory when Docker's classic builder copies into it (a directory is
 * copied up before a child is created in it). Rules, as measured against
 * `docker build` (classic builder):
 *
 * - the destination is resolved in the image following symlinks, the last
 *   component included (`COPY f /link` where `/link` points at a directory
 *   copies into that directory; the layer holds the resolved path);
 * - a file goes into the destination when it ends in `/` or is an existing
 *   directory, else it becomes the destination; missing parents are created
 *   0755 and owned like the copied file;
 * - a directory's contents (never the directory itself) are merged into the
 *   destination; a missing destination is created 0755, owned like the
 *   copied files, its own missing parents 0755 root; an existing destination
 *   keeps its mode and owner;
 * - ownership is 0:0 unless `--chown` (`COPY --from` without `--chown`
 *   keeps the source's owners); modes are the source's unless `--chmod`,
 *   except that chowning clears setuid as chown(2) does; mtimes are fixed (`mtime`), not the context's, so the same
 *   input gives the same layer on any checkout;
 * - ADD unpacks local tar archives (plain, gzip, bzip2, xz, zstd) into the
 *   destination directory, keeping the archive's owners, modes and mtimes.
 */
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { StrataError } from '../content/errors.js';
import { MergedPathError, MergedView, type MergedNode } from '../snapshot/merged.js';
import type { Changeset, ChangesetEntry } from '../tar/changeset.js';
import { comparePaths, type EntryHeader } from '../tar/entry.js';
import { readTar } from '../tar/read.js';

/** A COPY/ADD that cannot be carried out; the message is Docker's where Docker has one. */
export class CopyError extends StrataError {
  constructor(message: string) {
    super('COPY_FAILED', message);
  }
}

/** One entry to write: its header (the path is relative to the item) and where its content comes from. */
export interface CopyEntrySource {
  header: EntryHeader;
  sourcePath?: string;
  content?: () => NodeJS.ReadableStream | Buffer;
}

/** One thing a COPY/ADD places at its destination. */
export type CopyItem =
  /** A single non-directory (a regular file, usually); `name` is used when copying into a directory. */
  | { kind: 'file'; name: string; entry: CopyEntrySource; keepMtime?: boolean }
  /** A directory whose contents (paths relative to it, parents first) are merged into the destination. */
  | { kind: 'dir'; name: string; entries: () => AsyncIterable<CopyEntrySource> }
  /** A tar archive (already decompressed) unpacked into the destination directory. */
  | { kind: 'archive'; name: string; open: () => Promise<NodeJS.ReadableStream> };

/** A uid/gid pair. */
export interface Owner {
  uid: number;
  gid: number;
}

/** Options of {@link copyChangeset}. */
export interface CopyOptions {
  /** The image's file system before the step. Ignored with `link`. */
  view: MergedView;
  /** The destination as written (after variable expansion). */
  dest: string;
  /** WORKDIR in effect: a relative destination is under it. */
  workingDir?: string;
  /** `--chown`, resolved; 0:0 otherwise. */
  owner?: Owner;
  /**
   * Keep the sources' owners and modes instead of chowning (Docker does so
   * for `COPY --from` without `--chown`); new directories are then root's.
   */
  preserveOwnership?: boolean;
  /** `--chmod`, parsed: the permission bits of every copied file and directory. */
  chmod?: number;
  /** `--link`: the layer does not depend on what is below (no copied-up parents, destination resolved in an empty tree). */
  link?: boolean;
  /** mtime (seconds) of copied files and created directories. */
  mtime: number;
  /** Scratch directory for archive contents (must exist; the caller removes it after the layer is made). */
  tempDir: string;
}

const ROOT_OWNER: Owner = { uid: 0, gid: 0 };

/**
 * Docker's destination normalization (moby normalizeDest): a relative
 * destination is joined to the working directory, and a trailing `/` is kept
 * because it means "a directory".
 */
export function normalizeDest(workingDir: string | undefined, dest: string): string {
  const endsInSlash = dest.endsWith('/');
  if (dest.startsWith('/')) return dest;
  let joined = posix.join('/', workingDir ?? '', dest);
  if (endsInSlash && !joined.endsWith('/')) joined += '/';
  return joined;
}

/**
 * Parses `--chmod`: an octal mode of up to four digits.
 * @throws CopyError for anything else
 */
export function parseChmod(value: string): number {
  if (!/^[0-7]{1,4}$/.test(value)) throw new CopyError(`invalid chmod parameter: ${JSON.stringify(value)}: only octal modes (e.g. 0755) are supported`);
  return Number.parseInt(value, 8);
}

function parseId(value: string): number | undefined {
  return /^[0-9]+$/.test(value) ? Number(value) : undefined;
}

async function lookupInDb(view: MergedView, file: string, name: string, idField: number): Promise<number | undefined> {
  const data = await view.readSmallFile(file);
  if (data === undefined) throw new CopyError(`open ${file}: no such file or directory`);
  for (const line of data.toString('utf8').split('\n')) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const fields = trimmed.split(':');
    if (fields[0] !== name) continue;
    const id = parseId(fields[idField] ?? '');
    if (id !== undefined) return id;
  }
  return undefined;
}

/**
 * Resolves `--chown=user[:group]` as Docker's classic builder does: numeric
 * ids are used as they are; names are looked up in the image's /etc/passwd
 * and /etc/group (symlinks followed inside the image); a lone user names the
 * group too.
 *
 * @throws CopyError `unable to convert uid/gid chown string to host mapping:
 *   can't find uid for user X: no such user: X` (and the group equivalent)
 */
export async function resolveChown(view: MergedView, chown: string): Promise<Owner> {
  const parts = chown.split(':');
  if (parts.length > 2) throw new CopyError(`unable to convert uid/gid chown string to host mapping: invalid chown string format: ${chown}`);
  const userStr = parts[0]!;
  const groupStr = parts.length === 2 ? parts[1]! : parts[0]!;
  const fail = (what: string, detail: string): never => {
    throw new CopyError(`unable to convert uid/gid chown string to host mapping: ${what}: ${detail}`);
  };
  let uid = parseId(userStr);
  if (uid === undefined) {
    try {
      uid = await lookupInDb(view, '/etc/passwd', userStr, 2);
    } catch (err) {
      if (err instanceof CopyError) fail(`can't find uid for user ${userStr}`, err.message);
      throw err;
    }
    if (uid === undefined) fail(`can't find uid for user ${userStr}`, `no such user: ${userStr}`);
  }
  let gid = parseId(groupStr);
  if (gid === undefined) {
    try {
      gid = await lookupInDb(view, '/etc/group', groupStr, 2);
    } catch (err) {
      if (err instanceof CopyError) fail(`can't find gid for group ${groupStr}`, err.message);
      throw err;
    }
    if (gid === undefined) fail(`can't find gid for group ${groupStr}`, `no such group: ${groupStr}`);
  }
  if (uid! > 0x7fffffff || gid! > 0x7fffffff) fail('invalid chown string', 'uids and gids must be in range 0-2147483647');
  return { uid: uid!, gid: gid! };
}

function parentOf(rel: string): string {
  const slash = rel.lastIndexOf('/');
  return slash < 0 ? '' : rel.slice(0, slash);
}

function joinRel(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

/** The layer being assembled: entries by path, and what they replace below. */
class LayerPlan {
  readonly entries = new Map<string, ChangesetEntry>();
  readonly opaqueDirs = new Set<string>();

  constructor(
    /** Undefined for `--link`: nothing below is looked at. */
    private readonly view: MergedView | undefined,
    private readonly mtime: number,
  ) {}

  lower(rel: string): Promise<MergedNode | undefined> {
    return this.view === undefined ? Promise.resolve(undefined) : this.view.lookup(rel);
  }

  private notADirectory(rel: string): CopyError {
    return new CopyError(`failed to copy files: failed to create new directory: mkdir /${rel}: not a directory`);
  }

  /** Makes every ancestor of `rel` a directory of the layer: copied up from below, or created 0755 for `owner`. */
  async ensureParents(rel: string, owner: Owner): Promise<void> {
    const missing: string[] = [];
    for (let dir = parentOf(rel); dir !== ''; dir = parentOf(dir)) {
      const planned = this.entries.get(dir);
      if (planned !== undefined) {
        if (planned.header.type !== 'directory') throw this.notADirectory(dir);
        break;
      }
      missing.push(dir);
    }
    for (const dir of missing.reverse()) await this.ensureDir(dir, owner);
  }

  /** Puts directory `rel` in the layer if it is not yet: the lower one copied up, or a new 0755 one. */
  async ensureDir(rel: string, owner: Owner, mode = 0o755): Promise<void> {
    if (rel === '') return;
    const planned = this.entries.get(rel);
    if (planned !== undefined) {
      if (planned.header.type !== 'directory') throw this.notADirectory(rel);
      return;
    }
    const lower = await this.lower(rel);
    if (lower !== undefined) {
      if (lower.header.type !== 'directory') throw this.notADirectory(rel);
      this.entries.set(rel, { header: { ...lower.header, path: rel } });
      return;
    }
    this.entries.set(rel, { header: { path: rel, type: 'directory', mode, uid: owner.uid, gid: owner.gid, mtime: this.mtime, size: 0 } });
  }

  /** Writes `entry` at `rel`, replacing whatever is there (a directory over a lower non-directory makes it opaque). */
  async put(rel: string, entry: ChangesetEntry): Promise<void> {
    if (rel === '') return;
    const existing = this.entries.get(rel);
    if (entry.header.type === 'directory') {
      if (existing === undefined || existing.header.type !== 'directory') {
        const lower = await this.lower(rel);
        if (lower !== undefined && lower.header.type !== 'directory') this.opaqueDirs.add(rel);
      }
    } else if (existing?.header.type === 'directory') {
      // A file replacing a directory of this same layer drops what was put under it.
      const prefix = `${rel}/`;
      for (const key of [...this.entries.keys()]) if (key.startsWith(prefix)) this.entries.delete(key);
      for (const key of [...this.opaqueDirs]) if (key === rel || key.startsWith(prefix)) this.opaqueDirs.delete(key);
    }
    this.entries.set(rel, entry);
  }

  changeset(): Changeset {
    const entries = [...this.entries.values()].sort((a, b) => comparePaths(a.header.path, b.header.path));
    // A hardlink must follow its target in the archive; one that would not is stored as a copy.
    const position = new Map(entries.map((e, i) => [e.header.path, i] as const));
    const fixed = entries.map((entry, i) => {
      if (entry.header.type !== 'hardlink') return entry;
      const target = entry.header.linkname === undefined ? undefined : position.get(entry.header.linkname);
      const targetEntry = target === undefined ? undefined : entries[target];
      if (target !== undefined && target < i && targetEntry?.header.type === 'file') return entry;
      if (targetEntry === undefined || targetEntry.header.type !== 'file') {
        throw new CopyError(`cannot copy hardlink /${entry.header.path}: its target /${entry.header.linkname ?? ''} is not a copied regular file`);
      }
      const copy: ChangesetEntry = { header: { ...entry.header, type: 'file', size: targetEntry.header.size } };
      delete copy.header.linkname;
      if (targetEntry.sourcePath !== undefined) copy.sourcePath = targetEntry.sourcePath;
      if (targetEntry.content !== undefined) copy.content = targetEntry.content;
      return copy;
    });
    return { entries: fixed, deletions: [], opaqueDirs: [...this.opaqueDirs].sort(comparePaths) };
  }
}

async function resolveDest(view: MergedView, dest: string): Promise<{ rel: string; node: MergedNode | undefined }> {
  try {
    const { rel, node } = await view.resolve(dest, { followLast: true, allowMissing: true }, 'mkdir');
    return { rel, node };
  } catch (err) {
    if (err instanceof MergedPathError) {
      if (err.code === 'ENOTDIR') throw new CopyError(`failed to copy files: failed to create new directory: mkdir ${dest.replace(/\/+$/, '')}: not a directory`);
      if (err.code === 'ELOOP') throw new CopyError(`failed to copy files: ${dest}: too many levels of symbolic links`);
    }
    throw err;
  }
}

/**
 * The changeset of one COPY/ADD: `items` placed at `opts.dest` on top of
 * `opts.view`, with Docker's destination, ownership and parent-directory
 * rules (see the module comment).
 *
 * @throws CopyError when the destination cannot take the items (a file in
 *   the way of a directory, a directory source onto a file)
 */
export async function copyChangeset(items: readonly CopyItem[], opts: CopyOptions): Promise<Changeset> {
  const dest = normalizeDest(opts.workingDir, opts.dest);
  const endsInSlash = dest.endsWith('/');
  const preserve = opts.preserveOwnership === true && opts.owner === undefined;
  const owner = opts.owner ?? ROOT_OWNER;
  /** The owner a copied entry ends up with. */
  const ownerOf = (header: EntryHeader): Owner => (preserve ? { uid: header.uid, gid: header.gid } : owner);
  const view = opts.link ? new MergedView([]) : opts.view;
  const plan = new LayerPlan(opts.link ? undefined : opts.view, opts.mtime);
  // Docker chowns what it copies, and chown(2) clears setuid (and setgid on
  // group-executable files) of regular files, root or not; --chmod comes after.
  const withMode = (header: EntryHeader): EntryHeader => {
    if (opts.chmod !== undefined && header.type !== 'symlink' && header.type !== 'hardlink') return { ...header, mode: opts.chmod };
    if (preserve || (header.type !== 'file' && header.type !== 'hardlink')) return header;
    let mode = header.mode & ~0o4000;
    if (mode & 0o010) mode &= ~0o2000;
    return mode === header.mode ? header : { ...header, mode };
  };

  for (const item of items) {
    const { rel: destRel, node: destNode } = await resolveDest(view, dest);
    switch (item.kind) {
      case 'file': {
        let target = destRel;
        if (endsInSlash || destNode?.header.type === 'directory') target = joinRel(destRel, item.name);
        if (target === '') throw new CopyError(`failed to copy files: cannot replace the root directory with ${item.name}`);
        await plan.ensureParents(target, owner);
        const mtime = item.keepMtime ? item.entry.header.mtime : opts.mtime;
        const header = withMode({ ...item.entry.header, path: target, ...ownerOf(item.entry.header), mtime });
        delete header.linkname;
        if (item.entry.header.linkname !== undefined && header.type === 'symlink') header.linkname = item.entry.header.linkname;
        await plan.put(target, withSource({ header }, item.entry));
        break;
      }
      case 'dir': {
        if (destNode !== undefined && destNode.header.type !== 'directory') {
          throw new CopyError(`failed to copy files: failed to copy directory: mkdir ${dest.replace(/\/+$/, '')}: not a directory`);
        }
        await plan.ensureParents(destRel, ROOT_OWNER);
        if (destNode === undefined) await plan.put(destRel, { header: withMode({ path: destRel, type: 'directory', mode: 0o755, uid: owner.uid, gid: owner.gid, mtime: opts.mtime, size: 0 }) });
        else await plan.ensureDir(destRel, ROOT_OWNER);
        for await (const entry of item.entries()) {
          const target = joinRel(destRel, entry.header.path);
          const parent = parentOf(target);
          if (parent !== destRel && plan.entries.get(parent)?.header.type !== 'directory') await plan.ensureParents(target, owner);
          const header = withMode({ ...entry.header, path: target, ...ownerOf(entry.header), mtime: opts.mtime });
          if (header.type === 'hardlink') header.linkname = joinRel(destRel, entry.header.linkname ?? '');
          await plan.put(target, withSource({ header }, entry));
        }
        break;
      }
      case 'archive': {
        if (destNode !== undefined && destNode.header.type !== 'directory') {
          throw new CopyError(`failed to copy files: failed to create new directory: mkdir ${dest.replace(/\/+$/, '')}: not a directory`);
        }
        await plan.ensureParents(destRel, ROOT_OWNER);
        if (destNode === undefined) await plan.put(destRel, { header: { path: destRel, type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: opts.mtime, size: 0 } });
        else await plan.ensureDir(destRel, ROOT_OWNER);
        await unpackArchive(plan, await item.open(), destRel, opts.tempDir, item.name);
        break;
      }
    }
  }
  return plan.changeset();
}

function withSource(target: ChangesetEntry, from: CopyEntrySource): ChangesetEntry {
  if (target.header.type === 'file') {
    if (from.content !== undefined) target.content = from.content;
    else if (from.sourcePath !== undefined) target.sourcePath = from.sourcePath;
  }
  return target;
}

/**
 * Unpacks a tar into the plan under `destRel`, as Docker's untar does:
 * entries keep their owners, modes and mtimes; missing parents are created
 * 0755 root (or copied up); a later entry replaces an earlier one. File
 * contents are spilled to numbered files in `tempDir`, so no archive name
 * ever reaches the host file system.
 */
async function unpackArchive(plan: LayerPlan, tar: NodeJS.ReadableStream, destRel: string, tempDir: string, name: string): Promise<void> {
  const spill = join(tempDir, `archive-${Math.random().toString(16).slice(2)}`);
  await mkdir(spill, { recursive: true });
  let index = 0;
  try {
    for await (const entry of readTar(tar)) {
      const target = joinRel(destRel, entry.header.path);
      const header: EntryHeader = { ...entry.header, path: target };
      delete header.atime;
      delete header.ctime;
      if (header.type === 'hardlink') header.linkname = joinRel(destRel, entry.header.linkname ?? '');
      const out: ChangesetEntry = { header };
      if (header.type === 'file' && header.size > 0) {
        const file = join(spill, String(index++));
        await pipeline(entry.body, createWriteStream(file, { mode: 0o600 }));
        out.sourcePath = file;
      } else {
        entry.body.resume();
      }
      await plan.ensureParents(target, ROOT_OWNER);
      await plan.put(target, out);
    }
  } catch (err) {
    if (err instanceof CopyError) throw err;
    throw new CopyError(`failed to copy files: cannot unpack ${name}: ${(err as Error).message}`);
  }
}

// ---------------------------------------------------------------- archives

/** Compression of a file ADD may unpack. */
export type ArchiveCompression = 'none' | 'gzip' | 'bzip2' | 'xz' | 'zstd';

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const EXTERNAL_DECOMPRESSORS: Record<'bzip2' | 'xz' | 'zstd', string> = { bzip2: 'bzip2', xz: 'xz', zstd: 'zstd' };

/** Sniffs the compression of a file from its first bytes. */
export function sniffArchiveCompression(head: Buffer): ArchiveCompression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 3 && head.toString('latin1', 0, 3) === 'BZh') return 'bzip2';
  if (head.length >= 6 && head.subarray(0, 6).equals(XZ_MAGIC)) return 'xz';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  return 'none';
}

/** True when `block` is a tar header with a valid checksum (what Go's tar reader needs to accept it). */
export function isTarHeader(block: Buffer): boolean {
  if (block.length < 512) return false;
  if (block.subarray(0, 512).every((b) => b === 0)) return false;
  const field = block.toString('latin1', 148, 156).replace(/\0.*$/s, '').trim();
  if (!/^[0-7]+$/.test(field)) return false;
  const expected = Number.parseInt(field, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b >= 0x80 ? b - 256 : b;
  }
  return expected === unsigned || expected === signed;
}

/** A decompressing stream over `path`; bzip2, xz and zstd go through the system tools. */
export function openDecompressed(path: string, compression: ArchiveCompression): Readable {
  const file = createReadStream(path);
  if (compression === 'none') return file;
  if (compression === 'gzip') {
    const gunzip = createGunzip();
    file.on('error', (err) => gunzip.destroy(err));
    return file.pipe(gunzip);
  }
  const tool = EXTERNAL_DECOMPRESSORS[compression];
  const child = spawn(tool, ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const out = new PassThrough();
  let stderr = '';
  let failed = false;
  const fail = (err: Error): void => {
    if (failed) return;
    failed = true;
    out.destroy(err);
  };
  child.on('error', (err: NodeJS.ErrnoException) => {
    fail(
      err.code === 'ENOENT'
        ? new CopyError(`cannot unpack a ${compression}-compressed archive: the ${tool} program is not installed`)
        : err,
    );
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    if (stderr.length < 2048) stderr += chunk;
  });
  file.on('error', fail);
  child.stdin.on('error', () => undefined);
  file.pipe(child.stdin);
  child.stdout.pipe(out, { end: false });
  child.on('close', (code) => {
    if (code === 0) out.end();
    else fail(new CopyError(`${tool} -dc failed (exit ${code}): ${stderr.trim()}`));
  });
  return out;
}

/**
 * Whether ADD unpacks the file at `path` (moby isArchivePath): it must be a
 * tar, possibly compressed. Returns its compression, or undefined for a file
 * to be copied as it is.
 */
export async function archiveCompression(path: string): Promise<ArchiveCompression | undefined> {
  const handle = await open(path, 'r');
  let head: Buffer;
  try {
    const buffer = Buffer.alloc(512);
    const { bytesRead } = await handle.read(buffer, 0, 512, 0);
    head = buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
  const compression = sniffArchiveCompression(head);
  if (compression === 'none') return isTarHeader(head) ? 'none' : undefined;
  // Look at the first decompressed block: a compressed non-tar is copied as a file.
  const stream = openDecompressed(path, compression);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      size += chunk.length;
      if (size >= 512) break;
    }
  } catch (err) {
    if (err instanceof CopyError && /not installed/.test(err.message)) throw err;
    return undefined;
  } finally {
    stream.destroy();
  }
  return isTarHeader(Buffer.concat(chunks)) ? compression : undefined;
}

/** True when a changeset changes nothing (its layer would be the empty tar). */
export function isEmptyChangeset(cs: Changeset): boolean {
  return cs.entries.length === 0 && cs.deletions.length === 0 && cs.opaqueDirs.length === 0;
}

/**
 * The changeset of WORKDIR: the directory (and its missing parents) created
 * root 0755 when it does not exist, with existing parents copied up; empty
 * when it exists. Symlinks on the way are followed inside the image.
 *
 * @throws CopyError `Cannot mkdir: PATH is not a directory` (Docker's wording)
 */
export async function workdirChangeset(view: MergedView, path: string, mtime: number): Promise<Changeset> {
  let resolved: { rel: string; node: MergedNode | undefined };
  try {
    resolved = await view.resolve(path, { followLast: true, allowMissing: true }, 'mkdir');
  } catch (err) {
    if (err instanceof MergedPathError && err.code === 'ENOTDIR') throw new CopyError(`Cannot mkdir: ${path} is not a directory`);
    throw err;
  }
  const empty: Changeset = { entries: [], deletions: [], opaqueDirs: [] };
  if (resolved.node !== undefined) {
    if (resolved.node.header.type === 'directory') return empty;
    throw new CopyError(`Cannot mkdir: ${path} is not a directory`);
  }
  if (resolved.rel === '') return empty;
  const plan = new LayerPlan(view, mtime);
  try {
    await plan.ensureParents(resolved.rel, ROOT_OWNER);
  } catch (err) {
    if (err instanceof CopyError) throw new CopyError(`Cannot mkdir: ${path} is not a directory`);
    throw err;
  }
  await plan.put(resolved.rel, { header: { path: resolved.rel, type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime, size: 0 } });
  return plan.changeset();
}
