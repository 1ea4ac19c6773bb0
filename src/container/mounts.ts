/**
 * A container's mounts: named and anonymous volumes, bind mounts and tmpfs,
 * resolved when the container is created and turned into runtime mounts when
 * it starts. The rules are dockerd's (moby `daemon/volumes.go`
 * `registerMountPoints`, `daemon/create_unix.go`):
 *
 * - `-v NAME:/p` and `--mount type=volume,src=NAME` use volume NAME, created
 *   when missing (an existing one is used as it is, labels untouched).
 * - `-v /p`, `--mount type=volume,dst=/p` and every `VOLUME` of the image that
 *   no other mount covers get an anonymous volume of their own (a random
 *   64-hex name, labelled `com.docker.volume.anonymous`). A `-v /p` is also
 *   added to the container's `Config.Volumes`, as the docker CLI does, so a
 *   commit declares it.
 * - A volume whose data directory is empty is filled, at create, with what the
 *   image has at the mount path (owner and mode of the directory included),
 *   unless `nocopy` was asked for. As in Docker this applies to an existing
 *   but empty named volume too; a volume with content is never touched.
 * - Binds: a `--mount` bind source must exist at create; a `-v` bind source is
 *   created at start when missing.
 *
 * Each mount is recorded in the container's `Mounts`: the parsed
 * {@link MountSpec} (lower-case fields, with `source` now naming the volume for
 * anonymous ones too) together with Docker's `docker inspect` entry
 * (capitalised fields: Type, Name, Source, Destination, Driver, Mode, RW,
 * Propagation), and whether the volume is anonymous, which decides whether
 * `rm -v` deletes it. Named volumes are only ever deleted by `volume rm` or
 * `volume prune --all`.
 *
 * Volume content lives in the volume's own directory, bind-mounted over the
 * container's file system at start, so it is never in the container's upper
 * dir and never in its diff, commit or export. The mount point directory the
 * runtime creates when the image lacks it does land in the upper dir, as it
 * does under Docker.
 */
import { chmod, chown, lstat, mkdir, readdir, realpath, rm } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { StrataError } from '../content/errors.js';
import type { ContainerConfig } from '../image/types.js';
import type { BindMount, TmpfsMount } from '../runtime/spec.js';
import { applyLayer } from '../tar/extract.js';
import { tempPathFor } from '../util/atomic.js';
import { ensureBindSource, goCleanPath, MountSpecError, validateMounts, type MountSpec, type MountType } from '../volume/mountspec.js';
import { VolumeStore } from '../volume/volume-store.js';
import type { Container, ContainerRecord, ContainerStore } from './container-store.js';
import { copyFromContainer } from './cp.js';
import { ContainerFs } from './fs.js';
import { ContainerPathError } from './view.js';

/** One entry of `Mounts` in `docker inspect` of a container; field names and values as Docker's. */
export interface MountPoint {
  Type: MountType;
  /** Volume name (volumes only). */
  Name?: string;
  /** Host path: the volume's data directory, the bind source; empty for tmpfs. */
  Source: string;
  Destination: string;
  /** `local` (volumes only). */
  Driver?: string;
  /** The `-v` options as written (`ro`, `ro,Z`); `z` for a volume given without options; empty otherwise. */
  Mode: string;
  RW: boolean;
  /** Binds only (`rprivate` by default); empty otherwise. */
  Propagation: string;
}

/**
 * One mount as a container record holds it: the parsed spec (for volumes,
 * `source` is the volume's name, generated for anonymous ones) and Docker's
 * inspect entry side by side.
 */
export interface ContainerMount extends MountSpec, MountPoint {
  /** The volume was created for this container without a name: `rm -v` and `run --rm` delete it. */
  anonymous: boolean;
  /** Made for an entry of the container's `Config.Volumes` (an image `VOLUME`, or `-v /p`). */
  fromConfig?: boolean;
}

/** An image `VOLUME` cannot be mounted where the image has a file. */
export class VolumeOverFileError extends StrataError {
  constructor(readonly destination: string) {
    super('VOLUME_OVER_FILE', `cannot mount volume over existing file, file exists ${destination}`);
  }
}

/** What {@link resolveMounts} made. */
export interface ResolvedMounts {
  /** Every mount, in the order they were given; the image's and `-v /p` volumes last, by path. */
  mounts: ContainerMount[];
  /** Paths of `-v /p` flags: the CLI adds them to the container's `Config.Volumes`. */
  configVolumes: string[];
  /** Volumes this call created (named and anonymous); delete them if the container is not made after all. */
  createdVolumes: string[];
}

/** Whether a spec is a bare `-v /p` (an anonymous volume the docker CLI passes as `Config.Volumes`). */
function isAnonymousVolumeFlag(spec: MountSpec): boolean {
  return spec.syntax === 'volume' && spec.type === 'volume' && spec.source === undefined;
}

/**
 * The destinations of the image's `VOLUME`s and of `-v /p` flags that no
 * explicit mount covers, cleaned, sorted, each once.
 */
export function anonymousVolumePaths(explicitTargets: Iterable<string>, configVolumes: Iterable<string>): string[] {
  const taken = new Set(explicitTargets);
  const out = new Set<string>();
  for (const raw of configVolumes) {
    const destination = goCleanPath(raw);
    if (!destination.startsWith('/')) {
      throw new MountSpecError(`invalid mount config for type "volume": invalid mount path: '${raw}' mount path must be absolute`);
    }
    if (destination === '/') throw new MountSpecError(`invalid mount config for type "volume": invalid specification: destination can't be '/'`);
    if (!taken.has(destination)) out.add(destination);
  }
  return [...out].sort();
}

/**
 * Resolves the mounts of a container about to be created: checks them
 * together ({@link validateMounts}), creates the volumes they name (and an
 * anonymous volume for each image volume not otherwise mounted), checks that
 * `--mount` bind sources exist, and returns the records.
 *
 * @param imageVolumes - the image config's `Volumes`
 * @throws MountSpecError (duplicate mount points, a missing `--mount` bind
 *   source), and the volume store's errors (driver, options, names); volumes
 *   created before the failure are deleted again
 */
export async function resolveMounts(
  specs: readonly MountSpec[],
  imageVolumes: ContainerConfig['Volumes'],
  volumes: VolumeStore,
): Promise<ResolvedMounts> {
  const effective = validateMounts(specs);
  const explicit = effective.filter((spec) => !isAnonymousVolumeFlag(spec));
  const configVolumes = effective.filter(isAnonymousVolumeFlag).map((spec) => spec.target);
  const created: string[] = [];
  try {
    const mounts: ContainerMount[] = [];
    for (const spec of explicit) mounts.push(await resolveOne(spec, volumes, created));
    const paths = anonymousVolumePaths(
      explicit.map((spec) => spec.target),
      [...Object.keys(imageVolumes ?? {}), ...configVolumes],
    );
    for (const destination of paths) {
      const info = await volumes.create(undefined);
      created.push(info.name);
      mounts.push({
        type: 'volume',
        source: info.name,
        target: destination,
        readOnly: false,
        noCopy: false,
        createHostPath: false,
        raw: destination,
        syntax: 'volume',
        targetAsGiven: destination,
        anonymous: true,
        fromConfig: true,
        Type: 'volume',
        Name: info.name,
        Source: info.mountpoint,
        Destination: destination,
        Driver: info.driver,
        Mode: '',
        RW: true,
        Propagation: '',
      });
    }
    return { mounts, configVolumes, createdVolumes: created };
  } catch (err) {
    await volumes.remove(created, { force: true }).catch(() => undefined);
    throw err;
  }
}

async function resolveOne(spec: MountSpec, volumes: VolumeStore, created: string[]): Promise<ContainerMount> {
  const base = { ...structuredClone(spec), Destination: spec.target, RW: !spec.readOnly };
  const mode = spec.syntax === 'volume' ? volumeFlagMode(spec.raw) : '';
  switch (spec.type) {
    case 'volume': {
      const existed = spec.source !== undefined && (await volumes.exists(spec.source));
      const info = await volumes.create(spec.source, {
        ...(spec.labels ? { labels: spec.labels } : {}),
        ...(spec.volumeDriver ? { driver: spec.volumeDriver } : {}),
        ...(spec.volumeOptions ? { options: spec.volumeOptions } : {}),
      });
      if (!existed) created.push(info.name);
      return {
        ...base,
        source: info.name,
        anonymous: spec.source === undefined,
        Type: 'volume',
        Name: info.name,
        Source: info.mountpoint,
        Driver: info.driver,
        // dockerd's setBindModeIfNull for volumes of the local driver.
        Mode: mode === '' ? 'z' : mode,
        Propagation: '',
      };
    }
    case 'bind':
      // A `-v` bind source is created at start; a `--mount` one must exist now.
      if (!spec.createHostPath) await ensureBindSource(spec);
      return {
        ...base,
        anonymous: false,
        Type: 'bind',
        Source: spec.source!,
        Mode: mode,
        Propagation: spec.propagation ?? 'rprivate',
      };
    case 'tmpfs':
      return { ...base, anonymous: false, Type: 'tmpfs', Source: '', Mode: '', Propagation: '' };
  }
}

/** The options part of a `-v` value (after the second colon), as Docker keeps it in `Mode`. */
function volumeFlagMode(raw: string): string {
  const first = raw.indexOf(':');
  if (first < 0) return '';
  const second = raw.indexOf(':', first + 1);
  return second < 0 ? '' : raw.slice(second + 1);
}

/**
 * The mounts of a container that were resolved at create ({@link resolveMounts}).
 * A record made by the container store alone holds bare specs, which have no
 * inspect fields and are left out here.
 */
export function containerMounts(record: ContainerRecord): ContainerMount[] {
  return record.Mounts.filter((m): m is ContainerMount => 'Type' in m && 'Destination' in m);
}

/** `Mounts` of `docker inspect` for a container, keys in Docker's order. */
export function inspectMounts(record: ContainerRecord): MountPoint[] {
  return containerMounts(record).map((m) => ({
    Type: m.Type,
    ...(m.Name !== undefined ? { Name: m.Name } : {}),
    Source: m.Source,
    Destination: m.Destination,
    ...(m.Driver !== undefined ? { Driver: m.Driver } : {}),
    Mode: m.Mode,
    RW: m.RW,
    Propagation: m.Propagation,
  }));
}

/** Names of the anonymous volumes a container mounts (what `rm -v` deletes). */
export function anonymousVolumes(record: ContainerRecord): string[] {
  return containerMounts(record)
    .filter((m) => m.type === 'volume' && m.anonymous && m.source !== undefined)
    .map((m) => m.source!);
}

/**
 * Opens the volume store of a container store's root, telling it which
 * containers use which volume, so that `volume rm` refuses a volume in use
 * and `volume ls -f dangling=true` knows what is dangling.
 */
export async function openVolumeStore(containers: ContainerStore): Promise<VolumeStore> {
  const volumes = await VolumeStore.open(containers.root);
  volumes.setUsageProvider((name) => containers.volumeUsers(name));
  return volumes;
}

// ---------------------------------------------------------------------------
// At create: the working directory and volume content.

/**
 * Docker's `SetupWorkingDirectory`: makes the container's `WorkingDir` (and
 * missing parents, root-owned 0755) when the image lacks it, through the
 * container's file system, so it is part of the container's changes as under
 * Docker.
 *
 * @throws StrataError `Cannot mkdir: /x is not a directory` when a non-directory is there
 */
export async function setupWorkingDirectory(container: Container, fsys?: ContainerFs): Promise<void> {
  const dir = container.record.Config.WorkingDir;
  if (!dir) return;
  const files = fsys ?? (await ContainerFs.open(container));
  let stats;
  try {
    stats = await files.stat(dir);
  } catch (err) {
    if (!(err instanceof ContainerPathError && err.code === 'ENOENT')) {
      if (err instanceof ContainerPathError && err.code === 'ENOTDIR') throw notADirectory(dir);
      throw err;
    }
  }
  if (stats) {
    if (!stats.isDirectory()) throw notADirectory(dir);
    return;
  }
  await files.mkdir(dir, { recursive: true, mode: 0o755, uid: 0, gid: 0 });
}

function notADirectory(dir: string): StrataError {
  return new StrataError('WORKDIR_NOT_A_DIRECTORY', `Cannot mkdir: ${dir} is not a directory`);
}

/**
 * Docker's `populateVolumes`: each volume mount without `nocopy` whose volume
 * is empty receives what the container's file system has at the mount path
 * (symlinks on the way resolved inside the container's root), with that
 * directory's owner and mode. Nothing happens where the image has nothing.
 *
 * @throws VolumeOverFileError when an image `VOLUME` (an anonymous volume not
 *   given on the command line) lands on a file
 */
export async function populateVolumes(container: Container, volumes: VolumeStore, fsys?: ContainerFs): Promise<void> {
  const candidates = containerMounts(container.record).filter((m) => m.type === 'volume' && !m.noCopy && m.source !== undefined);
  if (candidates.length === 0) return;
  const files = fsys ?? (await ContainerFs.open(container));
  for (const mount of candidates) {
    let stats;
    try {
      stats = await files.stat(mount.target);
    } catch (err) {
      if (err instanceof ContainerPathError && (err.code === 'ENOENT' || err.code === 'ENOTDIR')) continue;
      throw err;
    }
    if (!stats.isDirectory()) {
      if (mount.fromConfig) throw new VolumeOverFileError(mount.target);
      // An explicit mount over a file: the runtime refuses it at start, with its own message.
      continue;
    }
    const name = mount.source!;
    if ((await readdir((await volumes.get(name)).mountpoint)).length > 0) continue;
    // The merged tree has no single host directory to copy from: stage the
    // subtree (streamed through a tar of the merged view), then let the volume
    // store copy it in under its lock, where emptiness is checked again.
    const staging = tempPathFor(join(container.dir, 'volume-fill'));
    try {
      await mkdir(staging, { mode: 0o700 });
      const tar = await copyFromContainer(container, `${mount.target}/.`);
      await applyLayer(staging, tar);
      if (process.geteuid?.() === 0) await chown(staging, stats.uid, stats.gid);
      await chmod(staging, stats.mode & 0o7777);
      await volumes.fillFromImage(name, staging);
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }
}

// ---------------------------------------------------------------------------
// At start: runtime mounts.

/** The runtime mounts of a container's recorded mounts. */
export interface RuntimeMounts {
  binds: BindMount[];
  tmpfs: TmpfsMount[];
}

/**
 * Turns a container's mounts into the binds and tmpfs mounts of its runtime
 * spec: a volume is a bind of its data directory (or of a `volume-subpath`
 * inside it), a `-v` bind source that is missing is created (0755) as Docker
 * does at start, a `--mount` one must still exist.
 *
 * @throws VolumeNotFoundError when a volume was deleted since the container was created
 * @throws MountSpecError for a missing `--mount` bind source or subpath
 */
export async function runtimeMounts(record: ContainerRecord, volumes: VolumeStore): Promise<RuntimeMounts> {
  const binds: BindMount[] = [];
  const tmpfs: TmpfsMount[] = [];
  for (const mount of record.Mounts) {
    switch (mount.type) {
      case 'volume': {
        if (mount.source === undefined) {
          throw new MountSpecError(
            `container ${record.Name}: the anonymous volume at ${mount.target} was never created (the container was made without resolving its mounts; create it with createContainer)`,
          );
        }
        const info = await volumes.get(mount.source);
        const source = mount.subpath ? await volumeSubpath(info.mountpoint, mount.source, mount.subpath) : info.mountpoint;
        binds.push({ source, destination: mount.target, readOnly: mount.readOnly, propagation: 'rprivate' });
        break;
      }
      case 'bind': {
        await ensureBindSource(mount);
        const bind: BindMount = {
          source: mount.source!,
          destination: mount.target,
          readOnly: mount.readOnly,
          recursive: mount.bindRecursive !== 'disabled',
          propagation: mount.propagation ?? 'rprivate',
        };
        // Recursively read-only submounts need the kernel's mount_setattr; runc 1.1+ spells it `rro`.
        if (mount.readOnly && mount.bindRecursive === 'readonly') bind.options = ['rro'];
        binds.push(bind);
        break;
      }
      case 'tmpfs': {
        const entry: TmpfsMount = { destination: mount.target, readOnly: mount.readOnly };
        if (mount.tmpfs?.size !== undefined) entry.size = mount.tmpfs.size;
        if (mount.tmpfs?.mode !== undefined) entry.mode = mount.tmpfs.mode;
        tmpfs.push(entry);
        break;
      }
    }
  }
  return { binds, tmpfs };
}

/** The host path of `subpath` inside a volume, which must exist and stay inside it after symlinks. */
async function volumeSubpath(mountpoint: string, volume: string, subpath: string): Promise<string> {
  const base = await realpath(mountpoint);
  let resolved: string;
  try {
    resolved = await realpath(join(base, subpath));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') {
      throw new MountSpecError(`cannot access path ${join(mountpoint, subpath)}: volume-subpath "${subpath}" does not exist in volume ${volume}`);
    }
    throw err;
  }
  if (resolved !== base && !resolved.startsWith(base + sep)) {
    throw new MountSpecError(`volume-subpath "${subpath}" of volume ${volume} resolves outside the volume`);
  }
  await lstat(resolved);
  return resolved;
}
