/**
 * `strata inspect REF...`: a JSON array of `docker image inspect` documents,
 * indented as docker prints them. Like docker, the images found are printed
 * even when some are not, and each missing one is then reported on its own
 * line ("No such object: X") with exit status 1.
 */
import type { Command } from 'commander';
import { ImageNotFoundError } from '../../image/image-store.js';
import type { ImageInspect } from '../../image/views.js';
import { formatJson } from '../output.js';
import type { CliContext } from '../main.js';
import { failWith, messageOf, openStrata } from './common.js';

/** Registers `strata inspect REF...`. */
export function registerInspectCommand(program: Command, ctx: CliContext): void {
  program
    .command('inspect')
    .usage('[OPTIONS] IMAGE [IMAGE...]')
    .description('Return low-level information on images')
    .argument('<image...>', 'Image names, IDs or ID prefixes')
    .action(async (refs: string[]) => {
      const strata = await openStrata(ctx);
      const found: ImageInspect[] = [];
      const errors: string[] = [];
      for (const ref of refs) {
        try {
          found.push(await strata.inspect(ref));
        } catch (err) {
          errors.push(err instanceof ImageNotFoundError ? `No such object: ${ref}` : messageOf(err));
        }
      }
      ctx.stdout.write(formatJson(found));
      failWith(ctx, errors);
    });
}
