/**
 * "The same image", as issue 3 defines it for `strata build` against
 * `docker build`: an image from the test dockerd and one from a strata store
 * are compared on
 *
 * 1. each layer's changeset, layer i against layer i: for every entry its
 *    path, type, permission bits (setuid/setgid/sticky included), uid, gid,
 *    size, sha256 of the content, symlink target, device numbers, xattrs;
 *    hardlinks as groups of paths sharing one file (which member the tar
 *    stores first and which as links is an ordering detail); whiteouts and
 *    opaque-directory markers by the path they hide;
 * 2. the flattened tree (all layers applied in order, OCI whiteout rules);
 * 3. the image config: `author`, `architecture`, `os`, `variant`; in
 *    `config`: Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts,
 *    Volumes, Labels, StopSignal, Healthcheck, OnBuild, Shell, ArgsEscaped;
 *    and the history: entry count, then each entry's created_by,
 *    empty_layer, comment and author. One Docker-version difference is
 *    normalized: see {@link normalizeCreatedBy} (HEALTHCHECK's StartInterval).
 *
 * Ignored, on purpose:
 * - mtimes (and atime/ctime): strata clamps COPY/ADD times for
 *   reproducibility, Docker keeps the context's; the issue excludes them.
 * - uname/gname: Go's tar writer fills them from the daemon host's passwd;
 *   they are not file-system state (uid/gid are compared).
 * - the metadata of whiteout files: Docker's depends on its storage driver
 *   (overlay2 writes mode 0600 and the owner of the overlay whiteout device,
 *   vfs mode 0 and root); only what a whiteout hides matters.
 * - config fields that are not image semantics or differ by construction:
 *   `created` (config and history), `container`, `container_config`,
 *   `docker_version`, `rootfs.diff_ids` values (tar bytes carry mtimes; the
 *   contents are compared instead, and the count through the layers), and the
 *   Docker-only `config` fields the classic builder (Docker 20.10) writes
 *   with constant or host-specific values: `Image` (the parent image ID,
 *   which Docker's own layer IDs determine), `Hostname`, `Domainname`,
 *   `AttachStdin`/`AttachStdout`/`AttachStderr`, `Tty`, `OpenStdin`,
 *   `StdinOnce`.
 * - null against absent: Docker writes `"Cmd": null`, `"Labels": null`,
 *   `"WorkingDir": ""`, `"OnBuild": null` where OCI omits the field; null, '',
 *   [] and {} all count as "not set" (an empty Cmd or Entrypoint runs nothing
 *   either way), as does `empty_layer: false` and `ArgsEscaped: false`.
 *
 * What the classic builder adds of its own: nothing in the layers. With the
 * overlay2 driver (what the test dockerd runs; the vfs fallback would turn a
 * re-created directory into one whiteout per old child instead of an opaque
 * marker) the init layer's placeholders (/etc/hosts, /etc/resolv.conf,
 * /etc/hostname, /dev, /proc, /sys, /.dockerenv) sit below the build
 * container's upper dir and never reach a diff.
 *
 * Docker 20.10 saves images in the old docker-save form (`<id>/layer.tar`,
 * `<id>.json`, `manifest.json`); that is the form parsed here.
 *
 * The second half of this module builds one Dockerfile + context with both
 * engines ({@link buildBoth}, {@link expectSameBuild}, {@link expectBothFail}),
 * for the differential tests in test/build-docker/.
 */
import { createHash } from 'node:crypto';
import { chmod, cp, mkdir, mkdtemp, readdir, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, posix, resolve } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { build, type BuildOptions, type BuildResult } from '../../src/build/engine.js';
import { readTar } from '../../src/tar/read.js';
import { OPAQUE_WHITEOUT, WHITEOUT_META_PREFIX, WHITEOUT_PREFIX, baseName, comparePaths, parentPath, type EntryHeader } from '../../src/tar/entry.js';
import type { HistoryEntry, ImageConfig } from '../../src/image/types.js';
import { Strata } from '../../src/strata.js';
import { BUSYBOX_IMAGE, docker, dockerOk, ensureBusyboxImage } from './docker.js';

/** One entry of a layer or of a flattened tree, reduced to what "the same" means. */
export interface NormalizedEntry {
  path: string;
  /** The tar entry type, or `whiteout` (hides `path`) / `opaque` (hides the lower children of directory `path`). */
  kind: EntryHeader['type'] | 'whiteout' | 'opaque';
  /** Permission bits with setuid/setgid/sticky (07777); absent for whiteouts. */
  mode?: number;
  uid?: number;
  gid?: number;
  /** Content bytes (regular files). */
  size?: number;
  /** sha256 hex of the content (regular files). */
  sha256?: string;
  /** Symlink target, verbatim; for a hardlink whose target is not in the same layer, that target. */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes, name → hex value. */
  xattrs?: Record<string, string>;
  /** Every path of this layer that is the same file (hardlinks), sorted; only on members of a group. */
  links?: string[];
}

/** An image as {@link compareImages} sees it. */
export interface ImageSnapshot {
  /** `docker` or `strata`, and the reference, for messages. */
  label: string;
  config: ImageConfig;
  /** Per layer, bottom first: its entries sorted by path. */
  layers: NormalizedEntry[][];
}

/** Paths left out of the comparison, each with the reason (shown in the report). */
export interface IgnoredPath {
  pattern: RegExp;
  reason: string;
}

/** Options of {@link compareImages}. */
export interface CompareOptions {
  /** Entries (in layers and the flattened tree) to leave out. */
  ignorePaths?: IgnoredPath[];
  /** Most lines per section of the report (default 40). */
  maxLines?: number;
}

/** The outcome of a comparison. */
export interface ImageComparison {
  equal: boolean;
  /** One line per difference, grouped by section; empty when equal. */
  differences: string[];
  /** A readable report: the differences, capped per section, with the layers named by their history. */
  report: string;
}

// ---------------------------------------------------------------- reading layers

function xattrsHex(xattrs: Record<string, Buffer> | undefined): Record<string, string> | undefined {
  if (!xattrs) return undefined;
  const names = Object.keys(xattrs).sort();
  if (names.length === 0) return undefined;
  return Object.fromEntries(names.map((name) => [name, xattrs[name]!.toString('hex')]));
}

/**
 * Reads one uncompressed layer tar into normalized entries, sorted by path.
 * Whiteout files become `whiteout`/`opaque` entries; hardlink groups become
 * file entries carrying `links`.
 */
export async function summarizeLayer(tar: NodeJS.ReadableStream | AsyncIterable<Uint8Array>): Promise<NormalizedEntry[]> {
  const entries = new Map<string, NormalizedEntry>();
  const hardlinks: { path: string; target: string }[] = [];
  for await (const { header, body } of readTar(tar)) {
    const base = baseName(header.path);
    if (base === OPAQUE_WHITEOUT) {
      body.resume();
      const dir = parentPath(header.path);
      entries.set(`opaque:${dir}`, { path: dir, kind: 'opaque' });
      continue;
    }
    if (base.startsWith(WHITEOUT_PREFIX) && !base.startsWith(WHITEOUT_META_PREFIX)) {
      body.resume();
      const parent = parentPath(header.path);
      const hidden = base.slice(WHITEOUT_PREFIX.length);
      const path = parent === '' ? hidden : `${parent}/${hidden}`;
      entries.set(`whiteout:${path}`, { path, kind: 'whiteout' });
      continue;
    }
    const entry: NormalizedEntry = { path: header.path, kind: header.type, mode: header.mode, uid: header.uid, gid: header.gid };
    const xattrs = xattrsHex(header.xattrs);
    if (xattrs) entry.xattrs = xattrs;
    if (header.type === 'file') {
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of body as AsyncIterable<Buffer>) {
        hash.update(chunk);
        size += chunk.length;
      }
      entry.size = size;
      entry.sha256 = hash.digest('hex');
    } else {
      body.resume();
    }
    if (header.type === 'symlink') entry.linkname = header.linkname ?? '';
    if (header.type === 'char' || header.type === 'block') {
      entry.devmajor = header.devmajor ?? 0;
      entry.devminor = header.devminor ?? 0;
    }
    if (header.type === 'hardlink') hardlinks.push({ path: header.path, target: header.linkname ?? '' });
    entries.set(`entry:${header.path}`, entry);
  }

  // Hardlink groups: every member becomes the file it shares, listing the group.
  const groups = new Map<string, string[]>();
  const linkTarget = new Map(hardlinks.map((link) => [link.path, link.target]));
  const rootOf = (path: string): string => {
    let current = path;
    // Bounded: a cycle of links is not a valid layer, and then the last path seen is as good as any.
    for (let hops = 0; hops < 64 && linkTarget.has(current); hops++) current = linkTarget.get(current)!;
    return current;
  };
  for (const link of hardlinks) {
    const root = rootOf(link.path);
    const file = entries.get(`entry:${root}`);
    if (!file || file.kind !== 'file') {
      // The target is not in this layer: keep the link as it is.
      const entry = entries.get(`entry:${link.path}`)!;
      entry.linkname = link.target;
      continue;
    }
    const group = groups.get(root) ?? [root];
    group.push(link.path);
    groups.set(root, group);
  }
  for (const [root, members] of groups) {
    const file = entries.get(`entry:${root}`)!;
    const links = [...new Set(members)].sort(comparePaths);
    for (const member of links) entries.set(`entry:${member}`, { ...file, path: member, links });
  }

  return [...entries.values()].sort(compareEntries);
}

function compareEntries(a: NormalizedEntry, b: NormalizedEntry): number {
  return comparePaths(a.path, b.path) || a.kind.localeCompare(b.kind);
}

/**
 * Reads `docker save REF` from the test dockerd: the config and every layer,
 * bottom first. The archive is parsed as it streams (nothing on disk).
 */
export async function dockerImageSnapshot(ref: string): Promise<ImageSnapshot> {
  const archive = new PassThrough({ highWaterMark: 1 << 20 });
  const saving = dockerOk(['save', ref], { stdout: archive, timeoutMs: 10 * 60_000 });
  const layersByName = new Map<string, NormalizedEntry[]>();
  const jsonByName = new Map<string, string>();
  // Docker writes a layer that occurs twice in the image once, the second <id>/layer.tar being a symlink to the first.
  const layerLinks = new Map<string, string>();
  const parsing = (async () => {
    for await (const { header, body } of readTar(archive)) {
      if (header.type === 'symlink' && header.path.endsWith('/layer.tar')) {
        layerLinks.set(header.path, posix.normalize(posix.join(posix.dirname(header.path), header.linkname ?? '')));
      }
      if (header.type !== 'file') {
        body.resume();
        continue;
      }
      if (header.path.endsWith('/layer.tar')) {
        layersByName.set(header.path, await summarizeLayer(body));
      } else if (header.path.endsWith('.json')) {
        const chunks: Buffer[] = [];
        for await (const chunk of body as AsyncIterable<Buffer>) chunks.push(chunk);
        jsonByName.set(header.path, Buffer.concat(chunks).toString('utf8'));
      } else {
        body.resume();
      }
    }
  })();
  const results = await Promise.allSettled([saving, parsing]);
  for (const result of results) if (result.status === 'rejected') throw result.reason;

  const manifestText = jsonByName.get('manifest.json');
  if (manifestText === undefined) throw new Error(`docker save ${ref}: no manifest.json in the archive`);
  const manifest = JSON.parse(manifestText) as { Config: string; Layers: string[]; RepoTags?: string[] }[];
  if (manifest.length !== 1) throw new Error(`docker save ${ref}: expected one image in manifest.json, found ${manifest.length}`);
  const item = manifest[0]!;
  const configText = jsonByName.get(item.Config);
  if (configText === undefined) throw new Error(`docker save ${ref}: config ${item.Config} is not in the archive`);
  const layers = item.Layers.map((name) => {
    const layer = layersByName.get(layerLinks.get(name) ?? name);
    if (!layer) throw new Error(`docker save ${ref}: layer ${name} is not in the archive (only the <id>/layer.tar form of Docker 20.10 is read)`);
    return layer;
  });
  return { label: `docker ${ref}`, config: JSON.parse(configText) as ImageConfig, layers };
}

/** Reads an image of a strata store: its config and every layer (decompressed), bottom first. */
export async function strataImageSnapshot(strata: Strata, ref: string): Promise<ImageSnapshot> {
  const image = await strata.images.resolve(ref);
  const layers: NormalizedEntry[][] = [];
  for (const layer of image.manifest.layers) layers.push(await summarizeLayer(strata.exportLayer(layer.digest)));
  return { label: `strata ${ref}`, config: image.config, layers };
}

// ---------------------------------------------------------------- flattening

function deleteTree(tree: Map<string, NormalizedEntry>, path: string, keepSelf: boolean): void {
  const prefix = path === '' ? '' : `${path}/`;
  for (const key of [...tree.keys()]) {
    if ((!keepSelf && key === path) || (key.startsWith(prefix) && key !== path)) tree.delete(key);
  }
}

/**
 * Applies layers bottom first, as Docker's applyLayer does: a layer's
 * whiteouts and opaque markers hide lower entries only; an entry replaces a
 * lower one of the same path, removing the lower's subtree unless both are
 * directories. Hardlinks to lower files take that file's attributes.
 */
export function flattenLayers(layers: NormalizedEntry[][]): Map<string, NormalizedEntry> {
  const tree = new Map<string, NormalizedEntry>();
  for (const layer of layers) {
    for (const entry of layer) {
      if (entry.kind === 'whiteout') deleteTree(tree, entry.path, false);
      else if (entry.kind === 'opaque') deleteTree(tree, entry.path, true);
    }
    for (const entry of layer) {
      if (entry.kind === 'whiteout' || entry.kind === 'opaque') continue;
      const existing = tree.get(entry.path);
      if (existing && !(existing.kind === 'directory' && entry.kind === 'directory')) deleteTree(tree, entry.path, false);
      const { links: _links, ...rest } = entry;
      if (rest.kind === 'hardlink') {
        const target = tree.get(rest.linkname ?? '');
        tree.set(entry.path, target ? { ...target, path: entry.path } : rest);
      } else {
        tree.set(entry.path, rest);
      }
    }
  }
  return tree;
}

// ---------------------------------------------------------------- describing

function octal(mode: number | undefined): string {
  return mode === undefined ? '-' : mode.toString(8).padStart(4, '0');
}

/** One entry on one line: `path  file 0644 0:0 12B sha256:abcdef012345`. */
export function describeEntry(entry: NormalizedEntry): string {
  if (entry.kind === 'whiteout') return `${entry.path}  (whiteout)`;
  if (entry.kind === 'opaque') return `${entry.path || '/'}  (opaque dir)`;
  const parts = [entry.path, ` ${entry.kind}`, octal(entry.mode), `${entry.uid}:${entry.gid}`];
  if (entry.kind === 'file') parts.push(`${entry.size}B`, `sha256:${entry.sha256?.slice(0, 12)}`);
  if (entry.linkname !== undefined) parts.push(`-> ${entry.linkname}`);
  if (entry.devmajor !== undefined) parts.push(`dev ${entry.devmajor},${entry.devminor}`);
  if (entry.xattrs) parts.push(`xattrs ${Object.keys(entry.xattrs).join(',')}`);
  if (entry.links) parts.push(`links [${entry.links.join(' ')}]`);
  return parts.join(' ');
}

const ENTRY_FIELDS = ['kind', 'mode', 'uid', 'gid', 'size', 'sha256', 'linkname', 'devmajor', 'devminor', 'xattrs', 'links'] as const;

function fieldText(entry: NormalizedEntry, field: (typeof ENTRY_FIELDS)[number]): string {
  const value = entry[field];
  if (value === undefined) return '(none)';
  if (field === 'mode') return octal(value as number);
  return typeof value === 'string' || typeof value === 'number' ? String(value) : JSON.stringify(value);
}

/** Differences between two sorted entry lists, one line each (`+` docker only, `-` strata only, `~` both, differing). */
export function diffEntries(docker: Iterable<NormalizedEntry>, strata: Iterable<NormalizedEntry>, ignore: IgnoredPath[] = []): string[] {
  const keep = (entry: NormalizedEntry): boolean => !ignore.some((rule) => rule.pattern.test(entry.path));
  const key = (entry: NormalizedEntry): string => `${entry.kind === 'whiteout' || entry.kind === 'opaque' ? entry.kind : 'entry'}:${entry.path}`;
  const left = new Map([...docker].filter(keep).map((entry) => [key(entry), entry]));
  const right = new Map([...strata].filter(keep).map((entry) => [key(entry), entry]));
  const keys = [...new Set([...left.keys(), ...right.keys()])].sort((a, b) => {
    const pa = a.slice(a.indexOf(':') + 1);
    const pb = b.slice(b.indexOf(':') + 1);
    return comparePaths(pa, pb) || a.localeCompare(b);
  });
  const lines: string[] = [];
  for (const k of keys) {
    const d = left.get(k);
    const s = right.get(k);
    if (d && !s) lines.push(`+ docker only: ${describeEntry(d)}`);
    else if (s && !d) lines.push(`- strata only: ${describeEntry(s)}`);
    else if (d && s) {
      const fields = ENTRY_FIELDS.filter((field) => fieldText(d, field) !== fieldText(s, field));
      if (fields.length > 0) {
        lines.push(`~ ${d.path}: ${fields.map((field) => `${field} docker=${fieldText(d, field)} strata=${fieldText(s, field)}`).join('; ')}`);
      }
    }
  }
  return lines;
}

// ---------------------------------------------------------------- configs

/** The config fields compared (see the module comment for what is ignored). */
export const COMPARED_CONFIG_FIELDS = [
  'Env', 'Cmd', 'Entrypoint', 'WorkingDir', 'User', 'ExposedPorts', 'Volumes', 'Labels',
  'StopSignal', 'Healthcheck', 'OnBuild', 'Shell', 'ArgsEscaped',
] as const;

/** Top-level config fields compared. */
export const COMPARED_IMAGE_FIELDS = ['author', 'architecture', 'os', 'variant'] as const;

/** null, '', false, [] and {} mean "not set"; objects get sorted keys so key order never matters. */
function canonical(value: unknown): unknown {
  if (value === null || value === undefined || value === '' || value === false) return undefined;
  if (Array.isArray(value)) return value.length === 0 ? undefined : value.map((item) => canonical(item) ?? null);
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .map(([k, v]) => [k, canonical(v)] as const)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return entries.length === 0 ? undefined : Object.fromEntries(entries);
  }
  return value;
}

/** A config field in canonical form: sets (ExposedPorts, Volumes) as sorted keys; Healthcheck without zero durations (Docker omits them). */
function canonicalField(field: (typeof COMPARED_CONFIG_FIELDS)[number], value: unknown): unknown {
  if (field === 'ExposedPorts' || field === 'Volumes') {
    return canonical(value && typeof value === 'object' ? Object.keys(value).sort() : value);
  }
  if (field === 'Healthcheck' && value && typeof value === 'object') {
    return canonical(Object.fromEntries(Object.entries(value).filter(([, v]) => v !== 0)));
  }
  return canonical(value);
}

/**
 * History strings that differ only by Docker version: Docker 25 added
 * `StartInterval` to HealthConfig, so its classic builder prints five
 * durations in `HEALTHCHECK &{[...] "30s" "3s" "5s" "0s" '\x03'}` where
 * Docker 20.10 (the test daemon) prints four. strata writes Docker 25's form;
 * an unset (`"0s"`) StartInterval, the only value 20.10 can have, is dropped
 * before comparing.
 */
export function normalizeCreatedBy(createdBy: string): string {
  return createdBy.replace(/(HEALTHCHECK &\{\[.*\] "[^"]*" "[^"]*" "[^"]*") "0s"( '[^']*'\})$/, '$1$2');
}

function show(value: unknown): string {
  return value === undefined ? '(unset)' : JSON.stringify(value);
}

/** Differences between two image configs on the compared fields, one line each. */
export function diffConfigs(docker: ImageConfig, strata: ImageConfig): string[] {
  const lines: string[] = [];
  for (const field of COMPARED_IMAGE_FIELDS) {
    const d = canonical(docker[field]);
    const s = canonical(strata[field]);
    if (show(d) !== show(s)) lines.push(`${field}: docker=${show(d)} strata=${show(s)}`);
  }
  const dc = (docker.config ?? {}) as Record<string, unknown>;
  const sc = (strata.config ?? {}) as Record<string, unknown>;
  for (const field of COMPARED_CONFIG_FIELDS) {
    const d = canonicalField(field, dc[field]);
    const s = canonicalField(field, sc[field]);
    if (show(d) !== show(s)) lines.push(`config.${field}: docker=${show(d)} strata=${show(s)}`);
  }
  const dh = docker.history ?? [];
  const sh = strata.history ?? [];
  if (dh.length !== sh.length) {
    lines.push(`history: docker has ${dh.length} entries, strata ${sh.length}`);
    lines.push(...dh.map((entry, i) => `  docker[${i}] ${historyLine(entry)}`));
    lines.push(...sh.map((entry, i) => `  strata[${i}] ${historyLine(entry)}`));
  } else {
    for (let i = 0; i < dh.length; i++) {
      for (const field of ['created_by', 'empty_layer', 'comment', 'author'] as const) {
        const d = canonical(field === 'created_by' ? normalizeCreatedBy(dh[i]!.created_by ?? '') : dh[i]![field]);
        const s = canonical(field === 'created_by' ? normalizeCreatedBy(sh[i]!.created_by ?? '') : sh[i]![field]);
        if (show(d) !== show(s)) lines.push(`history[${i}].${field}: docker=${show(d)} strata=${show(s)}`);
      }
    }
  }
  return lines;
}

function historyLine(entry: HistoryEntry): string {
  return `${entry.empty_layer ? '(empty) ' : ''}${entry.created_by ?? ''}${entry.comment ? ` # ${entry.comment}` : ''}`;
}

/** The history entries that made layers, in layer order: names layers in reports. */
function layerNames(config: ImageConfig, count: number): string[] {
  const made = (config.history ?? []).filter((entry) => !entry.empty_layer).map((entry) => entry.created_by || entry.comment || '');
  return Array.from({ length: count }, (_, i) => made[i] ?? '(no history entry)');
}

// ---------------------------------------------------------------- comparing

/** Compares two snapshots; see the module comment for what "the same" means. */
export function compareSnapshots(docker: ImageSnapshot, strata: ImageSnapshot, options: CompareOptions = {}): ImageComparison {
  const ignore = options.ignorePaths ?? [];
  const maxLines = options.maxLines ?? 40;
  const sections: { title: string; lines: string[] }[] = [];

  const names = layerNames(docker.config, docker.layers.length);
  if (docker.layers.length !== strata.layers.length) {
    sections.push({
      title: 'layer count',
      lines: [
        `docker has ${docker.layers.length} layers, strata ${strata.layers.length}`,
        ...names.map((name, i) => `  docker layer ${i}: ${name}`),
        ...layerNames(strata.config, strata.layers.length).map((name, i) => `  strata layer ${i}: ${name}`),
      ],
    });
  }
  const common = Math.min(docker.layers.length, strata.layers.length);
  for (let i = 0; i < common; i++) {
    const lines = diffEntries(docker.layers[i]!, strata.layers[i]!, ignore);
    if (lines.length > 0) sections.push({ title: `layer ${i} (${truncate(names[i]!, 100)})`, lines });
  }
  const tree = diffEntries(
    [...flattenLayers(docker.layers).values()].sort(compareEntries),
    [...flattenLayers(strata.layers).values()].sort(compareEntries),
    ignore,
  );
  if (tree.length > 0) sections.push({ title: 'flattened tree', lines: tree });
  const config = diffConfigs(docker.config, strata.config);
  if (config.length > 0) sections.push({ title: 'config', lines: config });

  const differences = sections.flatMap((section) => section.lines.map((line) => `${section.title}: ${line}`));
  let report = '';
  if (sections.length > 0) {
    report = `${docker.label} and ${strata.label} differ (+ docker only, - strata only, ~ both but different):\n`;
    for (const section of sections) {
      report += `\n[${section.title}]\n`;
      for (const line of section.lines.slice(0, maxLines)) report += `  ${line}\n`;
      if (section.lines.length > maxLines) report += `  ... and ${section.lines.length - maxLines} more\n`;
    }
    if (ignore.length > 0) report += `\n(ignored paths: ${ignore.map((rule) => `${rule.pattern} — ${rule.reason}`).join('; ')})\n`;
  }
  return { equal: sections.length === 0, differences, report };
}

function truncate(text: string, length: number): string {
  return text.length <= length ? text : `${text.slice(0, length - 1)}…`;
}

/** Compares image `dockerRef` of the test dockerd with image `strataRef` of `strata`. */
export async function compareImages(dockerRef: string, strata: Strata, strataRef: string, options: CompareOptions = {}): Promise<ImageComparison> {
  const [docker, ours] = await Promise.all([dockerImageSnapshot(dockerRef), strataImageSnapshot(strata, strataRef)]);
  return compareSnapshots(docker, ours, options);
}

/** Throws with the readable report unless the two images are the same. */
export async function expectSameImage(dockerRef: string, strata: Strata, strataRef: string, options: CompareOptions = {}): Promise<void> {
  const result = await compareImages(dockerRef, strata, strataRef, options);
  if (!result.equal) throw new Error(result.report);
}

// ---------------------------------------------------------------- differential builds

/** Where the checked-in Dockerfiles and contexts live. */
export const FIXTURES_DIR = resolve(import.meta.dirname, '..', 'build-docker', 'fixtures');

/** A file the test writes into a context: text, or text with a mode, or a symlink. */
export type ContextFile = string | { content: string | Buffer; mode?: number } | { symlink: string };

/** One Dockerfile + context built by both engines. */
export interface BuildCase {
  /** Lower-case, unique in the run: names the temp context and the default tag. */
  name: string;
  /** A directory under {@link FIXTURES_DIR} copied as the context (Dockerfile included). */
  fixture?: string;
  /** Files written into the context after the fixture is copied (path relative to the context). */
  files?: Record<string, ContextFile>;
  /** The Dockerfile text, written to `Dockerfile` (or to {@link dockerfile}) in the context. */
  dockerfileText?: string;
  /** The Dockerfile's path relative to the context (`-f`), default `Dockerfile`. */
  dockerfile?: string;
  buildArgs?: Record<string, string>;
  target?: string;
  /** Anything the context needs that git cannot hold (modes, empty dirs, tars, binaries). */
  prepare?: (contextDir: string) => Promise<void>;
  /** The image reference on both sides (default `strata-test/diff:<name>`). */
  tag?: string;
}

/** What both engines made of one {@link BuildCase}. */
export interface BothBuilds {
  tag: string;
  contextDir: string;
  docker: { code: number; stdout: string; stderr: string };
  strata: { result?: BuildResult; error?: Error; output: string };
}

/**
 * A strata store under `work` holding the busybox base image, loaded from
 * the test dockerd (`docker save | strata load`) so both engines build on
 * byte-identical layers.
 */
export async function openStrataWithBusybox(work: string): Promise<Strata> {
  const strata = await Strata.open({ root: join(work, 'root') });
  await ensureBusyboxImage();
  const archive = new PassThrough({ highWaterMark: 1 << 20 });
  const saving = dockerOk(['save', BUSYBOX_IMAGE], { stdout: archive });
  const loading = strata.load(archive);
  const results = await Promise.allSettled([saving, loading]);
  for (const result of results) if (result.status === 'rejected') throw result.reason;
  return strata;
}

async function writeContextFile(path: string, spec: ContextFile): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  if (typeof spec === 'string') {
    await writeFile(path, spec);
  } else if ('symlink' in spec) {
    await symlink(spec.symlink, path);
  } else {
    await writeFile(path, spec.content);
    // chmod, not writeFile's mode: the umask would filter it and drop setuid bits.
    if (spec.mode !== undefined) await chmod(path, spec.mode);
  }
}

/** Makes the case's context in a fresh directory under `work`. */
export async function prepareContext(spec: BuildCase, work: string): Promise<string> {
  const contextDir = await mkdtemp(join(work, `ctx-${spec.name}-`));
  if (spec.fixture) {
    const from = join(FIXTURES_DIR, spec.fixture);
    await readdir(from); // a clear ENOENT naming the fixture
    await cp(from, contextDir, { recursive: true, verbatimSymlinks: true });
  }
  if (spec.dockerfileText !== undefined) await writeContextFile(join(contextDir, spec.dockerfile ?? 'Dockerfile'), spec.dockerfileText);
  for (const [path, file] of Object.entries(spec.files ?? {})) await writeContextFile(join(contextDir, path), file);
  await spec.prepare?.(contextDir);
  return contextDir;
}

class TextSink extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.text.length < 1 << 20) this.text += chunk.toString();
    callback();
  }
}

/**
 * Builds the case with `docker build` (classic builder) and with strata's
 * engine, at the same time, from the same context, under the same tag.
 * Never throws for a failed build: both outcomes are returned.
 */
export async function buildBoth(strata: Strata, spec: BuildCase, work: string, extra: Partial<BuildOptions> = {}): Promise<BothBuilds> {
  const contextDir = await prepareContext(spec, work);
  const tag = spec.tag ?? `strata-test/diff:${spec.name}`;
  const args = ['build', '--force-rm', '-t', tag];
  if (spec.dockerfile) args.push('-f', join(contextDir, spec.dockerfile));
  for (const [name, value] of Object.entries(spec.buildArgs ?? {})) args.push('--build-arg', `${name}=${value}`);
  if (spec.target) args.push('--target', spec.target);
  args.push(contextDir);

  const sink = new TextSink();
  const options: BuildOptions = { contextDir, tags: [tag], output: sink, ...extra };
  if (spec.dockerfile) options.dockerfile = spec.dockerfile;
  if (spec.buildArgs) options.buildArgs = spec.buildArgs;
  if (spec.target) options.target = spec.target;
  const [dockerRun, strataRun] = await Promise.all([
    docker(args, { timeoutMs: 10 * 60_000 }),
    build({ content: strata.content, images: strata.images, root: strata.root }, options).then(
      (result) => ({ result }),
      (error: unknown) => ({ error: error instanceof Error ? error : new Error(String(error)) }),
    ),
  ]);
  return {
    tag,
    contextDir,
    docker: { code: dockerRun.code, stdout: dockerRun.stdout.toString(), stderr: dockerRun.stderr },
    strata: { ...strataRun, output: sink.text },
  };
}

function tail(text: string, lines = 30): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

/**
 * Builds the case with both engines and throws unless both succeed and make
 * the same image (see {@link compareImages}); the error carries the readable
 * report, or the failing build's output.
 */
export async function expectSameBuild(strata: Strata, spec: BuildCase, work: string, options: CompareOptions & { build?: Partial<BuildOptions> } = {}): Promise<BothBuilds> {
  const both = await buildBoth(strata, spec, work, options.build);
  if (both.docker.code !== 0) {
    throw new Error(`docker build of case ${spec.name} failed (exit ${both.docker.code}), so the case itself is wrong:\n${tail(both.docker.stdout)}\n${tail(both.docker.stderr)}`);
  }
  if (both.strata.error) {
    throw new Error(`strata build of case ${spec.name} failed where docker build succeeded: ${both.strata.error.message}\n--- strata output:\n${tail(both.strata.output)}`);
  }
  const comparison = await compareImages(both.tag, strata, both.tag, options);
  if (!comparison.equal) throw new Error(`case ${spec.name}: ${comparison.report}`);
  return both;
}

/**
 * Builds the case with both engines and throws unless both fail, docker's
 * error matching `dockerMessage` and strata's `strataMessage` (default: the same).
 */
export async function expectBothFail(strata: Strata, spec: BuildCase, work: string, dockerMessage: RegExp, strataMessage: RegExp = dockerMessage): Promise<BothBuilds> {
  const both = await buildBoth(strata, spec, work);
  const dockerText = `${both.docker.stdout}\n${both.docker.stderr}`;
  if (both.docker.code === 0) throw new Error(`docker build of case ${spec.name} succeeded; the case expects it to fail:\n${tail(dockerText)}`);
  if (!dockerMessage.test(dockerText)) throw new Error(`docker build of case ${spec.name} failed, but not with ${dockerMessage}:\n${tail(dockerText)}`);
  if (!both.strata.error) throw new Error(`strata build of case ${spec.name} succeeded where docker build failed with:\n${tail(dockerText, 5)}`);
  if (!strataMessage.test(both.strata.error.message)) {
    throw new Error(`strata build of case ${spec.name} failed, but with "${both.strata.error.message}", not ${strataMessage} (docker said:\n${tail(dockerText, 5)})`);
  }
  return both;
}
