/**
 * The image store: which images exist and what they are called.
 *
 * Images live in `ROOT/index.json`, so the store root stays a valid OCI image
 * layout that skopeo, umoci and containerd can read directly. Each name is one
 * index entry pointing at a manifest (or a multi-platform index), carrying
 *
 * - `io.containerd.image.name`: the fully qualified reference
 *   (`docker.io/library/busybox:latest`, or `…/busybox@sha256:…` for a digest
 *   reference), as containerd writes it;
 * - `org.opencontainers.image.ref.name`: for tags only, the *familiar* form with
 *   its tag (`busybox:latest`, `localhost:5000/app:1.0`).
 *
 * Why that ref.name: skopeo (1.9) splits `oci:PATH:REF` at the first colon and
 * umoci (0.4) `PATH:REF` likewise, and both then match REF against ref.name
 * exactly. Tried by hand on a layout holding one manifest: with ref.name
 * `myapp:1.0` only `oci:ROOT:myapp:1.0` resolved; with
 * `docker.io/library/myapp:1.0` only that long form did; with `1.0` only `1.0`
 * did, and a bare tag cannot tell two repositories' `latest` apart. The
 * familiar form is what users type and what `images` prints, so
 * `skopeo inspect oci:ROOT:busybox:latest` and
 * `umoci unpack --image ROOT:busybox:latest` work, and `umoci ls` lists the
 * same names as `strata images`. (Neither tool adds `:latest` to a bare name.)
 *
 * Dangling images (untagged but kept, as Docker keeps them until pruned) are
 * index entries without any name annotation. Both tools skip such entries when
 * looking up a name, so the root stays readable, and gc keeps their blobs
 * because everything reachable from index.json is kept.
 *
 * Every change is a read-modify-write of index.json under the `store` lock
 * (shared with gc), replaced atomically; readers need no lock.
 */
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseDigest, type Digest } from '../content/digest.js';
import { StrataError } from '../content/errors.js';
import { withLock } from '../content/lock.js';
import { ContentStore } from '../content/store.js';
import { LayerRecords } from '../layer/record.js';
import { createDecompressor } from '../layer/compress.js';
import { writeJsonAtomic } from '../util/atomic.js';
import { MediaType, compressionOfMediaType } from './mediatypes.js';
import { Annotation, type Descriptor, type ImageConfig, type ImageIndex, type ImageManifest, type Platform } from './types.js';
import { parseImageConfig, hostPlatform, platformMatches, formatPlatform } from './config.js';
import { parseReference, Reference, InvalidReferenceError } from './reference.js';
import { collectGarbage, type GcResult } from './gc.js';
import { checkStore, type FsckOptions, type FsckReport } from './fsck.js';
import { readFileOrUndefined } from '../util/fs.js';

/** Name of the inter-process lock guarding index.json and gc. */
export const STORE_LOCK = 'store';
/** Annotation strata adds to a name's index entry: when the name was (last) set. */
export const LAST_TAG_TIME_ANNOTATION = 'dev.strata.image.last-tag-time';

/** No image matches what was asked for. */
export class ImageNotFoundError extends StrataError {
  constructor(readonly input: string) {
    super('IMAGE_NOT_FOUND', `No such image: ${input}`);
  }
}

/** An ID prefix matches several images. */
export class AmbiguousImageError extends StrataError {
  constructor(
    readonly input: string,
    readonly candidates: Digest[],
  ) {
    super('AMBIGUOUS_IMAGE_ID', `image ID prefix ${JSON.stringify(input)} is ambiguous: it matches ${candidates.length} images (${candidates.map((c) => c.slice(7, 19)).join(', ')})`);
  }
}

/** An operation Docker refuses without `--force` (or at all). */
export class ImageConflictError extends StrataError {
  constructor(message: string) {
    super('IMAGE_CONFLICT', message);
  }
}

/** An image whose manifest, config or layers are not (all) in the content store. */
export class IncompleteImageError extends StrataError {
  constructor(message: string) {
    super('IMAGE_INCOMPLETE', message);
  }
}

/** A manifest, index or index.json that cannot be understood. */
export class InvalidManifestError extends StrataError {
  constructor(message: string) {
    super('INVALID_MANIFEST', message);
  }
}

/** No manifest of a multi-platform image is for the wanted platform. */
export class NoMatchingPlatformError extends StrataError {
  constructor(platform: Platform) {
    super('NO_MATCHING_PLATFORM', `no matching manifest for ${formatPlatform(platform)} in the manifest list entries`);
  }
}

/** An image as resolved from a name or ID. */
export interface ResolvedImage {
  /** Docker's image ID: the digest of the config. */
  id: Digest;
  /** The image manifest chosen (for a multi-platform image, the one for the platform). */
  manifestDigest: Digest;
  manifest: ImageManifest;
  config: ImageConfig;
  /** Familiar tags naming this image (`busybox:latest`). */
  repoTags: string[];
  /** Familiar digest references naming this image (`busybox@sha256:…`). */
  repoDigests: string[];
  /** The index.json entry the image was found through (a manifest, or a multi-platform index). */
  target: Descriptor;
  /** When a name was last put on the image, if strata recorded it. */
  lastTagTime?: string;
}

/** One row of {@link ImageStore.list}. */
export interface ImageSummary {
  id: Digest;
  manifestDigest: Digest;
  repoTags: string[];
  repoDigests: string[];
  /** `created` of the config, when it has one. */
  created?: string;
  /** Sum of the uncompressed sizes of the layers (Docker's image size). */
  size: number;
  labels: Record<string, string>;
  platform: Platform;
  lastTagTime?: string;
}

/** How a container uses an image, as reported by {@link RemoveOptions.isInUse}. */
export interface ImageUse {
  containerId: string;
  running: boolean;
}

/** Options of {@link ImageStore.remove}. */
export interface RemoveOptions {
  /** Docker's `rmi -f`: remove an image with several names, or one a stopped container uses. */
  force?: boolean;
  /**
   * Whether a container uses the image. Called before the store lock is
   * taken, so it may itself read the store. `true`, or a use with
   * `running: false`, is a conflict `force` overrides; a running container's
   * image cannot be removed at all.
   */
  isInUse?: (imageId: Digest) => Promise<boolean | ImageUse | undefined>;
}

/** What {@link ImageStore.remove} did, in Docker's words. */
export interface RemoveResult {
  /** Familiar names removed (`busybox:latest`). */
  untagged: string[];
  /** Image IDs deleted (their blobs go at the next gc). */
  deleted: Digest[];
}

/** Options for resolving an image. */
export interface ResolveOptions {
  /** For multi-platform images: require this platform. Default: the host's, else any. */
  platform?: Platform;
}

type AnyManifest = ImageManifest | ImageIndex;
type NameKind = 'tag' | 'digest';

/** What an index.json entry is called, if anything. */
interface EntryName {
  ref: Reference;
  kind: NameKind;
}

const IMAGE_MANIFEST_TYPES = new Set<string>([MediaType.OciManifest, MediaType.DockerManifest]);
const INDEX_TYPES = new Set<string>([MediaType.OciIndex, MediaType.DockerManifestList]);
const MAX_INDEX_DEPTH = 4;
const HEX_PREFIX_RE = /^(?:sha256:)?([a-f0-9]{1,64})$/;

/** Whether a descriptor is an image manifest (by media type). */
export function isImageManifestType(mediaType: string | undefined): boolean {
  return mediaType !== undefined && IMAGE_MANIFEST_TYPES.has(mediaType);
}

/** Whether a descriptor is an image index / manifest list (by media type). */
export function isIndexType(mediaType: string | undefined): boolean {
  return mediaType !== undefined && INDEX_TYPES.has(mediaType);
}

/**
 * The name an index entry carries: the containerd name, else a ref.name that
 * is a whole reference. A ref.name with neither `:` nor `/` (`latest`, `1.0`)
 * is the bare tag skopeo and umoci write for `oci:DIR:TAG`, which names no
 * repository, so such an entry has no name here (it is still kept).
 */
export function entryName(entry: Descriptor): EntryName | undefined {
  const annotations = entry.annotations ?? {};
  const refName = annotations[Annotation.RefName];
  const candidates = [annotations[Annotation.ContainerdImageName], refName !== undefined && /[:/@]/.test(refName) ? refName : undefined];
  for (const text of candidates) {
    if (text === undefined) continue;
    try {
      const ref = parseReference(text);
      return { ref, kind: ref.digest !== undefined ? 'digest' : 'tag' };
    } catch {
      // A bare tag ("latest") or another tool's naming: not a name strata can use.
    }
  }
  return undefined;
}

/** Whether an entry is a buildx attestation manifest rather than an image. */
function isAttestation(desc: Descriptor): boolean {
  return (
    desc.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' ||
    (desc.platform?.os === 'unknown' && desc.platform?.architecture === 'unknown')
  );
}

/** Checks the shape of a parsed manifest or index document. */
export function parseManifestDocument(raw: unknown, digest: string): AnyManifest {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new InvalidManifestError(`manifest ${digest} is not a JSON object`);
  const doc = raw as Record<string, unknown>;
  if (doc.schemaVersion !== 2) throw new InvalidManifestError(`manifest ${digest} has schemaVersion ${JSON.stringify(doc.schemaVersion)}, expected 2`);
  const checkDescriptor = (d: unknown, where: string): void => {
    const desc = d as Record<string, unknown>;
    if (typeof d !== 'object' || d === null || typeof desc.mediaType !== 'string' || typeof desc.size !== 'number' || !Number.isSafeInteger(desc.size) || desc.size < 0) {
      throw new InvalidManifestError(`manifest ${digest}: ${where} is not a valid descriptor`);
    }
    try {
      parseDigest(desc.digest);
    } catch (err) {
      throw new InvalidManifestError(`manifest ${digest}: ${where}: ${(err as Error).message}`);
    }
  };
  if (Array.isArray(doc.manifests)) {
    doc.manifests.forEach((d, i) => checkDescriptor(d, `manifests[${i}]`));
    return doc as unknown as ImageIndex;
  }
  if (doc.config !== undefined || doc.layers !== undefined) {
    checkDescriptor(doc.config, 'config');
    if (!Array.isArray(doc.layers)) throw new InvalidManifestError(`manifest ${digest}: layers is not an array`);
    doc.layers.forEach((d, i) => checkDescriptor(d, `layers[${i}]`));
    return doc as unknown as ImageManifest;
  }
  throw new InvalidManifestError(`manifest ${digest} is neither an image manifest nor an index`);
}

function isIndexDocument(doc: AnyManifest): doc is ImageIndex {
  return Array.isArray((doc as ImageIndex).manifests);
}

function shortId(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 12);
}

/** Docker's isSingleReference: at most one tag, and every name in one repository. */
function isSingleReference(names: EntryName[]): boolean {
  if (names.length <= 1) return names.length === 1;
  let single: EntryName | undefined;
  const digestRepos = new Set<string>();
  for (const n of names) {
    if (n.kind === 'digest') digestRepos.add(n.ref.name);
    else if (single === undefined) single = n;
    else return false;
  }
  single ??= names[0]!;
  return digestRepos.size === 1 && digestRepos.has(single.ref.name);
}

/** The image store over a strata root. Open with {@link ImageStore.open}. */
export class ImageStore {
  private readonly documents = new Map<Digest, AnyManifest>();
  private readonly configs = new Map<Digest, ImageConfig>();
  private readonly layerSizes = new Map<Digest, number>();

  private constructor(
    /** Absolute root path. */
    readonly root: string,
    /** The blobs. */
    readonly content: ContentStore,
    /** Facts about layer blobs (diffId, sizes, chain). */
    readonly layers: LayerRecords,
  ) {}

  /** Opens (creating if needed) the store at `root`. */
  static async open(root: string): Promise<ImageStore> {
    const content = await ContentStore.open(root);
    return new ImageStore(content.root, content, new LayerRecords(content.root));
  }

  /** Path of index.json. */
  get indexPath(): string {
    return join(this.root, 'index.json');
  }

  // ------------------------------------------------------------ index.json

  /** Reads and checks index.json. */
  async readIndex(): Promise<ImageIndex> {
    // Read on every lookup and tag: synchronously, as a pool round trip costs more.
    const text = readFileOrUndefined(this.indexPath)?.toString('utf8');
    if (text === undefined) return { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] };
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new InvalidManifestError(`${this.indexPath} is not valid JSON: ${(err as Error).message}`);
    }
    const doc = parseManifestDocument(raw, this.indexPath);
    if (!isIndexDocument(doc)) throw new InvalidManifestError(`${this.indexPath} is not an image index`);
    return doc;
  }

  /** The entries of index.json (one per name, plus one per dangling image). */
  async entries(): Promise<Descriptor[]> {
    return (await this.readIndex()).manifests;
  }

  /** Runs `change` on index.json under the store lock and writes the result if it changed. */
  private async mutateIndex<T>(change: (index: ImageIndex) => Promise<T>): Promise<T> {
    return withLock(this.root, STORE_LOCK, async () => {
      const index = await this.readIndex();
      const before = JSON.stringify(index);
      const result = await change(index);
      if (JSON.stringify(index) !== before) await writeJsonAtomic(this.indexPath, index);
      return result;
    });
  }

  // ------------------------------------------------------------ documents

  /** Reads a manifest or index blob (cached: blobs never change). */
  async readDocument(digest: Digest): Promise<AnyManifest> {
    const cached = this.documents.get(digest);
    if (cached) return cached;
    const doc = parseManifestDocument(await this.content.readJson(digest), digest);
    this.documents.set(digest, doc);
    return doc;
  }

  /** Reads an image manifest blob. */
  async readManifest(digest: Digest): Promise<ImageManifest> {
    const doc = await this.readDocument(digest);
    if (isIndexDocument(doc)) throw new InvalidManifestError(`${digest} is an index, not an image manifest`);
    return doc;
  }

  /** Reads and validates a config blob (cached). */
  async readConfig(digest: Digest): Promise<ImageConfig> {
    const cached = this.configs.get(digest);
    if (cached) return cached;
    const raw = await this.content.readJson(digest);
    let config: ImageConfig;
    try {
      config = parseImageConfig(raw);
    } catch (err) {
      throw new InvalidManifestError(`config ${digest}: ${(err as Error).message}`);
    }
    this.configs.set(digest, config);
    return config;
  }

  /**
   * The image manifest an index.json entry stands for: itself, or for a
   * multi-platform index the manifest for `platform` (default: the host's,
   * else the first one present).
   */
  async selectManifest(entry: Descriptor, options: ResolveOptions = {}, depth = 0): Promise<{ digest: Digest; manifest: ImageManifest }> {
    const digest = parseDigest(entry.digest);
    const doc = await this.readDocument(digest);
    if (!isIndexDocument(doc)) return { digest, manifest: doc };
    if (depth >= MAX_INDEX_DEPTH) throw new InvalidManifestError(`index ${digest} nests more than ${MAX_INDEX_DEPTH} levels deep`);
    const candidates: Descriptor[] = [];
    for (const child of doc.manifests) {
      if (isAttestation(child)) continue;
      if (!isImageManifestType(child.mediaType) && !isIndexType(child.mediaType)) continue;
      if (await this.content.has(child.digest)) candidates.push(child);
    }
    const wanted = options.platform ?? hostPlatform();
    const matching = candidates.find((c) => c.platform !== undefined && platformMatches(c.platform, wanted));
    const chosen = matching ?? (options.platform ? undefined : candidates[0]);
    if (!chosen) {
      if (options.platform) throw new NoMatchingPlatformError(options.platform);
      throw new IncompleteImageError(`index ${digest} has no image manifest in the content store`);
    }
    return this.selectManifest(chosen, options, depth + 1);
  }

  /** The image ID (config digest) an entry resolves to. */
  private async imageIdOf(entry: Descriptor, options: ResolveOptions = {}): Promise<Digest> {
    const { manifest } = await this.selectManifest(entry, options);
    return parseDigest(manifest.config.digest);
  }

  // ------------------------------------------------------------ resolving

  /**
   * Finds the entry a user's string means, Docker's way: a full image ID
   * (`sha256:<hex>` or 64 hex), else a name (tag or digest reference), else an
   * unambiguous prefix of an image ID (with or without `sha256:`).
   */
  private async find(index: ImageIndex, input: string, options: ResolveOptions): Promise<{ id: Digest; entry: Descriptor; name?: EntryName }> {
    const full = /^(?:sha256:)?([a-f0-9]{64})$/.exec(input);
    if (full) {
      const id = `sha256:${full[1]}` as Digest;
      for (const entry of index.manifests) {
        if ((await this.tryImageId(entry, options)) === id) return { id, entry };
      }
      throw new ImageNotFoundError(input);
    }
    let ref: Reference | undefined;
    try {
      ref = parseReference(input);
    } catch (err) {
      // "sha256:<prefix>" parses as a name; other unparsable strings are errors.
      if (!(err instanceof InvalidReferenceError) || !HEX_PREFIX_RE.test(input)) throw err;
    }
    if (ref) {
      const byName = this.findByName(index, ref);
      if (byName) return { id: await this.imageIdOf(byName.entry, options), entry: byName.entry, name: byName.name };
    }
    const prefix = HEX_PREFIX_RE.exec(input)?.[1];
    if (prefix !== undefined) {
      const matches = new Map<Digest, Descriptor>();
      for (const entry of index.manifests) {
        const id = await this.tryImageId(entry, options);
        if (id !== undefined && id.startsWith(`sha256:${prefix}`) && !matches.has(id)) matches.set(id, entry);
      }
      if (matches.size > 1) throw new AmbiguousImageError(input, [...matches.keys()]);
      const [only] = matches;
      if (only) return { id: only[0], entry: only[1] };
    }
    throw new ImageNotFoundError(ref ? ref.familiar() : input);
  }

  private findByName(index: ImageIndex, ref: Reference): { entry: Descriptor; name: EntryName } | undefined {
    const wanted = ref.digest !== undefined ? ref.repository().withDigest(ref.digest).toString() : ref.toString();
    for (const entry of index.manifests) {
      const name = entryName(entry);
      if (name && name.ref.toString() === wanted) return { entry, name };
    }
    if (ref.digest !== undefined) {
      // A digest reference also finds a manifest tagged in the same repository,
      // as a registry would serve it.
      for (const entry of index.manifests) {
        const name = entryName(entry);
        if (name && entry.digest === ref.digest && name.ref.name === ref.name) return { entry, name: { ref: ref.repository().withDigest(ref.digest), kind: 'digest' } };
      }
    }
    return undefined;
  }

  /** imageIdOf, or undefined for an entry whose blobs are missing or broken (fsck reports those). */
  private async tryImageId(entry: Descriptor, options: ResolveOptions): Promise<Digest | undefined> {
    try {
      return await this.imageIdOf(entry, options);
    } catch {
      return undefined;
    }
  }

  /** Groups every entry by the image ID it resolves to. */
  private async group(index: ImageIndex, options: ResolveOptions = {}): Promise<Map<Digest, Descriptor[]>> {
    const groups = new Map<Digest, Descriptor[]>();
    for (const entry of index.manifests) {
      const id = await this.tryImageId(entry, options);
      if (id === undefined) continue;
      const list = groups.get(id) ?? [];
      list.push(entry);
      groups.set(id, list);
    }
    return groups;
  }

  /**
   * Resolves a reference, a full image ID or a unique ID prefix to an image.
   *
   * @throws ImageNotFoundError, AmbiguousImageError, InvalidReferenceError,
   *   NoMatchingPlatformError, or BlobNotFoundError for a broken image.
   */
  async resolve(refOrId: string, options: ResolveOptions = {}): Promise<ResolvedImage> {
    const index = await this.readIndex();
    const found = await this.find(index, refOrId, options);
    return this.describe(index, found.id, found.entry, options);
  }

  private async describe(index: ImageIndex, id: Digest, entry: Descriptor, options: ResolveOptions): Promise<ResolvedImage> {
    const { digest: manifestDigest, manifest } = await this.selectManifest(entry, options);
    const config = await this.readConfig(parseDigest(manifest.config.digest));
    const siblings = (await this.group(index, options)).get(id) ?? [entry];
    const { repoTags, repoDigests, lastTagTime } = namesOf(siblings);
    const target: Descriptor = { mediaType: entry.mediaType, digest: parseDigest(entry.digest), size: entry.size };
    if (entry.platform) target.platform = entry.platform;
    // Copies: the cached documents must not change under a caller that edits its result.
    const resolved: ResolvedImage = { id, manifestDigest, manifest: structuredClone(manifest), config: structuredClone(config), repoTags, repoDigests, target };
    if (lastTagTime) resolved.lastTagTime = lastTagTime;
    return resolved;
  }

  /** Every image, one summary per image ID (tagged and dangling), newest first. */
  async list(): Promise<ImageSummary[]> {
    const index = await this.readIndex();
    const summaries: ImageSummary[] = [];
    for (const [id, entries] of await this.group(index)) {
      const { digest: manifestDigest, manifest } = await this.selectManifest(entries[0]!);
      let config: ImageConfig;
      try {
        config = await this.readConfig(id);
      } catch {
        continue;
      }
      const { repoTags, repoDigests, lastTagTime } = namesOf(entries);
      const platform: Platform = { architecture: config.architecture, os: config.os };
      if (config.variant) platform.variant = config.variant;
      const summary: ImageSummary = {
        id,
        manifestDigest,
        repoTags,
        repoDigests,
        size: await this.imageSize(manifest, config),
        labels: { ...(config.config?.Labels ?? {}) },
        platform,
      };
      if (config.created) summary.created = config.created;
      if (lastTagTime) summary.lastTagTime = lastTagTime;
      summaries.push(summary);
    }
    return summaries.sort((a, b) => (Date.parse(b.created ?? '') || 0) - (Date.parse(a.created ?? '') || 0));
  }

  // ------------------------------------------------------------ sizes

  /**
   * Uncompressed size of each layer of `manifest`: from the layer records
   * when known, else the blob size for uncompressed layers, else by streaming
   * the blob through a decompressor (remembered for this store object). Where
   * the runtime cannot decompress (zstd before Node 22.15) the compressed
   * size stands in.
   */
  async layerSizesOf(manifest: ImageManifest, config: ImageConfig): Promise<number[]> {
    const sizes: number[] = [];
    for (const [i, layer] of manifest.layers.entries()) {
      sizes.push(await this.uncompressedSize(layer, config.rootfs.diff_ids[i]));
    }
    return sizes;
  }

  /** Docker's image size: the sum of its layers' uncompressed sizes. */
  async imageSize(manifest: ImageManifest, config: ImageConfig): Promise<number> {
    return (await this.layerSizesOf(manifest, config)).reduce((a, b) => a + b, 0);
  }

  private async uncompressedSize(layer: Descriptor, diffId: Digest | undefined): Promise<number> {
    const digest = parseDigest(layer.digest);
    const known = this.layerSizes.get(digest);
    if (known !== undefined) return known;
    let size: number | undefined;
    if (diffId !== undefined) {
      const record = await this.layers.findByDiffId(diffId).catch(() => undefined);
      if (record) size = record.uncompressedSize;
    }
    const compression = compressionOfMediaType(layer.mediaType);
    if (size === undefined && compression === 'none') size = layer.size;
    if (size === undefined && compression !== undefined && (await this.content.has(digest))) {
      try {
        let total = 0;
        await pipeline(
          this.content.createReadStream(digest, { verify: false }),
          createDecompressor(compression),
          new Writable({
            write(chunk: Buffer, _encoding, done) {
              total += chunk.length;
              done();
            },
          }),
        );
        size = total;
      } catch {
        // Cannot decompress here; fall through to the compressed size.
      }
    }
    size ??= layer.size;
    this.layerSizes.set(digest, size);
    return size;
  }

  // ------------------------------------------------------------ completeness

  /**
   * Checks that every blob `desc` needs is present with the declared size:
   * for a manifest its config and layers; for an index every child present
   * must be complete, missing children are allowed (a partial multi-platform
   * image) but at least one image must be complete. Foreign layers (with
   * `urls`) may be absent.
   */
  async checkComplete(desc: Descriptor, depth = 0): Promise<void> {
    const digest = parseDigest(desc.digest);
    await this.checkBlob(digest, desc.size, 'manifest');
    let doc: AnyManifest;
    try {
      doc = await this.readDocument(digest);
    } catch (err) {
      if (err instanceof StrataError) throw err;
      throw new InvalidManifestError(`manifest ${digest}: ${(err as Error).message}`);
    }
    if (isIndexDocument(doc)) {
      if (depth >= MAX_INDEX_DEPTH) throw new InvalidManifestError(`index ${digest} nests more than ${MAX_INDEX_DEPTH} levels deep`);
      let complete = 0;
      for (const child of doc.manifests) {
        if (!isImageManifestType(child.mediaType) && !isIndexType(child.mediaType)) continue;
        if (!(await this.content.has(child.digest))) continue;
        await this.checkComplete(child, depth + 1);
        if (!isAttestation(child)) complete++;
      }
      if (complete === 0) throw new IncompleteImageError(`index ${digest} has no complete image manifest in the content store`);
      return;
    }
    if (desc.mediaType && !isImageManifestType(desc.mediaType) && !isIndexType(desc.mediaType)) {
      throw new InvalidManifestError(`unsupported manifest media type ${desc.mediaType} for ${digest}`);
    }
    await this.checkBlob(parseDigest(doc.config.digest), doc.config.size, 'config');
    await this.readConfig(parseDigest(doc.config.digest));
    const config = this.configs.get(parseDigest(doc.config.digest))!;
    if (config.rootfs.diff_ids.length !== doc.layers.length) {
      throw new InvalidManifestError(`manifest ${digest} has ${doc.layers.length} layers but its config lists ${config.rootfs.diff_ids.length} diff_ids`);
    }
    for (const layer of doc.layers) {
      if (layer.urls && layer.urls.length > 0 && !(await this.content.has(layer.digest))) continue;
      await this.checkBlob(parseDigest(layer.digest), layer.size, 'layer');
    }
  }

  private async checkBlob(digest: Digest, size: number, what: string): Promise<void> {
    const actual = await this.content.size(digest);
    if (actual === undefined) throw new IncompleteImageError(`${what} blob ${digest} is not in the content store`);
    if (actual !== size) throw new IncompleteImageError(`${what} blob ${digest} is ${actual} bytes, but its descriptor says ${size}`);
  }

  // ------------------------------------------------------------ naming

  /**
   * Adds an image (whose blobs must already be stored, e.g. by `writeImage`
   * under a lease) with the given names. Tags move from any image that had
   * them, which is left dangling if that was its last name. A digest
   * reference must name this very manifest. With no names the image is kept
   * dangling unless it is already in the index.
   *
   * Completeness is checked under the store lock, so no gc can remove a blob
   * between the check and the index update.
   */
  async addImage(manifest: Descriptor, refs: Reference[]): Promise<ResolvedImage> {
    const target: Descriptor = { mediaType: manifest.mediaType, digest: parseDigest(manifest.digest), size: manifest.size };
    if (manifest.platform) target.platform = manifest.platform;
    for (const ref of refs) {
      if (ref.digest !== undefined && ref.digest !== target.digest) {
        throw new ImageConflictError(`reference ${ref.familiar()} names manifest ${ref.digest}, not ${target.digest}`);
      }
    }
    const index = await this.mutateIndex(async (index) => {
      await this.checkComplete(target);
      const now = new Date().toISOString();
      for (const ref of refs) {
        const name = ref.digest !== undefined ? ref.repository().withDigest(ref.digest) : ref;
        await this.setName(index, name, target, now);
      }
      if (!index.manifests.some((e) => e.digest === target.digest)) index.manifests.push({ ...target });
      return index;
    });
    return this.describe(index, await this.imageIdOf(target), target, {});
  }

  /**
   * Gives `target` the tag `targetRef`, like `docker tag`. `source` is a
   * reference, an image ID or an ID prefix. Returns the image tagged.
   */
  async tag(source: string, targetRef: string | Reference): Promise<ResolvedImage> {
    const ref = typeof targetRef === 'string' ? parseReference(targetRef) : targetRef;
    if (ref.digest !== undefined) throw new InvalidReferenceError('refusing to create a tag with a digest reference', ref.toString());
    const { index, id, entry } = await this.mutateIndex(async (index) => {
      const found = await this.find(index, source, {});
      const target: Descriptor = { mediaType: found.entry.mediaType, digest: parseDigest(found.entry.digest), size: found.entry.size };
      if (found.entry.platform) target.platform = found.entry.platform;
      await this.setName(index, ref, target, new Date().toISOString());
      return { index, id: found.id, entry: target };
    });
    return this.describe(index, id, entry, {});
  }

  /**
   * Removes one name (tag or digest reference). The image stays, dangling if
   * that was its last name; see {@link remove} for Docker's `rmi`.
   * Resolves to the image ID the name pointed at.
   */
  async untag(refText: string | Reference): Promise<Digest> {
    const ref = typeof refText === 'string' ? parseReference(refText) : refText;
    return this.mutateIndex(async (index) => {
      const found = this.findByName(index, ref);
      if (!found) throw new ImageNotFoundError(ref.familiar());
      const id = await this.imageIdOf(found.entry);
      this.dropName(index, found.name.ref.toString());
      return id;
    });
  }

  /** Sets `name` on `target`, dropping it from any other entry; tidies dangling entries. */
  private async setName(index: ImageIndex, name: Reference, target: Descriptor, now: string): Promise<void> {
    const full = name.toString();
    this.dropName(index, full);
    const annotations: Record<string, string> = { [Annotation.ContainerdImageName]: full };
    if (name.digest === undefined) annotations[Annotation.RefName] = name.familiar();
    annotations[LAST_TAG_TIME_ANNOTATION] = now;
    index.manifests = index.manifests.filter((e) => !(e.digest === target.digest && entryName(e) === undefined && !hasForeignName(e)));
    index.manifests.push({ ...target, annotations });
  }

  /** Removes the entry called `full`; keeps its image as a dangling entry if nothing else names it. */
  private dropName(index: ImageIndex, full: string): void {
    const at = index.manifests.findIndex((e) => entryName(e)?.ref.toString() === full);
    if (at === -1) return;
    const [removed] = index.manifests.splice(at, 1);
    if (!index.manifests.some((e) => e.digest === removed!.digest)) {
      const dangling: Descriptor = { mediaType: removed!.mediaType, digest: removed!.digest, size: removed!.size };
      if (removed!.platform) dangling.platform = removed!.platform;
      index.manifests.push(dangling);
    }
  }

  // ------------------------------------------------------------ rmi

  /**
   * Docker's `rmi`. By name: removes that name (and, when it was the
   * repository's last tag, the repository's digest references); the image is
   * deleted once no name is left. By ID: an image with at most one tag (all
   * names in one repository) loses its names and is deleted; one named in
   * several repositories needs `force`. A container using the image blocks
   * removal of its last name without `force`, and a running one blocks it
   * altogether. Deleting drops the image from index.json; its blobs are
   * reclaimed by the next {@link gc}.
   */
  async remove(refOrId: string, options: RemoveOptions = {}): Promise<RemoveResult> {
    const force = options.force ?? false;
    // The in-use hook runs without the lock (it may read the store); the
    // lookup is repeated under the lock, and must still find the same image.
    const before = await this.find(await this.readIndex(), refOrId, {});
    const use = options.isInUse ? normalizeUse(await options.isInUse(before.id)) : undefined;
    return this.mutateIndex(async (index) => {
      const found = await this.find(index, refOrId, {});
      if (found.id !== before.id) throw new ImageConflictError(`${refOrId} changed while it was being removed; try again`);
      const { id } = found;
      // Every entry of this image: its names, its dangling entry, and entries
      // of other manifests with the same config (hence the same image ID).
      const members = new Set((await this.group(index)).get(id) ?? [found.entry]);
      const names = (): EntryName[] =>
        index.manifests.filter((e) => members.has(e)).map(entryName).filter((n): n is EntryName => n !== undefined);
      const untagged: string[] = [];
      const drop = (name: EntryName): void => {
        const full = name.ref.toString();
        index.manifests = index.manifests.filter((e) => !(members.has(e) && entryName(e)?.ref.toString() === full));
        untagged.push(name.ref.familiar());
      };

      if (found.name) {
        const wanted = found.name.ref.toString();
        if (!force && use && isSingleReference(names())) {
          throw new ImageConflictError(
            `conflict: unable to remove repository reference "${refOrId}" (must force) - container ${shortId(use.containerId)} is using its referenced image ${shortId(id)}`,
          );
        }
        const exact = names().find((n) => n.ref.toString() === wanted);
        // A digest reference found only through a tag of its repository is not a name to remove.
        if (!exact) throw new ImageNotFoundError(found.name.ref.familiar());
        drop(exact);
        const repo = exact.ref.name;
        if (exact.kind === 'tag' && !names().some((n) => n.kind === 'tag' && n.ref.name === repo)) {
          // The repository's last tag is gone: its digest references go too.
          for (const n of names()) if (n.kind === 'digest' && n.ref.name === repo) drop(n);
        }
        if (names().length > 0) return { untagged, deleted: [] };
      } else if (isSingleReference(names())) {
        if (use && (use.running || !force)) throw conflictInUse(id, use);
        for (const n of names()) drop(n);
      }

      if (names().length > 0 && !force) {
        throw new ImageConflictError(`conflict: unable to delete ${shortId(id)} (must be forced) - image is referenced in multiple repositories`);
      }
      if (use && (use.running || !force)) throw conflictInUse(id, use);
      for (const n of names()) drop(n);
      index.manifests = index.manifests.filter((e) => !members.has(e));
      return { untagged, deleted: [id] };
    });
  }

  /**
   * Docker's `image prune`: deletes dangling images (no name at all), or with
   * `all` every image, that no container uses. Blobs go at the next gc.
   */
  async prune(options: { all?: boolean; isInUse?: RemoveOptions['isInUse'] } = {}): Promise<RemoveResult> {
    const candidates = new Set<Digest>();
    for (const [id, entries] of await this.group(await this.readIndex())) {
      if (!options.all && entries.some((e) => entryName(e) !== undefined || hasForeignName(e))) continue;
      if (options.isInUse && normalizeUse(await options.isInUse(id))) continue;
      candidates.add(id);
    }
    return this.mutateIndex(async (index) => {
      const result: RemoveResult = { untagged: [], deleted: [] };
      for (const [id, entries] of await this.group(index)) {
        if (!candidates.has(id)) continue;
        // A name given meanwhile saves a dangling image.
        if (!options.all && entries.some((e) => entryName(e) !== undefined || hasForeignName(e))) continue;
        for (const entry of entries) {
          const name = entryName(entry);
          if (name) result.untagged.push(name.ref.familiar());
        }
        const members = new Set(entries);
        index.manifests = index.manifests.filter((e) => !members.has(e));
        result.deleted.push(id);
      }
      return result;
    });
  }

  // ------------------------------------------------------------ maintenance

  /**
   * Garbage collection: see {@link collectGarbage}. Takes the store lock, so
   * it must not be called from code that holds it.
   */
  gc(): Promise<GcResult> {
    return collectGarbage(this);
  }

  /** Consistency check: see {@link checkStore}. Takes the store lock for its first phase. */
  fsck(options: FsckOptions = {}): Promise<FsckReport> {
    return checkStore(this, options);
  }
}

function normalizeUse(use: boolean | ImageUse | undefined): ImageUse | undefined {
  if (use === true) return { containerId: '', running: false };
  if (use === false || use === undefined) return undefined;
  return use;
}

function conflictInUse(id: Digest, use: ImageUse): ImageConflictError {
  const who = use.containerId ? ` ${shortId(use.containerId)}` : '';
  if (use.running) return new ImageConflictError(`conflict: unable to delete ${shortId(id)} (cannot be forced) - image is being used by running container${who}`);
  return new ImageConflictError(`conflict: unable to delete ${shortId(id)} (must be forced) - image is being used by stopped container${who}`);
}

/** An entry that carries a ref.name strata cannot parse (another tool's naming), which must not be treated as dangling. */
function hasForeignName(entry: Descriptor): boolean {
  return entry.annotations?.[Annotation.RefName] !== undefined || entry.annotations?.[Annotation.ContainerdImageName] !== undefined;
}

function namesOf(entries: Descriptor[]): { repoTags: string[]; repoDigests: string[]; lastTagTime?: string } {
  const repoTags: string[] = [];
  const repoDigests: string[] = [];
  let lastTagTime: string | undefined;
  for (const entry of entries) {
    const name = entryName(entry);
    if (!name) continue;
    const familiar = name.ref.familiar();
    const list = name.kind === 'tag' ? repoTags : repoDigests;
    if (!list.includes(familiar)) list.push(familiar);
    const time = entry.annotations?.[LAST_TAG_TIME_ANNOTATION];
    if (time && (lastTagTime === undefined || time > lastTagTime)) lastTagTime = time;
  }
  return lastTagTime ? { repoTags, repoDigests, lastTagTime } : { repoTags, repoDigests };
}
