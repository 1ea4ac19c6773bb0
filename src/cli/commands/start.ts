/**
 * `strata start`: starts stopped containers.
 *
 * With `-a` the container runs attached, as `docker start -a`: its output is
 * strata's and its exit status strata's. Without it, as `docker start`, the
 * command returns once the process runs and prints the container's name as
 * given. strata has no daemon, so a detached container is watched by a
 * `strata start -a` of its own, started in a new session, which records the
 * exit and unmounts the container's file system when the process ends; the
 * detached container's output is discarded.
 */
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { cliEntryPoint } from '../paths.js';
import { Option, type Command } from 'commander';
import type { CliContext } from '../main.js';
import { failWith, messageOf, openStrata } from './common.js';
import { runAttached } from './run.js';

interface StartFlags {
  attach?: boolean;
  interactive?: boolean;
  /** Internal: run attached with output discarded, reporting on file descriptor 3 once running. */
  supervise?: boolean;
}

/**
 * Starts `container` under a detached supervisor (`strata start --supervise`)
 * and waits until it reports the process running, or why it could not start.
 */
async function startDetached(ctx: CliContext, container: string): Promise<void> {
  const child = spawn(process.execPath, [cliEntryPoint(), '--root', ctx.root(), 'start', '--supervise', container], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    env: ctx.env,
  });
  const report = child.stdio[3] as NodeJS.ReadableStream;
  let text = '';
  report.setEncoding('utf8');
  const done = new Promise<void>((resolvePromise, reject) => {
    child.on('error', reject);
    report.on('data', (chunk: string) => (text += chunk));
    report.on('end', resolvePromise);
    report.on('error', reject);
  });
  try {
    await done;
  } finally {
    child.unref();
    (report as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
  }
  const line = text.split('\n')[0] ?? '';
  if (line === 'started') return;
  if (line.startsWith('error ')) throw new Error(line.slice('error '.length));
  throw new Error(`container ${container}: its supervisor exited before the container started`);
}

/** The supervisor's side: start attached with output discarded, say `started` (or `error …`) on fd 3. */
async function supervise(ctx: CliContext, container: string): Promise<void> {
  const report = createWriteStream('', { fd: 3 });
  // The `strata start` that launched this may be gone; nobody to tell then.
  report.on('error', () => undefined);
  let told = false;
  const tell = (line: string): void => {
    if (told) return;
    told = true;
    report.end(`${line.replace(/\s*\n\s*/g, '; ')}\n`);
  };
  try {
    const strata = await openStrata(ctx);
    await strata.start(container, { attach: false, onStarted: () => tell('started') });
    // It ran, if too briefly for its pid to be seen.
    tell('started');
  } catch (err) {
    tell(`error ${messageOf(err)}`);
    throw err;
  }
}

/** Registers `strata start [-a] [-i] CONTAINER...`. */
export function registerStartCommand(program: Command, ctx: CliContext): void {
  program
    .command('start')
    .usage('[OPTIONS] CONTAINER [CONTAINER...]')
    .description('Start one or more stopped containers')
    .argument('<container...>', 'Container names, IDs or ID prefixes')
    .option('-a, --attach', "Attach STDOUT/STDERR, wait for the process and exit with its status")
    .option('-i, --interactive', "Attach container's STDIN")
    .addOption(new Option('--supervise').hideHelp())
    .action(async (containers: string[], flags: StartFlags) => {
      if (flags.supervise) {
        await supervise(ctx, containers[0]!);
        return;
      }
      if (flags.attach || flags.interactive) {
        if (containers.length > 1) throw new Error('you cannot start and attach multiple containers at once');
        const strata = await openStrata(ctx);
        await runAttached(ctx, flags.interactive ?? false, (io) => strata.start(containers[0]!, io));
        return;
      }
      const errors: string[] = [];
      for (const container of containers) {
        try {
          await startDetached(ctx, container);
          ctx.stdout.write(`${container}\n`);
        } catch (err) {
          errors.push(messageOf(err));
        }
      }
      failWith(ctx, errors);
    });
}
