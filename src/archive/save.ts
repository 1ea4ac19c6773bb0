/**
 * `save`: writes images from the store as one tar.
 *
 * The default "docker" format is the one Docker 25+ writes: an OCI image layout
 * (oci-layout, index.json, blobs/sha256/...) plus Docker's own manifest.json and
 * repositories, all pointing at the same blobs. `docker load` (old and new) reads
 * manifest.json; OCI tools (skopeo, umoci after extraction) read index.json.
 * The "oci" format leaves Docker's two files out.
 *
 * Blobs are copied verbatim from the store (never recompressed), verified on the
 * way out: a corrupt blob fails the stream and names the blob.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pack as createPack, type Header as TarHeader } from 'tar-stream';
import type { ContentStore } from '../content/store.js';
import type { Digest } from '../content/digest.js';
import { digestHex } from '../content/digest.js';
import { MediaType } from '../image/mediatypes.js';
import { Annotation, OCI_LAYOUT_FILE, type Descriptor, type ImageIndex } from '../image/types.js';
import { parseReference, type Reference } from '../image/reference.js';

/** Archive format written by {@link saveImages}. */
export type SaveFormat = 'docker' | 'oci';

/** One image to save, as resolved from the image store. */
export interface SaveItem {
  /** Image ID (config digest). */
  id: Digest;
  manifest: Descriptor & { manifest: { config: Descriptor; layers: Descriptor[] } };
  /** References the user asked for that name this image (none when saved by ID). */
  refs: Reference[];
}

export interface SaveOptions {
  format?: SaveFormat;
  /** Called with the number of blob bytes written so far. */
  onProgress?: (bytesWritten: number, bytesTotal: number) => void;
}

/** mtime for every entry: the archive's bytes depend only on the images saved. */
const ENTRY_MTIME = new Date(0);

/**
 * The image spec's grammar for `org.opencontainers.image.ref.name`:
 * components of alphanumerics joined by one of `-._:@+` or by `--`,
 * separated by `/`.
 */
const REF_NAME_RE = /^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:\/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$/;

/** Whether `name` may be written as an `org.opencontainers.image.ref.name` annotation. */
export function isSpecRefName(name: string): boolean {
  return REF_NAME_RE.test(name);
}

/** Entry in Docker's manifest.json. */
interface DockerManifestEntry {
  Config: string;
  RepoTags: string[] | null;
  Layers: string[];
  LayerSources?: Record<string, Descriptor>;
}

/** Builds the documents of the archive (pure; exported for tests). */
export function archiveDocuments(items: SaveItem[], format: SaveFormat): {
  index: ImageIndex;
  dockerManifest?: DockerManifestEntry[];
  repositories?: Record<string, Record<string, string>>;
  blobs: Map<Digest, number>;
} {
  const blobs = new Map<Digest, number>();
  const index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] };
  const dockerManifest: DockerManifestEntry[] = [];
  const repositories: Record<string, Record<string, string>> = {};
  const byId = new Map<Digest, DockerManifestEntry>();

  for (const item of items) {
    const { manifest } = item;
    blobs.set(manifest.digest, manifest.size);
    blobs.set(manifest.manifest.config.digest, manifest.manifest.config.size);
    for (const layer of manifest.manifest.layers) blobs.set(layer.digest, layer.size);

    const base: Descriptor = { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.size };
    if (item.refs.length === 0) {
      if (!index.manifests.some((d) => d.digest === base.digest && !d.annotations)) index.manifests.push(base);
    }
    for (const ref of item.refs) {
      const annotations: Record<string, string> = { [Annotation.ContainerdImageName]: ref.toString() };
      // Docker 25+ writes only the tag as ref.name; a digest reference has no tag.
      // Some Docker tags ("_x", "a..b") break the image spec's ref.name grammar;
      // those entries keep only the containerd name, which load reads first anyway.
      if (ref.tag && isSpecRefName(ref.tag)) annotations[Annotation.RefName] = ref.tag;
      index.manifests.push({ ...base, annotations });
    }

    let entry = byId.get(item.id);
    if (!entry) {
      entry = {
        Config: `blobs/sha256/${digestHex(manifest.manifest.config.digest)}`,
        RepoTags: null,
        Layers: manifest.manifest.layers.map((l) => `blobs/sha256/${digestHex(l.digest)}`),
      };
      const foreign = manifest.manifest.layers.filter((l) => l.urls && l.urls.length > 0);
      if (foreign.length > 0) {
        entry.LayerSources = Object.fromEntries(foreign.map((l) => [l.digest, l]));
      }
      byId.set(item.id, entry);
      dockerManifest.push(entry);
    }
    for (const ref of item.refs) {
      if (!ref.tag) continue;
      const tag = ref.familiar();
      entry.RepoTags = [...(entry.RepoTags ?? []), tag].filter((t, i, all) => all.indexOf(t) === i);
      const repo = parseReference(tag).familiarName();
      const top = manifest.manifest.layers.at(-1);
      if (top) (repositories[repo] ??= {})[ref.tag] = digestHex(top.digest);
    }
  }
  return format === 'docker' ? { index, dockerManifest, repositories, blobs } : { index, blobs };
}

/**
 * Streams a tar of `items` in `format`. Entries are in a fixed order (directories,
 * blobs sorted by digest, then the JSON documents), so the same images give the
 * same bytes.
 */
export function saveImages(store: ContentStore, items: SaveItem[], options: SaveOptions = {}): Readable {
  const format = options.format ?? 'docker';
  const docs = archiveDocuments(items, format);
  const pack = createPack();

  const bytesTotal = [...docs.blobs.values()].reduce((a, b) => a + b, 0);
  let bytesWritten = 0;

  const addBuffer = (name: string, data: string): Promise<void> =>
    new Promise((resolve, reject) => {
      pack.entry(header(name, Buffer.byteLength(data), 'file'), data, (err) => (err ? reject(err) : resolve()));
    });

  const run = async (): Promise<void> => {
    for (const dir of ['blobs/', 'blobs/sha256/']) {
      await new Promise<void>((resolve, reject) =>
        pack.entry(header(dir, 0, 'directory'), (err) => (err ? reject(err) : resolve())),
      );
    }
    const digests = [...docs.blobs.keys()].sort();
    for (const digest of digests) {
      const size = docs.blobs.get(digest)!;
      const actual = await store.size(digest);
      if (actual === undefined) throw new Error(`cannot save: blob ${digest} is missing from the store`);
      if (actual !== size) throw new Error(`cannot save: blob ${digest} is ${actual} bytes, its descriptor says ${size}`);
      const entry = pack.entry(header(`blobs/sha256/${digestHex(digest)}`, size, 'file'));
      const source = store.createReadStream(digest);
      source.on('data', (chunk: Buffer) => {
        bytesWritten += chunk.length;
        options.onProgress?.(bytesWritten, bytesTotal);
      });
      await pipeline(source, entry as unknown as NodeJS.WritableStream);
    }
    await addBuffer('index.json', JSON.stringify(docs.index));
    if (docs.dockerManifest) await addBuffer('manifest.json', JSON.stringify(docs.dockerManifest));
    await addBuffer('oci-layout', JSON.stringify(OCI_LAYOUT_FILE));
    if (docs.repositories) await addBuffer('repositories', JSON.stringify(docs.repositories));
    pack.finalize();
  };

  // tar-stream packs are streamx streams; Readable.from bridges them to a Node
  // stream with backpressure, and a destroyed pack surfaces as an error here.
  const out = Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false });
  run().catch((err: Error) => pack.destroy(err));
  return out;
}

function header(name: string, size: number, type: 'file' | 'directory'): TarHeader {
  return {
    name,
    size,
    type,
    mode: type === 'directory' ? 0o755 : 0o644,
    mtime: ENTRY_MTIME,
    uid: 0,
    gid: 0,
    uname: '',
    gname: '',
    linkname: '',
    devmajor: 0,
    devminor: 0,
  };
}
