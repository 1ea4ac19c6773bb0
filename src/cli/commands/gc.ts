/**
 * `strata gc`: removes every blob nothing references (no image, no lease,
 * no registered root) and says how much space that freed, in the words of
 * `docker image prune`.
 */
import type { Command } from 'commander';
import type { CliContext } from '../main.js';
import { humanSize } from '../output.js';
import { openStrata } from './common.js';

/** Registers `strata gc [-q]`. */
export function registerGcCommand(program: Command, ctx: CliContext): void {
  program
    .command('gc')
    .description('Remove blobs that no image references and report the space reclaimed')
    .option('-q, --quiet', 'Print only the total reclaimed space')
    .action(async (flags: { quiet?: boolean }) => {
      const strata = await openStrata(ctx);
      const result = await strata.gc();
      if (!flags.quiet && result.removed.length > 0) {
        ctx.stdout.write(`Deleted Blobs:\n${result.removed.map((digest) => `deleted: ${digest}\n`).join('')}\n`);
      }
      // docker's prune reports with go-units HumanSize (4 significant digits).
      ctx.stdout.write(`Total reclaimed space: ${humanSize(result.bytes, 4)}\n`);
    });
}
