/**
 * `strata history IMAGE`: the table `docker history` prints, newest step
 * first (IMAGE, CREATED, CREATED BY, SIZE, COMMENT).
 */
import type { Command } from 'commander';
import { HISTORY_HEADERS, renderTable } from '../../image/views.js';
import type { CliContext } from '../main.js';
import { openStrata } from './common.js';

interface HistoryFlags {
  trunc?: boolean;
  quiet?: boolean;
  /** true when given bare, else the value that followed it. */
  human?: boolean | string;
}

/** Go's strconv.ParseBool, which docker's `--human=false` goes through; undefined when `value` is not a boolean. */
function parseGoBool(value: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false;
  return undefined;
}

/** Registers `strata history [--no-trunc] [-q] [-H] IMAGE`. */
export function registerHistoryCommand(program: Command, ctx: CliContext): void {
  program
    .command('history')
    .usage('[OPTIONS] IMAGE')
    .description('Show the history of an image')
    .argument('[image]', 'Image name, ID or ID prefix')
    .option('-H, --human [bool]', 'Print sizes and dates in human readable format (default true)')
    .option('--no-trunc', "Don't truncate output")
    .option('-q, --quiet', 'Only show image IDs')
    .action(async (imageArg: string | undefined, flags: HistoryFlags) => {
      // -H is a boolean taking its value only as `-H=false`; commander also
      // hands it the next word, so `history -H busybox` gives the image here.
      let image = imageArg;
      let human = true;
      if (typeof flags.human === 'string') {
        // Commander hands `-H=false` over as "=false".
        const parsed = parseGoBool(flags.human.replace(/^=/, ''));
        if (parsed !== undefined) human = parsed;
        else if (image === undefined) image = flags.human;
        else throw new Error(`invalid argument ${JSON.stringify(flags.human)} for "-H, --human" flag: parse error`);
      }
      if (image === undefined) throw new Error('"strata history" requires exactly 1 argument');
      const strata = await openStrata(ctx);
      const rows = await strata.history(image, { noTrunc: flags.trunc === false, human });
      if (flags.quiet) {
        ctx.stdout.write(rows.map((row) => `${row.image}\n`).join(''));
        return;
      }
      const headers = human ? [...HISTORY_HEADERS] : ['IMAGE', 'CREATED AT', 'CREATED BY', 'SIZE', 'COMMENT'];
      ctx.stdout.write(renderTable(headers, rows.map((row) => [row.image, row.created, row.createdBy, row.size, row.comment])));
    });
}
