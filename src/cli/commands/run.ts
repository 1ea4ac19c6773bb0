/**
 * `strata run`: create a container, start it attached and wait, as
 * `docker run` without `-d`. The process's stdout and stderr are strata's, and
 * its exit status is strata's exit status; a command that cannot be started
 * exits 127 (not found) or 126 (not executable), as with docker.
 *
 * SIGINT, SIGTERM, SIGHUP and SIGQUIT received while the container runs are
 * passed on to its process (docker's `--sig-proxy`), which, being pid 1 of its
 * namespace, ignores the ones it has no handler for.
 */
import { Writable } from 'node:stream';
import type { Command } from 'commander';
import type { StartResult } from '../../container/run.js';
import { ContainerRuntimeError } from '../../runtime/run.js';
import { CliError, type CliContext } from '../main.js';
import { openStrata } from './common.js';
import { addCreateOptions, createOptionsFrom, type CreateFlags } from './create.js';

const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];

/**
 * Forwards this process's termination signals to the container process once
 * its pid is known; returns `onStarted` for the start call and a function
 * that stops forwarding.
 */
function forwardSignals(): { onStarted: (pid: number) => void; stop: () => void } {
  let pid: number | undefined;
  const pending: NodeJS.Signals[] = [];
  const handlers = FORWARDED_SIGNALS.map((signal) => {
    const handler = (): void => {
      if (pid === undefined) pending.push(signal);
      else sendSignal(pid, signal);
    };
    process.on(signal, handler);
    return [signal, handler] as const;
  });
  return {
    onStarted: (started) => {
      pid = started;
      for (const signal of pending.splice(0)) sendSignal(started, signal);
    },
    stop: () => {
      for (const [signal, handler] of handlers) process.removeListener(signal, handler);
    },
  };
}

function sendSignal(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

/** Ends the command with the container's status: 0 returns, anything else exits silently with it. */
function exitWith(result: StartResult): void {
  if (result.exitCode !== 0) throw new CliError('', { exitCode: result.exitCode });
}

/**
 * The container's stderr as passed to the runtime, remembering the end of
 * what went through: the runtime prints its own one-line diagnosis there when
 * it cannot start the process, which then needs no second line from strata.
 */
export class StderrTail extends Writable {
  private tail = '';

  constructor(private readonly target: NodeJS.WritableStream) {
    super();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.tail = (this.tail + chunk.toString('utf8')).slice(-8192);
    if (this.target.write(chunk)) callback();
    else this.target.once('drain', () => callback());
  }

  /** Whether `text` went through (on one of the last lines). */
  saw(text: string): boolean {
    return this.tail.includes(text);
  }
}

/**
 * A runtime failure to start the process ends the command with docker run's
 * exit status (127, 126 or 125) and one line of diagnosis: the runtime's own
 * when it printed one, else strata's.
 */
function runtimeFailure(err: unknown, stderr: StderrTail): never {
  if (err instanceof ContainerRuntimeError) {
    throw new CliError(stderr.saw(err.runtimeMessage) ? '' : err.message, { exitCode: err.exitCode, cause: err });
  }
  throw err;
}

/** Registers `strata run [OPTIONS] IMAGE [COMMAND] [ARG...]`. */
export function registerRunCommand(program: Command, ctx: CliContext): void {
  const command = addCreateOptions(
    program.command('run').usage('[OPTIONS] IMAGE [COMMAND] [ARG...]').description('Create and run a new container from an image (attached)'),
  ).option('-i, --interactive', 'Keep STDIN open and pass it to the container');
  command.action(async (image: string, args: string[], flags: CreateFlags & { interactive?: boolean }) => {
    const strata = await openStrata(ctx);
    await runAttached(ctx, flags.interactive ?? false, (io) => strata.run(image, { ...createOptionsFrom(ctx, flags, args), ...io }));
  });
}

/** The stdio and signal wiring of an attached container process. */
export interface AttachedIo {
  stdout: NodeJS.WritableStream;
  stderr: StderrTail;
  stdin: 'inherit' | null;
  onStarted: (pid: number) => void;
}

/**
 * Runs a container process attached to this terminal, as `run` and `start -a`
 * do: output streamed, signals forwarded, and strata exiting with the
 * process's status (a runtime's own start-up error is not printed twice).
 */
export async function runAttached(ctx: CliContext, interactive: boolean, launch: (io: AttachedIo) => Promise<StartResult>): Promise<void> {
  const signals = forwardSignals();
  const stderr = new StderrTail(ctx.stderr);
  let result: StartResult;
  try {
    result = await launch({ stdout: ctx.stdout, stderr, stdin: interactive ? 'inherit' : null, onStarted: signals.onStarted });
  } catch (err) {
    runtimeFailure(err, stderr);
  } finally {
    signals.stop();
  }
  exitWith(result);
}
