/**
 * RUN: the command runs in a container whose root file system is an overlay
 * mount of the image's snapshots under a fresh upper directory, as in
 * Docker's classic builder; afterwards the upper directory is the step's
 * diff (see changesetFromUpper).
 *
 * Lower directories are the init layer (mount points for /proc, /sys, /dev,
 * /etc/hosts, ...; see runtime/initlayer) on top of the image's snapshots, so
 * the runtime's mount points never end up in the layer. What Docker adds to a
 * RUN's container is reproduced: the working directory is created when
 * missing, and every VOLUME of the image gets its mount point created in the
 * rootfs and a throw-away copy of its content mounted over it (writes to a
 * volume during RUN are lost, as with Docker). BuildKit's heredoc scripts
 * (`RUN <<EOF` starting with `#!`) are bind-mounted read-only at
 * `/dev/pipes/<name>`.
 */
import { readdirSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../content/errors.js';
import { processIsAlive } from '../util/process.js';
import type { RuntimeInfo } from '../runtime/detect.js';
import { etcFiles, prepareInitLayer } from '../runtime/initlayer.js';
import { resolveInRoot } from '../runtime/inroot.js';
import { mountOverlay, unmount } from '../runtime/overlay.js';
import { runProcess } from '../runtime/run.js';
import { buildSpec, resolveUser, type BindMount, type NetworkMode } from '../runtime/spec.js';
import { changesetFromUpper } from '../snapshot/upperdiff.js';
import type { Changeset } from '../tar/changeset.js';
import type { InlineRunFile } from './dockerfile/index.js';

/** A RUN step's container could not be set up. */
export class RunSetupError extends StrataError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('RUN_SETUP_FAILED', message, options);
  }
}

/** Inputs of {@link runStep}. */
export interface RunStepOptions {
  /** The store root; scratch directories go under ROOT/strata/buildcache/run. */
  root: string;
  runtime: RuntimeInfo;
  /** The image's snapshot directories, topmost first (empty for `FROM scratch`). */
  lowerDirs: string[];
  /** The argv to run. */
  args: string[];
  /** Heredoc scripts to mount. */
  files?: InlineRunFile[];
  /** `KEY=value` environment: the image's Env, then the build args in scope. */
  env: string[];
  /** The image's USER, resolved against its /etc/passwd and /etc/group. */
  user?: string;
  /** The image's WORKDIR ('/' when empty). */
  workingDir?: string;
  network: NetworkMode;
  /** The container's hostname. */
  hostname: string;
  /** The image's VOLUMEs. */
  volumes?: string[];
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  signal?: AbortSignal;
}

/** What a RUN did. */
export interface RunStepResult {
  exitCode: number;
  /** The diff, when the command succeeded. Its file contents live in the scratch directory until `cleanup`. */
  changeset?: Changeset;
  /** Removes the scratch directory (call after the layer is made). */
  cleanup(): Promise<void>;
}

/** Directory of RUN scratch directories under a store root. */
export function runScratchRoot(root: string): string {
  return join(root, 'strata', 'buildcache', 'run');
}

/**
 * Removes scratch directories of builds whose process is gone (a crash or a
 * kill mid-RUN), unmounting a leftover overlay first.
 */
export async function cleanStaleRunDirs(root: string): Promise<void> {
  await cleanStaleDirs(runScratchRoot(root), async (dir) => {
    await unmount(join(dir, 'merged')).catch(() => undefined);
  });
}

/**
 * Removes the `<pid>-<hex>` directories under `base` whose process is gone,
 * after `before` (e.g. an unmount) has run on each.
 */
export async function cleanStaleDirs(base: string, before?: (dir: string) => Promise<void>): Promise<void> {
  let names: string[];
  try {
    names = readdirSync(base);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const name of names) {
    const pid = Number(/^(\d+)-/.exec(name)?.[1]);
    if (!Number.isSafeInteger(pid) || processIsAlive(pid)) continue;
    const dir = join(base, name);
    if (before) await before(dir);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** `mkdir -p` inside a root file system: symlinks resolved inside it, new directories root 0755. */
async function mkdirInRoot(rootfs: string, path: string): Promise<string> {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  let prefix = '';
  let host = rootfs;
  for (const part of parts) {
    prefix = `${prefix}/${part}`;
    host = await resolveInRoot(rootfs, prefix);
    let stats;
    try {
      stats = await lstat(host);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (stats === undefined) {
      await mkdir(host);
      await chmod(host, 0o755);
    } else if (!stats.isDirectory()) {
      throw new RunSetupError(`cannot mkdir ${prefix}: not a directory`);
    }
  }
  return host;
}

function copyTree(from: string, to: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn('cp', ['-a', '--', `${from}/.`, to], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolvePromise() : reject(new RunSetupError(`cannot copy volume content: ${stderr.trim()}`))));
  });
}

/**
 * Runs one RUN command and collects its diff.
 *
 * @throws RunSetupError, OverlayError, UserNotFoundError,
 *   ContainerRuntimeError when the container cannot be set up or started
 */
export async function runStep(opts: RunStepOptions): Promise<RunStepResult> {
  const dir = join(runScratchRoot(opts.root), `${process.pid}-${randomBytes(6).toString('hex')}`);
  const init = join(dir, 'init');
  const upper = join(dir, 'upper');
  const work = join(dir, 'work');
  const merged = join(dir, 'merged');
  await mkdir(dir, { recursive: true });
  await Promise.all([upper, work, merged, join(dir, 'etc'), join(dir, 'volumes'), join(dir, 'pipes')].map((d) => mkdir(d)));
  const cleanup = async (): Promise<void> => {
    await unmount(merged).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await prepareInitLayer(init, opts.lowerDirs.length > 0 ? { lowerDirs: opts.lowerDirs } : {});
    const lowerDirs = [init, ...opts.lowerDirs];
    const release = await mountOverlay({ lowerDirs, upperDir: upper, workDir: work, target: merged });
    let exitCode: number;
    try {
      const binds: BindMount[] = [];
      const cwd = opts.workingDir === undefined || opts.workingDir === '' ? '/' : opts.workingDir;
      if (cwd !== '/') await mkdirInRoot(merged, cwd);
      for (const [i, volume] of (opts.volumes ?? []).entries()) {
        const mountpoint = await mkdirInRoot(merged, volume);
        const scratch = join(dir, 'volumes', String(i));
        await mkdir(scratch);
        await copyTree(mountpoint, scratch);
        binds.push({ source: scratch, destination: volume, readOnly: false });
      }
      const etc = await etcFiles(join(dir, 'etc'), { hostname: opts.hostname, network: opts.network });
      binds.push(...etc.mounts);
      for (const [i, file] of (opts.files ?? []).entries()) {
        const hostFile = join(dir, 'pipes', String(i));
        await writeFile(hostFile, file.content, { mode: file.mode });
        await chmod(hostFile, file.mode);
        binds.push({ source: hostFile, destination: file.path, readOnly: true });
      }
      const user = await resolveUser(merged, opts.user ?? '');
      const spec = buildSpec({
        args: opts.args,
        env: opts.env,
        cwd,
        // Docker lists the primary group among the supplementary ones too (`id` shows groups=0(root)).
        user: { uid: user.uid, gid: user.gid, additionalGids: [user.gid, ...user.additionalGids] },
        hostname: opts.hostname,
        network: opts.network,
        binds,
      });
      const result = await runProcess({
        runtime: opts.runtime,
        rootfs: merged,
        spec,
        stdin: null,
        stdout: opts.stdout,
        stderr: opts.stderr,
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      exitCode = result.exitCode;
    } finally {
      await release();
    }
    if (exitCode !== 0) return { exitCode, cleanup };
    const changeset = await changesetFromUpper(upper, { lowerDirs });
    return { exitCode, changeset, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
