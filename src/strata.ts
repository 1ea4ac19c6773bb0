/**
 * The library facade: one object per store root that does what the `strata`
 * CLI does, each method a thin composition of the modules underneath.
 *
 * ```ts
 * const strata = await Strata.open({ root: '/var/lib/strata' });
 * const { id } = await strata.import({ dir: './rootfs' }, { ref: 'me/app:1.0' });
 * await strata.saveToFile(['me/app:1.0'], 'app.tar');
 * ```
 *
 * Three stores share the root, and stay available for anything finer:
 * {@link Strata.images} (names, manifests, layers, blobs through
 * {@link Strata.content}), {@link Strata.containers} (each container's
 * copy-on-write layer over its image's shared read-only ones) and
 * {@link Strata.volumes} (named directories that outlive containers). The
 * methods here are Docker's verbs on them:
 *
 * - images: `build`, `import`, `load`, `save`, `tag`, `inspect`, `history`, `rmi`, …
 * - containers: `createContainer`, `start`, `run`, `removeContainer`,
 *   `container`, `listContainers`, `diff`, `commit`, `exportContainer`,
 *   `copyFromContainer`, `copyToContainer`, and `containerFs` for the
 *   file-system API. A container is named by its name, ID or ID prefix, or
 *   given as the {@link Container} one of them returned.
 * - volumes: the {@link VolumeStore} itself (`strata.volumes.create(…)`), told
 *   which containers use which volume, so an in-use volume cannot be removed.
 *
 * ```ts
 * await strata.build({ contextDir: './app', tags: ['me/app:1.0'] });
 * const { exitCode, container } = await strata.run('me/app:1.0', { cmd: ['sh', '-c', 'echo hi > /greeting'] });
 * await strata.commit(container, { ref: 'me/app:greeted' });
 * ```
 *
 * Builds and containers keep what they use alive through `registerGcRoots`
 * (image/gc.ts): importing this module imports theirs, so {@link Strata.gc}
 * keeps cached build layers and the images of existing containers.
 */
import { createWriteStream } from 'node:fs';
import { open, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PassThrough, Transform, pipeline as pipelineCallback, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Digest } from './content/digest.js';
import { StrataError } from './content/errors.js';
import type { ContentStore } from './content/store.js';
// The build engine imports the build cache, whose layers are gc roots from then on.
import { build, type BuildOptions, type BuildResult } from './build/engine.js';
import { commit, type CommitOptions, type Pauser } from './container/commit.js';
import { Container, ContainerStateError, ContainerStore, type ListContainersOptions } from './container/container-store.js';
import { copyFromContainer, copyToContainer, type CopyFromOptions, type CopySource, type CopyToOptions } from './container/cp.js';
import { diff, type Change } from './container/diff.js';
import { exportContainer, type ExportOptions as ContainerExportOptions } from './container/export.js';
import { ContainerFs } from './container/fs.js';
import { openVolumeStore } from './container/mounts.js';
import {
  createContainer,
  removeContainer,
  runContainer,
  runtimePauser,
  startContainer,
  type ContainerCreateOptions,
  type RemoveContainerOptions,
  type RunContainerOptions,
  type RunContainerResult,
  type StartOptions,
  type StartResult,
} from './container/run.js';
import type { VolumeStore } from './volume/volume-store.js';
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

/**
 * A container as the container methods take it: its name, full ID or ID
 * prefix, or the {@link Container} a container method returned (read again,
 * since its state may have changed since).
 */
export type ContainerRef = string | Container;

/**
 * A strata store root: images, containers and volumes, with Docker's
 * operations on them.
 */
export class Strata {
  private constructor(
    /** The image store (names, manifests, configs, layer records). */
    readonly images: ImageStore,
    /** The container store (records, upper dirs), sharing {@link Strata.images}. */
    readonly containers: ContainerStore,
    /**
     * The volumes (`docker volume`): create, list, inspect, remove, prune,
     * export and import. It knows which containers use a volume, so removing
     * or pruning never takes one that is in use.
     */
    readonly volumes: VolumeStore,
  ) {}

  /** Opens the store at `options.root` (default {@link defaultRoot}), creating it when missing. */
  static async open(options: StrataOpenOptions = {}): Promise<Strata> {
    const images = await ImageStore.open(options.root ?? defaultRoot());
    const containers = await ContainerStore.open(images.root, { images });
    return new Strata(images, containers, await openVolumeStore(containers));
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
   * `docker build` (the classic builder): an image from a Dockerfile and a
   * context directory, one diff layer per step that changes the file system,
   * each step cached by content. `RUN` steps need root, overlayfs and an OCI
   * runtime; everything else runs anywhere. Progress is written to
   * `opts.output` when given.
   *
   * @throws DockerfileError for a Dockerfile Docker would refuse (with its line), before anything runs
   * @throws BuildError for a step that fails, with Docker's message and the step's number and line
   */
  build(opts: BuildOptions): Promise<BuildResult> {
    return build({ content: this.content, images: this.images, root: this.root }, opts);
  }

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
    const isInUse = (imageId: Digest) => this.containers.isInUse(imageId);
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

  // ------------------------------------------------------------ containers

  /**
   * `docker create`: a container from an image, nothing copied from it. Its
   * mounts are resolved now (named volumes created when missing, anonymous
   * ones for the image's `VOLUME`s, empty volumes filled from the image).
   * Parse `-v`/`--mount` strings with `parseVolumeFlag`/`parseMountFlag`.
   *
   * @throws StrataError `No command specified` when neither the image nor `opts` give one
   * @throws ContainerNameConflictError, MountSpecError, ImageNotFoundError
   */
  createContainer(image: string, opts: ContainerCreateOptions = {}): Promise<Container> {
    return createContainer(this.containers, this.volumes, image, opts);
  }

  /**
   * `docker start -a`: runs the container's process under the OCI runtime
   * (runc, else crun) over an overlay mount and waits for it; its exit is
   * recorded and the file system unmounted, whatever happens. Output goes to
   * `opts.stdout`/`opts.stderr` (default: this process's).
   *
   * @throws RuntimeUnavailableError (one line saying what is missing) without root, cgroups, overlayfs or a runtime
   * @throws ContainerStateError when it is already running
   * @throws ContainerRuntimeError when the runtime cannot start the process (`exitCode` 127, 126 or 125, as docker run)
   */
  async start(container: ContainerRef, opts: StartOptions = {}): Promise<StartResult> {
    return startContainer(await this.container(container), opts);
  }

  /**
   * `docker run` (attached): {@link Strata.createContainer}, then {@link Strata.start}.
   * With `autoRemove` (`--rm`) the container and its anonymous volumes are
   * removed afterwards, whether the process ran or could not start.
   */
  run(image: string, opts: RunContainerOptions = {}): Promise<RunContainerResult> {
    return runContainer(this.containers, this.volumes, image, opts);
  }

  /**
   * `docker rm`: the container's record and changes go; a running one only
   * with `force` (which kills it). With `volumes`, its anonymous volumes go
   * too unless another container uses them; named volumes always stay.
   */
  async removeContainer(container: ContainerRef, opts: RemoveContainerOptions = {}): Promise<void> {
    await removeContainer(this.containers, this.volumes, typeof container === 'string' ? container : container.id, opts);
  }

  /**
   * One container, by name, ID or ID prefix (or the object, read again).
   *
   * @throws ContainerNotFoundError, AmbiguousContainerError
   */
  container(container: ContainerRef): Promise<Container> {
    return this.containers.get(typeof container === 'string' ? container : container.id);
  }

  /** `docker ps`: containers, newest first; running ones only unless `all`. */
  listContainers(opts: ListContainersOptions = {}): Promise<Container[]> {
    return this.containers.list(opts);
  }

  /**
   * `docker diff`: the paths the container added (`A`), changed (`C`) or
   * deleted (`D`), directory by directory in a stable order; volume content
   * is not part of it. `formatChanges` prints them as docker does.
   */
  async diff(container: ContainerRef): Promise<Change[]> {
    return diff(await this.container(container));
  }

  /**
   * `docker commit`: a new image, the container's image plus one layer of
   * what the container changed (none when nothing did), with `changes`
   * applied to its config, tagged `ref` if given. A running container is
   * frozen with its runtime's `pause` meanwhile unless `pause: false`.
   */
  async commit(container: ContainerRef, opts: CommitOptions = {}): Promise<ResolvedImage> {
    const found = await this.container(container);
    const pauser = await this.pauserFor(found, opts);
    return commit(found, pauser ? { ...opts, pauser } : opts);
  }

  /**
   * `docker export`: the container's whole file system as one plain tar (no
   * layers, no whiteouts, no volume content), streamed from its merged view.
   * A container that cannot be found is an error on the stream; look it up
   * with {@link Strata.container} first to fail earlier.
   */
  exportContainer(container: ContainerRef, opts: ContainerExportOptions = {}): Readable {
    if (typeof container !== 'string') return exportContainer(container, opts);
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    const run = async (): Promise<void> => {
      await pipeline(exportContainer(await this.container(container), opts), out);
    };
    run().catch((err: unknown) => out.destroy(err instanceof Error ? err : new Error(String(err))));
    return out;
  }

  /**
   * `docker cp CONTAINER:PATH -`: `path` (a file, a directory with its
   * contents, or `dir/.` for the contents alone) as a tar. Rejects before
   * any data for a missing path, with Docker's "Could not find the file". A
   * running container is paused while the tar is read unless `pause: false`,
   * and runs again by the time the stream ends.
   */
  async copyFromContainer(container: ContainerRef, path: string, opts: CopyFromOptions = {}): Promise<Readable> {
    const found = await this.container(container);
    const pauser = await this.pauserFor(found, opts);
    if (!pauser) return copyFromContainer(found, path, opts);
    // The container is resumed once the tar has been read; the stream ends
    // only after that, so a caller can pause it again (another cp) at once.
    let resumed!: () => void;
    const resumeDone = new Promise<void>((resolve) => (resumed = resolve));
    const tracked: Pauser = {
      pause: () => pauser.pause(),
      resume: () => pauser.resume().finally(resumed),
    };
    const tar = await copyFromContainer(found, path, { ...opts, pauser: tracked });
    const out = new Transform({
      highWaterMark: 1 << 20,
      transform: (chunk: Buffer, _encoding, callback) => callback(null, chunk),
      flush: (callback) => void resumeDone.then(() => callback()),
    });
    // Either end failing or being destroyed (a reader that gives up) ends the other, which resumes the container.
    pipelineCallback(tar, out, () => undefined);
    return out;
  }

  /**
   * `docker cp SRC CONTAINER:PATH`: a tar stream, or a host file or
   * directory (`{ hostPath }`), into the container's file system, by
   * Docker's rules for where things land. A running container is paused
   * meanwhile unless `pause: false`.
   */
  async copyToContainer(container: ContainerRef, path: string, source: CopySource, opts: CopyToOptions = {}): Promise<void> {
    const found = await this.container(container);
    const pauser = await this.pauserFor(found, opts);
    await copyToContainer(found, path, source, pauser ? { ...opts, pauser } : opts);
  }

  /**
   * The copy-on-write file-system API of a container (`readFile`,
   * `writeFile`, `mkdir`, `rm`, `rename`, …, on container paths), writing in
   * overlayfs format so that a process in the container, {@link Strata.diff} and
   * {@link Strata.commit} see exactly what it did. Hold `container.withLock` around
   * changes when other strata processes may touch the same container, and
   * open a fresh one after a process in the container changed files.
   */
  async containerFs(container: ContainerRef): Promise<ContainerFs> {
    return ContainerFs.open(await this.container(container));
  }

  /**
   * The runtime's pause and resume for a container that runs, unless the
   * caller brought its own or asked not to pause. A container that exits
   * meanwhile needs none.
   */
  private async pauserFor(container: Container, opts: { pause?: boolean; pauser?: Pauser }): Promise<Pauser | undefined> {
    if (opts.pauser || opts.pause === false || !container.isRunning) return undefined;
    try {
      return await runtimePauser(container);
    } catch (err) {
      if (err instanceof ContainerStateError && !(await container.refresh()).isRunning) return undefined;
      throw err;
    }
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
