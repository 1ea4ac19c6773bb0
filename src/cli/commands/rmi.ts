/**
 * `strata rmi IMAGE...`: removes names and images as `docker rmi` does,
 * printing `Untagged: …` and `Deleted: sha256:…` lines, then collects
 * garbage so the space is freed at once (Docker deletes layers immediately
 * too). A failure for one image is reported and the others still go.
 */
import type { Command } from 'commander';
import type { CliContext } from '../main.js';
import { failWith, openStrata } from './common.js';

/** Registers `strata rmi [-f] IMAGE...`. */
export function registerRmiCommand(program: Command, ctx: CliContext): void {
  program
    .command('rmi')
    .usage('[OPTIONS] IMAGE [IMAGE...]')
    .description('Remove one or more images')
    .argument('<image...>', 'Image names, IDs or ID prefixes')
    .option('-f, --force', 'Force removal of the image')
    .action(async (refs: string[], flags: { force?: boolean }) => {
      const strata = await openStrata(ctx);
      const { items, gcError } = await strata.rmi(refs, { force: flags.force === true });
      const errors: string[] = [];
      for (const item of items) {
        if (item.error) {
          errors.push(item.error.message);
          continue;
        }
        for (const name of item.untagged) ctx.stdout.write(`Untagged: ${name}\n`);
        for (const id of item.deleted) ctx.stdout.write(`Deleted: ${id}\n`);
      }
      if (gcError) errors.push(`images removed, but freeing their space failed: ${gcError.message}`);
      failWith(ctx, errors);
    });
}
