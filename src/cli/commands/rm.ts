/**
 * `strata rm`: removes containers as `docker rm` does, printing each one as
 * given. A running container needs `-f` (which kills it); `-v` removes the
 * container's anonymous volumes too, never named ones. A failure for one
 * container is reported and the others still go.
 */
import type { Command } from 'commander';
import type { CliContext } from '../main.js';
import { failWith, messageOf, openStrata } from './common.js';

/** Registers `strata rm [-f] [-v] CONTAINER...`. */
export function registerRmCommand(program: Command, ctx: CliContext): void {
  program
    .command('rm')
    .usage('[OPTIONS] CONTAINER [CONTAINER...]')
    .description('Remove one or more containers')
    .argument('<container...>', 'Container names, IDs or ID prefixes')
    .option('-f, --force', 'Force the removal of a running container (kills it)')
    .option('-v, --volumes', 'Remove anonymous volumes associated with the container')
    .action(async (containers: string[], flags: { force?: boolean; volumes?: boolean }) => {
      const strata = await openStrata(ctx);
      const errors: string[] = [];
      for (const container of containers) {
        try {
          await strata.removeContainer(container, { force: flags.force === true, volumes: flags.volumes === true });
          ctx.stdout.write(`${container}\n`);
        } catch (err) {
          errors.push(messageOf(err));
        }
      }
      failWith(ctx, errors);
    });
}
