/**
 * Shared fixtures of the build engine tests: a throw-away store, base images
 * made from directory trees, build contexts, and reading a built layer back.
 */
import { chmod, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { compressionOfMediaType } from '../../src/image/mediatypes.js';
import { parseDigest, type Digest } from '../../src/content/digest.js';
import { ImageStore } from '../../src/image/image-store.js';
import { newImageConfig, writeImage } from '../../src/image/config.js';
import { parseReference } from '../../src/image/reference.js';
import type { ContainerConfig, Descriptor, ImageConfig } from '../../src/image/types.js';
import { makeLayer } from '../../src/layer/make.js';
import { readTar } from '../../src/tar/read.js';
import type { BuildDeps } from '../../src/build/engine.js';

export interface TestStore extends BuildDeps {
  images: ImageStore;
  cleanup(): Promise<void>;
}

const cleanups: string[] = [];

/** A fresh, empty store in a temp dir. */
export async function openStore(): Promise<TestStore> {
  const root = await mkdtemp(join(tmpdir(), 'strata-build-store-'));
  cleanups.push(root);
  const images = await ImageStore.open(root);
  return { root: images.root, content: images.content, images, cleanup: () => rm(root, { recursive: true, force: true }) };
}

/** A fresh temp dir. */
export async function tempDir(prefix = 'strata-build-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  cleanups.push(dir);
  return dir;
}

/** Removes every temp dir made by these helpers. */
export async function cleanupAll(): Promise<void> {
  await Promise.all(cleanups.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
}

/** A file tree: path → content, or {content, mode}, or {dir, mode}, or {symlink}. */
export type Tree = Record<string, string | { content: string; mode?: number } | { dir: true; mode?: number } | { symlink: string }>;

/** Writes `tree` under `dir`, with fixed mtimes (so nothing depends on when the test ran). */
export async function writeTree(dir: string, tree: Tree, mtime = 1_000_000): Promise<void> {
  for (const [path, spec] of Object.entries(tree)) {
    const full = join(dir, path);
    await mkdir(dirname(full), { recursive: true });
    if (typeof spec === 'string') {
      await writeFile(full, spec);
      await chmod(full, 0o644);
    } else if ('symlink' in spec) {
      await symlink(spec.symlink, full);
      continue;
    } else if ('dir' in spec) {
      await mkdir(full, { recursive: true });
      await chmod(full, spec.mode ?? 0o755);
    } else {
      await writeFile(full, spec.content);
      await chmod(full, spec.mode ?? 0o644);
    }
    await utimes(full, mtime, mtime);
  }
}

/** A build context holding `tree` (a Dockerfile among it, usually). */
export async function makeContext(tree: Tree): Promise<string> {
  const dir = await tempDir('strata-build-ctx-');
  await writeTree(dir, tree);
  return dir;
}

/** Stores an image of one layer made from `tree`, tagged `tag`. */
export async function makeImage(store: TestStore, tag: string, tree: Tree, config: ContainerConfig = {}): Promise<{ id: Digest; config: ImageConfig }> {
  const dir = await tempDir('strata-build-base-');
  await writeTree(dir, tree);
  const lease = await store.content.lease();
  try {
    const layer = await makeLayer(store.content, { dir }, { lease, sourceDateEpoch: 1_000_000 });
    const imageConfig = newImageConfig({
      created: '2000-01-01T00:00:00Z',
      config,
      diffIds: [layer.diffId],
      history: [{ created: '2000-01-01T00:00:00Z', created_by: 'test base' }],
    });
    const written = await writeImage(store.content, {
      config: imageConfig,
      layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }],
      lease,
    });
    await store.images.addImage(written.manifest, [parseReference(tag)]);
    return { id: written.configDigest, config: imageConfig };
  } finally {
    await lease.release();
  }
}

/** A writable collecting what is written to it. */
export function collectOutput(): { stream: Writable; text(): string } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
      callback();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
}

/** One entry of a layer, as the tests compare them. */
export interface LayerEntry {
  path: string;
  type: string;
  mode: string;
  uid: number;
  gid: number;
  size: number;
  linkname?: string;
  content?: string;
  mtime: number;
}

/** The entries of a layer blob, in archive order (file contents up to 4 KiB as text). */
export async function layerEntries(store: TestStore, layer: Descriptor): Promise<LayerEntry[]> {
  const out: LayerEntry[] = [];
  const raw = store.content.createReadStream(layer.digest);
  // Built layers are stored uncompressed by default; gzip ones when asked.
  const stream = compressionOfMediaType(layer.mediaType) === 'gzip' ? raw.pipe(createGunzip()) : raw;
  for await (const entry of readTar(stream)) {
    const e: LayerEntry = {
      path: entry.header.path,
      type: entry.header.type,
      mode: entry.header.mode.toString(8).padStart(4, '0'),
      uid: entry.header.uid,
      gid: entry.header.gid,
      size: entry.header.size,
      mtime: entry.header.mtime,
    };
    if (entry.header.linkname !== undefined) e.linkname = entry.header.linkname;
    if (entry.header.type === 'file' && entry.header.size <= 4096) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry.body) chunks.push(chunk as Buffer);
      e.content = Buffer.concat(chunks).toString('utf8');
    } else {
      entry.body.resume();
    }
    out.push(e);
  }
  return out;
}

/** The image a build produced: config and layer descriptors. */
export async function builtImage(store: TestStore, id: Digest): Promise<{ config: ImageConfig; layers: Descriptor[]; manifestDigest: Digest }> {
  const image = await store.images.resolve(id);
  return { config: image.config, layers: image.manifest.layers, manifestDigest: parseDigest(image.manifestDigest) };
}

/** Short listing of a layer: `path type mode uid:gid` lines. */
export async function layerListing(store: TestStore, layer: Descriptor): Promise<string[]> {
  return (await layerEntries(store, layer)).map((e) => `${e.path} ${e.type} ${e.mode} ${e.uid}:${e.gid}${e.linkname !== undefined ? ` -> ${e.linkname}` : ''}`);
}

/** One entry of an image made by {@link makeImageFromEntries}. */
export interface BaseEntry {
  path: string;
  type: 'dir' | 'file' | 'symlink';
  mode?: number;
  uid?: number;
  gid?: number;
  content?: string;
  target?: string;
}

/**
 * Stores an image of one layer holding exactly `entries` (owners included,
 * so no root is needed to make a base with non-root files), tagged `tag`.
 */
export async function makeImageFromEntries(store: TestStore, tag: string, entries: BaseEntry[], config: ContainerConfig = {}): Promise<Digest> {
  const lease = await store.content.lease();
  try {
    const changeset = {
      entries: entries.map((e) => {
        const data = Buffer.from(e.content ?? '');
        const header = {
          path: e.path,
          type: e.type === 'dir' ? ('directory' as const) : e.type,
          mode: e.mode ?? (e.type === 'dir' ? 0o755 : e.type === 'symlink' ? 0o777 : 0o644),
          uid: e.uid ?? 0,
          gid: e.gid ?? 0,
          mtime: 1_000_000,
          size: e.type === 'file' ? data.length : 0,
          ...(e.type === 'symlink' ? { linkname: e.target ?? '' } : {}),
        };
        return e.type === 'file' ? { header, content: () => data } : { header };
      }),
      deletions: [],
      opaqueDirs: [],
    };
    const layer = await makeLayer(store.content, { changeset }, { lease });
    const imageConfig = newImageConfig({
      created: '2000-01-01T00:00:00Z',
      config,
      diffIds: [layer.diffId],
      history: [{ created: '2000-01-01T00:00:00Z', created_by: 'test base' }],
    });
    const written = await writeImage(store.content, {
      config: imageConfig,
      layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }],
      lease,
    });
    await store.images.addImage(written.manifest, [parseReference(tag)]);
    return written.configDigest;
  } finally {
    await lease.release();
  }
}

/** The small base most COPY tests build on: /etc/passwd and /etc/group, a few directories and symlinks. */
export const BASE_ENTRIES: BaseEntry[] = [
  { path: 'a', type: 'dir', mode: 0o700 },
  { path: 'a/b', type: 'dir', uid: 1000, gid: 1000 },
  { path: 'd', type: 'dir' },
  { path: 'd/e', type: 'dir' },
  { path: 'd/e/f', type: 'file', content: 'x\n' },
  { path: 'd/flink', type: 'symlink', target: '/d/e/f' },
  { path: 'etc', type: 'dir' },
  { path: 'etc/group', type: 'file', content: 'root:x:0:\nstaff:x:50:\nnobody:x:65534:\n' },
  { path: 'etc/passwd', type: 'file', content: 'root:x:0:0:root:/root:/bin/sh\napp:x:1001:50::/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n' },
  { path: 'existing', type: 'dir', mode: 0o711 },
  { path: 'existing/old', type: 'file', content: 'old\n' },
  { path: 'link', type: 'symlink', target: '/a/b' },
  { path: 'rlink', type: 'symlink', target: 'a/b' },
  { path: 'tmp', type: 'dir', mode: 0o1777 },
];
