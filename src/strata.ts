/**
 * The library facade: one object per store root that does what the `strata`
 * CLI does, each method a thin composition of the modules underneath
 * (content store, image store, layers, archives), which stay available as
 * {@link Strata.content} and {@link Strata.images} for anything finer.
 *
 * ```ts
 * const strata = await Strata.open({ root: '/var/lib/strata' });
 * const { id } = await strata.import({ dir: './rootfs' }, { ref: 'me/app:1.0' });
 * await strata.saveToFile(['me/app:1.0'], 'app.tar');
 * ```
 *
 * Extension points: image builds, containers and volumes are separate
 * subsystems over the same root; each adds its own methods here when it
 * exists, and keeps its blobs alive through `registerGcRoots` (image/gc.ts),
 * so {@link Strata.gc} and {@link Strata.rmi} never need to know about them.
 */
import { createWriteStream } from 'node:fs';
import { open, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Digest } from './content/digest.js';
import { StrataError } from './content/errors.js';
import type { ContentStore } from './content/store.js';
import { ContainerStore } from './container/container-store.js';
import { importImage, type ImportOptions, type ImportResult, type ImportSource } from './archive/import.js';
import { loadImages, type LoadedImage, type LoadOptions } from './archive/load.js';
import { saveImages, type SaveFormat, type SaveItem } from './archive/save.js';
import type { GcResult } from './image/gc.js';
import type { FsckOptions, FsckReport } from './image/fsck.js';
import { ImageStore, type ImageSummary, type RemoveResult, type ResolvedImage, type ResolveOptions } from './image/image-store.js';
import { MediaType, type Compression } from './image/mediatypes.js';
import { parseReference, type Reference } from './image/reference.js';
import { historyRows, inspectImage, type HistoryOptions, type HistoryRow, type ImageInspect } from './image/views.js';
import { exportLayer as exportStoredLayer } from './layer/export.js';
import { flattenLayers } from './tar/flatten.js';
import { fsyncDir, tempPathFor } from './util/atomic.js';
import { defaultRoot } from './util/root.js';

/** Options of {@link Strata.open}. */
export interface StrataOpenOptions {
  /**
   * The store root (created when missing). Default: {@link defaultRoot} —
   * `$STRATA_ROOT`, else `$XDG_DATA_HOME/strata`, else `~/.local/share/strata`.
   */
  root?: string;
}

/** Options of {@link Strata.save} and {@link Strata.saveToFile}. */
export interface StrataSaveOptions {
  /** `docker` (default: Docker 25's layout, readable by `docker load` and OCI tools) or `oci` (a plain OCI archive). */
  format?: SaveFormat;
  /** Called with the blob bytes written so far and the total to write. */
  onProgress?: (bytesWritten: number, bytesTotal: number) => void;
}

/** What {@link Strata.load} reads: a tar stream, a tar file, or an OCI layout / extracted archive directory. */
export type { LoadInput } from './archive/load.js';
import type { LoadInput } from './archive/load.js';

/** Options of {@link Strata.exportLayer}. */
export interface StrataExportLayerOptions {
  /** Compression of the bytes produced (default `none`: a plain tar). */
  compression?: Compression;
}

/** Options of {@link Strata.flatten}. */
export interface FlattenImageOptions {
  /** Clamp mtimes in the output to this (seconds since the epoch). */
  sourceDateEpoch?: number;
  /** For multi-platform images: which platform's filesystem (default: the host's, else the first). */
  platform?: ResolveOptions['platform'];
}

/** Options of {@link Strata.rmi}. */
export interface RmiOptions {
  /** Docker's `rmi -f`: remove an image even when several repositories name it. */
  force?: boolean;
  /** Collect garbage afterwards so the space is freed at once, as Docker does (default true). */
  gc?: boolean;
}

/** The outcome of removing one of the references given to {@link Strata.rmi}. */
export type RmiItem =
  | ({ ref: string; error?: undefined } & RemoveResult)
  | { ref: string; error: Error; untagged?: undefined; deleted?: undefined };

/** What {@link Strata.rmi} did. */
export interface RmiResult {
  /** One item per reference, in the order given; a failed one carries its error and the others still ran. */
  items: RmiItem[];
  /** The garbage collection that followed (absent with `gc: false`, or when it failed). */
  gc?: GcResult;
  /** Why that collection failed (the removals still stand; run fsck). */
  gcError?: Error;
}

const IMAGE_ID_RE = /^(?:sha256:)?[a-f0-9]{64}$/;

/**
 * Writes `source` to `path` atomically: into a temporary file beside it,
 * fsynced, then renamed over `path`. A reader never sees a partial file; on
 * any error (including a stream that fails at its end, as verified exports
 * do) the temporary file is removed and `path` is left as it was.
 */
export async function writeStreamToFile(source: NodeJS.ReadableStream, path: string, mode = 0o644): Promise<void> {
  const temp = tempPathFor(path);
  try {
    await pipeline(source, createWriteStream(temp, { flags: 'wx', mode }));
    // fsync through a second descriptor: the stream's own is closed by now, and the data belongs to the file either way.
    const handle = await open(temp, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (err) {
    (source as Readable).destroy?.();
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dirname(path));
}

/**
 * The references an input names, for saving: none when the image was given
 * by ID (or ID prefix), else the tag or digest reference typed, once it is
 * known to name the resolved image.
 */
function namesGiven(input: string, image: ResolvedImage): Reference[] {
  if (IMAGE_ID_RE.test(input)) return [];
  let ref: Reference;
  try {
    ref = parseReference(input);
  } catch {
    // "sha256:<prefix>" and other ID prefixes are not references.
    return [];
  }
  if (ref.digest !== undefined) {
    const named = image.repoDigests.includes(ref.familiar()) || image.manifestDigest === ref.digest || image.target.digest === ref.digest;
    return named ? [ref] : [];
  }
  return image.repoTags.includes(ref.familiar()) ? [ref] : [];
}

/** A strata store root: images, layers and blobs, with Docker's operations on them. */
export class Strata {
  private constructor(
    /** The image store (names, manifests, configs, layer records). */
    readonly images: ImageStore,
  ) {}

  /** Opens the store at `options.root` (default {@link defaultRoot}), creating it when missing. */
  static async open(options: StrataOpenOptions = {}): Promise<Strata> {
    return new Strata(await ImageStore.open(options.root ?? defaultRoot()));
  }

  /** Absolute path of the store root (itself a valid OCI image layout). */
  get root(): string {
    return this.images.root;
  }

  /** The content-addressed blob store. */
  get content(): ContentStore {
    return this.images.content;
  }

  /** Where temporary trees (flatten) are built: inside the root, so on the same file system, and outside anything gc or fsck scans. */
  private get scratchDir(): string {
    return join(this.root, 'strata', 'scratch');
  }

  // ------------------------------------------------------------ images in

  /**
   * `docker import`: a one-layer image from a directory, a tar file (plain,
   * gzip or zstd) or a tar stream. A string is a path to a directory or a tar file.
   */
  async import(source: ImportSource | string, opts: ImportOptions = {}): Promise<ImportResult> {
    if (typeof source === 'string') {
      if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) {
        throw new StrataError('UNSUPPORTED_SOURCE', `cannot import ${source}: importing from a URL is not supported; download it and import the file`);
      }
      const info = await stat(source);
      source = info.isDirectory() ? { dir: source } : { file: source };
    }
    return importImage(this.images, source, opts);
  }

  /**
   * `docker load`: every image of a docker-save archive (old or Docker 25+
   * form), an OCI archive, or an OCI layout directory. Names in the archive
   * move to the loaded images.
   */
  async load(input: LoadInput, opts: LoadOptions = {}): Promise<LoadedImage[]> {
    if ('dir' in input && typeof input.dir === 'string') return loadImages(this.images, { dir: input.dir }, opts);
    if ('file' in input && typeof input.file === 'string') {
      const info = await stat(input.file);
      if (info.isDirectory()) return loadImages(this.images, { dir: input.file }, opts);
      return loadImages(this.images, { file: input.file }, opts);
    }
    return loadImages(this.images, input as NodeJS.ReadableStream, opts);
  }

  // ------------------------------------------------------------ images out

  /**
   * What `save` writes for `refs`: each resolved (name, ID or ID prefix), an
   * image given by ID saved without names, a bare name meaning its `latest`
   * tag, and several references to one image merged into one item.
   *
   * @throws ImageNotFoundError (and the other resolve errors) for the first ref that does not resolve.
   */
  async saveItems(refs: readonly string[]): Promise<SaveItem[]> {
    if (refs.length === 0) throw new StrataError('NOTHING_TO_SAVE', 'no images to save: name at least one image');
    const items = new Map<Digest, SaveItem>();
    for (const input of refs) {
      const image = await this.images.resolve(input);
      let item = items.get(image.manifestDigest);
      if (!item) {
        const size = await this.content.size(image.manifestDigest);
        if (size === undefined) throw new StrataError('IMAGE_INCOMPLETE', `cannot save ${input}: manifest ${image.manifestDigest} is missing from the store`);
        const mediaType = image.manifest.mediaType ?? (image.target.digest === image.manifestDigest ? image.target.mediaType : MediaType.OciManifest);
        item = { id: image.id, manifest: { mediaType, digest: image.manifestDigest, size, manifest: image.manifest }, refs: [] };
        items.set(image.manifestDigest, item);
      }
      for (const ref of namesGiven(input, image)) {
        if (!item.refs.some((r) => r.equals(ref))) item.refs.push(ref);
      }
    }
    return [...items.values()];
  }

  /**
   * `docker save` as a stream. Resolution happens as the stream starts, so a
   * missing image is an error on the stream; call {@link saveItems} first,
   * and pass its items, to fail before writing anything.
   */
  save(refs: readonly string[] | SaveItem[], opts: StrataSaveOptions = {}): Readable {
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    const run = async (): Promise<void> => {
      const items = isSaveItems(refs) ? refs : await this.saveItems(refs);
      await pipeline(saveImages(this.content, items, opts), out);
    };
    run().catch((err: unknown) => out.destroy(err instanceof Error ? err : new Error(String(err))));
    return out;
  }

  /**
   * `docker save -o FILE`: resolves every ref first (nothing is written when
   * one is missing), then writes the archive atomically. Takes refs, or the
   * items {@link saveItems} resolved them to.
   */
  async saveToFile(refs: readonly string[] | SaveItem[], path: string, opts: StrataSaveOptions = {}): Promise<SaveItem[]> {
    const items = isSaveItems(refs) ? refs : await this.saveItems(refs);
    await writeStreamToFile(saveImages(this.content, items, opts), path);
    return items;
  }

  /**
   * One layer's tar, by layer blob digest, DiffID or ChainID, in the
   * compression asked for (default none). The bytes are verified as they
   * stream; a mismatch is an error at the end of the stream.
   */
  exportLayer(digestOrDiffId: string, opts: StrataExportLayerOptions = {}): Readable {
    return exportStoredLayer(this.content, digestOrDiffId, { compression: opts.compression ?? 'none', records: this.images.layers });
  }

  /**
   * The merged root filesystem of an image as one plain tar, as
   * `docker export` writes a container's (no whiteouts). Built in a scratch
   * directory inside the root, removed when the stream ends or is destroyed.
   */
  flatten(ref: string, opts: FlattenImageOptions = {}): Readable {
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    const run = async (): Promise<void> => {
      const image = await this.images.resolve(ref, opts.platform ? { platform: opts.platform } : {});
      const layers = image.manifest.layers.map((layer) => () => this.exportLayer(layer.digest, { compression: 'none' }));
      const tar = flattenLayers(layers, {
        scratchDir: this.scratchDir,
        ...(opts.sourceDateEpoch !== undefined ? { sourceDateEpoch: opts.sourceDateEpoch } : {}),
      });
      await pipeline(tar, out);
    };
    run().catch((err: unknown) => out.destroy(err instanceof Error ? err : new Error(String(err))));
    return out;
  }

  // ------------------------------------------------------------ looking

  /** Every image (tagged and dangling), newest first. */
  list(): Promise<ImageSummary[]> {
    return this.images.list();
  }

  /** `docker image inspect` of one image (name, ID or ID prefix). */
  async inspect(ref: string): Promise<ImageInspect> {
    return inspectImage(this.images, await this.images.resolve(ref));
  }

  /** `docker history`: one row per history entry, newest first, sizes from the layers. */
  async history(ref: string, opts: Omit<HistoryOptions, 'layerSizes' | 'imageId'> = {}): Promise<HistoryRow[]> {
    const image = await this.images.resolve(ref);
    const layerSizes = await this.images.layerSizesOf(image.manifest, image.config);
    return historyRows(image.config, image.manifest, { ...opts, layerSizes, imageId: image.id });
  }

  // ------------------------------------------------------------ names

  /** `docker tag`: gives the image `source` names the tag `target`. */
  tag(source: string, target: string): Promise<ResolvedImage> {
    return this.images.tag(source, target);
  }

  /**
   * `docker rmi` of each ref in turn (a failure is recorded and the rest
   * still run), then a garbage collection so the space is freed at once.
   * Never throws for one ref or for the collection: look at each item's
   * `error` and at `gcError`.
   */
  async rmi(refs: readonly string[], opts: RmiOptions = {}): Promise<RmiResult> {
    const items: RmiItem[] = [];
    // Docker refuses to remove an image a container uses ("conflict: unable to remove repository reference").
    const containers = await ContainerStore.open(this.root, { images: this.images });
    const isInUse = (imageId: Digest) => containers.isInUse(imageId);
    for (const ref of refs) {
      try {
        items.push({ ref, ...(await this.images.remove(ref, { force: opts.force ?? false, isInUse })) });
      } catch (err) {
        items.push({ ref, error: err instanceof Error ? err : new Error(String(err)) });
      }
    }
    const result: RmiResult = { items };
    if (opts.gc ?? true) {
      try {
        result.gc = await this.gc();
      } catch (err) {
        result.gcError = err instanceof Error ? err : new Error(String(err));
      }
    }
    return result;
  }

  // ------------------------------------------------------------ maintenance

  /** Removes every blob nothing references (see `collectGarbage`). */
  gc(): Promise<GcResult> {
    return this.images.gc();
  }

  /** Verifies every blob and record; see `checkStore`. Changes nothing. */
  fsck(opts: FsckOptions = {}): Promise<FsckReport> {
    return this.images.fsck(opts);
  }
}

function isSaveItems(value: readonly string[] | SaveItem[]): value is SaveItem[] {
  return value.length > 0 && typeof value[0] !== 'string';
}
