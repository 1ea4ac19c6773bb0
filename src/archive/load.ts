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
import { PassThrough, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
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
/** Bytes a blob may run ahead of its writer (see ingestWithProbe). */
const WRITE_AHEAD = 8 << 20;
/** Blob commits (fsync, rename) a tar read lets run behind it. */
const MAX_COMMITS_IN_FLIGHT = 4;
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

/** A digest mismatch found while storing an entry becomes a refusal naming the entry. */
function refusalFor(err: unknown, label: string): unknown {
  const e = err as Error & { code?: string };
  if (e.name === 'DigestMismatchError' || e.code === 'DIGEST_MISMATCH') return new ArchiveError(`archive entry ${label}: ${e.message}`);
  return err;
}

/**
 * Streams `body` into a new blob (checked against `expected`) while a
 * {@link LayerProbe} looks at it. Resolves as soon as the body is consumed,
 * with `drained`, settled once the last of the write-ahead reached the
 * writer, and `committed`: the blob's commit (fsync, checks, rename) and the
 * probe's findings. A caller reading a tar awaits these later, so the next
 * entry is read while this one is being written and synced.
 */
async function ingestWithProbe(
  store: ContentStore,
  lease: Lease,
  body: AsyncIterable<Buffer>,
  label: string,
  expected: Digest | undefined,
  probe: boolean,
): Promise<{ drained: Promise<void>; committed: Promise<StoredEntry> }> {
  const writer = store.writer(expected ? { digest: expected, lease } : { lease });
  // The blob's digest is the diffID of an uncompressed layer: no need to hash it twice.
  const layerProbe = probe ? new LayerProbe(label, { hashUncompressed: false }) : undefined;
  // A few MB of slack in front of the writer: its file writes run on the
  // thread pool while this thread goes on hashing and parsing, rather than
  // waiting for every chunk to reach the page cache.
  const buffered = new PassThrough({ highWaterMark: WRITE_AHEAD });
  buffered.pipe(writer);
  // pipe() does not pass a writer's failure back; without this the tee would wait for a drain forever.
  writer.on('error', (err: Error) => buffered.destroy(err));
  try {
    await teeInto(body, layerProbe ? [buffered, layerProbe] : [buffered], { waitForFinish: false });
  } catch (err) {
    buffered.unpipe(writer);
    buffered.destroy();
    await writer.abort();
    throw refusalFor(err, label);
  }
  // The writer is ended by pipe() once everything buffered has reached it.
  const drained = finished(buffered);
  drained.catch(() => undefined); // the same failure surfaces from `committed`
  const committed = (async (): Promise<StoredEntry> => {
    try {
      await drained;
      const { digest, size } = await writer.commit();
      if (!layerProbe) return { digest, size };
      let found = await layerProbe.result();
      if (found.kind === 'layer' && found.diffId === undefined) found = { ...found, diffId: digest, uncompressedSize: size };
      return { digest, size, probe: found };
    } catch (err) {
      await writer.abort();
      throw refusalFor(err, label);
    }
  })();
  // Awaited by the caller; this only keeps a failure that is awaited late from counting as unhandled.
  committed.catch(() => undefined);
  return { drained, committed };
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

/**
 * Where a link entry of an archive points, as an archive path. `target` is
 * relative to the link's directory for a symlink and to the archive root for
 * a hardlink, as tar has it. A target that is absolute or climbs above the
 * archive root is refused, naming the link entry.
 */
export function linkTarget(entryName: string, type: 'symlink' | 'link', target: string): string {
  const refuse = (why: string): never => {
    throw new ArchiveError(`refusing archive entry ${JSON.stringify(entryName)}: ${why} (${JSON.stringify(target)})`);
  };
  if (target === '') refuse('link with an empty target');
  if (target.includes('\0')) refuse('NUL byte in link target');
  if (target.startsWith('/')) refuse('link points outside the archive: absolute target');
  const joined = type === 'symlink' ? posix.join(posix.dirname(entryName), target) : posix.normalize(target);
  if (joined === '..' || joined.startsWith('../')) refuse('link points outside the archive');
  const resolved = archivePath(joined);
  if (resolved === '') refuse('link points at the archive root');
  return resolved;
}

/** An entry name whose last component is an AUFS/OCI whiteout marker. */
function isWhiteoutName(name: string): boolean {
  return posix.basename(name).startsWith('.wh.');
}

/** Reads a tar archive once, storing every blob it holds. */
async function readTarArchive(store: ContentStore, lease: Lease, input: NodeJS.ReadableStream, options: LoadOptions): Promise<BlobSource> {
  const documents = new Map<string, Buffer>();
  const stored = new Map<string, StoredEntry>();
  /** Blobs whose bytes are all written, still being committed. */
  const committing = new Map<string, Promise<StoredEntry>>();
  const inFlight = new Set<Promise<void>>();
  let previousDrained: Promise<void> = Promise.resolve();
  const links = new Map<string, string>();
  /** Regular files that were neither documents nor blobs, so were not kept. */
  const skipped = new Set<string>();
  const seen = new Set<string>();
  const extract = createExtract();
  let bytes = 0;
  /** The entry being read, for errors that happen while reading it (truncation). */
  let current: string | undefined;
  input.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    options.onProgress?.(bytes);
  });
  input.on('error', (err: Error) => extract.destroy(err));
  input.pipe(extract as unknown as NodeJS.WritableStream);
  // What the reader itself failed with: an entry being read when the data ran
  // out may fail with a generic "destroyed" error of its own.
  let readerError: Error | undefined;
  extract.on('error', (err: Error) => (readerError ??= err));

  try {
    for await (const entry of extract) {
      const { header } = entry;
      current = header.name;
      const name = archivePath(header.name);
      if (name === '') {
        entry.resume();
        continue;
      }
      // Image archives never hold whiteouts; one here can only be meant for a
      // tool that applies the outer archive as a layer.
      if (isWhiteoutName(name)) {
        entry.resume();
        throw new ArchiveError(`refusing archive entry ${JSON.stringify(header.name)}: whiteout entry in an image archive`);
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
          entry.resume();
          links.set(name, linkTarget(header.name, header.type, header.linkname ?? ''));
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
            // Memory and open files stay bounded: one blob's write-ahead at a time, a few commits in flight.
            await previousDrained;
            while (inFlight.size >= MAX_COMMITS_IN_FLIGHT) await Promise.race(inFlight);
            const { drained, committed } = await ingestWithProbe(store, lease, entry as AsyncIterable<Buffer>, name, expected, isLayerCandidate);
            previousDrained = drained.catch(() => undefined);
            const settled = committed.then(() => undefined, () => undefined);
            inFlight.add(settled);
            void settled.then(() => inFlight.delete(settled));
            committing.set(name, committed);
          } else {
            skipped.add(name);
            entry.resume(); // legacy v1 metadata (<id>/json, <id>/VERSION) and anything else
          }
          break;
        }
        default:
          entry.resume();
          throw new ArchiveError(`refusing archive entry ${JSON.stringify(header.name)}: unsupported entry type ${header.type}`);
      }
      current = undefined;
    }
    for (const [name, committed] of committing) stored.set(name, await committed);
  } catch (err) {
    extract.destroy();
    // Every writer finishes (or cleans up) before the caller releases the lease.
    await Promise.allSettled(committing.values());
    if (err instanceof ArchiveError) throw err;
    const message = (readerError ?? (err as Error)).message;
    if (/unexpected end|premature|truncated/i.test(message)) {
      throw new ArchiveError(current !== undefined ? `archive is truncated in entry ${JSON.stringify(current)}: ${message}` : `archive is truncated: ${message}`);
    }
    throw err;
  }

  return {
    document: (name) => documents.get(name),
    blob: async (path) => {
      let name = archivePath(path);
      const via: string[] = [];
      for (let hops = 0; links.has(name); hops++) {
        if (hops > 16) throw new ArchiveError(`archive entry ${path}: too many levels of links`);
        via.push(name);
        name = links.get(name)!;
      }
      const entry = stored.get(name);
      if (!entry) {
        if (via.length > 0 && skipped.has(name)) {
          throw new ArchiveError(`archive entry ${via[0]} is a link to ${name}, which is not a blob or layer entry (only blobs/<alg>/<hex> and <id>/layer.tar can be linked to)`);
        }
        throw new ArchiveError(via.length > 0 ? `archive entry ${via[0]} is a link to ${name}, which the archive does not have` : `archive is missing ${path}`);
      }
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
        // A directory on the way that is a symlink could lead anywhere on the host.
        const parts = name.split('/');
        for (let depth = 1; depth < parts.length; depth++) {
          const ancestor = parts.slice(0, depth).join('/');
          const parent = await lstat(join(dir, ancestor)).catch(() => undefined);
          if (!parent) throw new ArchiveError(`archive is missing ${path}`);
          if (!parent.isDirectory()) throw new ArchiveError(`refusing ${path} in ${dir}: ${ancestor} is not a directory${parent.isSymbolicLink() ? ' (a symlink)' : ''}`);
        }
        const info = await lstat(join(dir, name)).catch(() => undefined);
        if (!info) throw new ArchiveError(`archive is missing ${path}`);
        if (info.isSymbolicLink()) {
          name = linkTarget(name, 'symlink', await readlink(join(dir, name)));
          continue;
        }
        if (!info.isFile()) throw new ArchiveError(`${path} in ${dir} is not a regular file`);
        break;
      }
      const cached = stored.get(name);
      if (cached) return cached;
      const expected = expectedDigestFor(name);
      const { committed } = await ingestWithProbe(store, lease, createReadStream(join(dir, name), { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>, name, expected, true);
      const entry = await committed;
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
  if (!probe || probe.kind !== 'layer') throw new ArchiveError(`${label} is not a layer tarball${probe?.lintError ? ` (${probe.lintError.message})` : ''}`);
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

/** What {@link loadImages} reads: a tar stream, a tar file, or a directory (OCI layout or extracted docker save). */
export type LoadInput = NodeJS.ReadableStream | Readable | { file: string } | { dir: string };

/**
 * Chunk size for reading an archive file. Every chunk costs a thread-pool
 * round trip and a pass through the tar parser and the tee; at the default
 * 64 KiB that overhead, not hashing, dominated loading a 300 MB archive.
 */
const FILE_READ_CHUNK = 1 << 20;

/**
 * Loads every image of an archive into the store. Prefer `{ file }` over a
 * stream of a file: it is read in large chunks, which loads markedly faster.
 */
export async function loadImages(images: ImageStore, input: LoadInput, options: LoadOptions = {}): Promise<LoadedImage[]> {
  const store = images.content;
  const lease = await store.lease();
  try {
    let source: BlobSource;
    if ('dir' in input && typeof input.dir === 'string') source = await readDirectoryArchive(store, lease, input.dir);
    else if ('file' in input && typeof input.file === 'string') {
      source = await readTarArchive(store, lease, createReadStream(input.file, { highWaterMark: FILE_READ_CHUNK }), options);
    } else source = await readTarArchive(store, lease, input as NodeJS.ReadableStream, options);
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
