/**
 * Running one process in a root filesystem with an OCI runtime (`runc run`,
 * not detached), streaming its output as it comes and returning its exit code.
 *
 * The runtime runs in pass-through mode: the container's stdio are the pipes
 * the runtime itself was given, so output reaches the caller's streams without
 * a relay and stdout and stderr stay separate. The runtime's own diagnostics go
 * to a JSON log file in the bundle, which is how a failure to start the process
 * (no such executable) is told apart from a process that exits non-zero; runc
 * and crun also print that one error line to stderr.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, mkdtemp, open, rm, unlink, writeFile } from 'node:fs/promises';
import { constants as osConstants, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { StrataError } from '../content/errors.js';
import type { RuntimeInfo } from './detect.js';
import type { OciSpec } from './spec.js';

/** Inputs of {@link runProcess}. */
export interface RunProcessOptions {
  runtime: RuntimeInfo;
  /** Host path of the prepared root filesystem; replaces `spec.root.path`. */
  rootfs: string;
  /** From {@link buildSpec}. */
  spec: OciSpec;
  /**
   * Directory to write config.json (and the runtime's log and pid file) in. A
   * temporary directory, removed afterwards, when absent; a given directory is
   * kept, and only the files written into it are removed. One run per bundle
   * directory at a time.
   */
  bundleDir?: string;
  /** The runtime's `--root` (its container state); {@link defaultStateDir} when absent. */
  stateDir?: string;
  /** The process's stdin: a stream to copy in, the caller's own stdin, or nothing (/dev/null). */
  stdin?: NodeJS.ReadableStream | 'inherit' | null;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Container id; random when absent. Letters, digits, `_ . + -`. */
  id?: string;
  /** Aborting kills the process (SIGKILL) and rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** How the process ended. */
export interface ProcessResult {
  /** The container id the run used. */
  id: string;
  /** Exit status; 128+N when the process died of signal N, as a shell reports it. */
  exitCode: number;
  /**
   * The signal behind an exit status of 128+N. A runtime reports death by a
   * signal only that way, so a process that itself exits with such a status
   * reads the same.
   */
  signal?: NodeJS.Signals;
}

/**
 * The runtime failed, usually before the process started (no such
 * executable, permission denied, a mount it could not make). `exitCode` is
 * what `docker run` exits with in the same case: 127 when the command was not
 * found, 126 when it could not be executed, 125 otherwise.
 */
export class ContainerRuntimeError extends StrataError {
  readonly exitCode: number;

  constructor(
    readonly runtimeMessage: string,
    exitCode: number,
  ) {
    super('RUNTIME_FAILED', runtimeMessage);
    this.exitCode = exitCode;
  }
}

/** A container with the requested id exists in the runtime's state directory. */
export class ContainerIdInUseError extends StrataError {
  constructor(
    readonly id: string,
    runtime: RuntimeInfo,
    stateDir: string,
  ) {
    super(
      'CONTAINER_ID_IN_USE',
      `a container with id ${id} already exists (running, or left behind): pick another id, or remove it with \`${runtime.name} --root ${stateDir} delete -f ${id}\``,
    );
  }
}

/** An id the runtime would refuse. */
export class InvalidContainerIdError extends StrataError {
  constructor(id: string) {
    super('INVALID_CONTAINER_ID', `invalid container id ${JSON.stringify(id)}: use 1 to 128 letters, digits, "_", ".", "+" or "-", starting with a letter or digit`);
  }
}

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$/;

/** A fresh random container id, `strata-` and 16 hex digits. */
export function newContainerId(): string {
  return `strata-${randomBytes(8).toString('hex')}`;
}

/**
 * Where a runtime keeps container state unless told otherwise:
 * `/run/strata-<runtime name>` (tmpfs, so a reboot forgets containers that
 * died with the machine). Runtimes do not share state formats, hence one per
 * runtime.
 */
export function defaultStateDir(runtime: RuntimeInfo): string {
  return `/run/strata-${runtime.name.replace(/[^A-Za-z0-9_.-]/g, '_')}`;
}

interface CommandResult {
  code: number | null;
  output: string;
}

function runtimeCommand(runtime: RuntimeInfo, stateDir: string, args: string[]): Promise<CommandResult> {
  return new Promise((resolvePromise) => {
    const child = spawn(runtime.path, [`--root=${stateDir}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer) => {
      if (output.length < 4096) output += chunk.toString('utf8');
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('error', (err) => resolvePromise({ code: null, output: err.message }));
    child.on('close', (code) => resolvePromise({ code, output: output.trim() }));
  });
}

/** Error-level messages of a runc/crun JSON log (one object per line). */
async function runtimeErrors(logPath: string): Promise<string[]> {
  let handle;
  try {
    handle = await open(logPath, 'r');
  } catch {
    return [];
  }
  const errors: string[] = [];
  const lines = createInterface({ input: handle.createReadStream({ encoding: 'utf8' }), crlfDelay: Infinity });
  try {
    for await (const line of lines) {
      if (line.trim() === '') continue;
      try {
        const entry = JSON.parse(line) as { level?: unknown; msg?: unknown };
        if (typeof entry.level === 'string' && /^(error|fatal|panic)$/i.test(entry.level) && typeof entry.msg === 'string') {
          errors.push(entry.msg);
        }
      } catch {
        // A runtime that ignored --log-format writes plain text; keep it if it reads like an error.
        if (/error|fail/i.test(line)) errors.push(line.trim());
      }
    }
  } finally {
    lines.close();
    await handle.close();
  }
  return errors;
}

/** docker run's exit statuses for a process that could not be started. */
function startFailureExitCode(message: string): number {
  if (/executable file not found|no such file or directory|not found in \$?PATH/i.test(message)) return 127;
  if (/permission denied|exec format error|is a directory|not executable/i.test(message)) return 126;
  return 125;
}

function signalForStatus(status: number): NodeJS.Signals | undefined {
  if (status <= 128) return undefined;
  const number = status - 128;
  const entry = Object.entries(osConstants.signals).find(([, value]) => value === number);
  return entry ? (entry[0] as NodeJS.Signals) : undefined;
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The operation was aborted', 'AbortError');
}

/**
 * Runs the process described by `opts.spec` in `opts.rootfs` and waits for it.
 *
 * stdout and stderr are piped to the given streams as output arrives (the
 * streams are not ended). The runtime's state lives under `opts.stateDir`; a
 * run that fails, is aborted, or whose output stream fails is force-deleted
 * from the runtime (`delete -f`), and the bundle is always cleaned up.
 *
 * @returns the exit status; a non-zero status is a result, not an error
 * @throws ContainerRuntimeError when the runtime fails (e.g. the executable does not exist)
 * @throws ContainerIdInUseError when `opts.id` names an existing container
 * @throws the signal's reason when `opts.signal` aborts (the process is killed first)
 * @throws the error of `opts.stdout`/`opts.stderr` if one fails (the process is killed first)
 */
export async function runProcess(opts: RunProcessOptions): Promise<ProcessResult> {
  const { runtime, signal } = opts;
  if (signal?.aborted) throw abortReason(signal);
  const id = opts.id ?? newContainerId();
  if (!ID_PATTERN.test(id)) throw new InvalidContainerIdError(id);
  const stateDir = resolve(opts.stateDir ?? defaultStateDir(runtime));
  await mkdir(stateDir, { recursive: true, mode: 0o700 });

  const ownBundle = opts.bundleDir === undefined;
  const bundle = ownBundle ? await mkdtemp(join(tmpdir(), 'strata-bundle-')) : resolve(opts.bundleDir!);
  const configPath = join(bundle, 'config.json');
  const logPath = join(bundle, 'runtime.log');
  const pidPath = join(bundle, 'pid');
  let watcher: FSWatcher | undefined;
  try {
    if (!ownBundle) await mkdir(bundle, { recursive: true });
    // A log left by an earlier run in the same bundle would be read as this run's errors.
    await unlink(logPath).catch(() => undefined);
    await unlink(pidPath).catch(() => undefined);
    const spec: OciSpec = {
      ...opts.spec,
      root: { ...opts.spec.root, path: resolve(opts.rootfs) },
      linux: { ...opts.spec.linux, cgroupsPath: opts.spec.linux.cgroupsPath ?? `/strata/${id}` },
    };
    await writeFile(configPath, JSON.stringify(spec, null, 2) + '\n', { mode: 0o600 });
    if (signal?.aborted) throw abortReason(signal);

    // Raised when the pid file appears: the container exists from then on, so
    // an abort that came too early to kill it can try again.
    let pidFileAppeared!: () => void;
    const pidFileSeen = new Promise<void>((resolvePromise) => (pidFileAppeared = resolvePromise));
    watcher = watch(bundle, (_event, name) => {
      if (name === 'pid') pidFileAppeared();
    });
    watcher.on('error', () => pidFileAppeared());

    const stdinMode = opts.stdin === 'inherit' ? 'inherit' : opts.stdin ? 'pipe' : 'ignore';
    const child = spawn(
      runtime.path,
      [`--root=${stateDir}`, `--log=${logPath}`, '--log-format=json', 'run', '--bundle', bundle, '--pid-file', pidPath, id],
      { stdio: [stdinMode, 'pipe', 'pipe'] },
    );

    let exited = false;
    let spawnError: Error | undefined;
    const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolvePromise) => {
      child.on('error', (err) => {
        spawnError = err;
        exited = true;
        resolvePromise({ code: null, signal: null });
      });
      child.on('close', (code, sig) => {
        exited = true;
        resolvePromise({ code, signal: sig });
      });
    });

    let killing: Promise<void> | undefined;
    const killContainer = (): Promise<void> => {
      killing ??= (async () => {
        let waitedForPidFile = false;
        for (;;) {
          if (exited) return;
          const result = await runtimeCommand(runtime, stateDir, ['kill', id, 'KILL']);
          if (result.code === 0 || exited) return;
          if (waitedForPidFile) {
            // It exists and cannot be signalled: it is already on its way out.
            await closed;
            return;
          }
          // Not created yet: try again once it is (pid file), unless the runtime gives up first.
          waitedForPidFile = true;
          await Promise.race([pidFileSeen, closed]);
        }
      })();
      return killing;
    };

    let streamError: unknown;
    const onStreamError = (err: unknown) => {
      streamError ??= err;
      child.stdout?.unpipe();
      child.stderr?.unpipe();
      // Keep draining so the process is never blocked on a full pipe while it dies.
      child.stdout?.resume();
      child.stderr?.resume();
      void killContainer();
    };
    connectOutput(child, opts, onStreamError);
    const detachStdin = connectStdin(child, opts.stdin);

    let aborted = false;
    const onAbort = () => {
      aborted = true;
      void killContainer();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort();

    let outcome: { code: number | null; signal: NodeJS.Signals | null };
    try {
      outcome = await closed;
      if (killing) await killing;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      detachStdin();
      opts.stdout.removeListener('error', onStreamError);
      opts.stderr.removeListener('error', onStreamError);
    }

    if (spawnError) {
      throw new ContainerRuntimeError(`cannot start OCI runtime ${runtime.path}: ${spawnError.message}`, 125);
    }
    const errors = outcome.code === 0 ? [] : await runtimeErrors(logPath);
    const idInUse = errors.some((message) => /already exists|exists already|container .* exists/i.test(message));
    if (aborted || streamError !== undefined || outcome.code === null || (errors.length > 0 && !idInUse)) {
      // The runtime removes a container whose process it saw exit; after a
      // kill, a runtime error or the runtime's own death it may not have.
      await runtimeCommand(runtime, stateDir, ['delete', '-f', id]);
    }
    if (aborted) throw abortReason(signal!);
    if (streamError !== undefined) throw streamError;
    if (idInUse) throw new ContainerIdInUseError(id, runtime, stateDir);
    if (errors.length > 0) {
      const message = errors[errors.length - 1]!;
      throw new ContainerRuntimeError(message, startFailureExitCode(message));
    }
    if (outcome.code === null) {
      const status = 128 + (osConstants.signals[outcome.signal!] ?? 0);
      return { id, exitCode: status, signal: outcome.signal! };
    }
    const sig = signalForStatus(outcome.code);
    return sig ? { id, exitCode: outcome.code, signal: sig } : { id, exitCode: outcome.code };
  } finally {
    watcher?.close();
    if (ownBundle) await rm(bundle, { recursive: true, force: true });
    else await Promise.all([configPath, logPath, pidPath].map((path) => unlink(path).catch(() => undefined)));
  }
}

function connectOutput(child: ChildProcess, opts: RunProcessOptions, onError: (err: unknown) => void): void {
  opts.stdout.on('error', onError);
  opts.stderr.on('error', onError);
  child.stdout!.pipe(opts.stdout as NodeJS.WritableStream, { end: false });
  child.stderr!.pipe(opts.stderr as NodeJS.WritableStream, { end: false });
}

/** Feeds a stdin stream to the process; returns a function that stops feeding it. */
function connectStdin(child: ChildProcess, stdin: RunProcessOptions['stdin']): () => void {
  if (!stdin || stdin === 'inherit' || !child.stdin) return () => undefined;
  const sink = child.stdin;
  // The process may exit (or close its stdin) without reading everything.
  sink.on('error', () => undefined);
  stdin.pipe(sink);
  return () => {
    stdin.unpipe(sink);
    sink.destroy();
  };
}
