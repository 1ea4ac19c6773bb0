/**
 * Volumes: named directories that outlive containers, kept the way Docker's
 * `local` driver keeps them.
 *
 * Layout under the store root (an OCI image layout):
 *
 *     ROOT/strata/volumes/<name>/_data       the mountpoint
 *     ROOT/strata/volumes/<name>/meta.json   {Name, Driver, CreatedAt, Labels, Options, Scope, Anonymous}
 *
 * A volume appears whole or not at all: it is assembled under a temporary name
 * (`.tmp-*`) and renamed into place, and it disappears by being renamed away
 * before its data is deleted. Entries starting with `.tmp-` are never volumes.
 *
 * Changes to one volume (create, remove, import, fill) are serialized across
 * processes by the store lock `volume:<name>`. Listing takes no lock; it sees each
 * volume either before or after a change.
 *
 * Replacing a volume's content (import, fill) extracts into a fresh directory
 * beside `_data` and then swaps the two with two renames, so a failed or
 * interrupted import never leaves a half-written volume. The short moment
 * between the renames, should the process die there, is repaired the next time
 * the volume is read or changed: the old data is put back.
 *
 * Which containers use a volume is the container engine's knowledge; it tells
 * the store through a usage provider ({@link VolumeStore.setUsageProvider}).
 * Without one, no volume is in use.
 */
import { mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { chmod, chown, lstat, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream';
import { StrataError } from '../content/errors.js';
import { withLock } from '../content/lock.js';
import { applyLayer } from '../tar/extract.js';
import { tarFromTree } from '../tar/write.js';
import { fsyncDir, TEMP_PREFIX } from '../util/atomic.js';
import { readdirOrEmpty } from '../util/fs.js';
import { ANONYMOUS_VOLUME_LABEL, generateAnonymousVolumeName, isValidVolumeName, validateVolumeName } from './names.js';

/** The only volume driver strata has. */
export const LOCAL_DRIVER = 'local';

/** A volume as strata describes it. */
export interface VolumeInfo {
  name: string;
  driver: 'local';
  /** RFC 3339 with the local time zone, seconds precision, as Docker prints it (`2024-01-02T03:04:05Z`). */
  createdAt: string;
  labels: Record<string, string>;
  options: Record<string, string>;
  scope: 'local';
  /** Created without a name (Docker marks these with {@link ANONYMOUS_VOLUME_LABEL}). */
  anonymous: boolean;
  /** Absolute path of the volume's data directory. */
  mountpoint: string;
}

/** `docker volume inspect` output for one volume, keys in Docker's order. */
export interface VolumeInspect {
  CreatedAt: string;
  Driver: string;
  Labels: Record<string, string>;
  Mountpoint: string;
  Name: string;
  Options: Record<string, string>;
  Scope: string;
}

/** Names the containers (ids) that use volume `name`; empty when none does. */
export type UsageProvider = (name: string) => Promise<string[]>;

/** Options of {@link VolumeStore.open}. */
export interface VolumeStoreOptions {
  usageProvider?: UsageProvider;
}

/** Options of {@link VolumeStore.create}. */
export interface CreateVolumeOptions {
  labels?: Record<string, string>;
  /** Mark the volume anonymous even though a name is given. */
  anonymous?: boolean;
  /** Volume driver; only `local` (the default) exists. */
  driver?: string;
  /** Driver options; the strata local driver accepts none (see {@link VolumeOptionError}). */
  options?: Record<string, string>;
}

/** Options of {@link VolumeStore.list}. */
export interface ListVolumesOptions {
  /**
   * `docker volume ls --filter` values, all of which must hold:
   * `dangling=true|false` (used by no container / by some), `name=RE`
   * (regular-expression match anywhere in the name, so a plain word is a
   * substring match), `driver=local`, `label=KEY` or `label=KEY=VALUE`.
   * Several `name` or `driver` filters match any; several `label` filters must
   * all match.
   */
  filters?: string[];
}

/** Options of {@link VolumeStore.remove}. */
export interface RemoveVolumesOptions {
  /** Remove volumes even when containers use them, and ignore missing ones. */
  force?: boolean;
}

/** Options of {@link VolumeStore.prune}. */
export interface PruneVolumesOptions {
  /** Consider named volumes too, not only anonymous ones (`docker volume prune --all`). */
  all?: boolean;
  /** `label=K[=V]`, `label!=K[=V]` and `all=BOOL`, as `docker volume prune --filter`. */
  filters?: string[];
}

/** What {@link VolumeStore.prune} removed. */
export interface PruneReport {
  volumesDeleted: string[];
  /** Bytes of file content freed (hard-linked files counted once), as Docker computes it. */
  spaceReclaimed: number;
}

/** Options of {@link VolumeStore.exportTar}. */
export interface ExportVolumeOptions {
  /** Clamp mtimes to this (seconds since the epoch) for a reproducible archive. */
  sourceDateEpoch?: number;
  /** Include extended attributes (read with getfattr when installed). Default false. */
  xattrs?: boolean;
}

/** No volume of that name: `get NAME: no such volume`, Docker's text. */
export class VolumeNotFoundError extends StrataError {
  constructor(
    readonly volumeName: string,
    op = 'get',
  ) {
    super('VOLUME_NOT_FOUND', `${op} ${volumeName}: no such volume`);
  }
}

/** Refusal to remove a volume containers use: `remove NAME: volume is in use - [ids]`. */
export class VolumeInUseError extends StrataError {
  constructor(
    readonly volumeName: string,
    readonly containers: string[],
  ) {
    super('VOLUME_IN_USE', `remove ${volumeName}: volume is in use - [${containers.join(', ')}]`);
  }
}

/** A driver other than `local`: Docker's "plugin not found" text. */
export class VolumeDriverError extends StrataError {
  constructor(
    readonly volumeName: string,
    readonly driver: string,
  ) {
    super('VOLUME_DRIVER_NOT_FOUND', `create ${volumeName}: error looking up volume plugin ${driver}: plugin "${driver}" not found`);
  }
}

/**
 * A driver option the strata local driver cannot honour. Docker's local driver
 * knows `type`, `device`, `o` (mount a file system as the volume) and `size`
 * (a quota); strata keeps volumes as plain directories and does none of these.
 */
export class VolumeOptionError extends StrataError {
  constructor(
    readonly volumeName: string,
    reason: string,
  ) {
    super('INVALID_VOLUME_OPTION', `create ${volumeName}: ${reason}`);
  }
}

/** A malformed or unknown filter. */
export class InvalidFilterError extends StrataError {
  constructor(message: string) {
    super('INVALID_FILTER', message);
  }
}

/** A volume directory whose metadata cannot be read as a volume. */
export class VolumeCorruptError extends StrataError {
  constructor(
    readonly volumeName: string,
    why: string,
    options?: { cause?: unknown },
  ) {
    super('VOLUME_CORRUPT', `volume ${volumeName}: ${why}`, options);
  }
}

/** Some volumes of a {@link VolumeStore.remove} call could not be removed. */
export class VolumeRemoveError extends StrataError {
  constructor(
    readonly errors: StrataError[],
    readonly removed: string[],
  ) {
    super(errors.length === 1 ? errors[0]!.code : 'VOLUME_REMOVE_FAILED', errors.map((e) => e.message).join('\n'));
  }
}

/** meta.json, field names as in Docker's volume JSON. */
interface VolumeMeta {
  Name: string;
  Driver: 'local';
  CreatedAt: string;
  Labels: Record<string, string>;
  Options: Record<string, string>;
  Scope: 'local';
  Anonymous: boolean;
}

const DATA_DIR = '_data';
const META_FILE = 'meta.json';
const KNOWN_LOCAL_OPTIONS = new Set(['type', 'device', 'o', 'size']);

/** The volumes of one strata store. */
export class VolumeStore {
  /** Directory holding one subdirectory per volume. */
  readonly volumesDir: string;
  private usageProvider: UsageProvider | undefined;

  private constructor(
    /** The store root (an OCI image layout). */
    readonly root: string,
    options: VolumeStoreOptions,
  ) {
    this.volumesDir = join(root, 'strata', 'volumes');
    this.usageProvider = options.usageProvider;
  }

  /** Opens (creating the directories if needed) the volumes of the store at `root`. */
  static async open(root: string, options: VolumeStoreOptions = {}): Promise<VolumeStore> {
    const store = new VolumeStore(root, options);
    mkdirSync(store.volumesDir, { recursive: true });
    return store;
  }

  /**
   * Sets (or, with undefined, clears) who tells the store which containers use a
   * volume. The provider is consulted while the volume's lock is held (so that a
   * volume cannot come into use between the check and its removal); it must not
   * call back into this store for the same volume.
   */
  setUsageProvider(provider: UsageProvider | undefined): void {
    this.usageProvider = provider;
  }

  /** Containers using volume `name`, per the usage provider. */
  async usedBy(name: string): Promise<string[]> {
    return this.usageProvider ? [...(await this.usageProvider(name))] : [];
  }

  /** The data directory of volume `name` (whether or not it exists). */
  mountpoint(name: string): string {
    validateVolumeName(name);
    return join(this.volumesDir, name, DATA_DIR);
  }

  /**
   * Creates a volume, or returns the existing one of that name unchanged (its
   * labels are not updated), as Docker does. Without a name (undefined or ''),
   * an anonymous volume with a random 64-hex name is created and labelled
   * {@link ANONYMOUS_VOLUME_LABEL}.
   *
   * @throws InvalidVolumeNameError, VolumeDriverError, VolumeOptionError
   */
  async create(name?: string, opts: CreateVolumeOptions = {}): Promise<VolumeInfo> {
    const anonymous = name === undefined || name === '' || opts.anonymous === true;
    const volumeName = name === undefined || name === '' ? generateAnonymousVolumeName() : name;
    validateVolumeName(volumeName);
    const driver = opts.driver === undefined || opts.driver === '' ? LOCAL_DRIVER : opts.driver;
    if (driver !== LOCAL_DRIVER) throw new VolumeDriverError(volumeName, driver);
    checkLocalOptions(volumeName, opts.options ?? {});
    const labels: Record<string, string> = { ...(opts.labels ?? {}) };
    if (anonymous) labels[ANONYMOUS_VOLUME_LABEL] = '';

    return this.locked(volumeName, async () => {
      const existing = await this.readVolume(volumeName);
      if (existing) return existing;
      const meta: VolumeMeta = {
        Name: volumeName,
        Driver: LOCAL_DRIVER,
        CreatedAt: rfc3339Local(new Date()),
        Labels: labels,
        Options: {},
        Scope: 'local',
        Anonymous: anonymous,
      };
      const staging = join(this.volumesDir, tempName('new'));
      try {
        await mkdir(join(staging, DATA_DIR), { recursive: true });
        await chmod(staging, 0o755);
        await chmod(join(staging, DATA_DIR), 0o755);
        await writeDurably(join(staging, META_FILE), JSON.stringify(meta, null, 2) + '\n');
        await fsyncDir(staging);
        await rename(staging, join(this.volumesDir, volumeName));
      } catch (err) {
        await rm(staging, { recursive: true, force: true });
        // Someone outside the lock protocol got there first; theirs stands.
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOTEMPTY' || code === 'EEXIST') {
          const raced = await this.readVolume(volumeName);
          if (raced) return raced;
        }
        throw err;
      }
      await fsyncDir(this.volumesDir);
      return this.infoOf(meta);
    });
  }

  /** Volume `name`. @throws VolumeNotFoundError */
  async get(name: string): Promise<VolumeInfo> {
    if (!isValidVolumeName(name)) throw new VolumeNotFoundError(name);
    let info = await this.readVolume(name);
    if (info && !(await pathExists(info.mountpoint))) {
      await this.locked(name, () => this.repairData(name));
      info = await this.readVolume(name);
    }
    if (!info) throw new VolumeNotFoundError(name);
    return info;
  }

  /** True when volume `name` exists. */
  async exists(name: string): Promise<boolean> {
    return isValidVolumeName(name) && (await this.readVolume(name)) !== undefined;
  }

  /** `docker volume inspect` documents for `names`, in order. @throws VolumeNotFoundError */
  async inspect(names: string[]): Promise<VolumeInspect[]> {
    const out: VolumeInspect[] = [];
    for (const name of names) out.push(toInspect(await this.get(name)));
    return out;
  }

  /** Volumes matching all `filters`, sorted by name. @throws InvalidFilterError */
  async list(opts: ListVolumesOptions = {}): Promise<VolumeInfo[]> {
    const filters = parseFilters(opts.filters ?? []);
    for (const key of filters.keys()) {
      if (!['dangling', 'name', 'driver', 'label'].includes(key)) throw new InvalidFilterError(`invalid filter '${key}'`);
    }
    let dangling: boolean | undefined;
    const danglingValues = filters.get('dangling');
    if (danglingValues) {
      const isTrue = danglingValues.has('true') || danglingValues.has('1');
      const isFalse = danglingValues.has('false') || danglingValues.has('0');
      if (isTrue === isFalse) throw new InvalidFilterError(`Invalid filter 'dangling=[${[...danglingValues].join(' ')}]'`);
      dangling = isTrue;
    }
    const out: VolumeInfo[] = [];
    for (const info of await this.all()) {
      const drivers = filters.get('driver');
      if (drivers && !drivers.has(info.driver)) continue;
      const names = filters.get('name');
      if (names && !matchesAnyPattern(names, info.name)) continue;
      if (!matchesLabels(filters.get('label'), info.labels)) continue;
      if (dangling !== undefined && ((await this.usedBy(info.name)).length === 0) !== dangling) continue;
      out.push(info);
    }
    return out;
  }

  /**
   * Removes volumes. A volume that containers use is refused
   * ({@link VolumeInUseError}) unless `force`; a missing one is an error
   * ({@link VolumeNotFoundError}) unless `force`. Every name is attempted; if any
   * failed, a {@link VolumeRemoveError} lists the failures and what was removed.
   *
   * @returns the names removed
   */
  async remove(names: string[], opts: RemoveVolumesOptions = {}): Promise<string[]> {
    const removed: string[] = [];
    const errors: StrataError[] = [];
    for (const name of names) {
      try {
        if (!isValidVolumeName(name)) throw new VolumeNotFoundError(name);
        const done = await this.locked(name, async () => {
          if (!(await this.readMeta(name))) {
            if (opts.force) return false;
            throw new VolumeNotFoundError(name);
          }
          const users = await this.usedBy(name);
          if (users.length > 0 && !opts.force) throw new VolumeInUseError(name, users);
          await this.deleteVolumeDir(name);
          return true;
        });
        if (done) removed.push(name);
      } catch (err) {
        if (!(err instanceof StrataError)) throw err;
        errors.push(err);
      }
    }
    if (errors.length > 0) throw new VolumeRemoveError(errors, removed);
    return removed;
  }

  /**
   * Removes volumes no container uses: only anonymous ones, or all with
   * `all`, narrowed further by label filters, as `docker volume prune`.
   * @throws InvalidFilterError
   */
  async prune(opts: PruneVolumesOptions = {}): Promise<PruneReport> {
    const filters = parseFilters(opts.filters ?? []);
    for (const key of filters.keys()) {
      if (!['label', 'label!', 'all'].includes(key)) throw new InvalidFilterError(`invalid filter '${key}'`);
    }
    let all = opts.all === true;
    const allValues = filters.get('all');
    if (allValues) {
      const value = allValues.size === 1 ? parseGoBool([...allValues][0]!) : undefined;
      if (value === undefined) throw new InvalidFilterError(`Invalid filter 'all=[${[...allValues].join(' ')}]'`);
      all ||= value;
    }
    const labels = new Set(filters.get('label') ?? []);
    if (!all) labels.add(ANONYMOUS_VOLUME_LABEL);
    const excluded = filters.get('label!');

    const report: PruneReport = { volumesDeleted: [], spaceReclaimed: 0 };
    for (const candidate of await this.all()) {
      if (!matchesLabels(labels, candidate.labels)) continue;
      if (excluded && excluded.size > 0 && matchesLabels(excluded, candidate.labels)) continue;
      await this.locked(candidate.name, async () => {
        // Re-check under the lock: it may have gone, or come into use, meanwhile.
        if (!(await this.readMeta(candidate.name))) return;
        if ((await this.usedBy(candidate.name)).length > 0) return;
        const size = await directorySize(candidate.mountpoint);
        await this.deleteVolumeDir(candidate.name);
        report.volumesDeleted.push(candidate.name);
        report.spaceReclaimed += size;
      });
    }
    return report;
  }

  /**
   * The content of volume `name` as a deterministic tar stream (entries sorted,
   * only stable header fields; the data directory itself is not an entry).
   * The stream fails with {@link VolumeNotFoundError} if there is no such volume.
   *
   * No lock is held while the stream is read (a consumer importing into the same
   * volume would otherwise wait for itself), so writes made meanwhile by
   * containers or an import may or may not be in the archive, as with `docker cp`.
   */
  exportTar(name: string, opts: ExportVolumeOptions = {}): Readable {
    const out = new PassThrough();
    this.get(name).then(
      (info) => {
        if (out.destroyed) return;
        const tar = tarFromTree(info.mountpoint, { sourceDateEpoch: opts.sourceDateEpoch, xattrs: opts.xattrs ?? false });
        pipeline(tar, out, (err) => {
          if (err && !out.destroyed) out.destroy(err);
        });
      },
      (err: unknown) => out.destroy(err instanceof Error ? err : new Error(String(err))),
    );
    return out;
  }

  /**
   * Replaces the content of volume `name` with the tar `stream` (created, named,
   * if missing). Extraction is safe against path traversal and link tricks
   * (see {@link applyLayer}), goes to a fresh directory, and replaces the old
   * data only once complete: a truncated or refused archive leaves the volume
   * as it was.
   *
   * Containers running with the volume mounted keep seeing the old directory
   * until they are restarted.
   */
  async importTar(name: string, stream: NodeJS.ReadableStream): Promise<VolumeInfo> {
    try {
      await this.create(name);
      return await this.locked(name, async () => {
        // Removed by someone else between the create above and this lock.
        if (!(await this.readMeta(name))) throw new VolumeNotFoundError(name, 'import');
        await this.repairData(name);
        await this.replaceData(name, (staging) => applyLayer(staging, stream));
        return (await this.readVolume(name))!;
      });
    } catch (err) {
      // Whatever failed, the caller's stream must not be left open and paused.
      (stream as Readable).destroy?.();
      throw err;
    }
  }

  /**
   * Docker's copy-up: fills an empty volume with what the image has at the mount
   * path (`sourceDir`), preserving modes, owners (when running as root), mtimes,
   * symlinks, hardlinks, device nodes (as root) and extended attributes, and
   * gives the volume's root the owner and mode of `sourceDir`.
   *
   * Nothing is copied when the volume already has content or `sourceDir` does not
   * exist. The copy is staged and swapped in like an import, so a failure leaves
   * the volume empty.
   *
   * @returns whether content was copied
   * @throws VolumeNotFoundError; Error when `sourceDir` is not a directory
   */
  async fillFromImage(name: string, sourceDir: string): Promise<boolean> {
    if (!isValidVolumeName(name)) throw new VolumeNotFoundError(name);
    let source;
    try {
      source = await stat(sourceDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    if (!source.isDirectory()) throw new Error(`cannot copy ${sourceDir} into volume ${name}: not a directory`);
    return this.locked(name, async () => {
      if (!(await this.readMeta(name))) throw new VolumeNotFoundError(name);
      await this.repairData(name);
      if ((await readdir(join(this.volumesDir, name, DATA_DIR))).length > 0) return false;
      await this.replaceData(name, async (staging) => {
        // Docker copies with tar too (CopyWithTar); here the same writer and
        // extractor as for layers, streaming, so nothing is held in memory.
        const tar = tarFromTree(sourceDir, { xattrs: true });
        try {
          await applyLayer(staging, tar);
        } finally {
          tar.destroy();
        }
        if (process.geteuid?.() === 0) await chown(staging, source.uid, source.gid);
        await chmod(staging, source.mode & 0o7777);
      });
      return true;
    });
  }

  // -------------------------------------------------------------------------

  private locked<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return withLock(this.root, `volume:${name}`, fn);
  }

  /** Every volume, sorted by name (entries that are not volumes are skipped). */
  private async all(): Promise<VolumeInfo[]> {
    const out: VolumeInfo[] = [];
    for (const entry of (await readdirOrEmpty(this.volumesDir)).sort()) {
      if (entry.startsWith(TEMP_PREFIX) || !isValidVolumeName(entry)) continue;
      const info = await this.readVolume(entry);
      if (info) out.push(info);
    }
    return out;
  }

  private async readVolume(name: string): Promise<VolumeInfo | undefined> {
    const meta = await this.readMeta(name);
    return meta && this.infoOf(meta);
  }

  private async readMeta(name: string): Promise<VolumeMeta | undefined> {
    let text: string;
    try {
      text = await readFile(join(this.volumesDir, name, META_FILE), 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw err;
    }
    let meta: unknown;
    try {
      meta = JSON.parse(text);
    } catch (err) {
      throw new VolumeCorruptError(name, `${META_FILE} is not valid JSON`, { cause: err });
    }
    return checkMeta(name, meta);
  }

  private infoOf(meta: VolumeMeta): VolumeInfo {
    return {
      name: meta.Name,
      driver: meta.Driver,
      createdAt: meta.CreatedAt,
      labels: { ...meta.Labels },
      options: { ...meta.Options },
      scope: meta.Scope,
      anonymous: meta.Anonymous,
      mountpoint: join(this.volumesDir, meta.Name, DATA_DIR),
    };
  }

  /** Makes the volume vanish at once (rename), then deletes its files. Call under the lock. */
  private async deleteVolumeDir(name: string): Promise<void> {
    const doomed = join(this.volumesDir, tempName(`rm-${name}`));
    await rename(join(this.volumesDir, name), doomed);
    await fsyncDir(this.volumesDir);
    await rm(doomed, { recursive: true, force: true });
  }

  /**
   * Builds new content in a staging directory beside `_data` and swaps it in.
   * Call under the lock.
   */
  private async replaceData(name: string, fill: (staging: string) => Promise<unknown>): Promise<void> {
    const volumeDir = join(this.volumesDir, name);
    const staging = join(volumeDir, tempName('data'));
    await mkdir(staging);
    try {
      await chmod(staging, 0o755);
      await fill(staging);
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      throw err;
    }
    const old = join(volumeDir, tempName('old'));
    await rename(join(volumeDir, DATA_DIR), old);
    await rename(staging, join(volumeDir, DATA_DIR));
    await fsyncDir(volumeDir);
    await rm(old, { recursive: true, force: true });
  }

  /**
   * Undoes what an interrupted {@link replaceData} left: puts the old data back if
   * `_data` is missing, and deletes staging leftovers. Call under the lock.
   */
  private async repairData(name: string): Promise<void> {
    const volumeDir = join(this.volumesDir, name);
    let entries: string[];
    try {
      entries = await readdir(volumeDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const leftovers = entries.filter((e) => e.startsWith(TEMP_PREFIX));
    if (!entries.includes(DATA_DIR)) {
      const olds = leftovers.filter((e) => e.startsWith(`${TEMP_PREFIX}old-`));
      if (olds.length > 0) {
        // Only one swap runs at a time (under the lock), so there is at most one.
        const restored = olds[0]!;
        await rename(join(volumeDir, restored), join(volumeDir, DATA_DIR));
        leftovers.splice(leftovers.indexOf(restored), 1);
      } else {
        await mkdir(join(volumeDir, DATA_DIR), { mode: 0o755 });
      }
      await fsyncDir(volumeDir);
    }
    for (const leftover of leftovers) await rm(join(volumeDir, leftover), { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------

function toInspect(info: VolumeInfo): VolumeInspect {
  return {
    CreatedAt: info.createdAt,
    Driver: info.driver,
    Labels: info.labels,
    Mountpoint: info.mountpoint,
    Name: info.name,
    Options: info.options,
    Scope: info.scope,
  };
}

function tempName(what: string): string {
  return `${TEMP_PREFIX}${what.slice(0, 40)}-${process.pid}-${randomBytes(6).toString('hex')}`;
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

async function writeDurably(path: string, data: string): Promise<void> {
  const handle = await open(path, 'wx', 0o644);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function checkLocalOptions(name: string, options: Record<string, string>): void {
  for (const key of Object.keys(options)) {
    if (!KNOWN_LOCAL_OPTIONS.has(key)) throw new VolumeOptionError(name, `invalid option: ${JSON.stringify(key)}`);
    if (key === 'size') throw new VolumeOptionError(name, 'quota size requested but no quota support');
    throw new VolumeOptionError(
      name,
      `volume option ${JSON.stringify(key)} is not supported: strata's local driver keeps volumes as plain directories and does not mount file systems`,
    );
  }
}

function checkMeta(name: string, value: unknown): VolumeMeta {
  const meta = value as Partial<VolumeMeta> | null;
  const isStringMap = (m: unknown): m is Record<string, string> =>
    typeof m === 'object' && m !== null && !Array.isArray(m) && Object.values(m).every((v) => typeof v === 'string');
  if (
    typeof meta !== 'object' ||
    meta === null ||
    meta.Name !== name ||
    meta.Driver !== LOCAL_DRIVER ||
    typeof meta.CreatedAt !== 'string' ||
    !isStringMap(meta.Labels) ||
    !isStringMap(meta.Options) ||
    meta.Scope !== 'local' ||
    typeof meta.Anonymous !== 'boolean'
  ) {
    throw new VolumeCorruptError(name, `${META_FILE} does not describe volume ${name}`);
  }
  return meta as VolumeMeta;
}

/** Go's `time.RFC3339` of `date` in the local zone: `2024-01-02T03:04:05Z` or `...+01:00`. */
export function rfc3339Local(date: Date): string {
  const pad = (n: number): string => String(n).padStart(2, '0');
  const offsetMinutes = -date.getTimezoneOffset();
  const zone =
    offsetMinutes === 0
      ? 'Z'
      : `${offsetMinutes > 0 ? '+' : '-'}${pad(Math.floor(Math.abs(offsetMinutes) / 60))}:${pad(Math.abs(offsetMinutes) % 60)}`;
  return (
    `${String(date.getFullYear()).padStart(4, '0')}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}${zone}`
  );
}

/**
 * `--filter` values as the docker CLI collects them: `key=value`, key
 * lower-cased and both sides trimmed; an empty value list entry is ignored.
 */
function parseFilters(filters: string[]): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const filter of filters) {
    if (filter === '') continue;
    const eq = filter.indexOf('=');
    if (eq < 0) throw new InvalidFilterError('bad format of filter (expected name=value)');
    const key = filter.slice(0, eq).trim().toLowerCase();
    const value = filter.slice(eq + 1).trim();
    let values = out.get(key);
    if (!values) out.set(key, (values = new Set()));
    values.add(value);
  }
  return out;
}

/** Docker's `filters.Match`: exact, or an unanchored regular expression; bad patterns match nothing. */
function matchesAnyPattern(patterns: Set<string>, value: string): boolean {
  for (const pattern of patterns) {
    if (pattern === value) return true;
    try {
      if (new RegExp(pattern, 'u').test(value)) return true;
    } catch {
      // Docker skips patterns that do not compile.
    }
  }
  return false;
}

/** Docker's `MatchKVList`: every `K` or `K=V` must be among `labels`. */
function matchesLabels(filters: Set<string> | undefined, labels: Record<string, string>): boolean {
  if (!filters || filters.size === 0) return true;
  if (Object.keys(labels).length === 0) return false;
  for (const filter of filters) {
    const eq = filter.indexOf('=');
    const key = eq < 0 ? filter : filter.slice(0, eq);
    if (!Object.hasOwn(labels, key)) return false;
    if (eq >= 0 && labels[key] !== filter.slice(eq + 1)) return false;
  }
  return true;
}

function parseGoBool(value: string): boolean | undefined {
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(value)) return false;
  return undefined;
}

/**
 * Bytes of a tree as Docker's `directory.Size` counts them: lstat sizes of
 * everything but directories, each inode once.
 */
async function directorySize(root: string): Promise<number> {
  let total = 0;
  const seen = new Set<string>();
  const pending = [root];
  while (pending.length > 0) {
    const dir = pending.pop()!;
    for (const entry of await readdirOrEmpty(dir)) {
      const path = join(dir, entry);
      let st;
      try {
        st = await lstat(path, { bigint: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      if (st.isDirectory()) {
        pending.push(path);
        continue;
      }
      if (st.size === 0n) continue;
      const inode = `${st.dev}:${st.ino}`;
      if (seen.has(inode)) continue;
      seen.add(inode);
      total += Number(st.size);
    }
  }
  return total;
}
