/**
 * `docker diff`: what a container changed, as Added / Changed / Deleted paths.
 *
 * Docker 20.10 on overlay2 answers `docker diff` by comparing the container's
 * merged tree with its image's (moby's `ChangesDirs`, checked against a real
 * daemon), and so does this module, over the same directories:
 *
 * - a path in the container's tree that the image lacks is `A`, and so is
 *   everything below it;
 * - a path in both is `C` when its mode (type included), owner, device number,
 *   `security.capability` or, for non-directories, size or mtime differ
 *   (whole seconds when either side has no sub-second part); directories are
 *   not compared by size or mtime;
 * - a directory that is not `A` or `C` itself but has changes below it is
 *   reported `C`, just before them (the root never is);
 * - a path of the image missing from the container is `D`, its subtree not
 *   listed.
 *
 * Only directories the upper dir has are visited: anywhere else both trees
 * see the same files. Docker lists a directory's entries in Go map order,
 * which changes from call to call; here the present entries come in byte order
 * of their names, then the deleted ones, also in byte order, so the output is
 * stable and otherwise the same as Docker's.
 */
import type { Stats } from 'node:fs';
import type { Container } from './container-store.js';
import { OverlayView, childRel, displayPath, type ViewNode } from './view.js';
import type { OverlayXattrNamespace } from '../snapshot/upperdiff.js';

/** Docker's change kinds: Added, Changed, Deleted. */
export type ChangeKind = 'A' | 'C' | 'D';

/** One line of `docker diff`. */
export interface Change {
  kind: ChangeKind;
  /** Absolute container path. */
  path: string;
}

/** The changes of a container, in `docker diff` form. */
export async function diff(container: Container): Promise<Change[]> {
  return diffDirs(container.upperDir, await container.mountLowerDirs(), { overlayXattrs: container.store.snapshotter.overlayXattrs });
}

/** Formats changes the way `docker diff` prints them (`C /app`), one per line. */
export function formatChanges(changes: Change[]): string {
  return changes.map((c) => `${c.kind} ${c.path}\n`).join('');
}

/** {@link diff} over explicit directories: an overlay upper dir and the lower dirs below it, top first. */
export async function diffDirs(upperDir: string, lowerDirs: string[], opts: { overlayXattrs?: OverlayXattrNamespace } = {}): Promise<Change[]> {
  const ns = opts.overlayXattrs ? { overlayXattrs: opts.overlayXattrs } : {};
  const current = await OverlayView.open([upperDir, ...lowerDirs], { writableTop: true, ...ns });
  const image = lowerDirs.length > 0 ? await OverlayView.open(lowerDirs, ns) : undefined;
  const changes: Change[] = [];

  const capability = async (view: OverlayView, node: ViewNode): Promise<Buffer | undefined> =>
    (await view.xattrsOf(node.layer, node.rel))?.['security.capability'];

  const addAll = async (dir: ViewNode): Promise<void> => {
    for (const name of await current.list(dir)) {
      const child = await current.child(dir, name);
      if (!child) continue;
      changes.push({ kind: 'A', path: displayPath(child.rel) });
      if (child.stats.isDirectory()) await addAll(child);
    }
  };

  /** Compares directory `now` (present in the upper dir) with `before`, the image's entry at the same path. */
  const visit = async (now: ViewNode, before: ViewNode | undefined, reported: boolean): Promise<void> => {
    const start = changes.length;
    const names = await current.list(now);
    const beforeNames = image && before?.stats.isDirectory() ? await image.list(before) : [];
    const beforeSet = new Set(beforeNames);
    for (const name of names) {
      const child = await current.child(now, name);
      // Not in the upper dir: the image's own entry, seen through unchanged.
      if (!child || child.layer !== 0) continue;
      const old = image && before && beforeSet.has(name) ? await image.child(before, name) : undefined;
      if (!old) {
        changes.push({ kind: 'A', path: displayPath(child.rel) });
        if (child.stats.isDirectory()) await addAll(child);
        continue;
      }
      const changed = statDifferent(old.stats, child.stats) || !sameBytes(await capability(image!, old), await capability(current, child));
      if (changed) changes.push({ kind: 'C', path: displayPath(child.rel) });
      if (child.stats.isDirectory()) await visit(child, old, changed);
    }
    const present = new Set(names);
    for (const name of beforeNames) {
      if (!present.has(name)) changes.push({ kind: 'D', path: displayPath(childRel(now.rel, name)) });
    }
    if (changes.length > start && !reported && now.rel !== '') changes.splice(start, 0, { kind: 'C', path: displayPath(now.rel) });
  };

  await visit(await current.root(), image ? await image.root() : undefined, true);
  return changes;
}

/** moby's statDifferent: mode, owner and rdev; for non-directories also mtime and size. */
function statDifferent(before: Stats, now: Stats): boolean {
  if (before.mode !== now.mode || before.uid !== now.uid || before.gid !== now.gid || before.rdev !== now.rdev) return true;
  if (now.isDirectory()) return false;
  return !sameFsTime(before.mtimeMs, now.mtimeMs) || before.size !== now.size;
}

/**
 * moby's sameFsTimeSpec: equal, or the same second with either side having
 * no sub-second part (tar and many tools keep whole seconds only).
 */
function sameFsTime(aMs: number, bMs: number): boolean {
  if (aMs === bMs) return true;
  return Math.floor(aMs / 1000) === Math.floor(bMs / 1000) && (aMs % 1000 === 0 || bMs % 1000 === 0);
}

function sameBytes(a: Buffer | undefined, b: Buffer | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.equals(b);
}
