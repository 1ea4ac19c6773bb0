/** `strata tag SOURCE TARGET`: gives an image another name, as `docker tag` does. */
import type { Command } from 'commander';
import type { CliContext } from '../main.js';
import { openStrata } from './common.js';

/** Registers `strata tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]`. */
export function registerTagCommand(program: Command, ctx: CliContext): void {
  program
    .command('tag')
    .usage('SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]')
    .description('Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE')
    .argument('<source>', 'Image name, ID or ID prefix')
    .argument('<target>', 'New name (tag) for it')
    .action(async (source: string, target: string) => {
      const strata = await openStrata(ctx);
      await strata.tag(source, target);
    });
}
