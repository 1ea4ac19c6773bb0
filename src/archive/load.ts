/**
 * `load`: reads images into the store from
 *  - `docker save` archives, old form (`<id>/layer.tar`, `<id>.json`, manifest.json)
 *    and new form (Docker 25+: an OCI layout plus manifest.json),
 *  - OCI archives (a tar of an OCI image layout),
 *  - OCI image layout directories, and extracted docker-save directories.
 *
 * A tar is read in one streaming pass: each blob goes straight into the content
 * store (checked against its name when the name is a digest) while a
 * {@link LayerProbe} computes its diffID and vets its entries. Only then are the
 * manifests interpreted: every diffID must match the config, every descriptor's
 * size and media type must match the bytes. Blobs written by a load that fails
 * are left unreferenced under a lease and removed by the next gc; tags change
 * only when everything checked out.
 */
import { createReadStream } from 'node:fs';
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { extract as createExtract } from 'tar-stream';
import { parseDigest, digestHex, type Digest } from '../content/digest.js';
import type { ContentStore } from '../content/store.js';
import type { Lease } from '../content/lease.js';
import { MediaType, compressionOfMediaType, layerMediaType, type Compression } from '../image/mediatypes.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform } from '../image/types.js';
import { Annotation } from '../image/types.js';
import { parseReference, type Reference } from '../image/reference.js';
import { hostPlatform } from '../image/config.js';
import type { ImageStore } from '../image/image-store.js';
import { chainIds } from '../layer/chain.js';
import { LayerProbe, teeInto, type ProbeResult } from './probe.js';

/** Refusal of a malformed or hostile archive; the message names the entry. */
export class ArchiveError extends Error {
  readonly code = 'ARCHIVE_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'ArchiveError';
  }
}

export interface LoadedImage {
  id: Digest;
  manifestDigest: Digest;
  tags: string[];
}

export interface LoadOptions {
  /** Called with bytes read from the archive so far. */
  onProgress?: (bytes: number) => void;
  /** Platform to pick from multi-platform indexes; defaults to the host's. */
  platform?: Platform;
}

/** Documents kept in memory (small JSON files at the top of an archive). */
const DOCUMENTS = new Set(['manifest.json', 'index.json', 'oci-layout', 'repositories']);
const MAX_DOCUMENT = 32 << 20;
const BLOB_PATH = /^blobs\/([a-z0-9]+)\/([a-zA-Z0-9=_-]+)$/;
const OLD_CONFIG = /^([a-f0-9]{64})\.json$/;
const OLD_LAYER = /^[^/]+\/layer\.tar$/;

interface StoredEntry {
  digest: Digest;
  size: number;
  probe?: ProbeResult;
}

/** Where the blobs of an archive come from: a tar read once, or a directory read on demand. */
interface BlobSource {
  document(name: string): Buffer | undefined;
  /** The stored blob for an archive path (following links inside the archive). */
  blob(path: string): Promise<StoredEntry>;
}

/** Validates an archive member name: relative, no '..', no NUL. Returns it normalized. */
export function archivePath(raw: string): string {
  if (raw.includes('\0')) throw new ArchiveError(`refusing archive entry ${JSON.stringify(raw)}: NUL byte in name`);
  if (raw.startsWith('/')) throw new ArchiveError(`refusing archive entry ${JSON.stringify(raw)}: absolute name`);
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new ArchiveError(`refusing archive entry ${JSON.stringify(raw)}: '..' in name`);
  return parts.join('/');
}

async function ingestWithProbe(
  store: ContentStore,
  lease: Lease,
  body: AsyncIterable<Buffer>,
  label: string,
  expected: Digest | undefined,
  probe: boolean,
): Promise<StoredEntry> {
  const writer = store.writer(expected ? { digest: expected, lease } : { lease });
  const layerProbe = probe ? new LayerProbe(label) : undefined;
  try {
    await teeInto(body, layerProbe ? [writer, layerProbe] : [writer]);
    const { digest, size } = await writer.commit();
    return { digest, size, ...(layerProbe ? { probe: await layerProbe.result() } : {}) };
  } catch (err) {
    await writer.abort();
    const e = err as Error & { code?: string };
    if (e.name === 'DigestMismatchError' || e.code === 'DIGEST_MISMATCH') {
      throw new ArchiveError(`archive entry ${label}: ${e.message}`);
    }
    throw err;
  }
}

function expectedDigestFor(name: string): Digest | undefined {
  const blob = BLOB_PATH.exec(name);
  if (blob) {
    if (blob[1] !== 'sha256') throw new ArchiveError(`archive entry ${name}: digest algorithm ${blob[1]} is not supported`);
    try {
      return parseDigest(`sha256:${blob[2]}`);
    } catch {
      throw new ArchiveError(`archive entry ${name}: not a valid sha256 blob name`);
    }
  }
  const oldConfig = OLD_CONFIG.exec(name);
  if (oldConfig) return `sha256:${oldConfig[1]}`;
  return undefined;
}

/** Reads a tar archive once, storing every blob it holds. */
async function readTarArchive(store: ContentStore, lease: Lease, input: NodeJS.ReadableStream, options: LoadOptions): Promise<BlobSource> {
  const documents = new Map<string, Buffer>();
  const stored = new Map<string, StoredEntry>();
  const links = new Map<string, string>();
  const seen = new Set<string>();
  const extract = createExtract();
  let bytes = 0;
  input.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    options.onProgress?.(bytes);
  });
  input.on('error', (err: Error) => extract.destroy(err));
  input.pipe(extract as unknown as NodeJS.WritableStream);

  try {
    for await (const entry of extract) {
      const { header } = entry;
      const name = archivePath(header.name);
      if (name === '') {
        entry.resume();
        continue;
      }
      if (seen.has(name) && header.type !== 'directory') {
        entry.resume();
        throw new ArchiveError(`refusing archive: duplicate entry ${JSON.stringify(header.name)}`);
      }
      seen.add(name);
      switch (header.type) {
        case 'directory':
          entry.resume();
          break;
        case 'symlink':
        case 'link': {
          const target = header.linkname ?? '';
          const resolved = header.type === 'symlink'
            ? archivePath(posix.join(posix.dirname(name), target).replace(/^\/+/, '')) // relative to the link's dir
            : archivePath(target);
          if (target.startsWith('/') || posix.normalize(posix.join(posix.dirname(name), target)).startsWith('..')) {
            entry.resume();
            throw new ArchiveError(`refusing archive entry ${JSON.stringify(header.name)}: link points outside the archive (${target})`);
          }
          links.set(name, header.type === 'symlink' ? resolved : archivePath(target));
          entry.resume();
          break;
        }
        case 'file':
        case 'contiguous-file': {
          if (DOCUMENTS.has(name)) {
            if ((header.size ?? 0) > MAX_DOCUMENT) throw new ArchiveError(`archive entry ${name} is too large (${header.size} bytes)`);
            const chunks: Buffer[] = [];
            for await (const chunk of entry) chunks.push(chunk as Buffer);
            documents.set(name, Buffer.concat(chunks));
            break;
          }
          const expected = expectedDigestFor(name);
          const isLayerCandidate = BLOB_PATH.test(name) || OLD_LAYER.test(name);
          if (expected || isLayerCandidate) {
            stored.set(name, await ingestWithProbe(store, lease, entry as AsyncIterable<Buffer>, name, expected, isLayerCandidate));
          } else {
            entry.resume(); // legacy v1 metadata (<id>/json, <id>/VERSION) and anything else
          }
          break;
        }
        default:
          entry.resume();
          throw new ArchiveError(`refusing archive entry ${JSON.stringify(header.name)}: unsupported entry type ${header.type}`);
      }
    }
  } catch (err) {
    extract.destroy();
    const message = (err as Error).message;
    if (err instanceof ArchiveError) throw err;
    if (/unexpected end|premature|truncated/i.test(message)) throw new ArchiveError(`archive is truncated: ${message}`);
    throw err;
  }

  return {
    document: (name) => documents.get(name),
    blob: async (path) => {
      let name = archivePath(path);
      for (let hops = 0; links.has(name); hops++) {
        if (hops > 16) throw new ArchiveError(`archive entry ${path}: too many levels of links`);
        name = links.get(name)!;
      }
      const entry = stored.get(name);
      if (!entry) throw new ArchiveError(`archive is missing ${path}`);
      return entry;
    },
  };
}

/** Reads an OCI layout directory or an extracted docker-save directory, storing blobs as they are needed. */
async function readDirectoryArchive(store: ContentStore, lease: Lease, dir: string): Promise<BlobSource> {
  const documents = new Map<string, Buffer>();
  for (const name of await readdir(dir)) {
    if (!DOCUMENTS.has(name)) continue;
    const info = await lstat(join(dir, name));
    if (!info.isFile()) throw new ArchiveError(`${name} in ${dir} is not a regular file`);
    if (info.size > MAX_DOCUMENT) throw new ArchiveError(`${name} in ${dir} is too large`);
    documents.set(name, await readFile(join(dir, name)));
  }
  const stored = new Map<string, StoredEntry>();
  return {
    document: (name) => documents.get(name),
    blob: async (path) => {
      let name = archivePath(path);
      for (let hops = 0; ; hops++) {
        if (hops > 16) throw new ArchiveError(`${path}: too many levels of links`);
        const info = await lstat(join(dir, name)).catch(() => undefined);
        if (!info) throw new ArchiveError(`archive is missing ${path}`);
        if (info.isSymbolicLink()) {
          const target = await readlink(join(dir, name));
          if (target.startsWith('/') || posix.normalize(posix.join(posix.dirname(name), target)).startsWith('..')) {
            throw new ArchiveError(`refusing ${name}: link points outside the archive (${target})`);
          }
          name = archivePath(posix.join(posix.dirname(name), target));
          continue;
        }
        if (!info.isFile()) throw new ArchiveError(`${path} in ${dir} is not a regular file`);
        break;
      }
      const cached = stored.get(name);
      if (cached) return cached;
      const expected = expectedDigestFor(name);
      const entry = await ingestWithProbe(store, lease, createReadStream(join(dir, name)) as AsyncIterable<Buffer>, name, expected, true);
      stored.set(name, entry);
      return entry;
    },
  };
}

function parseJson<T>(data: Buffer, what: string): T {
  try {
    return JSON.parse(data.toString('utf8')) as T;
  } catch (err) {
    throw new ArchiveError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

interface PlannedImage {
  manifest: Descriptor;
  config: ImageConfig;
  configDigest: Digest;
  layers: Array<{ descriptor: Descriptor; stored: StoredEntry }>;
  refs: Reference[];
}

function checkLayer(label: string, stored: StoredEntry, diffId: Digest | undefined, declared?: Compression): void {
  const probe = stored.probe;
  if (!probe || probe.kind !== 'layer') throw new ArchiveError(`${label} is not a layer tarball`);
  if (probe.lintError) throw new ArchiveError(`${label}: ${probe.lintError.message}`);
  if (declared !== undefined && declared !== probe.compression) {
    throw new ArchiveError(`${label}: media type says ${declared} but the bytes are ${probe.compression}`);
  }
  if (diffId === undefined) throw new ArchiveError(`${label}: the config lists fewer diff_ids than there are layers`);
  if (probe.diffId !== diffId) {
    throw new ArchiveError(`${label}: diffID mismatch: config says ${diffId}, content is ${probe.diffId}`);
  }
}

async function planDockerImages(store: ContentStore, source: BlobSource, lease: Lease): Promise<PlannedImage[]> {
  type Entry = { Config: string; RepoTags?: string[] | null; Layers: string[] };
  const entries = parseJson<Entry[]>(source.document('manifest.json')!, 'manifest.json');
  if (!Array.isArray(entries)) throw new ArchiveError('manifest.json is not an array');
  // The new form's index.json may already hold the manifest for a config; reuse it so its digest survives.
  const indexManifests = new Map<Digest, Descriptor>();
  const indexDoc = source.document('index.json');
  if (indexDoc) {
    const index = parseJson<ImageIndex>(indexDoc, 'index.json');
    for (const desc of index.manifests ?? []) {
      if (desc.mediaType !== MediaType.OciManifest && desc.mediaType !== MediaType.DockerManifest) continue;
      try {
        const stored = await source.blob(`blobs/sha256/${digestHex(desc.digest)}`);
        const manifest = await store.readJson<ImageManifest>(stored.digest);
        indexManifests.set(manifest.config.digest, { mediaType: desc.mediaType, digest: stored.digest, size: stored.size });
      } catch {
        // Not every index entry needs to be present; manifest.json is authoritative here.
      }
    }
  }

  const planned: PlannedImage[] = [];
  for (const [i, entry] of entries.entries()) {
    if (typeof entry?.Config !== 'string' || !Array.isArray(entry.Layers)) throw new ArchiveError(`manifest.json entry ${i} lacks Config or Layers`);
    const configEntry = await source.blob(entry.Config);
    const config = await store.readJson<ImageConfig>(configEntry.digest);
    const diffIds = config.rootfs?.diff_ids ?? [];
    if (diffIds.length !== entry.Layers.length) {
      throw new ArchiveError(`${entry.Config}: config lists ${diffIds.length} diff_ids but manifest.json lists ${entry.Layers.length} layers`);
    }
    const layers: PlannedImage['layers'] = [];
    for (const [n, path] of entry.Layers.entries()) {
      const stored = await source.blob(path);
      checkLayer(`layer ${path}`, stored, diffIds[n]);
      layers.push({
        stored,
        descriptor: { mediaType: layerMediaType(stored.probe!.compression), digest: stored.digest, size: stored.size },
      });
    }
    let manifest = indexManifests.get(configEntry.digest);
    if (manifest) {
      const doc = await store.readJson<ImageManifest>(manifest.digest);
      const same = doc.layers.length === layers.length && doc.layers.every((l, n) => l.digest === layers[n]!.descriptor.digest);
      if (!same) manifest = undefined;
    }
    if (!manifest) {
      const doc: ImageManifest = {
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        config: { mediaType: MediaType.OciConfig, digest: configEntry.digest, size: configEntry.size },
        layers: layers.map((l) => l.descriptor),
      };
      const written = await store.putJson(doc, lease);
      manifest = { mediaType: MediaType.OciManifest, digest: written.digest, size: written.size };
    }
    const refs = (entry.RepoTags ?? []).map((tag) => {
      try {
        return parseReference(tag);
      } catch (err) {
        throw new ArchiveError(`manifest.json: invalid tag ${JSON.stringify(tag)}: ${(err as Error).message}`);
      }
    });
    planned.push({ manifest, config, configDigest: configEntry.digest, layers, refs });
  }
  return planned;
}

function platformMatches(p: Platform | undefined, want: Platform): boolean {
  return !p || (p.os === want.os && p.architecture === want.architecture && (!want.variant || p.variant === want.variant));
}

async function planOciImages(store: ContentStore, source: BlobSource, platform: Platform): Promise<PlannedImage[]> {
  const layoutDoc = source.document('oci-layout');
  if (layoutDoc) {
    const layout = parseJson<{ imageLayoutVersion?: string }>(layoutDoc, 'oci-layout');
    if (layout.imageLayoutVersion !== '1.0.0') throw new ArchiveError(`oci-layout: unsupported imageLayoutVersion ${JSON.stringify(layout.imageLayoutVersion)}`);
  }
  const index = parseJson<ImageIndex>(source.document('index.json')!, 'index.json');
  if (!Array.isArray(index.manifests)) throw new ArchiveError('index.json has no manifests array');
  const planned: PlannedImage[] = [];

  const resolveManifest = async (desc: Descriptor, depth: number): Promise<Descriptor | undefined> => {
    if (depth > 4) throw new ArchiveError('index.json: indexes nested too deeply');
    const stored = await source.blob(`blobs/sha256/${digestHex(parseDigest(desc.digest))}`);
    if (stored.size !== desc.size) throw new ArchiveError(`descriptor for ${desc.digest} says ${desc.size} bytes, blob has ${stored.size}`);
    if (desc.mediaType === MediaType.OciIndex || desc.mediaType === MediaType.DockerManifestList) {
      const nested = await store.readJson<ImageIndex>(stored.digest);
      const choices = nested.manifests.filter((m) => platformMatches(m.platform, platform) && m.mediaType !== undefined);
      const pick = choices.find((m) => m.mediaType === MediaType.OciManifest || m.mediaType === MediaType.DockerManifest) ?? choices[0];
      if (!pick) throw new ArchiveError(`index ${desc.digest} has no manifest for ${platform.os}/${platform.architecture}`);
      return resolveManifest(pick, depth + 1);
    }
    if (desc.mediaType !== MediaType.OciManifest && desc.mediaType !== MediaType.DockerManifest) {
      throw new ArchiveError(`index.json: unsupported manifest media type ${desc.mediaType}`);
    }
    return { mediaType: desc.mediaType, digest: stored.digest, size: stored.size };
  };

  const byManifest = new Map<Digest, PlannedImage>();
  for (const desc of index.manifests) {
    const manifestDesc = await resolveManifest(desc, 0);
    if (!manifestDesc) continue;
    let plan = byManifest.get(manifestDesc.digest);
    if (!plan) {
      const manifest = await store.readJson<ImageManifest>(manifestDesc.digest);
      if (manifest.schemaVersion !== 2 || !manifest.config || !Array.isArray(manifest.layers)) {
        throw new ArchiveError(`manifest ${manifestDesc.digest} is not an image manifest`);
      }
      const configEntry = await source.blob(`blobs/sha256/${digestHex(parseDigest(manifest.config.digest))}`);
      if (configEntry.size !== manifest.config.size) throw new ArchiveError(`config ${manifest.config.digest}: descriptor says ${manifest.config.size} bytes, blob has ${configEntry.size}`);
      const config = await store.readJson<ImageConfig>(configEntry.digest);
      const diffIds = config.rootfs?.diff_ids ?? [];
      if (diffIds.length !== manifest.layers.length) {
        throw new ArchiveError(`manifest ${manifestDesc.digest}: ${manifest.layers.length} layers but the config lists ${diffIds.length} diff_ids`);
      }
      const layers: PlannedImage['layers'] = [];
      for (const [n, layer] of manifest.layers.entries()) {
        const declared = compressionOfMediaType(layer.mediaType);
        if (declared === undefined) throw new ArchiveError(`layer ${layer.digest}: unsupported media type ${layer.mediaType}`);
        const stored = await source.blob(`blobs/sha256/${digestHex(parseDigest(layer.digest))}`);
        if (stored.size !== layer.size) throw new ArchiveError(`layer ${layer.digest}: descriptor says ${layer.size} bytes, blob has ${stored.size}`);
        checkLayer(`layer ${layer.digest}`, stored, diffIds[n], declared);
        layers.push({ descriptor: layer, stored });
      }
      plan = { manifest: manifestDesc, config, configDigest: configEntry.digest, layers, refs: [] };
      byManifest.set(manifestDesc.digest, plan);
      planned.push(plan);
    }
    const name = desc.annotations?.[Annotation.ContainerdImageName] ?? desc.annotations?.[Annotation.RefName];
    // A bare tag in ref.name ("latest") names no repository, so it cannot become a tag here.
    if (name && (desc.annotations?.[Annotation.ContainerdImageName] || /[/:@]/.test(name))) {
      try {
        const ref = parseReference(name);
        if (!plan.refs.some((r) => r.toString() === ref.toString())) plan.refs.push(ref);
      } catch {
        // Not a Docker reference (OCI allows other ref.name forms); the image loads untagged.
      }
    }
  }
  return planned;
}

/** Loads every image of an archive (a tar stream, or a directory path) into the store. */
export async function loadImages(images: ImageStore, input: NodeJS.ReadableStream | Readable | { dir: string }, options: LoadOptions = {}): Promise<LoadedImage[]> {
  const store = images.content;
  const lease = await store.lease();
  try {
    const source = 'dir' in input && typeof input.dir === 'string'
      ? await readDirectoryArchive(store, lease, input.dir)
      : await readTarArchive(store, lease, input as NodeJS.ReadableStream, options);
    let plans: PlannedImage[];
    if (source.document('manifest.json')) plans = await planDockerImages(store, source, lease);
    else if (source.document('index.json')) plans = await planOciImages(store, source, options.platform ?? hostPlatform());
    else throw new ArchiveError('not an image archive: it has neither manifest.json (docker save) nor index.json (OCI)');
    if (plans.length === 0) throw new ArchiveError('the archive holds no images');

    const loaded: LoadedImage[] = [];
    for (const plan of plans) {
      const diffIds = plan.layers.map((l) => l.stored.probe!.diffId!);
      const chain = chainIds(diffIds);
      for (const [n, layer] of plan.layers.entries()) {
        await images.layers.put({
          chainId: chain[n]!,
          ...(n > 0 ? { parent: chain[n - 1]! } : {}),
          diffId: diffIds[n]!,
          digest: layer.descriptor.digest,
          size: layer.descriptor.size,
          mediaType: layer.descriptor.mediaType,
          compression: layer.stored.probe!.compression,
          uncompressedSize: layer.stored.probe!.uncompressedSize!,
          createdAt: new Date().toISOString(),
        });
      }
      await images.addImage(plan.manifest, plan.refs);
      loaded.push({ id: plan.configDigest, manifestDigest: plan.manifest.digest, tags: plan.refs.map((r) => r.familiar()) });
    }
    return loaded;
  } finally {
    await lease.release();
  }
}
