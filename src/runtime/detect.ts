/**
 * Finding an OCI runtime (runc, crun, or another binary speaking runc's command
 * line) and checking that this host can run containers at all.
 *
 * Every failure is a {@link RuntimeUnavailableError} whose message is one line
 * saying what is missing and how to get it, because the CLI prints it verbatim
 * in place of a build step's or a container's output.
 */
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, readdir, stat } from 'node:fs/promises';
import { basename, delimiter, isAbsolute, join, resolve } from 'node:path';
import { StrataError } from '../content/errors.js';

/** A located OCI runtime. */
export interface RuntimeInfo {
  /** Absolute path of the runtime binary. */
  path: string;
  /** `runc`, `crun`, or whatever the binary calls itself in `--version`. */
  name: 'runc' | 'crun' | (string & {});
  /** Version as the runtime reports it, e.g. `1.1.5+ds1`; `unknown` when it prints none. */
  version: string;
}

/**
 * What the runtime is needed for; it only changes the first words of error
 * messages (`cannot run RUN steps: …` or `cannot run containers: …`).
 */
export type RuntimePurpose = 'build' | 'container';

/** Options shared by {@link findRuntime} and {@link checkRuntimeUsable}. */
export interface RuntimeCheckOptions {
  /** Defaults to `container`. */
  purpose?: RuntimePurpose;
  /** @internal Lets tests pretend to be another platform. */
  platform?: NodeJS.Platform;
  /** @internal Lets tests pretend to be another user. */
  euid?: number;
  /** @internal Environment to read `PATH` from (defaults to `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** @internal Directories searched after `PATH` (defaults to the sbin directories). */
  fallbackDirs?: string[];
  /** @internal Where cgroups are expected (defaults to `/sys/fs/cgroup`). */
  cgroupRoot?: string;
}

/** The host cannot run OCI containers; the message says why and what to do. */
export class RuntimeUnavailableError extends StrataError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('RUNTIME_UNAVAILABLE', message, options);
  }
}

/** Runtimes tried, in order, when none is asked for. */
const DEFAULT_RUNTIMES = ['runc', 'crun'] as const;

/**
 * Directories searched after `PATH`: runc is packaged in /usr/sbin, which is
 * not on the `PATH` of every shell (sudo with a restricted secure_path, cron).
 */
const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

function prefix(purpose: RuntimePurpose | undefined): string {
  return purpose === 'build' ? 'cannot run RUN steps' : 'cannot run containers';
}

function assertLinux(opts: RuntimeCheckOptions): void {
  const platform = opts.platform ?? process.platform;
  if (platform !== 'linux') {
    throw new RuntimeUnavailableError(
      `${prefix(opts.purpose)}: not Linux (this is ${platform}); containers need Linux namespaces and cgroups, so run strata in a Linux VM`,
    );
  }
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    const info = await stat(path);
    if (!info.isFile()) return false;
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function searchPath(name: string, opts: RuntimeCheckOptions): Promise<string | undefined> {
  const dirs = ((opts.env ?? process.env).PATH ?? '').split(delimiter).filter((dir) => dir !== '' && isAbsolute(dir));
  for (const dir of [...dirs, ...(opts.fallbackDirs ?? SBIN_DIRS).filter((dir) => !dirs.includes(dir))]) {
    const candidate = join(dir, name);
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

function runVersion(path: string): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    execFile(path, ['--version'], { encoding: 'utf8', timeout: 10_000, maxBuffer: 64 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stderr }));
      else resolvePromise({ stdout, stderr });
    });
  });
}

/**
 * Reads name and version from `--version` output. runc prints
 * `runc version 1.1.5`, crun `crun version 1.8.1`; youki and others follow the
 * same first line.
 */
function parseVersion(output: string, fallbackName: string): { name: string; version: string } {
  const firstLine = output.split('\n').find((line) => line.trim() !== '') ?? '';
  const match = /^\s*(\S+)\s+version\s+(\S+)/i.exec(firstLine);
  if (match) return { name: match[1]!, version: match[2]! };
  const bare = /(\d+\.\d+(?:\.\d+)?\S*)/.exec(firstLine);
  return { name: fallbackName, version: bare ? bare[1]! : 'unknown' };
}

async function describe(path: string, opts: RuntimeCheckOptions): Promise<RuntimeInfo> {
  let output: string;
  try {
    output = (await runVersion(path)).stdout;
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim().split('\n')[0] ?? '';
    const detail = stderr !== '' ? stderr : (err as Error).message.split('\n')[0];
    throw new RuntimeUnavailableError(`${prefix(opts.purpose)}: OCI runtime ${path} does not work (\`${basename(path)} --version\` failed: ${detail})`, {
      cause: err,
    });
  }
  const fileName = basename(path);
  const parsed = parseVersion(output, fileName);
  // A wrapper script named e.g. `docker-runc` still reports itself as runc.
  return { path, name: parsed.name, version: parsed.version };
}

/**
 * Locates an OCI runtime.
 *
 * @param preferred - a runtime name looked up on `PATH` (`crun`), or a path to
 *   the binary (`--runtime PATH`; relative paths are resolved against the
 *   current directory). Without it, `runc` is tried, then `crun`.
 * @throws RuntimeUnavailableError when not on Linux, when no runtime is found,
 *   or when the binary found does not answer `--version`
 */
export async function findRuntime(preferred?: string, opts: RuntimeCheckOptions = {}): Promise<RuntimeInfo> {
  assertLinux(opts);
  if (preferred !== undefined) {
    if (preferred === '') throw new RuntimeUnavailableError(`${prefix(opts.purpose)}: --runtime must not be empty`);
    if (preferred.includes('/')) {
      const path = resolve(preferred);
      if (!(await isExecutableFile(path))) {
        throw new RuntimeUnavailableError(`${prefix(opts.purpose)}: OCI runtime ${path} is not an executable file`);
      }
      return describe(path, opts);
    }
    const found = await searchPath(preferred, opts);
    if (found === undefined) {
      throw new RuntimeUnavailableError(
        `${prefix(opts.purpose)}: OCI runtime "${preferred}" not found on PATH (install it, e.g. apt-get install ${preferred}, or pass --runtime with its absolute path)`,
      );
    }
    return describe(found, opts);
  }
  for (const name of DEFAULT_RUNTIMES) {
    const found = await searchPath(name, opts);
    if (found !== undefined) return describe(found, opts);
  }
  throw new RuntimeUnavailableError(
    `${prefix(opts.purpose)}: no OCI runtime found (install runc: apt-get install runc, or pass --runtime PATH)`,
  );
}

/** Which cgroup layout the host has. */
export type CgroupMode = 'v2' | 'v1' | 'hybrid';

/**
 * The host's cgroup layout: `v2` when /sys/fs/cgroup is the unified hierarchy,
 * `hybrid` when v1 controllers are mounted next to a v2 `unified` mount,
 * `v1` otherwise.
 *
 * @throws RuntimeUnavailableError when no cgroup filesystem is mounted there
 */
export async function cgroupMode(opts: RuntimeCheckOptions = {}): Promise<CgroupMode> {
  const root = opts.cgroupRoot ?? '/sys/fs/cgroup';
  let entries: string[];
  try {
    entries = await readdir(root);
  } catch (err) {
    throw new RuntimeUnavailableError(
      `${prefix(opts.purpose)}: no cgroup filesystem at ${root} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'}); mount one: mount -t cgroup2 none ${root}`,
      { cause: err },
    );
  }
  if (entries.includes('cgroup.controllers')) return 'v2';
  // A v1 hierarchy has one directory per controller; runc needs at least the
  // ones it always joins (devices for the device allow-list, and a pid/memory
  // controller is present on any distribution kernel).
  if (entries.includes('devices') || entries.includes('memory') || entries.includes('pids') || entries.includes('cpu')) {
    return entries.includes('unified') ? 'hybrid' : 'v1';
  }
  throw new RuntimeUnavailableError(
    `${prefix(opts.purpose)}: ${root} holds no cgroup controllers (mount cgroup2 there: mount -t cgroup2 none ${root})`,
  );
}

/**
 * Cheap checks that containers can run on this host: Linux, effective uid 0,
 * and a mounted cgroup filesystem. Does not start anything.
 *
 * Rootless operation (user namespaces with subordinate ids) is not supported,
 * so a non-root caller is refused up front rather than failing halfway through
 * mounting the root filesystem.
 *
 * @throws RuntimeUnavailableError with a one-line reason
 */
export async function checkRuntimeUsable(opts: RuntimeCheckOptions = {}): Promise<void> {
  assertLinux(opts);
  const euid = opts.euid ?? process.geteuid?.();
  if (euid !== 0) {
    throw new RuntimeUnavailableError(
      `${prefix(opts.purpose)}: not running as root (rootless runtimes are not supported yet); run strata as root, e.g. with sudo`,
    );
  }
  await cgroupMode(opts);
}
