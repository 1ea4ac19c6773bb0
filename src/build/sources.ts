/**
 * Where COPY and ADD take their sources from, turned into {@link CopyItem}s
 * with the content hash Docker records for each (`file:<hex>`, `dir:<hex>`):
 * the build context, another stage's or image's file system (`--from`), a
 * heredoc, or a URL (ADD).
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, stat, utimes } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BuildContext, ContextSource, HashedHeader } from './context.js';
import { dockerDirHash, dockerEntryHasher } from './context.js';
import { archiveCompression, CopyError, openDecompressed, type CopyEntrySource, type CopyItem } from './copy.js';
import { containsWildcards, goMatch } from './gomatch.js';
import type { MergedNode, MergedView } from '../snapshot/merged.js';
import { heredocBody, type Heredoc } from './dockerfile/index.js';
import { statsToHeader } from '../tar/walk.js';

/** Items and their Docker source hashes, in order. */
export interface ResolvedSources {
  items: CopyItem[];
  hashes: string[];
}

function baseOf(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  return trimmed.slice(trimmed.lastIndexOf('/') + 1);
}

/**
 * Items for context sources. With `decompress` (ADD), a file that is a tar
 * archive (plain, gzip, bzip2, xz or zstd) becomes an archive to unpack.
 */
export async function contextItems(context: BuildContext, sources: readonly ContextSource[], decompress: boolean): Promise<CopyItem[]> {
  const items: CopyItem[] = [];
  for (const source of sources) {
    const name = baseOf(source.rel);
    if (source.isDir) {
      items.push({
        kind: 'dir',
        name,
        entries: async function* () {
          for await (const entry of context.entries(source)) yield { header: entry.header, sourcePath: entry.sourcePath };
        },
      });
      continue;
    }
    const stats = await stat(source.hostPath, { bigint: true });
    const header = statsToHeader(source.rel, stats);
    if (header === undefined) throw new CopyError(`failed to copy files: ${source.rel} is a socket, which cannot be copied`);
    if (decompress && header.type === 'file') {
      const compression = await archiveCompression(source.hostPath);
      if (compression !== undefined) {
        items.push({ kind: 'archive', name, open: async () => openDecompressed(source.hostPath, compression) });
        continue;
      }
    }
    items.push({ kind: 'file', name, entry: { header, sourcePath: source.hostPath } });
  }
  return items;
}

/** A COPY heredoc (`COPY <<EOF /dest`): a 0644 file named like the delimiter. */
export function heredocItems(heredocs: readonly Heredoc[]): ResolvedSources {
  const items: CopyItem[] = [];
  const hashes: string[] = [];
  for (const heredoc of heredocs) {
    const data = Buffer.from(heredocBody(heredoc), 'utf8');
    const header = { path: heredoc.name, type: 'file' as const, mode: 0o644, uid: 0, gid: 0, mtime: 0, size: data.length };
    items.push({ kind: 'file', name: heredoc.name, entry: { header, content: () => data } });
    const hasher = dockerEntryHasher({ name: heredoc.name, type: 'file', mode: 0o644, uid: 0, gid: 0, size: data.length });
    hasher.update(data);
    hashes.push(`file:${hasher.digest()}`);
  }
  return { items, hashes };
}

// ---------------------------------------------------------------- --from

/** Hashes of image files, which never change: keyed by host path. */
const viewHashCache = new Map<string, string>();
const VIEW_HASH_CACHE_LIMIT = 100_000;

/**
 * Docker's hash of an entry of an image file system. Unlike the build
 * context's, owners are the files' own and uid/gid 0 are named "root" (Docker
 * looks the names up on the daemon host; other ids are left unnamed here).
 */
async function viewEntryHash(view: MergedView, node: MergedNode): Promise<string | undefined> {
  let target: MergedNode | undefined = node;
  if (node.header.type === 'symlink') target = await view.find(`/${node.rel}`, true);
  if (target === undefined) return undefined;
  const cacheKey =
    target.hostPath === undefined || target.stats === undefined
      ? undefined
      : `${target.hostPath}\0${target.rel}\0${target.stats.ino}\0${target.stats.size}\0${target.stats.mtimeMs}`;
  if (cacheKey !== undefined) {
    const cached = viewHashCache.get(cacheKey);
    if (cached !== undefined) return cached;
  }
  const h = target.header;
  const hashed: HashedHeader = {
    name: target.rel,
    type: h.type,
    mode: h.mode,
    uid: h.uid,
    gid: h.gid,
    uname: h.uid === 0 ? 'root' : '',
    gname: h.gid === 0 ? 'root' : '',
    size: h.size,
  };
  if (h.devmajor !== undefined) hashed.devmajor = h.devmajor;
  if (h.devminor !== undefined) hashed.devminor = h.devminor;
  if (h.type === 'file') {
    const capability = (await view.xattrs(target).catch(() => undefined))?.['security.capability'];
    if (capability !== undefined) hashed.xattrs = { 'security.capability': capability };
  }
  const hasher = dockerEntryHasher(hashed);
  if (h.type === 'file' && h.size > 0 && target.hostPath !== undefined) {
    for await (const chunk of createReadStream(target.hostPath) as AsyncIterable<Buffer>) hasher.update(chunk);
  }
  const sum = hasher.digest();
  if (cacheKey !== undefined) {
    if (viewHashCache.size >= VIEW_HASH_CACHE_LIMIT) viewHashCache.clear();
    viewHashCache.set(cacheKey, sum);
  }
  return sum;
}

async function viewSource(view: MergedView, path: string, cmd: string): Promise<{ item: CopyItem; hash: string }> {
  const node = await view.find(`/${path}`, true);
  if (node === undefined) {
    throw new CopyError(`${cmd} failed: file not found in build context or excluded by .dockerignore: stat ${path === '' ? '.' : path}: file does not exist`);
  }
  const name = baseOf(path);
  if (node.header.type !== 'directory') {
    const sum = await viewEntryHash(view, node);
    const entry: CopyEntrySource = { header: node.header };
    if (node.hostPath !== undefined) entry.sourcePath = node.hostPath;
    return { item: { kind: 'file', name, entry }, hash: `file:${sum ?? ''}` };
  }
  const hashes: string[] = [];
  if (node.rel !== '') {
    const own = await viewEntryHash(view, node);
    if (own !== undefined) hashes.push(own);
  }
  for await (const child of view.walk(node)) {
    const sum = await viewEntryHash(view, child);
    if (sum !== undefined) hashes.push(sum);
  }
  const prefix = node.rel === '' ? '' : `${node.rel}/`;
  const item: CopyItem = {
    kind: 'dir',
    name,
    entries: async function* () {
      const firstPathOfInode = new Map<string, string>();
      for await (const child of view.walk(node)) {
        const header = { ...child.header, path: child.rel.slice(prefix.length) };
        if (header.type === 'file' && child.stats !== undefined && child.stats.nlink > 1) {
          const inode = `${child.layer}:${child.stats.dev}:${child.stats.ino}`;
          const first = firstPathOfInode.get(inode);
          if (first !== undefined) {
            yield { header: { ...header, type: 'hardlink', linkname: first, size: 0 } };
            continue;
          }
          firstPathOfInode.set(inode, header.path);
        }
        const entry: CopyEntrySource = { header };
        if (child.hostPath !== undefined) entry.sourcePath = child.hostPath;
        yield entry;
      }
    },
  };
  return { item, hash: dockerDirHash(hashes) };
}

/**
 * Sources of `COPY --from`: paths in another stage's or image's file system,
 * with the same wildcard and symlink rules as the build context.
 *
 * @throws CopyError when a path does not exist or a pattern matches nothing
 */
export async function viewItems(view: MergedView, paths: readonly string[], cmd: string): Promise<ResolvedSources> {
  const items: CopyItem[] = [];
  const hashes: string[] = [];
  for (const origPath of paths) {
    let path = origPath;
    if (path.length > 1 && path.startsWith('/')) path = path.slice(1);
    if (path.startsWith('./')) path = path.slice(2);
    if (containsWildcards(path)) {
      for await (const node of view.walk(await view.root())) {
        if (!goMatch(path, node.rel).matched) continue;
        const found = await viewSource(view, node.rel, cmd);
        items.push(found.item);
        hashes.push(found.hash);
      }
      continue;
    }
    const cleaned = posix.normalize(path === '' ? '.' : path).replace(/\/+$/, '');
    const found = await viewSource(view, cleaned === '.' ? '' : cleaned, cmd);
    items.push(found.item);
    hashes.push(found.hash);
  }
  if (items.length === 0) throw new CopyError(`${cmd} failed: no source files were specified`);
  return { items, hashes };
}

// ---------------------------------------------------------------- URLs

/** True for the sources ADD downloads. */
export function isUrl(source: string): boolean {
  return /^https?:\/\//i.test(source);
}

/** True for the git sources ADD clones in BuildKit (not supported here). */
export function isGitSource(source: string): boolean {
  return /^git@|^git:\/\/|\.git(#.*)?$/i.test(source) || /^https?:\/\/[^/]+\/.+\.git(#.*)?$/i.test(source);
}

/** Options of {@link urlItem}. */
export interface UrlOptions {
  /** Directory to download into (the caller removes it). */
  tempDir: string;
  /** `--checksum=sha256:<hex>`. */
  checksum?: string;
  /** BuildKit's `--unpack`: unpack a downloaded archive (default: never, like Docker). */
  unpack?: boolean;
  signal?: AbortSignal;
}

function filenameFromResponse(url: URL, response: Response): string {
  const fromPath = baseOf(decodeURIComponent(url.pathname));
  if (fromPath !== '' && fromPath !== '.' && fromPath !== '..') return fromPath;
  const disposition = response.headers.get('content-disposition') ?? '';
  const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition);
  const name = match ? baseOf(decodeURIComponent(match[1]!)) : '';
  if (name === '' || name === '.' || name === '..') {
    throw new CopyError(`cannot determine filename from url: ${url.href}`);
  }
  return name;
}

/**
 * Downloads an ADD URL: the file is named from the URL path (else from
 * Content-Disposition), has mode 0600 and the server's Last-Modified as its
 * mtime, like Docker. `--checksum` is verified before anything is copied.
 *
 * @throws CopyError for an HTTP error status, a checksum mismatch, or a
 *   name that cannot be found
 */
export async function urlItem(source: string, opts: UrlOptions): Promise<{ item: CopyItem; hash: string; mtime?: number }> {
  let url: URL;
  try {
    url = new URL(source);
  } catch {
    throw new CopyError(`ADD failed: invalid URL ${JSON.stringify(source)}`);
  }
  let expected: string | undefined;
  if (opts.checksum !== undefined) {
    const m = /^sha256:([a-f0-9]{64})$/.exec(opts.checksum);
    if (!m) throw new CopyError(`invalid checksum digest format ${JSON.stringify(opts.checksum)}: only sha256:<64 hex digits> is supported`);
    expected = m[1]!;
  }
  let response: Response;
  try {
    response = await fetch(url, { redirect: 'follow', ...(opts.signal ? { signal: opts.signal } : {}) });
  } catch (err) {
    throw new CopyError(`ADD failed: cannot download ${url.href}: ${(err as Error).message}${(err as { cause?: Error }).cause ? ` (${(err as { cause?: Error }).cause!.message})` : ''}`);
  }
  if (!response.ok || response.body === null) {
    throw new CopyError(`failed to GET ${url.href} with status ${response.status} ${response.statusText}`.trim());
  }
  const name = filenameFromResponse(url, response);
  const dir = join(opts.tempDir, `url-${createHash('sha256').update(url.href).digest('hex').slice(0, 16)}`);
  await mkdir(dir, { recursive: true });
  const file = join(dir, name);
  const content = createHash('sha256');
  let size = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      content.update(chunk);
      size += chunk.length;
      callback(null, chunk);
    },
  });
  await pipeline(Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>), counter, createWriteStream(file, { mode: 0o600 }));
  const actual = content.digest('hex');
  if (expected !== undefined && actual !== expected) {
    throw new CopyError(`ADD failed: checksum mismatch for ${url.href}: expected sha256:${expected}, got sha256:${actual}`);
  }
  let mtime: number | undefined;
  const lastModified = response.headers.get('last-modified');
  if (lastModified !== null) {
    const parsed = Date.parse(lastModified);
    if (!Number.isNaN(parsed)) {
      mtime = Math.floor(parsed / 1000);
      await utimes(file, mtime, mtime);
    }
  }
  const hasher = dockerEntryHasher({ name, type: 'file', mode: 0o600, uid: 0, gid: 0, uname: 'root', gname: 'root', size });
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) hasher.update(chunk);
  // Docker records a downloaded source's hash without the `file:` prefix.
  const hash = hasher.digest();
  if (opts.unpack) {
    const compression = await archiveCompression(file);
    if (compression !== undefined) return { item: { kind: 'archive', name, open: async () => openDecompressed(file, compression) }, hash };
  }
  const header = { path: name, type: 'file' as const, mode: 0o600, uid: 0, gid: 0, mtime: mtime ?? 0, size };
  const result: { item: CopyItem; hash: string; mtime?: number } = { item: { kind: 'file', name, entry: { header, sourcePath: file }, keepMtime: mtime !== undefined }, hash };
  if (mtime !== undefined) result.mtime = mtime;
  return result;
}
