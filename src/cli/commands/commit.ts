/**
 * `strata commit`: a new image from a container's changes, printing its ID
 * (`sha256:…`) as `docker commit` does. A running container is paused for the
 * commit (the runtime's freezer) unless `--pause=false`.
 */
import type { Command } from 'commander';
import type { CommitOptions } from '../../container/commit.js';
import type { CliContext } from '../main.js';
import { collect, openStrata } from './common.js';

interface CommitFlags {
  change?: string[];
  message?: string;
  author?: string;
  pause?: string | boolean;
}

function parsePause(value: string | boolean | undefined): boolean {
  if (value === undefined || value === true) return true;
  if (value === false) return false;
  if (/^(1|t|true)$/i.test(value)) return true;
  if (/^(0|f|false)$/i.test(value)) return false;
  throw new Error(`invalid argument "${value}" for "-p, --pause" flag: strconv.ParseBool: parsing "${value}": invalid syntax`);
}

/** Registers `strata commit [-c CHANGE]... [-m MSG] [-a AUTHOR] [-p BOOL] CONTAINER [REPOSITORY[:TAG]]`. */
export function registerCommitCommand(program: Command, ctx: CliContext): void {
  program
    .command('commit')
    .usage('[OPTIONS] CONTAINER [REPOSITORY[:TAG]]')
    .description("Create a new image from a container's changes")
    .argument('<container>', 'Container name, ID or ID prefix')
    .argument('[reference]', 'Name for the new image')
    .option('-c, --change <instruction>', 'Apply Dockerfile instruction to the created image', collect)
    .option('-m, --message <message>', 'Commit message')
    .option('-a, --author <author>', 'Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
    .option('-p, --pause [bool]', 'Pause container during commit (default true)')
    .action(async (name: string, reference: string | undefined, flags: CommitFlags) => {
      const pause = parsePause(flags.pause);
      const strata = await openStrata(ctx);
      const opts: CommitOptions = { pause };
      if (reference !== undefined) opts.ref = reference;
      if (flags.change !== undefined) opts.changes = flags.change;
      if (flags.message !== undefined) opts.message = flags.message;
      if (flags.author !== undefined) opts.author = flags.author;
      const image = await strata.commit(name, opts);
      ctx.stdout.write(`${image.id}\n`);
    });
}
