/**
 * The container store: Docker's storage model for containers. A container is
 * an image's read-only layers (snapshot directories shared by every container
 * and build that uses them, each unpacked once) plus one read-write upper
 * directory of its own, in overlayfs format. Creating a container copies
 * nothing from the image, so the hundredth container costs what the first did.
 *
 * Layout under the store root:
 *
 * ```
 * ROOT/strata/containers/<id>/config.json    the record (Docker-style field names)
 * ROOT/strata/containers/<id>/upper/         the container's changes (overlay upper dir)
 * ROOT/strata/containers/<id>/work/          overlay work dir (kept empty by strata)
 * ROOT/strata/containers/<id>/tmp/           copy-ups in progress (made by fs.ts when first needed)
 * ROOT/strata/containers/<id>/whiteout       the container's shared whiteout inode (see fs.ts)
 * ROOT/strata/container-names/<name>         the id owning a name
 * ```
 *
 * A container appears whole or not at all: it is assembled under a `.tmp-`
 * name and renamed into place, and removed by being renamed away before its
 * files are deleted. Names are claimed under the `containers` store lock.
 *
 * Importing this module registers a gc root provider: every container keeps
 * its image's manifest (and so its config and layer blobs) from garbage
 * collection, even after the image lost all its names. Whatever runs gc must
 * have imported this module.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseDigest, type Digest } from '../content/digest.js';
import { StrataError } from '../content/errors.js';
import { withLock } from '../content/lock.js';
import { registerGcRoots } from '../image/gc.js';
import { processIsAlive } from '../util/process.js';
import { ImageStore, type ImageUse } from '../image/image-store.js';
import type { ContainerConfig, Platform } from '../image/types.js';
import { chainIds } from '../layer/chain.js';
import { recordForBlob } from '../layer/make.js';
import { unmount } from '../runtime/overlay.js';
import { Snapshotter } from '../snapshot/snapshotter.js';
import { tempFileOwner, tempPathFor, writeJsonAtomic } from '../util/atomic.js';
import type { MountSpec } from '../volume/mountspec.js';
import { generateContainerName, normalizeContainerName } from './names.js';
import { readdirOrEmpty } from '../util/fs.js';

/** Docker's zero time, which it reports for StartedAt/FinishedAt of a container that never ran. */
export const ZERO_TIME = '0001-01-01T00:00:00Z';

/** Name of the inter-process lock guarding container creation, naming and removal. */
export const CONTAINERS_LOCK = 'containers';

/** Lifecycle states of a container (Docker's, minus the ones strata does not have). */
export type ContainerStatus = 'created' | 'running' | 'exited';

/** `State` of a container record. */
export interface ContainerState {
  Status: ContainerStatus;
  ExitCode: number;
  StartedAt: string;
  FinishedAt: string;
  /** Host pid of the container's first process while running, else 0. */
  Pid: number;
  /** Why the last start failed, if it did. */
  Error?: string;
}

/** The execution parameters of a container: the image's, merged with the create options. */
export interface ContainerRunConfig extends ContainerConfig {
  /** The image reference as given to create. */
  Image: string;
  Hostname: string;
}

/** What `config.json` holds. Field names follow `docker inspect`. */
export interface ContainerRecord {
  /** 64 lowercase hex characters. */
  Id: string;
  /** Unique name, without Docker's leading `/`. */
  Name: string;
  /** RFC 3339 creation time. */
  Created: string;
  /** Image ID: the digest of the image config. */
  Image: Digest;
  /** The image reference as given to create. */
  ImageRef: string;
  /** The image manifest the container was made from (its gc root). */
  ManifestDigest: Digest;
  /** ChainID of the image's top layer; null for an image without layers. */
  TopChainId: Digest | null;
  /** ChainIDs of every layer of the image, bottom first. */
  ChainIds: Digest[];
  Config: ContainerRunConfig;
  /** Volume, bind and tmpfs mounts (set up by whoever runs the container). */
  Mounts: MountSpec[];
  State: ContainerState;
}

/** Options of {@link ContainerStore.create}. */
export interface CreateContainerOptions {
  /** Unique name (Docker's rules); generated when absent. */
  name?: string;
  /** Replaces the image's Cmd. */
  cmd?: string[];
  /** Replaces the image's Entrypoint; `[]` clears it (Docker's `--entrypoint ""`). */
  entrypoint?: string[];
  /** `KEY=VALUE` entries; override the image's variables of the same name. */
  env?: string[];
  workingDir?: string;
  user?: string;
  labels?: Record<string, string>;
  hostname?: string;
  mounts?: MountSpec[];
  /** For multi-platform images. */
  platform?: Platform;
}

/** Options of {@link ContainerStore.remove}. */
export interface RemoveContainerOptions {
  /** Docker's `rm -f`: remove a running container (its process is killed first). */
  force?: boolean;
  /**
   * How to stop a running container when `force` is set. Default: SIGKILL to
   * its recorded pid, then wait for the process to go, then unmount whatever is
   * still mounted under the container's directory.
   */
  stop?: (container: Container) => Promise<void>;
}

/** Options of {@link ContainerStore.list}. */
export interface ListContainersOptions {
  /** Include containers that are not running (`docker ps -a`). */
  all?: boolean;
}

/** No container matches what was asked for. */
export class ContainerNotFoundError extends StrataError {
  constructor(readonly input: string) {
    super('CONTAINER_NOT_FOUND', `No such container: ${input}`);
  }
}

/** An ID prefix matches several containers. */
export class AmbiguousContainerError extends StrataError {
  constructor(
    readonly input: string,
    readonly candidates: string[],
  ) {
    super('AMBIGUOUS_CONTAINER_ID', `multiple IDs found with provided prefix: ${input}`);
  }
}

/** The name is taken by another container. */
export class ContainerNameConflictError extends StrataError {
  constructor(
    readonly containerName: string,
    readonly ownerId: string,
  ) {
    super(
      'CONTAINER_NAME_CONFLICT',
      `Conflict. The container name "/${containerName}" is already in use by container "${ownerId}". You have to remove (or rename) that container to be able to reuse that name.`,
    );
  }
}

/** An operation a container's state does not allow (removing a running container without force, ...). */
export class ContainerStateError extends StrataError {
  constructor(message: string) {
    super('CONTAINER_STATE', message);
  }
}

/** A container record on disk that cannot be read. */
export class ContainerCorruptError extends StrataError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CONTAINER_CORRUPT', message, options);
  }
}

const ID_RE = /^[a-f0-9]{64}$/;
const HEX_PREFIX_RE = /^[a-f0-9]{1,64}$/;
const MAX_NAME_ATTEMPTS = 20;
const KILL_WAIT_MS = 10_000;

/** The directory holding containers under a store root. */
export function containersDir(root: string): string {
  return join(resolve(root), 'strata', 'containers');
}

function namesDir(root: string): string {
  return join(resolve(root), 'strata', 'container-names');
}

/**
 * Docker's `merge(userConf, imageConf)`: fields the user left empty come from
 * the image; Env, Labels, ExposedPorts and Volumes are unions (the user's
 * entry wins for the same key); an Entrypoint given by the user drops the
 * image's Cmd unless the user also gave one.
 */
export function mergeContainerConfig(user: ContainerConfig, image: ContainerConfig): ContainerConfig {
  const out: ContainerConfig = structuredClone(user);
  if (!out.User) {
    if (image.User !== undefined) out.User = image.User;
  }
  const userPorts = out.ExposedPorts ?? {};
  if (Object.keys(userPorts).length === 0) {
    if (image.ExposedPorts) out.ExposedPorts = structuredClone(image.ExposedPorts);
  } else if (image.ExposedPorts) {
    for (const port of Object.keys(image.ExposedPorts)) userPorts[port] ??= {};
  }
  if (!out.Env || out.Env.length === 0) {
    if (image.Env) out.Env = [...image.Env];
  } else if (image.Env) {
    const keys = new Set(out.Env.map((e) => e.split('=')[0]));
    for (const entry of image.Env) if (!keys.has(entry.split('=')[0])) out.Env.push(entry);
  }
  const labels = (out.Labels ??= {});
  for (const [key, value] of Object.entries(image.Labels ?? {})) if (!(key in labels)) labels[key] = value;
  if (!out.Entrypoint || out.Entrypoint.length === 0) {
    if (!out.Cmd || out.Cmd.length === 0) {
      if (image.Cmd !== undefined) out.Cmd = image.Cmd === null ? null : [...image.Cmd];
      if (image.ArgsEscaped !== undefined) out.ArgsEscaped = image.ArgsEscaped;
    }
    if (out.Entrypoint === undefined || out.Entrypoint === null) {
      if (image.Entrypoint !== undefined) out.Entrypoint = image.Entrypoint === null ? null : [...image.Entrypoint];
    }
  }
  if (image.Healthcheck) {
    const mine = out.Healthcheck;
    if (!mine) out.Healthcheck = structuredClone(image.Healthcheck);
    else {
      if (!mine.Test || mine.Test.length === 0) mine.Test = image.Healthcheck.Test;
      for (const key of ['Interval', 'Timeout', 'StartPeriod', 'StartInterval', 'Retries'] as const) {
        if (!mine[key] && image.Healthcheck[key] !== undefined) mine[key] = image.Healthcheck[key];
      }
    }
  }
  if (!out.WorkingDir && image.WorkingDir !== undefined) out.WorkingDir = image.WorkingDir;
  if (!out.Volumes || Object.keys(out.Volumes).length === 0) {
    if (image.Volumes) out.Volumes = structuredClone(image.Volumes);
  } else if (image.Volumes) {
    for (const [key, value] of Object.entries(image.Volumes)) out.Volumes[key] = value;
  }
  if (!out.StopSignal && image.StopSignal !== undefined) out.StopSignal = image.StopSignal;
  if (out.OnBuild === undefined && image.OnBuild !== undefined) out.OnBuild = image.OnBuild;
  if (out.Shell === undefined && image.Shell !== undefined) out.Shell = [...image.Shell];
  return out;
}

/** A container: its record as last read, and where its directories are. */
export class Container {
  constructor(
    /** The store it belongs to. */
    readonly store: ContainerStore,
    /** The record as read when this object was made (see {@link refresh}). */
    public record: ContainerRecord,
  ) {}

  get id(): string {
    return this.record.Id;
  }

  get name(): string {
    return this.record.Name;
  }

  /** `ROOT/strata/containers/<id>`. */
  get dir(): string {
    return join(containersDir(this.store.root), this.record.Id);
  }

  /** The overlay upper dir: everything the container changed. */
  get upperDir(): string {
    return join(this.dir, 'upper');
  }

  /** The overlay work dir (for mounting). */
  get workDir(): string {
    return join(this.dir, 'work');
  }

  /** Scratch space on the upper dir's file system, for copy-ups. */
  get tmpDir(): string {
    return join(this.dir, 'tmp');
  }

  /** Whether the recorded process is alive (a `running` record whose process died counts as not running). */
  get isRunning(): boolean {
    return this.record.State.Status === 'running' && this.record.State.Pid > 0 && processIsAlive(this.record.State.Pid);
  }

  /** The image's snapshot directories, top layer first (unpacked if missing). */
  async lowerDirs(): Promise<string[]> {
    if (this.record.TopChainId === null) return [];
    return this.store.snapshotter.lowerDirs(this.record.TopChainId);
  }

  /**
   * Docker's init layer of this container (`/.dockerenv`, `/etc/hosts`,
   * `/dev`, ... placeholders), made by the runtime at first start and never
   * changed afterwards.
   */
  get initDir(): string {
    return join(this.dir, 'init');
  }

  /**
   * The read-only directories under the upper dir, as the container's root
   * file system is mounted: the init layer, once the runtime made it, then
   * the image's snapshots, top first. Everything that reads the container's
   * merged tree (ContainerFs, diff, export, cp) uses these, so it sees what a
   * process in the container sees; like Docker's, the init layer belongs to
   * the image side (not in diff, not in commit) and is in export.
   */
  async mountLowerDirs(): Promise<string[]> {
    const image = await this.lowerDirs();
    return existsSync(this.initDir) ? [this.initDir, ...image] : image;
  }

  /** Re-reads the record. */
  async refresh(): Promise<this> {
    this.record = await this.store.readRecord(this.record.Id);
    return this;
  }

  /** Runs `fn` holding this container's inter-process lock (mutations of its files, commit, state changes). */
  withLock<T>(fn: () => Promise<T>): Promise<T> {
    return withLock(this.store.root, `container-${this.record.Id}`, fn);
  }
}

/** The containers of one store root. Open with {@link ContainerStore.open}. */
export class ContainerStore {
  private constructor(
    /** Absolute store root. */
    readonly root: string,
    readonly images: ImageStore,
    readonly snapshotter: Snapshotter,
  ) {}

  /**
   * Opens the container store of `root` (creating its directories) and
   * removes leftovers of creations and removals whose process died.
   */
  static async open(root: string, deps: { images?: ImageStore; snapshotter?: Snapshotter } = {}): Promise<ContainerStore> {
    const images = deps.images ?? (await ImageStore.open(root));
    const snapshotter = deps.snapshotter ?? new Snapshotter(images.root, images.content, images.layers);
    const store = new ContainerStore(images.root, images, snapshotter);
    // Synchronous: they exist on all but the first open.
    mkdirSync(containersDir(store.root), { recursive: true });
    mkdirSync(namesDir(store.root), { recursive: true });
    await store.cleanStale();
    return store;
  }

  /** `ROOT/strata/containers`. */
  get dir(): string {
    return containersDir(this.root);
  }

  // ------------------------------------------------------------ create

  /**
   * Creates a container from an image (reference, ID or unique ID prefix).
   * Ensures the image's layers are unpacked as snapshots (shared, once), then
   * makes an empty upper dir; nothing of the image is copied.
   */
  async create(imageRef: string, opts: CreateContainerOptions = {}): Promise<Container> {
    const requestedName = opts.name !== undefined ? normalizeContainerName(opts.name) : undefined;
    const image = await this.images.resolve(imageRef, opts.platform ? { platform: opts.platform } : {});
    const diffIds = image.config.rootfs.diff_ids;
    if (diffIds.length !== image.manifest.layers.length) {
      throw new StrataError('IMAGE_INCOMPLETE', `image ${imageRef} has ${image.manifest.layers.length} layers but its config lists ${diffIds.length} diff_ids`);
    }
    const chains = chainIds(diffIds);
    await this.ensureLayerRecords(image.manifest.layers, chains);
    const top = chains.length > 0 ? chains[chains.length - 1]! : null;
    if (top !== null) await this.snapshotter.lowerDirs(top);

    const id = randomBytes(32).toString('hex');
    const user: ContainerConfig = {};
    if (opts.cmd !== undefined) user.Cmd = [...opts.cmd];
    if (opts.entrypoint !== undefined) user.Entrypoint = [...opts.entrypoint];
    if (opts.env !== undefined) user.Env = [...opts.env];
    if (opts.workingDir !== undefined) user.WorkingDir = opts.workingDir;
    if (opts.user !== undefined) user.User = opts.user;
    if (opts.labels !== undefined) user.Labels = { ...opts.labels };
    const merged = mergeContainerConfig(user, image.config.config ?? {});
    const record: ContainerRecord = {
      Id: id,
      Name: '',
      Created: new Date().toISOString(),
      Image: image.id,
      ImageRef: imageRef,
      ManifestDigest: image.manifestDigest,
      TopChainId: top,
      ChainIds: chains,
      Config: { ...merged, Image: imageRef, Hostname: opts.hostname ?? id.slice(0, 12) },
      Mounts: structuredClone(opts.mounts ?? []),
      State: { Status: 'created', ExitCode: 0, StartedAt: ZERO_TIME, FinishedAt: ZERO_TIME, Pid: 0 },
    };

    // Assembled beside its final place, then renamed: a reader never sees half a container.
    const finalDir = join(this.dir, id);
    const staging = tempPathFor(finalDir);
    await mkdir(staging);
    try {
      await mkdir(join(staging, 'upper'), { mode: 0o755 });
      await mkdir(join(staging, 'work'), { mode: 0o700 });
      await withLock(this.root, CONTAINERS_LOCK, async () => {
        record.Name = requestedName ?? (await this.freeGeneratedName());
        await this.claimName(record.Name, id);
        try {
          await writeJsonAtomic(join(staging, 'config.json'), record);
          await rename(staging, finalDir);
        } catch (err) {
          await unlink(join(namesDir(this.root), record.Name)).catch(() => undefined);
          throw err;
        }
      });
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      throw err;
    }
    return new Container(this, record);
  }

  /** Writes the layer records a snapshot needs where an image (loaded by an older strata, say) lacks them. */
  private async ensureLayerRecords(layers: { digest: Digest; mediaType: string }[], chains: Digest[]): Promise<void> {
    for (const [i, chainId] of chains.entries()) {
      if (await this.images.layers.get(chainId)) continue;
      await recordForBlob(this.images.content, parseDigest(layers[i]!.digest), layers[i]!.mediaType, i === 0 ? undefined : chains[i - 1], {
        records: this.images.layers,
      });
    }
  }

  /** Claims `name` for `id`; the caller holds the containers lock. */
  private async claimName(name: string, id: string): Promise<void> {
    const path = join(namesDir(this.root), name);
    const owner = await this.nameOwner(name);
    if (owner !== undefined) throw new ContainerNameConflictError(name, owner);
    // A name file whose container is gone (a crash between claim and rename) is stale: replaced.
    await writeJsonAtomic(path, id);
  }

  /** The id holding `name`, ignoring stale claims. */
  private async nameOwner(name: string): Promise<string | undefined> {
    let text: string;
    try {
      text = await readFile(join(namesDir(this.root), name), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    let id: unknown;
    try {
      id = JSON.parse(text);
    } catch {
      return undefined;
    }
    if (typeof id !== 'string' || !ID_RE.test(id)) return undefined;
    return existsSync(join(this.dir, id, 'config.json')) ? id : undefined;
  }

  private async freeGeneratedName(): Promise<string> {
    for (let attempt = 0; attempt < MAX_NAME_ATTEMPTS; attempt++) {
      const name = generateContainerName(attempt);
      if ((await this.nameOwner(name)) === undefined) return name;
    }
    // The word lists are nearly exhausted: fall back to a name that cannot clash.
    return `strata_${randomBytes(6).toString('hex')}`;
  }

  // ------------------------------------------------------------ lookup

  /** Reads the record of container `id` (a full id). */
  async readRecord(id: string): Promise<ContainerRecord> {
    if (!ID_RE.test(id)) throw new ContainerNotFoundError(id);
    let text: string;
    try {
      text = await readFile(join(this.dir, id, 'config.json'), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ContainerNotFoundError(id);
      throw err;
    }
    return parseRecord(text, id);
  }

  /**
   * Finds a container the way Docker does: a full ID, else a name (with or
   * without the leading `/`), else a unique ID prefix.
   */
  async get(idOrName: string): Promise<Container> {
    if (ID_RE.test(idOrName) && existsSync(join(this.dir, idOrName, 'config.json'))) {
      return new Container(this, await this.readRecord(idOrName));
    }
    const name = idOrName.startsWith('/') ? idOrName.slice(1) : idOrName;
    if (/^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/.test(name)) {
      const owner = await this.nameOwner(name);
      if (owner !== undefined) {
        const record = await this.readRecord(owner).catch((err: unknown) => {
          if (err instanceof ContainerNotFoundError) return undefined;
          throw err;
        });
        if (record && record.Name === name) return new Container(this, record);
      }
    }
    if (HEX_PREFIX_RE.test(idOrName)) {
      const matches = (await this.ids()).filter((id) => id.startsWith(idOrName));
      if (matches.length > 1) throw new AmbiguousContainerError(idOrName, matches);
      if (matches.length === 1) return new Container(this, await this.readRecord(matches[0]!));
    }
    throw new ContainerNotFoundError(idOrName);
  }

  /** Ids of every container present. */
  async ids(): Promise<string[]> {
    return (await readdirOrEmpty(this.dir)).filter((n) => ID_RE.test(n));
  }

  /** Containers, newest first; only running ones unless `all`. */
  async list(opts: ListContainersOptions = {}): Promise<Container[]> {
    const out: Container[] = [];
    for (const id of await this.ids()) {
      let record: ContainerRecord;
      try {
        record = await this.readRecord(id);
      } catch (err) {
        // Removed between the listing and the read.
        if (err instanceof ContainerNotFoundError) continue;
        throw err;
      }
      const container = new Container(this, record);
      if (opts.all || container.isRunning) out.push(container);
    }
    return out.sort((a, b) => Date.parse(b.record.Created) - Date.parse(a.record.Created) || a.id.localeCompare(b.id));
  }

  // ------------------------------------------------------------ state

  /**
   * Changes a container's record under its lock (read, change, atomic write).
   * For the runtime: state transitions, mounts.
   */
  async update(idOrName: string, change: (record: ContainerRecord) => void): Promise<Container> {
    const container = await this.get(idOrName);
    return container.withLock(async () => {
      const record = await this.readRecord(container.id);
      change(record);
      if (record.Id !== container.id) throw new StrataError('CONTAINER_CORRUPT', 'a container update must not change its Id');
      await writeJsonAtomic(join(container.dir, 'config.json'), record);
      container.record = record;
      return container;
    });
  }

  // ------------------------------------------------------------ remove

  /**
   * Removes a container: its upper dir (everything it changed) and its
   * record. Image snapshots and volumes stay. A running container is refused
   * unless `force`, which stops it first.
   */
  async remove(idOrName: string, opts: RemoveContainerOptions = {}): Promise<void> {
    const container = await this.get(idOrName);
    if (container.isRunning) {
      if (!opts.force) {
        throw new ContainerStateError(
          `cannot remove container "/${container.name}": container is running: stop the container before removing or force remove`,
        );
      }
      await (opts.stop ?? killAndWait)(container);
    }
    await releaseMounts(container.dir);
    const doomed = tempPathFor(container.dir);
    // The container's own lock first: no cp or commit of it is half done when it goes.
    await container.withLock(() =>
      withLock(this.root, CONTAINERS_LOCK, async () => {
        await rename(container.dir, doomed);
        if ((await this.nameOwnerRaw(container.name)) === container.id) {
          await unlink(join(namesDir(this.root), container.name)).catch(() => undefined);
        }
      }),
    );
    await rm(doomed, { recursive: true, force: true });
  }

  private async nameOwnerRaw(name: string): Promise<string | undefined> {
    try {
      return JSON.parse(await readFile(join(namesDir(this.root), name), 'utf8')) as string;
    } catch {
      return undefined;
    }
  }

  /** Removes `.tmp-*` leftovers of creations and removals whose process is gone. */
  async cleanStale(): Promise<string[]> {
    const removed: string[] = [];
    for (const name of await readdirOrEmpty(this.dir)) {
      const pid = tempFileOwner(name);
      if (pid === undefined || processIsAlive(pid)) continue;
      const path = join(this.dir, name);
      await releaseMounts(path);
      await rm(path, { recursive: true, force: true });
      removed.push(path);
    }
    return removed;
  }

  // ------------------------------------------------------------ helpers for others

  /**
   * Docker's "is this image used by a container" question, in the shape
   * `ImageStore.remove({isInUse})` takes: a running user first, else any.
   */
  async isInUse(imageId: Digest): Promise<ImageUse | undefined> {
    let stopped: ImageUse | undefined;
    for (const container of await this.list({ all: true })) {
      if (container.record.Image !== imageId) continue;
      if (container.isRunning) return { containerId: container.id, running: true };
      stopped ??= { containerId: container.id, running: false };
    }
    return stopped;
  }

  /** Every ChainID some container's lower stack uses (keep these snapshots when pruning). */
  async chainIdsInUse(): Promise<Set<Digest>> {
    const used = new Set<Digest>();
    for (const container of await this.list({ all: true })) for (const chainId of container.record.ChainIds) used.add(chainId);
    return used;
  }

  /** Ids of containers mounting volume `name` (a `VolumeStore` usage provider). */
  async volumeUsers(name: string): Promise<string[]> {
    const users: string[] = [];
    for (const container of await this.list({ all: true })) {
      if (container.record.Mounts.some((m) => m.type === 'volume' && m.source === name)) users.push(container.id);
    }
    return users;
  }
}

function parseRecord(text: string, id: string): ContainerRecord {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ContainerCorruptError(`container ${id}: config.json is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const record = raw as Partial<ContainerRecord> | null;
  if (
    typeof record !== 'object' ||
    record === null ||
    record.Id !== id ||
    typeof record.Name !== 'string' ||
    typeof record.State !== 'object' ||
    typeof record.Config !== 'object' ||
    !Array.isArray(record.ChainIds) ||
    !Array.isArray(record.Mounts)
  ) {
    throw new ContainerCorruptError(`container ${id}: config.json is not a container record`);
  }
  try {
    parseDigest(record.Image);
    parseDigest(record.ManifestDigest);
    if (record.TopChainId !== null) parseDigest(record.TopChainId);
    record.ChainIds.forEach((c) => parseDigest(c));
  } catch (err) {
    throw new ContainerCorruptError(`container ${id}: config.json: ${(err as Error).message}`, { cause: err });
  }
  return record as ContainerRecord;
}

/** `rm -f` without a runtime hook: SIGKILL the recorded process and wait until it is gone. */
async function killAndWait(container: Container): Promise<void> {
  const pid = container.record.State.Pid;
  try {
    process.kill(pid, 'SIGKILL');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return;
    throw err;
  }
  const deadline = Date.now() + KILL_WAIT_MS;
  while (processIsAlive(pid) && !isZombie(pid)) {
    if (Date.now() > deadline) throw new ContainerStateError(`container ${container.id.slice(0, 12)}: process ${pid} did not exit after SIGKILL`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function isZombie(pid: number): boolean {
  try {
    return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return true;
  }
}

/**
 * Unmounts whatever is mounted at or below `dir`, deepest first, so that
 * deleting the directory never reaches through a mount (a bind-mounted host
 * directory would otherwise be emptied). Refuses to go on if a mount stays.
 */
async function releaseMounts(dir: string): Promise<void> {
  const mounted = mountsUnder(dir);
  for (const mountPoint of mounted) await unmount(mountPoint, { lazyFallback: true });
  const left = mountsUnder(dir);
  if (left.length > 0) {
    throw new ContainerStateError(`refusing to delete ${dir}: still mounted at ${left.join(', ')}`);
  }
}

function mountsUnder(dir: string): string[] {
  let table: string;
  try {
    table = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const mounts: string[] = [];
  for (const line of table.split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    const mountPoint = field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
    if (mountPoint === dir || mountPoint.startsWith(`${dir}/`)) mounts.push(mountPoint);
  }
  return mounts.sort((a, b) => b.length - a.length);
}

/** Reads every container record of a store root (for gc roots); a damaged record fails the whole read. */
async function* containerManifests(root: string): AsyncIterable<Digest> {
  const dir = containersDir(root);
  for (const name of await readdirOrEmpty(dir)) {
    if (!ID_RE.test(name)) continue;
    let text: string;
    try {
      const handle = await open(join(dir, name, 'config.json'), 'r');
      try {
        text = await handle.readFile('utf8');
      } finally {
        await handle.close();
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    yield parseRecord(text, name).ManifestDigest;
  }
}

registerGcRoots(containerManifests);
