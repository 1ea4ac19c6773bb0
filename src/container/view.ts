/**
 * The merged view of a container: its writable upper dir over the image's
 * read-only snapshot dirs, all in overlay format (a character device 0/0 is
 * a whiteout hiding the name below, a directory with
 * `trusted.overlay.opaque=y` hides everything below it, a directory present
 * in several layers merges them). This is the read side of
 * {@link ContainerFs}.
 *
 * The read-only layers are read through the build engine's
 * {@link MergedView}, whose lookups are cached (snapshot dirs never change);
 * this class adds the upper dir on top, which is looked up afresh every time
 * because it changes. Node cannot read xattrs without running getfattr, so
 * the upper dir's xattrs (opaque markers, capabilities) are read once when
 * the view is opened and then kept up to date by the caller that changes it.
 *
 * Paths are container paths: resolved component by component from the root
 * of the merged tree, symlinks followed the way the kernel would inside a
 * chroot (an absolute target restarts at the root, `..` stops at the root), so
 * no host path outside the layer directories is ever reached.
 *
 * Redirects (`trusted.overlay.redirect`, from mounts with redirect_dir=on) are
 * not followed: strata mounts with redirect_dir=off and never writes them.
 */
import type { Stats } from 'node:fs';
import { lstat, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../content/errors.js';
import {
  MAX_SYMLINKS,
  MergedView,
  childRel,
  layerXattrs,
  listInLayers,
  lookupInLayers,
  pathComponents,
  type LayerAccess,
  type LayerEntry,
  type MergedNode,
  type XattrMap,
} from '../snapshot/merged.js';
import { defaultOverlayXattrNamespace, isOverlayWhiteout, type OverlayXattrNamespace } from '../snapshot/upperdiff.js';

export { childRel, layerXattrs, pathComponents, type XattrMap } from '../snapshot/merged.js';

/** The xattr marking an overlay directory opaque, for a namespace ('trusted' as root, 'user' on userxattr mounts). */
export function opaqueXattrName(ns: OverlayXattrNamespace = defaultOverlayXattrNamespace()): string {
  return `${ns}.overlay.opaque`;
}

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EEXIST: 'file already exists',
  ENOTDIR: 'not a directory',
  EISDIR: 'illegal operation on a directory',
  ENOTEMPTY: 'directory not empty',
  ELOOP: 'too many symbolic links encountered',
  EINVAL: 'invalid argument',
  EPERM: 'operation not permitted',
  EBUSY: 'resource busy or locked',
  EFTYPE: 'inappropriate file type or format',
};

/**
 * A file-system error on a container path, shaped like Node's own (`code`
 * is the errno name, `syscall` and `path` say what failed where) but naming
 * the path as the container sees it, never a host path.
 */
export class ContainerPathError extends StrataError {
  constructor(
    code: keyof typeof ERRNO_TEXT | string,
    readonly syscall: string,
    readonly path: string,
    detail?: string,
  ) {
    super(code, `${code}: ${detail ?? ERRNO_TEXT[code] ?? 'error'}, ${syscall} '${path}'`);
  }
}

/** One entry of the merged tree. */
export interface ViewNode {
  /** Container path relative to the root, '/'-separated, '' for the root. */
  rel: string;
  /** Index of the topmost layer that has the entry. */
  layer: number;
  /** Host path of that instance. */
  hostPath: string;
  /** lstat of that instance. */
  stats: Stats;
  /** For directories: the layers whose instance merges into it, top first (opaque dirs and non-directories end the list). */
  merge: number[];
  /** The directory it was found in; undefined for the root. */
  parent: ViewNode | undefined;
}

/** What {@link OverlayView.resolve} found. */
export interface Resolved {
  /** The entry; undefined when the last component does not exist (its parent does). */
  node: ViewNode | undefined;
  /** The directory holding it (the root holds itself). */
  parent: ViewNode;
  /** Its name in `parent` ('' for the root). */
  name: string;
  /** Its container path relative to the root, symlinks resolved. */
  rel: string;
}

/** True for an overlay whiteout: a character device with device number 0/0. */
export const isWhiteoutStats: (stats: Stats) => boolean = isOverlayWhiteout;

/** '/' + rel: the container path as users write it. */
export function displayPath(rel: string): string {
  return `/${rel}`;
}

/**
 * The merged view of `layers` (top first). The layers below the top one (or
 * all of them, for a read-only view) are read through a {@link MergedView},
 * which caches lookups since snapshot dirs never change. When `writableTop`
 * is set, layer 0 is a directory the caller changes: it is looked up afresh
 * every time, and the caller reports the xattrs it sets or removes there
 * through {@link noteXattrs}, {@link forgetXattrs} and {@link moveXattrs}.
 */
export class OverlayView {
  private constructor(
    /** Layer directories, top first. */
    readonly layers: readonly string[],
    readonly writableTop: boolean,
    private readonly upperXattrs: XattrMap | undefined,
    /** The xattr that marks opaque directories in the writable layer. */
    readonly opaqueXattr: string,
    /** The read-only layers below (all layers, for a read-only view). */
    private readonly lower: MergedView | undefined,
    /** Index in {@link layers} of the lower view's layer 0. */
    private readonly offset: number,
  ) {}

  /** The writable top layer, as the shared overlay lookup reads it. */
  private readonly upperAccess: LayerAccess = {
    hostPath: (layer, rel) => this.hostPath(layer, rel),
    isOpaque: (_layer, rel) => this.isUpperOpaque(rel),
  };

  /** Opens a view; with `writableTop`, reads the top layer's xattrs now (one getfattr run). */
  static async open(layers: readonly string[], opts: { writableTop?: boolean; overlayXattrs?: OverlayXattrNamespace } = {}): Promise<OverlayView> {
    if (layers.length === 0) throw new StrataError('INVALID_ARGUMENT', 'an overlay view needs at least one layer directory');
    const writableTop = opts.writableTop ?? false;
    const offset = writableTop ? 1 : 0;
    const lowers = layers.slice(offset);
    const upperXattrs = writableTop ? await layerXattrs(layers[0]!, false) : undefined;
    return new OverlayView([...layers], writableTop, upperXattrs, opaqueXattrName(opts.overlayXattrs), lowers.length > 0 ? new MergedView(lowers) : undefined, offset);
  }

  /** Host path of container path `rel` in layer `layer`. */
  hostPath(layer: number, rel: string): string {
    return rel === '' ? this.layers[layer]! : join(this.layers[layer]!, rel);
  }

  /** The xattrs of `rel` in layer `layer` (all of them, overlay's own included). */
  async xattrsOf(layer: number, rel: string): Promise<Record<string, Buffer> | undefined> {
    if (this.writableTop && layer === 0) return this.upperXattrs!.get(rel);
    return (await layerXattrs(this.layers[layer]!, true)).get(rel);
  }

  /** Whether directory `rel` of the writable top layer is opaque. */
  isUpperOpaque(rel: string): boolean {
    const value = this.upperXattrs?.get(rel)?.[this.opaqueXattr];
    return value !== undefined && value.length === 1 && value[0] === 0x79; // 'y'
  }

  /** Records xattrs the caller set on `rel` in the writable top layer. */
  noteXattrs(rel: string, xattrs: Record<string, Buffer>): void {
    const map = this.upperXattrs!;
    map.set(rel, { ...(map.get(rel) ?? {}), ...xattrs });
  }

  /** Forgets the top layer's xattrs of `rel` and, when `subtree`, of everything below it. */
  forgetXattrs(rel: string, subtree: boolean): void {
    const map = this.upperXattrs!;
    map.delete(rel);
    if (!subtree) return;
    const prefix = rel === '' ? '' : `${rel}/`;
    for (const key of [...map.keys()]) if (key.startsWith(prefix)) map.delete(key);
  }

  /** Moves the top layer's recorded xattrs of the subtree `from` to `to`. */
  moveXattrs(from: string, to: string): void {
    const map = this.upperXattrs!;
    const moved: [string, Record<string, Buffer>][] = [];
    for (const [key, value] of map) {
      if (key === from || key.startsWith(`${from}/`)) moved.push([to + key.slice(from.length), value]);
    }
    this.forgetXattrs(from, true);
    this.forgetXattrs(to, true);
    for (const [key, value] of moved) map.set(key, value);
  }

  /** An entry of the lower view, in this view's layer numbering (a copy: cached nodes stay untouched). */
  private fromLower(node: MergedNode): LayerEntry {
    return {
      layer: node.layer + this.offset,
      hostPath: node.hostPath!,
      stats: node.stats!,
      merge: node.merge.map((layer) => layer + this.offset),
    };
  }

  /** Whether the lower layers take part in directory `dir`. */
  private lowerVisible(dir: ViewNode): boolean {
    return this.lower !== undefined && dir.merge.some((layer) => layer >= this.offset);
  }

  private topVisible(dir: ViewNode): boolean {
    return this.writableTop && dir.merge[0] === 0;
  }

  /**
   * The root of the merged tree. overlayfs ignores opacity of the upper
   * dir's root (the snapshotter ends a lower stack at an opaque root instead).
   */
  async root(): Promise<ViewNode> {
    if (!this.writableTop) return { rel: '', ...this.fromLower(await this.lower!.root()), parent: undefined };
    const lowerMerge = this.lower ? (await this.lower.root()).merge.map((layer) => layer + this.offset) : [];
    const stats = await lstat(this.layers[0]!);
    return { rel: '', layer: 0, hostPath: this.layers[0]!, stats, merge: [0, ...lowerMerge], parent: undefined };
  }

  /**
   * The entry `name` of directory `dir`, or undefined when the merged tree
   * has none. The writable top layer is looked up afresh; the lower view
   * (cached) answers only where the top layer leaves the name open.
   */
  async child(dir: ViewNode, name: string): Promise<ViewNode | undefined> {
    const rel = childRel(dir.rel, name);
    const below = this.lowerVisible(dir)
      ? async (): Promise<LayerEntry | undefined> => {
          const node = await this.lower!.lookup(rel);
          return node && this.fromLower(node);
        }
      : undefined;
    const entry = await lookupInLayers(this.upperAccess, this.topVisible(dir) ? [0] : [], rel, below);
    return entry && { rel, ...entry, parent: dir };
  }

  /**
   * Whether a layer below the writable one has something (not a whiteout)
   * at `name` in `dir` that the merged tree would show if the top layer had
   * nothing there: overlay's "lower positive", which decides whether a
   * deletion needs a whiteout.
   */
  async lowerHas(dir: ViewNode, name: string): Promise<boolean> {
    if (!this.lowerVisible(dir)) return false;
    return (await this.lower!.lookup(childRel(dir.rel, name))) !== undefined;
  }

  /** The merged listing of a directory: names, sorted in byte order, whiteouts and hidden names left out. */
  async list(dir: ViewNode): Promise<string[]> {
    const below = this.lowerVisible(dir) ? () => this.lower!.readdir(displayPath(dir.rel)) : undefined;
    return listInLayers(this.upperAccess, this.topVisible(dir) ? [0] : [], dir.rel, below);
  }

  /**
   * Resolves a container path. Every component but the last must exist and
   * intermediate symlinks are followed inside the root; the last is followed
   * only with `followFinal`. A missing last component gives `node: undefined`
   * with its parent; anything else missing throws ENOENT.
   *
   * @throws ContainerPathError ENOENT, ENOTDIR or ELOOP (after 40 symlinks)
   */
  async resolve(path: string, followFinal: boolean, syscall = 'lstat'): Promise<Resolved> {
    const root = await this.root();
    const stack: ViewNode[] = [root];
    const pending = pathComponents(path);
    let links = 0;
    let lastName = '';
    while (pending.length > 0) {
      const part = pending.shift()!;
      if (part === '..') {
        if (stack.length > 1) stack.pop();
        lastName = '';
        continue;
      }
      const dir = stack[stack.length - 1]!;
      if (!dir.stats.isDirectory()) throw new ContainerPathError('ENOTDIR', syscall, path);
      const node = await this.child(dir, part);
      const isLast = pending.length === 0;
      if (node === undefined) {
        if (isLast) return { node: undefined, parent: dir, name: part, rel: childRel(dir.rel, part) };
        throw new ContainerPathError('ENOENT', syscall, path);
      }
      if (node.stats.isSymbolicLink() && (!isLast || followFinal)) {
        if (++links > MAX_SYMLINKS) throw new ContainerPathError('ELOOP', syscall, path);
        const target = await readlink(node.hostPath);
        if (target.startsWith('/')) stack.length = 1;
        pending.unshift(...pathComponents(target));
        lastName = '';
        continue;
      }
      stack.push(node);
      lastName = part;
    }
    const node = stack[stack.length - 1]!;
    if (node === root) return { node: root, parent: root, name: '', rel: '' };
    return { node, parent: node.parent!, name: lastName || node.rel.slice(node.rel.lastIndexOf('/') + 1), rel: node.rel };
  }
}
