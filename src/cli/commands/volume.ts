/**
 * `strata volume`: create, list, inspect, remove and prune volumes as
 * `docker volume` does, plus `export` and `import` of a volume's content as
 * a tar. Removal refuses a volume a container uses (Docker's "volume is in
 * use" message), with or without `-f`'s tolerance of missing names.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { renderTable } from '../../image/views.js';
import { writeStreamToFile } from '../../strata.js';
import { VolumeRemoveError } from '../../volume/volume-store.js';
import { formatJson, humanSize } from '../output.js';
import type { CliContext } from '../main.js';
import { collect, failWith, isTerminal, messageOf, openStrata, refuseTerminalOutput, statInput, streamToStdout } from './common.js';

const PRUNE_ANONYMOUS_WARNING = `WARNING! This will remove anonymous local volumes not used by at least one container.
Are you sure you want to continue?`;
const PRUNE_ALL_WARNING = `WARNING! This will remove all local volumes not used by at least one container.
Are you sure you want to continue?`;

function keyValues(values: readonly string[] | undefined, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values ?? []) {
    const eq = value.indexOf('=');
    if (eq === 0 || value === '') throw new Error(`invalid ${what} '${value}': empty name`);
    if (eq < 0) out[value] = '';
    else out[value.slice(0, eq)] = value.slice(eq + 1);
  }
  return out;
}

/** docker's PromptForConfirmation: `MESSAGE [y/N] ` on stdout, then one word from stdin; only `y`/`Y` agree. */
async function confirm(ctx: CliContext, message: string): Promise<boolean> {
  ctx.stdout.write(`${message} [y/N] `);
  if (process.stdin.readableEnded) return false;
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  try {
    for await (const line of lines) {
      const word = line.trim().split(/\s+/)[0] ?? '';
      if (word === '') continue;
      return word === 'y' || word === 'Y';
    }
    return false;
  } finally {
    lines.close();
  }
}

/** Registers `strata volume create|ls|inspect|rm|prune|export|import`. */
export function registerVolumeCommands(program: Command, ctx: CliContext): void {
  const volume = program.command('volume').usage('COMMAND').description('Manage volumes');

  volume
    .command('create')
    .usage('[OPTIONS] [VOLUME]')
    .description('Create a volume')
    .argument('[name]', 'Volume name (a random one when absent)')
    .option('-d, --driver <driver>', 'Specify volume driver name', 'local')
    .option('--label <label>', 'Set metadata for a volume (KEY=VALUE)', collect)
    .option('-o, --opt <option>', 'Set driver specific options (KEY=VALUE)', collect)
    .action(async (name: string | undefined, flags: { driver: string; label?: string[]; opt?: string[] }) => {
      const { volumes } = await openStrata(ctx);
      const info = await volumes.create(name, { driver: flags.driver, labels: keyValues(flags.label, 'label'), options: keyValues(flags.opt, 'option') });
      ctx.stdout.write(`${info.name}\n`);
    });

  volume
    .command('ls')
    .alias('list')
    .usage('[OPTIONS]')
    .description('List volumes')
    .option('-q, --quiet', 'Only display volume names')
    .option('-f, --filter <filter>', "Provide filter values (e.g. 'dangling=true', 'name=data', 'label=k=v')", collect)
    .action(async (flags: { quiet?: boolean; filter?: string[] }) => {
      const { volumes } = await openStrata(ctx);
      const list = await volumes.list({ filters: flags.filter ?? [] });
      if (flags.quiet) {
        ctx.stdout.write(list.map((v) => `${v.name}\n`).join(''));
        return;
      }
      ctx.stdout.write(renderTable(['DRIVER', 'VOLUME NAME'], list.map((v) => [v.driver, v.name])));
    });

  volume
    .command('inspect')
    .usage('VOLUME [VOLUME...]')
    .description('Display detailed information on one or more volumes')
    .argument('<name...>', 'Volume names')
    .action(async (names: string[]) => {
      const { volumes } = await openStrata(ctx);
      const found = [];
      const errors: string[] = [];
      for (const name of names) {
        try {
          found.push(...(await volumes.inspect([name])));
        } catch (err) {
          errors.push(`Error: ${messageOf(err)}`);
        }
      }
      ctx.stdout.write(formatJson(found));
      failWith(ctx, errors);
    });

  volume
    .command('rm')
    .alias('remove')
    .usage('[OPTIONS] VOLUME [VOLUME...]')
    .description('Remove one or more volumes. You cannot remove a volume that is in use by a container.')
    .argument('<name...>', 'Volume names')
    .option('-f, --force', 'Do not fail on volumes that do not exist')
    .action(async (names: string[], flags: { force?: boolean }) => {
      const { volumes } = await openStrata(ctx);
      const errors: string[] = [];
      for (const name of names) {
        try {
          // -f only forgives a missing volume: an in-use one is refused either way, as with docker.
          if (flags.force && !(await volumes.exists(name))) {
            ctx.stdout.write(`${name}\n`);
            continue;
          }
          await volumes.remove([name]);
          ctx.stdout.write(`${name}\n`);
        } catch (err) {
          if (err instanceof VolumeRemoveError) errors.push(...err.errors.map((e) => e.message));
          else errors.push(messageOf(err));
        }
      }
      failWith(ctx, errors);
    });

  volume
    .command('prune')
    .usage('[OPTIONS]')
    .description('Remove unused local volumes (anonymous ones only, unless --all)')
    .option('-a, --all', 'Remove all unused volumes, not just anonymous ones')
    .option('-f, --force', 'Do not prompt for confirmation')
    .option('--filter <filter>', "Provide filter values (e.g. 'label=<key>=<value>')", collect)
    .action(async (flags: { all?: boolean; force?: boolean; filter?: string[] }) => {
      const { volumes } = await openStrata(ctx);
      let reclaimed = 0;
      if (flags.force || (await confirm(ctx, flags.all ? PRUNE_ALL_WARNING : PRUNE_ANONYMOUS_WARNING))) {
        const report = await volumes.prune({ all: flags.all === true, filters: flags.filter ?? [] });
        if (report.volumesDeleted.length > 0) {
          ctx.stdout.write(`Deleted Volumes:\n${report.volumesDeleted.map((name) => `${name}\n`).join('')}\n`);
          reclaimed = report.spaceReclaimed;
        }
      }
      ctx.stdout.write(`Total reclaimed space: ${humanSize(reclaimed, 4)}\n`);
    });

  volume
    .command('export')
    .usage('[OPTIONS] VOLUME')
    .description("Export a volume's content as a tar archive (streamed to STDOUT by default)")
    .argument('<name>', 'Volume name')
    .option('-o, --output <file>', 'Write to a file, instead of STDOUT')
    .action(async (name: string, flags: { output?: string }) => {
      if (flags.output === undefined) refuseTerminalOutput(ctx, 'save');
      const { volumes } = await openStrata(ctx);
      await volumes.get(name);
      const tar = volumes.exportTar(name);
      if (flags.output !== undefined) await writeStreamToFile(tar, flags.output);
      else await streamToStdout(ctx, tar);
    });

  volume
    .command('import')
    .usage('VOLUME FILE|-')
    .description("Replace a volume's content with a tar archive (created if missing)")
    .argument('<name>', 'Volume name')
    .argument('<file>', 'A tar archive, or - for STDIN')
    .action(async (name: string, file: string) => {
      let input: NodeJS.ReadableStream;
      if (file === '-') {
        if (isTerminal(process.stdin)) throw new Error('requested import from stdin, but stdin is a terminal');
        input = process.stdin;
      } else {
        await statInput(file);
        input = createReadStream(file);
      }
      const { volumes } = await openStrata(ctx);
      await volumes.importTar(name, input);
    });
}
