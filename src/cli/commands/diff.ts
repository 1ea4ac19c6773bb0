/**
 * `strata diff`: what a container changed in its file system, one
 * `A`/`C`/`D` line per path, as `docker diff` prints it. Volume content is
 * not part of it.
 */
import type { Command } from 'commander';
import { formatChanges } from '../../container/diff.js';
import type { CliContext } from '../main.js';
import { openStrata } from './common.js';

/** Registers `strata diff CONTAINER`. */
export function registerDiffCommand(program: Command, ctx: CliContext): void {
  program
    .command('diff')
    .usage('CONTAINER')
    .description("Inspect changes to files or directories on a container's filesystem")
    .argument('<container>', 'Container name, ID or ID prefix')
    .action(async (name: string) => {
      const strata = await openStrata(ctx);
      ctx.stdout.write(formatChanges(await strata.diff(name)));
    });
}
