/**
 * Layer linting: decides, entry by entry and in archive order, whether a layer
 * tar is safe and unambiguous to apply. It looks only at names, types and link
 * targets, so it runs both where a layer is merely hashed (`load`, computing
 * diffIDs) and in front of every write {@link applyLayer} makes.
 *
 * What the linter cannot know is the lower layers: a hardlink to a path no
 * earlier entry of this layer created may be legitimate (it names a lower-layer
 * file), so it only refuses the escape forms of such links; the write-time
 * checks in extract.ts resolve the real target on disk.
 *
 * Decision on duplicates: the OCI spec forbids duplicate paths in a layer and
 * moby silently lets the last one win. A duplicate of anything but a directory
 * is refused here, because which content "wins" then depends on the extractor.
 * A directory repeated as a directory is tolerated (the later entry's
 * attributes apply), since some real-world layer producers emit that and the
 * result is unambiguous.
 *
 * @module
 */
import { OPAQUE_WHITEOUT, WHITEOUT_META_PREFIX, WHITEOUT_PREFIX, type EntryType } from './entry.js';

/** A layer entry refused for safety or ambiguity. `entry` is the raw archive name. */
export class LayerSecurityError extends Error {
  /** The entry's name exactly as the archive spells it. */
  readonly entry: string;
  /** Why it was refused (the message without the entry prefix). */
  readonly reason: string;

  constructor(entry: string, reason: string) {
    super(`refusing layer entry '${printable(entry)}': ${reason}`);
    this.name = 'LayerSecurityError';
    this.entry = entry;
    this.reason = reason;
  }
}

/** Control characters (NUL above all) would garble terminals and logs. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * What the linter needs of an entry. `type` may be one of our
 * {@link EntryType}s or a tar-stream header type (`link`,
 * `character-device`, ...), so callers that read with tar-stream directly can
 * pass headers through unchanged.
 */
export interface LintInput {
  /** The name as stored in the archive (after PAX/GNU long-name resolution). */
  rawName: string;
  type: string;
  /** Symlink or hardlink target as stored in the archive. */
  linkname?: string | null;
}

/** An entry the linter accepted, classified. */
export type LintedEntry =
  | {
      /** The archive's root entry ('./', '.'); carries nothing to apply. */
      kind: 'root';
      rawName: string;
    }
  | {
      kind: 'entry';
      rawName: string;
      /** Normalized relative path (no '.', no empty segments, no leading '/'). */
      path: string;
      type: EntryType;
      /** For hardlinks: the normalized path the link points at. */
      linkTarget?: string;
    }
  | {
      /** `.wh.NAME`: delete the lower-layer `target`. */
      kind: 'whiteout';
      rawName: string;
      /** Normalized path of the marker itself. */
      path: string;
      /** Normalized path the whiteout deletes. */
      target: string;
    }
  | {
      /** `.wh..wh..opq`: hide every lower-layer child of `dir`. */
      kind: 'opaque';
      rawName: string;
      path: string;
      /** Normalized directory made opaque; '' is the layer's root. */
      dir: string;
    };

const TYPE_ALIASES: Record<string, EntryType> = {
  file: 'file',
  // GNU tar and the tar reader treat contiguous files as regular files.
  'contiguous-file': 'file',
  directory: 'directory',
  symlink: 'symlink',
  hardlink: 'hardlink',
  link: 'hardlink',
  fifo: 'fifo',
  char: 'char',
  'character-device': 'char',
  block: 'block',
  'block-device': 'block',
};

/**
 * Splits a raw archive name into normalized segments, refusing the forms that
 * could name something outside the layer's root. '..' is refused even where it
 * would stay inside ('a/../b'): no honest producer writes it, and refusing it
 * outright leaves no normalization subtleties to get wrong.
 */
function segmentsOf(raw: string, entry: string, what: string): string[] {
  if (raw.length === 0) throw new LayerSecurityError(entry, `${what} is empty`);
  if (raw.includes('\0')) throw new LayerSecurityError(entry, `${what} contains a NUL byte`);
  const segments: string[] = [];
  for (const segment of raw.split('/')) {
    if (segment === '..') throw new LayerSecurityError(entry, `${what} has a '..' segment`);
    if (segment !== '' && segment !== '.') segments.push(segment);
  }
  // A bare '/' is just another spelling of the root; anything below it is an absolute name.
  if (raw.startsWith('/') && segments.length > 0) throw new LayerSecurityError(entry, `${what} is absolute`);
  return segments;
}

/**
 * Stateless checks of one entry: its name, its type, its whiteout form and,
 * for hardlinks, the shape of the link target. {@link LayerLinter} adds the
 * checks that need the entries before it.
 *
 * @throws LayerSecurityError naming `input.rawName`.
 */
export function validateLayerEntry(input: LintInput): LintedEntry {
  const rawName = input.rawName;
  const segments = segmentsOf(rawName, rawName, 'name');
  const type = TYPE_ALIASES[input.type];
  if (type === undefined) {
    throw new LayerSecurityError(rawName, `unsupported entry type '${printable(String(input.type))}'`);
  }
  if (segments.length === 0) {
    if (type !== 'directory') throw new LayerSecurityError(rawName, `the root entry must be a directory, not a ${type}`);
    return { kind: 'root', rawName };
  }
  if (input.linkname != null && input.linkname.includes('\0')) {
    throw new LayerSecurityError(rawName, 'link target contains a NUL byte');
  }
  const path = segments.join('/');
  const base = segments[segments.length - 1]!;
  for (const segment of segments.slice(0, -1)) {
    if (segment.startsWith(WHITEOUT_PREFIX)) {
      throw new LayerSecurityError(rawName, `parent component '${printable(segment)}' is a whiteout name`);
    }
  }

  if (base.startsWith(WHITEOUT_PREFIX)) {
    if (type !== 'file') throw new LayerSecurityError(rawName, `whiteout entries must be regular files, not a ${type}`);
    const dir = segments.slice(0, -1).join('/');
    if (base === OPAQUE_WHITEOUT) return { kind: 'opaque', rawName, path, dir };
    if (base.startsWith(WHITEOUT_META_PREFIX)) {
      throw new LayerSecurityError(rawName, 'AUFS metadata entries (.wh..wh.*) are not supported');
    }
    const name = base.slice(WHITEOUT_PREFIX.length);
    if (name === '' || name === '.' || name === '..') {
      throw new LayerSecurityError(rawName, `whiteout names '${name}', which is not a file name`);
    }
    return { kind: 'whiteout', rawName, path, target: dir === '' ? name : `${dir}/${name}` };
  }

  if (type === 'hardlink') {
    const linkname = input.linkname ?? '';
    const targetSegments = segmentsOf(linkname, rawName, `hardlink target '${printable(linkname)}'`);
    if (targetSegments.length === 0) throw new LayerSecurityError(rawName, 'hardlink target is the layer root');
    const linkTarget = targetSegments.join('/');
    if (linkTarget === path) throw new LayerSecurityError(rawName, 'hardlink points at itself');
    if (targetSegments.some((s) => s.startsWith(WHITEOUT_PREFIX))) {
      throw new LayerSecurityError(rawName, `hardlink target '${printable(linkname)}' is a whiteout name`);
    }
    return { kind: 'entry', rawName, path, type, linkTarget };
  }
  if (type === 'symlink' && (input.linkname == null || input.linkname === '')) {
    throw new LayerSecurityError(rawName, 'symlink has an empty target');
  }
  return { kind: 'entry', rawName, path, type };
}

/** What one layer has said about a path so far. 'implicit' = a parent of some entry, never named itself. */
type NodeKind = EntryType | 'implicit' | 'whiteout' | 'opaque';

/** Proper ancestors of a normalized path, outermost first ('a/b/c' -> 'a', 'a/b'). */
function ancestorsOf(path: string): string[] {
  const out: string[] = [];
  let at = path.indexOf('/');
  while (at !== -1) {
    out.push(path.slice(0, at));
    at = path.indexOf('/', at + 1);
  }
  return out;
}

/** Counts what a linted layer contained. */
export interface LintSummary {
  entries: number;
  whiteouts: number;
  opaques: number;
}

/**
 * Streaming linter for one layer. Feed it every entry in archive order with
 * {@link LayerLinter.check}; it throws {@link LayerSecurityError} at the first
 * entry that is unsafe or ambiguous given the entries before it. Memory is one
 * map entry per path in the layer.
 */
export class LayerLinter {
  private readonly nodes = new Map<string, NodeKind>();
  private readonly whitedOut = new Set<string>();
  private readonly counts: LintSummary = { entries: 0, whiteouts: 0, opaques: 0 };

  /** Validates the next entry of the layer and records it. */
  check(input: LintInput): LintedEntry {
    const linted = validateLayerEntry(input);
    if (linted.kind === 'root') return linted;
    const rawName = linted.rawName;
    this.checkAncestors(rawName, linted.path);

    switch (linted.kind) {
      case 'whiteout': {
        if (this.nodes.has(linted.path)) throw new LayerSecurityError(rawName, 'duplicate whiteout entry');
        const existing = this.nodes.get(linted.target);
        if (existing !== undefined) {
          throw new LayerSecurityError(
            rawName,
            `whiteout of '${printable(linted.target)}', which this same layer also ${existing === 'implicit' ? 'writes into' : 'adds'} (whiteouts apply to lower layers only)`,
          );
        }
        this.whitedOut.add(linted.target);
        this.nodes.set(linted.path, 'whiteout');
        this.counts.whiteouts++;
        break;
      }
      case 'opaque': {
        if (this.nodes.has(linted.path)) throw new LayerSecurityError(rawName, 'duplicate opaque whiteout entry');
        this.nodes.set(linted.path, 'opaque');
        this.counts.opaques++;
        break;
      }
      case 'entry': {
        if (this.whitedOut.has(linted.path)) {
          throw new LayerSecurityError(rawName, 'this same layer also whites out this path (whiteouts apply to lower layers only)');
        }
        const existing = this.nodes.get(linted.path);
        if (existing !== undefined) {
          const isDir = existing === 'directory' || existing === 'implicit';
          if (!isDir || linted.type !== 'directory') {
            throw new LayerSecurityError(
              rawName,
              existing === 'implicit'
                ? `a ${linted.type} would replace directory '${printable(linted.path)}' that earlier entries of this layer were written into`
                : `duplicate entry (this layer already has '${printable(linted.path)}' as a ${existing})`,
            );
          }
        }
        if (linted.type === 'hardlink') this.checkHardlinkTarget(rawName, linted.linkTarget!);
        this.nodes.set(linted.path, linted.type);
        this.counts.entries++;
        break;
      }
    }
    return linted;
  }

  /** What the layer contained so far. */
  summary(): LintSummary {
    return { ...this.counts };
  }

  /**
   * Every ancestor must be a directory as far as this layer knows, and not one
   * this layer whites out. Ancestors this layer has not named are recorded as
   * implicit directories, so a later entry cannot turn them into something else.
   */
  private checkAncestors(rawName: string, path: string): void {
    for (const ancestor of ancestorsOf(path)) {
      const kind = this.nodes.get(ancestor);
      if (kind === undefined) {
        if (this.whitedOut.has(ancestor)) {
          throw new LayerSecurityError(
            rawName,
            `parent '${printable(ancestor)}' is whited out by this same layer (whiteouts apply to lower layers only)`,
          );
        }
        this.nodes.set(ancestor, 'implicit');
      } else if (kind !== 'directory' && kind !== 'implicit') {
        throw new LayerSecurityError(
          rawName,
          kind === 'symlink'
            ? `parent '${printable(ancestor)}' is a symlink created earlier in this layer`
            : `parent '${printable(ancestor)}' is a ${kind} created earlier in this layer, not a directory`,
        );
      }
    }
  }

  private checkHardlinkTarget(rawName: string, target: string): void {
    for (const ancestor of ancestorsOf(target)) {
      const kind = this.nodes.get(ancestor);
      if (kind !== undefined && kind !== 'directory' && kind !== 'implicit') {
        throw new LayerSecurityError(
          rawName,
          `hardlink target '${printable(target)}' lies under ${kind === 'symlink' ? 'a symlink' : `a ${kind}`} created earlier in this layer`,
        );
      }
      if (this.whitedOut.has(ancestor)) {
        throw new LayerSecurityError(rawName, `hardlink target '${printable(target)}' is whited out by this layer`);
      }
    }
    if (this.whitedOut.has(target)) {
      throw new LayerSecurityError(rawName, `hardlink target '${printable(target)}' is whited out by this layer`);
    }
    const kind = this.nodes.get(target);
    // Not named by this layer: may be a lower-layer file, which extraction verifies on disk.
    if (kind === undefined || kind === 'file' || kind === 'hardlink') return;
    throw new LayerSecurityError(
      rawName,
      `hardlink target '${printable(target)}' is ${kind === 'implicit' ? 'a directory' : `a ${kind}`}, not a regular file`,
    );
  }
}
