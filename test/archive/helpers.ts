/**
 * Helpers for the archive tests: temp stores, turning store images into
 * {@link SaveItem}s, saving and loading through files, a hand-made tar writer
 * for crafted (hostile) archives, and transpiled copies of the archive modules
 * for child processes.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdtemp, readdir, readFile, readlink, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';
import type { Digest } from '../../src/content/digest.js';
import { ImageStore } from '../../src/image/image-store.js';
import { MediaType } from '../../src/image/mediatypes.js';
import { parseReference } from '../../src/image/reference.js';
import type { ImageConfig, ImageManifest } from '../../src/image/types.js';
import { loadImages, type LoadedImage } from '../../src/archive/load.js';
import { saveImages, type SaveFormat, type SaveItem } from '../../src/archive/save.js';
import { transpileForChild } from '../image/helpers.js';

const REPO = resolve(import.meta.dirname, '..', '..');

/** A temp directory removed by `cleanup`. */
export async function workspace(prefix = 'strata-archive-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** The {@link SaveItem} for an image of the store, named by `names` (default: the name it was found by, if a tag). */
export async function saveItem(store: ImageStore, refOrId: string, names?: string[]): Promise<SaveItem> {
  const image = await store.resolve(refOrId);
  const size = await store.content.size(image.manifestDigest);
  if (size === undefined) throw new Error(`manifest ${image.manifestDigest} of ${refOrId} is missing`);
  const refs = (names ?? (/^[a-f0-9]{64}$|^sha256:/.test(refOrId) ? [] : [refOrId])).map((n) => parseReference(n));
  const mediaType = image.manifest.mediaType ?? MediaType.OciManifest;
  return { id: image.id, manifest: { mediaType, digest: image.manifestDigest, size, manifest: image.manifest }, refs };
}

/** Saves `refs` of `store` into `file`. */
export async function saveToFile(store: ImageStore, refs: string[], file: string, format: SaveFormat = 'docker'): Promise<void> {
  const items = [];
  for (const ref of refs) items.push(await saveItem(store, ref));
  await pipeline(saveImages(store.content, items, { format }), createWriteStream(file));
}

/** Loads an archive file (or a layout directory) into `store`. */
export function loadFile(store: ImageStore, file: string): Promise<LoadedImage[]> {
  return loadImages(store, createReadStream(file));
}

/** Loads an in-memory archive. */
export function loadBuffer(store: ImageStore, archive: Buffer): Promise<LoadedImage[]> {
  return loadImages(store, Readable.from([archive]));
}

export function sha256(data: Buffer | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export async function sha256File(path: string): Promise<Digest> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

/** Runs a command; resolves with its output and status whatever the status. */
export function run(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code: code ?? -1, stdout, stderr }));
  });
}

/** {@link run}, throwing with stderr unless the command exits 0. */
export async function runOk(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const result = await run(command, args, options);
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} failed (exit ${result.code}): ${result.stderr.trim()}`);
  return result.stdout;
}

// ---------------------------------------------------------------- crafted tars

/** One entry of a hand-made tar. Names and link targets are written exactly as given. */
export interface RawEntry {
  name: string;
  /** `pax` / `pax-global`: a PAX extended header (typeflag x / g) whose content is the records. */
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'fifo' | 'char' | 'pax' | 'pax-global';
  content?: Buffer | string;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
}

const TYPE_FLAG: Record<NonNullable<RawEntry['type']>, string> = { file: '0', link: '1', symlink: '2', char: '3', directory: '5', fifo: '6', pax: 'x', 'pax-global': 'g' };

/** PAX records ("LEN key=value\n") for a `pax` entry's content. */
export function paxRecords(records: Record<string, string>): Buffer {
  const out: Buffer[] = [];
  for (const [key, value] of Object.entries(records)) {
    const body = ` ${key}=${value}\n`;
    const size = Buffer.byteLength(body);
    let length = size + String(size).length;
    while (length !== size + String(length).length) length = size + String(length).length;
    out.push(Buffer.from(`${length}${body}`));
  }
  return Buffer.concat(out);
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

/**
 * A ustar archive of `entries`, built byte by byte so that it can say things
 * no well-behaved writer would (`../x`, absolute names, duplicates). Names
 * longer than 100 bytes use the ustar prefix field. With `end: false` the two
 * closing zero blocks are left out.
 */
export function rawTar(entries: RawEntry[], options: { end?: boolean; format?: 'ustar' | 'v7' } = {}): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const type = entry.type ?? 'file';
    const data = type === 'file' || type === 'pax' || type === 'pax-global' ? Buffer.from(entry.content ?? '') : Buffer.alloc(0);
    const header = Buffer.alloc(512);
    let name = entry.name;
    let prefix = '';
    if (Buffer.byteLength(name) > 100) {
      const cut = name.lastIndexOf('/', name.length - 1 - 0);
      prefix = name.slice(0, cut);
      name = name.slice(cut + 1);
      if (Buffer.byteLength(name) > 100 || Buffer.byteLength(prefix) > 155) throw new Error(`name too long for ustar: ${entry.name}`);
    }
    header.write(name, 0, 100, 'utf8');
    header.write(octal(entry.mode ?? (type === 'directory' ? 0o755 : 0o644), 8), 100);
    header.write(octal(entry.uid ?? 0, 8), 108);
    header.write(octal(entry.gid ?? 0, 8), 116);
    header.write(octal(data.length, 12), 124);
    header.write(octal(946684800, 12), 136);
    header.write('        ', 148);
    header.write(TYPE_FLAG[type], 156);
    header.write(entry.linkname ?? '', 157, 100, 'utf8');
    if (options.format !== 'v7') {
      header.write('ustar\0', 257);
      header.write('00', 263);
      header.write(prefix, 345, 155, 'utf8');
    } else if (prefix) throw new Error(`name too long for a V7 header: ${entry.name}`);
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    blocks.push(header, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  if (options.end !== false) blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** A layer for {@link craftArchive}: its tar (uncompressed) and how to store it. */
export interface CraftedLayer {
  tar: Buffer;
  gzip?: boolean;
  /** diffID to put in the config instead of the real one. */
  diffId?: Digest;
}

/** An OCI image (blobs and documents) assembled in memory, ready to be archived in either form. */
export interface CraftedImage {
  config: ImageConfig;
  configBytes: Buffer;
  configDigest: Digest;
  manifest: ImageManifest;
  manifestBytes: Buffer;
  manifestDigest: Digest;
  layers: { digest: Digest; bytes: Buffer; diffId: Digest }[];
  /** Every blob by digest. */
  blobs: Map<Digest, Buffer>;
}

/** Builds a valid image from layer tars. */
export function craftImage(layers: CraftedLayer[], seed = 'crafted'): CraftedImage {
  const blobs = new Map<Digest, Buffer>();
  const stored = layers.map((layer) => {
    const bytes = layer.gzip ? gzipSync(layer.tar) : layer.tar;
    const digest = sha256(bytes);
    blobs.set(digest, bytes);
    return { digest, bytes, diffId: layer.diffId ?? sha256(layer.tar), gzip: layer.gzip ?? false };
  });
  const config: ImageConfig = {
    created: '2024-01-01T00:00:00Z',
    architecture: 'amd64',
    os: 'linux',
    config: { Env: ['PATH=/bin'], Cmd: ['sh'], Labels: { seed } },
    rootfs: { type: 'layers', diff_ids: stored.map((l) => l.diffId) },
    history: stored.map((_, i) => ({ created: '2024-01-01T00:00:00Z', created_by: `layer ${i}` })),
  };
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDigest = sha256(configBytes);
  blobs.set(configDigest, configBytes);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciConfig, digest: configDigest, size: configBytes.length },
    layers: stored.map((l) => ({ mediaType: l.gzip ? MediaType.OciLayerGzip : MediaType.OciLayer, digest: l.digest, size: l.bytes.length })),
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const manifestDigest = sha256(manifestBytes);
  blobs.set(manifestDigest, manifestBytes);
  return {
    config,
    configBytes,
    configDigest,
    manifest,
    manifestBytes,
    manifestDigest,
    layers: stored.map(({ digest, bytes, diffId }) => ({ digest, bytes, diffId })),
    blobs,
  };
}

/** The entries of an OCI archive of `image` tagged `tag`, in the order `save` writes them. */
export function ociArchiveEntries(image: CraftedImage, tag = 'crafted/image:1'): RawEntry[] {
  const ref = parseReference(tag);
  const index = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [
      {
        mediaType: MediaType.OciManifest,
        digest: image.manifestDigest,
        size: image.manifestBytes.length,
        annotations: { 'io.containerd.image.name': ref.toString(), 'org.opencontainers.image.ref.name': ref.tag ?? 'latest' },
      },
    ],
  };
  return [
    { name: 'blobs/', type: 'directory' },
    { name: 'blobs/sha256/', type: 'directory' },
    ...[...image.blobs].map(([digest, bytes]) => ({ name: `blobs/sha256/${digest.slice(7)}`, content: bytes })),
    { name: 'index.json', content: JSON.stringify(index) },
    { name: 'oci-layout', content: '{"imageLayoutVersion":"1.0.0"}' },
  ];
}

/** The entries of an old-form `docker save` archive of `image` (Docker ≤ 24: `<id>/layer.tar`, `<config hex>.json`). */
export function dockerArchiveEntries(image: CraftedImage, tag = 'crafted/image:1'): RawEntry[] {
  const entries: RawEntry[] = [];
  const layerPaths: string[] = [];
  image.layers.forEach((layer, i) => {
    const id = sha256(`${image.configDigest}/${i}`).slice(7);
    entries.push({ name: `${id}/`, type: 'directory' }, { name: `${id}/VERSION`, content: '1.0' }, { name: `${id}/layer.tar`, content: layer.bytes });
    layerPaths.push(`${id}/layer.tar`);
  });
  const configName = `${image.configDigest.slice(7)}.json`;
  entries.push({ name: configName, content: image.configBytes });
  entries.push({ name: 'manifest.json', content: JSON.stringify([{ Config: configName, RepoTags: [tag], Layers: layerPaths }]) });
  return entries;
}

// ---------------------------------------------------------------- trees

/** A snapshot of a directory tree: path → type, mode, owner, size, content hash or link target. */
export async function snapshotTree(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (dir: string, rel: string): Promise<void> => {
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const name of names) {
      const path = join(dir, name);
      const relPath = rel ? `${rel}/${name}` : name;
      const info = await lstat(path);
      let what = `${info.mode.toString(8)} ${info.uid}:${info.gid} ${info.mtimeMs}`;
      if (info.isFile()) what += ` ${info.size} ${sha256(await readFile(path))}`;
      else if (info.isSymbolicLink()) what += ` -> ${await readlink(path)}`;
      out.set(relPath, what);
      if (info.isDirectory()) await walk(path, relPath);
    }
  };
  await walk(root, '');
  return out;
}

// ---------------------------------------------------------------- child processes

/**
 * Transpiles the archive and image modules into `outDir` for child processes
 * (which cannot load TypeScript), with a node_modules link so their bare
 * imports (tar-stream) resolve. Returns file URLs of the entry modules.
 */
export async function childModules(outDir: string): Promise<{ imageStore: string; load: string; importer: string; save: string }> {
  const url = (path: string): string => new URL(`file://${path}`).href;
  const imageStore = await transpileForChild('image/image-store.ts', outDir);
  const load = await transpileForChild('archive/load.ts', outDir);
  const importer = await transpileForChild('archive/import.ts', outDir);
  const save = await transpileForChild('archive/save.ts', outDir);
  await symlink(join(REPO, 'node_modules'), join(outDir, 'node_modules')).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
  return { imageStore: url(imageStore), load: url(load), importer: url(importer), save: url(save) };
}

/** Opens a store in `root` (a fresh ImageStore object, as another process would). */
export function openStore(root: string): Promise<ImageStore> {
  return ImageStore.open(root);
}

/** Files the tree comparison leaves out, relative to the root, with their subtrees. */
export type TreeIgnore = (path: string) => boolean;

/**
 * A listing of a directory tree to compare two trees with: for every path
 * (relative, sorted) its type, permission bits (with setuid/setgid/sticky),
 * owner, and for files size and sha256, for symlinks the target, for devices
 * the device number; hardlinked files also list the other paths of their
 * inode. Modification times are left out.
 */
export async function treeListing(root: string, ignore: TreeIgnore = () => false): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const inodes = new Map<string, string[]>();
  const files: { path: string; inode: string }[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const relPath = rel ? `${rel}/${name}` : name;
      if (ignore(relPath)) continue;
      const path = join(dir, name);
      const info = await lstat(path);
      const perm = (info.mode & 0o7777).toString(8).padStart(4, '0');
      const owner = `${info.uid}:${info.gid}`;
      if (info.isDirectory()) {
        out.set(relPath, `dir ${perm} ${owner}`);
        await walk(path, relPath);
      } else if (info.isFile()) {
        out.set(relPath, `file ${perm} ${owner} ${info.size} ${sha256(await readFile(path))}`);
        const inode = `${info.dev}:${info.ino}`;
        inodes.set(inode, [...(inodes.get(inode) ?? []), relPath]);
        files.push({ path: relPath, inode });
      } else if (info.isSymbolicLink()) {
        out.set(relPath, `symlink ${owner} -> ${await readlink(path)}`);
      } else if (info.isFIFO()) {
        out.set(relPath, `fifo ${perm} ${owner}`);
      } else if (info.isCharacterDevice() || info.isBlockDevice()) {
        out.set(relPath, `${info.isCharacterDevice() ? 'char' : 'block'} ${perm} ${owner} ${info.rdev}`);
      } else {
        out.set(relPath, `other ${perm} ${owner}`);
      }
    }
  };
  await walk(root, '');
  for (const { path, inode } of files) {
    const group = inodes.get(inode)!;
    if (group.length > 1) out.set(path, `${out.get(path)} links=${group.filter((p) => p !== path).join(',')}`);
  }
  return out;
}

/** The entries where two listings differ, as `path: left | right` lines (empty when equal). */
export function diffListings(left: Map<string, string>, right: Map<string, string>): string[] {
  const out: string[] = [];
  for (const path of [...new Set([...left.keys(), ...right.keys()])].sort()) {
    const a = left.get(path);
    const b = right.get(path);
    if (a !== b) out.push(`${path}: ${a ?? '(absent)'} | ${b ?? '(absent)'}`);
  }
  return out;
}
