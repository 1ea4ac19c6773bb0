/**
 * `docker export`: the container's whole file system as one plain tar (no
 * whiteouts, no layers), streamed straight from the merged view: each entry
 * is read from whichever layer holds it, with no temporary copy of the tree.
 *
 * The tar is deterministic: entries in byte order of their names, parents
 * before children, headers from lstat as the layer writer makes them
 * (permission bits, numeric owner, whole-second mtime, archivable xattrs such
 * as `security.capability`), a second path of one inode as a hard link to the
 * first. Volume mounts are not part of the container's file system and are
 * not included, as in Docker.
 */
import type { Readable } from 'node:stream';
import { readlink } from 'node:fs/promises';
import type { EntryHeader } from '../tar/entry.js';
import { archivableXattrValue, isArchivableXattr, statsToHeader } from '../tar/walk.js';
import { packEntries, sourceWithContent, type PackSource } from '../tar/write.js';
import type { Container } from './container-store.js';
import { OverlayView, childRel, type ViewNode } from './view.js';

/** Options of {@link exportContainer}. */
export interface ExportOptions {
  /** Clamp mtimes to this (seconds since the epoch). */
  sourceDateEpoch?: number;
}

/** The container's merged file system as a tar stream (`docker export`). */
export function exportContainer(container: Container, opts: ExportOptions = {}): Readable {
  async function* entries(): AsyncGenerator<PackSource> {
    const view = await OverlayView.open([container.upperDir, ...(await container.mountLowerDirs())], {
      writableTop: true,
      overlayXattrs: container.store.snapshotter.overlayXattrs,
    });
    yield* walkMerged(view, await view.root(), '', new Map());
  }
  return packEntries(entries(), opts.sourceDateEpoch !== undefined ? { sourceDateEpoch: opts.sourceDateEpoch } : {});
}

/**
 * The merged tree below directory `dir`, depth first, names in byte order.
 * Entries are named `prefix` + their path relative to `dir`. `links` maps a
 * host inode to the first entry path written for it (hard links).
 */
export async function* walkMerged(view: OverlayView, dir: ViewNode, prefix: string, links: Map<string, string>): AsyncGenerator<PackSource> {
  for (const name of await view.list(dir)) {
    const child = await view.child(dir, name);
    if (!child) continue;
    const entryPath = childRel(prefix, name);
    const source = await entryFor(view, child, entryPath, links);
    if (!source) continue;
    yield source;
    if (child.stats.isDirectory()) yield* walkMerged(view, child, entryPath, links);
  }
}

/** The pack source for one merged entry named `entryPath`, or undefined for what archives never carry (sockets). */
export async function entryFor(view: OverlayView, node: ViewNode, entryPath: string, links: Map<string, string>): Promise<PackSource | undefined> {
  const { stats } = node;
  const linkname = stats.isSymbolicLink() ? await readlink(node.hostPath) : undefined;
  const header: EntryHeader | undefined = statsToHeader(entryPath, stats, linkname);
  if (!header) return undefined;
  if (!stats.isDirectory() && stats.nlink > 1) {
    const inode = `${stats.dev}:${stats.ino}`;
    const first = links.get(inode);
    if (first === undefined) links.set(inode, entryPath);
    else {
      header.type = 'hardlink';
      header.linkname = first;
      header.size = 0;
      delete header.devmajor;
      delete header.devminor;
    }
  }
  const xattrs = await view.xattrsOf(node.layer, node.rel);
  if (xattrs) {
    const archived: Record<string, Buffer> = {};
    for (const [key, value] of Object.entries(xattrs)) if (isArchivableXattr(key)) archived[key] = archivableXattrValue(key, value);
    if (Object.keys(archived).length > 0) header.xattrs = archived;
  }
  return sourceWithContent({ header, sourcePath: node.hostPath });
}
