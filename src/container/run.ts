/**
 * Running processes in containers: `docker create`, `start`, `run` and `rm`
 * without a daemon.
 *
 * Start assembles the container's root file system the way dockerd's overlay2
 * driver does: an overlay whose lower directories are the container's init
 * layer (mount points and /etc files the runtime binds over, made once per
 * container under its directory) above the image's snapshots, whose upper
 * directory is the container's own `upper/` (the same directory the
 * copy-on-write file API, diff and commit work on) and whose work directory is
 * `work/`. It is mounted on `ROOT/strata/containers/<id>/merged`; volumes,
 * binds and tmpfs mounts are added by the runtime inside the container's
 * mount namespace, so they never show on the host and their content never
 * reaches the upper directory. The process runs with runc (or `--runtime`),
 * attached: strata has no daemon, so whoever starts a container waits for it,
 * records its exit in the container's state and unmounts, whatever happens.
 *
 * While it runs the record says `running` with the container's host pid
 * (`docker inspect`'s `State.Pid`), which is what `ps`, `rm` and `rm -f` go by.
 *
 * Per-container files besides the container store's: `hostconfig.json`
 * (network mode, runtime, auto-remove, as in Docker's container directory),
 * `init/` (the init layer), `hosts`, `hostname`, `resolv.conf` under `etc/`,
 * `bundle/` (the runtime's config.json while running) and `runtime.json` (which
 * runtime and state directory run it, for pause and resume).
 */
import { execFile } from 'node:child_process';
import { existsSync, watch, type FSWatcher } from 'node:fs';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { StrataError } from '../content/errors.js';
import type { ContainerConfig } from '../image/types.js';
import { checkRuntimeUsable, findRuntime, type RuntimeInfo } from '../runtime/detect.js';
import { etcFiles, prepareInitLayer } from '../runtime/initlayer.js';
import { resolveInRoot } from '../runtime/inroot.js';
import { mountOverlay, unmount, type Unmount } from '../runtime/overlay.js';
import { ContainerIdInUseError, ContainerRuntimeError, defaultStateDir, runProcess, type ProcessResult } from '../runtime/run.js';
import { buildSpec, InvalidSpecError, resolveUser, type NetworkMode } from '../runtime/spec.js';
import { tempPathFor, writeJsonAtomic } from '../util/atomic.js';
import type { MountSpec } from '../volume/mountspec.js';
import { VolumeRemoveError, type VolumeStore } from '../volume/volume-store.js';
import type { Pauser } from './commit.js';
import {
  Container,
  ContainerNameConflictError,
  ContainerNotFoundError,
  ContainerStateError,
  ContainerStore,
  mergeContainerConfig,
  type ContainerState,
  type CreateContainerOptions,
} from './container-store.js';
import { ContainerFs } from './fs.js';
import { anonymousVolumes, openVolumeStore, populateVolumes, resolveMounts, runtimeMounts, setupWorkingDirectory } from './mounts.js';
import { normalizeContainerName } from './names.js';

/** The per-container settings Docker keeps in `hostconfig.json` that strata has. */
export interface ContainerHostConfig {
  /** `none` (the default: a network namespace with only loopback) or `host`. */
  NetworkMode: NetworkMode;
  /** OCI runtime name or path given at create (`--runtime`); empty for the default (runc, else crun). */
  Runtime: string;
  /** `--rm`: the container (and its anonymous volumes) is removed when its process ends, however it was started. */
  AutoRemove: boolean;
}

/** Options of {@link createContainer}. */
export interface ContainerCreateOptions extends Omit<CreateContainerOptions, 'mounts'> {
  /** Parsed `-v` and `--mount` flags (`parseVolumeFlag`, `parseMountFlag`). */
  mounts?: MountSpec[];
  /** Default `none`. */
  network?: NetworkMode;
  /** OCI runtime name or path. */
  runtime?: string;
  /** `--rm`: remove the container and its anonymous volumes when its process ends. */
  autoRemove?: boolean;
}

/** Options of {@link startContainer}. */
export interface StartOptions {
  /**
   * Stream the process's output to `stdout`/`stderr` (default true). Without
   * it the output is discarded; the call still waits for the process, since
   * someone has to record its exit and unmount its file system.
   */
  attach?: boolean;
  /** The process's stdin: a stream, the caller's own stdin (`inherit`), or nothing (default). */
  stdin?: NodeJS.ReadableStream | 'inherit' | null;
  /** Default: this process's stdout. */
  stdout?: NodeJS.WritableStream;
  /** Default: this process's stderr. */
  stderr?: NodeJS.WritableStream;
  /** Aborting kills the process (SIGKILL); the call then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Replaces the runtime chosen at create. */
  runtime?: string;
  /** Called once the process runs, with its host pid (to forward signals to it, say). */
  onStarted?: (pid: number) => void;
}

/** How a container's process ended. */
export interface StartResult {
  /** Exit status, 128+N when killed by signal N (as `docker run` reports it). */
  exitCode: number;
  signal?: NodeJS.Signals;
}

/** Options of {@link removeContainer}. */
export interface RemoveContainerOptions {
  /** `rm -f`: kill a running container first. */
  force?: boolean;
  /** `rm -v`: delete the container's anonymous volumes too (named ones are never deleted here). */
  volumes?: boolean;
}

/** Options of {@link runContainer}: create's and start's. */
export type RunContainerOptions = ContainerCreateOptions & Omit<StartOptions, 'runtime'>;

/** What {@link runContainer} did. */
export interface RunContainerResult extends StartResult {
  /** The container (already removed when it was created with `autoRemove`). */
  container: Container;
}

const DEFAULT_HOST_CONFIG: ContainerHostConfig = { NetworkMode: 'none', Runtime: '', AutoRemove: false };

/** `ROOT/strata/containers/<id>/hostconfig.json`. */
function hostConfigPath(container: Container): string {
  return join(container.dir, 'hostconfig.json');
}

/** The host settings of a container (defaults when it was created without them). */
export async function readHostConfig(container: Container): Promise<ContainerHostConfig> {
  let text: string;
  try {
    text = await readFile(hostConfigPath(container), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { ...DEFAULT_HOST_CONFIG };
    throw err;
  }
  const raw = JSON.parse(text) as Partial<ContainerHostConfig>;
  return {
    NetworkMode: raw.NetworkMode === 'host' ? 'host' : 'none',
    Runtime: typeof raw.Runtime === 'string' ? raw.Runtime : '',
    AutoRemove: raw.AutoRemove === true,
  };
}

/** The argv a container runs: its Entrypoint followed by its Cmd (Docker's rule). */
export function containerCommand(config: ContainerConfig): string[] {
  return [...(config.Entrypoint ?? []), ...(config.Cmd ?? [])];
}

// ---------------------------------------------------------------------------
// create

/**
 * `docker create`: a container from an image, with its mounts resolved
 * (volumes created, anonymous volumes for the image's `VOLUME`s, empty
 * volumes filled from the image), its working directory made, and its host
 * settings recorded. Anything made is undone when a step fails.
 *
 * @throws StrataError `No command specified` when neither the image nor the
 *   options give a command; ContainerNameConflictError; MountSpecError; the
 *   image store's and volume store's errors
 */
export async function createContainer(
  containers: ContainerStore,
  volumes: VolumeStore,
  imageRef: string,
  opts: ContainerCreateOptions = {},
): Promise<Container> {
  const network = opts.network ?? 'none';
  if (network !== 'none' && network !== 'host') {
    throw new InvalidSpecError(`network mode "${String(network)}" is not supported (strata has no network bridge); use "none" or "host"`);
  }
  // An unknown runtime is refused at create, as dockerd does; whether it can run here is start's question.
  if (opts.runtime !== undefined && opts.runtime !== '') await findRuntime(opts.runtime, { purpose: 'container' });
  const image = await containers.images.resolve(imageRef, opts.platform ? { platform: opts.platform } : {});
  const user: ContainerConfig = {};
  if (opts.cmd !== undefined) user.Cmd = opts.cmd;
  if (opts.entrypoint !== undefined) user.Entrypoint = opts.entrypoint;
  if (containerCommand(mergeContainerConfig(user, image.config.config ?? {})).length === 0) {
    throw new StrataError('NO_COMMAND', 'No command specified');
  }
  if (opts.name !== undefined) {
    // Refused before any volume is made; the store checks again under its lock.
    const name = normalizeContainerName(opts.name);
    const owner = await containers.get(name).catch((err: unknown) => {
      if (err instanceof ContainerNotFoundError) return undefined;
      throw err;
    });
    if (owner && owner.name === name) throw new ContainerNameConflictError(name, owner.id);
  }

  const resolved = await resolveMounts(opts.mounts ?? [], image.config.config?.Volumes, volumes);
  const { mounts: _mounts, network: _network, runtime: _runtime, autoRemove: _autoRemove, ...storeOptions } = opts;
  let container: Container;
  try {
    container = await containers.create(imageRef, { ...storeOptions, mounts: resolved.mounts });
  } catch (err) {
    await volumes.remove(resolved.createdVolumes, { force: true }).catch(() => undefined);
    throw err;
  }
  try {
    const host: ContainerHostConfig = { NetworkMode: network, Runtime: opts.runtime ?? '', AutoRemove: opts.autoRemove ?? false };
    await writeJsonAtomic(hostConfigPath(container), host);
    if (resolved.configVolumes.length > 0) {
      container = await containers.update(container.id, (record) => {
        const declared = (record.Config.Volumes ??= {});
        for (const path of resolved.configVolumes) declared[path] = {};
      });
    }
    await container.withLock(async () => {
      const fsys = await ContainerFs.open(container);
      await setupWorkingDirectory(container, fsys);
      await populateVolumes(container, volumes, fsys);
    });
  } catch (err) {
    await containers.remove(container.id, { force: true }).catch(() => undefined);
    await volumes.remove(resolved.createdVolumes, { force: true }).catch(() => undefined);
    throw err;
  }
  return container;
}

// ---------------------------------------------------------------------------
// start

/** What a running container's supervisor records for pause/resume and stale-state cleanup. */
interface RuntimeRecord {
  path: string;
  name: string;
  version: string;
  stateDir: string;
}

/** The id the runtime knows the container by: its own id. */
function runtimeId(container: Container): string {
  return container.id;
}

function execRuntime(runtime: RuntimeInfo, stateDir: string, args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolvePromise) => {
    execFile(runtime.path, [`--root=${stateDir}`, ...args], { encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolvePromise({ code, output: `${stdout}${stderr}`.trim() });
    });
  });
}

/** A writable that drops everything (output of an unattached container). */
function discard(): Writable {
  return new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
}

/**
 * Starts a container and waits for its process: the overlay root file system
 * is mounted, volumes, binds and tmpfs mounts are set up, the process (the
 * container's Entrypoint + Cmd, Env, WorkingDir, User) runs under the OCI
 * runtime, and when it ends its exit status is recorded (`exited`, ExitCode,
 * FinishedAt) and the file system unmounted.
 *
 * A runtime failure before the process runs (no such executable, say) is
 * recorded as Docker records it (State.Error, ExitCode 127/126/125, status
 * unchanged) and thrown.
 *
 * @throws RuntimeUnavailableError (one line) without root, cgroups or a runtime
 * @throws ContainerStateError when the container is already running
 * @throws ContainerRuntimeError when the runtime cannot start the process
 */
export async function startContainer(container: Container, opts: StartOptions = {}): Promise<StartResult> {
  const store = container.store;
  const host = await readHostConfig(container);
  const preferred = opts.runtime ?? (host.Runtime === '' ? undefined : host.Runtime);
  const runtime = await findRuntime(preferred, { purpose: 'container' });
  await checkRuntimeUsable({ purpose: 'container' });
  const volumes = await openVolumeStore(store);

  let previous: ContainerState | undefined;
  await store.update(container.id, (record) => {
    const current = new Container(store, record);
    if (current.isRunning) throw new ContainerStateError(`container ${record.Name} is already running`);
    previous = { ...record.State };
    // Until the process exists the supervisor's pid stands in for it: a second
    // start sees the container running, and a crash here leaves no live pid.
    record.State = { Status: 'running', ExitCode: 0, StartedAt: new Date().toISOString(), FinishedAt: record.State.FinishedAt, Pid: process.pid };
  });
  const record = container.record;
  const merged = join(container.dir, 'merged');
  const bundle = join(container.dir, 'bundle');
  const stateDir = defaultStateDir(runtime);
  let release: Unmount | undefined;
  let watcher: FSWatcher | undefined;
  let result: ProcessResult | undefined;
  try {
    const lowers = await container.lowerDirs();
    const initDir = await ensureInitLayer(container, lowers);
    await mkdir(merged, { recursive: true, mode: 0o755 });
    // A supervisor that was killed leaves its mount behind; the container is not running (checked above).
    await unmount(merged, { lazyFallback: true });
    release = await mountOverlay({ lowerDirs: [initDir, ...lowers], upperDir: container.upperDir, workDir: container.workDir, target: merged });

    const config = record.Config;
    const cwd = config.WorkingDir || '/';
    await ensureWorkingDirectory(merged, cwd);
    const user = await resolveUser(merged, config.User ?? '');
    const etc = await etcFiles(join(container.dir, 'etc'), { hostname: config.Hostname, network: host.NetworkMode });
    const mounts = await runtimeMounts(record, volumes);
    // dockerd leaves out its own /etc/hosts (etc.) bind when the user mounts something exactly there.
    const taken = new Set([...mounts.binds, ...mounts.tmpfs].map((m) => m.destination));
    const spec = buildSpec({
      args: containerCommand(config),
      env: config.Env ?? [],
      cwd,
      user,
      hostname: config.Hostname,
      network: host.NetworkMode,
      binds: [...etc.mounts.filter((bind) => !taken.has(bind.destination)), ...mounts.binds],
      tmpfs: mounts.tmpfs,
    });

    await mkdir(bundle, { recursive: true, mode: 0o700 });
    await writeJsonAtomic(join(container.dir, 'runtime.json'), { path: runtime.path, name: runtime.name, version: runtime.version, stateDir } satisfies RuntimeRecord);
    watcher = watchPidFile(bundle, (pid) => {
      // Recorded before anyone is told, so a `ps` or `rm -f` that follows sees (and kills) the container's process.
      void store
        .update(container.id, (r) => {
          if (r.State.Status === 'running') r.State.Pid = pid;
        })
        .catch(() => undefined)
        .then(() => opts.onStarted?.(pid));
    });
    const attach = opts.attach ?? true;
    const run = () =>
      runProcess({
        runtime,
        rootfs: merged,
        spec,
        bundleDir: bundle,
        stateDir,
        id: runtimeId(container),
        stdin: opts.stdin ?? null,
        stdout: attach ? (opts.stdout ?? process.stdout) : discard(),
        stderr: attach ? (opts.stderr ?? process.stderr) : discard(),
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
    try {
      result = await run();
    } catch (err) {
      if (!(err instanceof ContainerIdInUseError)) throw err;
      // Left behind by a supervisor that died: this container is not running
      // (its record said so), so the runtime's leftover state goes.
      await execRuntime(runtime, stateDir, ['delete', '-f', runtimeId(container)]);
      result = await run();
    }
  } catch (err) {
    watcher?.close();
    await release?.().catch(() => undefined);
    // An abort kills the process: that is an exit (137), not a failure to start.
    if (opts.signal?.aborted) await recordExit(container, { id: runtimeId(container), exitCode: 137, signal: 'SIGKILL' });
    else await recordFailure(container, previous!, err);
    if (host.AutoRemove) await removeAfterRun(container, volumes).catch(() => undefined);
    throw err;
  }
  watcher?.close();
  try {
    await release?.();
  } finally {
    await recordExit(container, result);
    if (host.AutoRemove) await removeAfterRun(container, volumes);
  }
  return result.signal ? { exitCode: result.exitCode, signal: result.signal } : { exitCode: result.exitCode };
}

/** `--rm`: the container and its anonymous volumes go once its process has ended (or could not start). */
async function removeAfterRun(container: Container, volumes: VolumeStore): Promise<void> {
  try {
    await removeContainer(container.store, volumes, container.id, { force: true, volumes: true });
  } catch (err) {
    // Already removed (rm -f while it ran).
    if (!(err instanceof ContainerNotFoundError)) throw err;
  }
}

/** Makes the init layer once per container (built aside and renamed, so a half-made one is never used). */
async function ensureInitLayer(container: Container, lowers: string[]): Promise<string> {
  const initDir = join(container.dir, 'init');
  if (existsSync(initDir)) return initDir;
  const staging = tempPathFor(initDir);
  try {
    await prepareInitLayer(staging, lowers.length > 0 ? { lowerDirs: lowers } : {});
    await rename(staging, initDir);
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
  return initDir;
}

/** Docker's SetupWorkingDirectory at start: the process's cwd exists (root-owned 0755 when made). */
async function ensureWorkingDirectory(merged: string, cwd: string): Promise<void> {
  const hostPath = await resolveInRoot(merged, cwd);
  try {
    await mkdir(hostPath, { recursive: true, mode: 0o755 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' || code === 'ENOTDIR') throw new StrataError('WORKDIR_NOT_A_DIRECTORY', `Cannot mkdir: ${cwd} is not a directory`);
    throw err;
  }
  if (!(await stat(hostPath)).isDirectory()) throw new StrataError('WORKDIR_NOT_A_DIRECTORY', `Cannot mkdir: ${cwd} is not a directory`);
}

/** Calls `onPid` once with the pid the runtime writes to `bundle/pid`. */
function watchPidFile(bundle: string, onPid: (pid: number) => void): FSWatcher {
  let seen = false;
  const check = (): void => {
    if (seen) return;
    readFile(join(bundle, 'pid'), 'utf8').then(
      (text) => {
        const pid = Number.parseInt(text.trim(), 10);
        if (seen || !Number.isSafeInteger(pid) || pid <= 0) return;
        seen = true;
        onPid(pid);
      },
      () => undefined,
    );
  };
  const watcher = watch(bundle, (_event, name) => {
    if (name === 'pid') check();
  });
  watcher.on('error', () => undefined);
  return watcher;
}

async function recordExit(container: Container, result: ProcessResult): Promise<void> {
  try {
    await container.store.update(container.id, (record) => {
      record.State = { Status: 'exited', ExitCode: result.exitCode, StartedAt: record.State.StartedAt, FinishedAt: new Date().toISOString(), Pid: 0 };
    });
  } catch (err) {
    // Removed with `rm -f` while it ran: there is nothing left to record in.
    if (!(err instanceof ContainerNotFoundError)) throw err;
  }
}

async function recordFailure(container: Container, previous: ContainerState, err: unknown): Promise<void> {
  const message = err instanceof Error ? err.message : String(err);
  const exitCode = err instanceof ContainerRuntimeError ? err.exitCode : 128;
  await container.store
    .update(container.id, (record) => {
      record.State = { ...previous, Pid: 0, ExitCode: exitCode, Error: message };
    })
    .catch(() => undefined);
}

/** The brief's name for {@link startContainer}. */
export { startContainer as start };

/**
 * Pause and resume for {@link commit} of a running container: the runtime's
 * `pause`/`resume` (the cgroup freezer), with the runtime that started it.
 *
 * @throws ContainerStateError when the container is not running under a runtime strata knows of
 */
export async function runtimePauser(container: Container): Promise<Pauser> {
  if (!(await container.refresh()).isRunning) throw new ContainerStateError(`container ${container.name} is not running`);
  let info: RuntimeRecord;
  try {
    info = JSON.parse(await readFile(join(container.dir, 'runtime.json'), 'utf8')) as RuntimeRecord;
  } catch {
    throw new ContainerStateError(`container ${container.name} is not running under a runtime strata started`);
  }
  const runtime: RuntimeInfo = { path: info.path, name: info.name, version: info.version };
  const call = async (verb: 'pause' | 'resume'): Promise<void> => {
    const { code, output } = await execRuntime(runtime, info.stateDir, [verb, runtimeId(container)]);
    if (code !== 0) throw new ContainerStateError(`cannot ${verb} container ${container.name}: ${output || `${runtime.name} exited with status ${code}`}`);
  };
  return { pause: () => call('pause'), resume: () => call('resume') };
}

// ---------------------------------------------------------------------------
// run, rm

/**
 * `docker run` (attached): create, start and wait. With `autoRemove` the
 * container and its anonymous volumes are removed afterwards (by start, as
 * for any container created with it), whether the process ran or could not
 * start.
 */
export async function runContainer(
  containers: ContainerStore,
  volumes: VolumeStore,
  imageRef: string,
  opts: RunContainerOptions = {},
): Promise<RunContainerResult> {
  const { attach, stdin, stdout, stderr, signal, onStarted, ...createOptions } = opts;
  const container = await createContainer(containers, volumes, imageRef, createOptions);
  let result: StartResult;
  try {
    result = await startContainer(container, {
      ...(attach !== undefined ? { attach } : {}),
      ...(stdin !== undefined ? { stdin } : {}),
      ...(stdout !== undefined ? { stdout } : {}),
      ...(stderr !== undefined ? { stderr } : {}),
      ...(signal !== undefined ? { signal } : {}),
      ...(onStarted !== undefined ? { onStarted } : {}),
    });
  } catch (err) {
    // A start that failed before it ran anything (no usable runtime) leaves the removal to us.
    if (opts.autoRemove) await removeAfterRun(container, volumes).catch(() => undefined);
    throw err;
  }
  await container.refresh().catch(() => undefined);
  return { ...result, container };
}

/**
 * `docker rm [-f] [-v]`: removes the container (its changes and record); a
 * running one only with `force`, which kills it. With `volumes`, its anonymous
 * volumes go too, unless another container uses them; named volumes always stay.
 *
 * @throws ContainerStateError for a running container without `force`
 * @throws VolumeRemoveError when an anonymous volume could not be deleted (the container is gone by then)
 */
export async function removeContainer(
  containers: ContainerStore,
  volumes: VolumeStore,
  idOrName: string,
  opts: RemoveContainerOptions = {},
): Promise<void> {
  const container = await containers.get(idOrName);
  const anonymous = anonymousVolumes(container.record);
  await containers.remove(container.id, { force: opts.force ?? false });
  if (!opts.volumes || anonymous.length === 0) return;
  const failures: StrataError[] = [];
  for (const name of anonymous) {
    try {
      await volumes.remove([name]);
    } catch (err) {
      if (!(err instanceof VolumeRemoveError)) throw err;
      // Still used by another container, or already gone: Docker says nothing either.
      for (const failure of err.errors) if (failure.code !== 'VOLUME_IN_USE' && failure.code !== 'VOLUME_NOT_FOUND') failures.push(failure);
    }
  }
  if (failures.length > 0) throw new VolumeRemoveError(failures, []);
}

/**
 * The container subsystem of one store root: containers and volumes, with the
 * volume store told which containers use which volume.
 */
export class ContainerEngine {
  private constructor(
    readonly containers: ContainerStore,
    readonly volumes: VolumeStore,
  ) {}

  /** Opens the containers and volumes of the store at `root`. */
  static async open(root: string): Promise<ContainerEngine> {
    const containers = await ContainerStore.open(root);
    return new ContainerEngine(containers, await openVolumeStore(containers));
  }

  /** {@link createContainer}. */
  create(imageRef: string, opts: ContainerCreateOptions = {}): Promise<Container> {
    return createContainer(this.containers, this.volumes, imageRef, opts);
  }

  /** {@link startContainer} of a container by id, name or id prefix. */
  async start(idOrName: string | Container, opts: StartOptions = {}): Promise<StartResult> {
    const container = typeof idOrName === 'string' ? await this.containers.get(idOrName) : idOrName;
    return startContainer(container, opts);
  }

  /** {@link runContainer}. */
  run(imageRef: string, opts: RunContainerOptions = {}): Promise<RunContainerResult> {
    return runContainer(this.containers, this.volumes, imageRef, opts);
  }

  /** {@link removeContainer}. */
  remove(idOrName: string, opts: RemoveContainerOptions = {}): Promise<void> {
    return removeContainer(this.containers, this.volumes, idOrName, opts);
  }
}
