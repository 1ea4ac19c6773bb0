/**
 * `strata save`: images as one tar, to a file (`-o`, written atomically) or
 * to stdout, as `docker save` writes them. The default format is Docker
 * 25's (an OCI layout plus manifest.json), which both `docker load` and OCI
 * tools read; `--format oci` leaves Docker's files out.
 */
import type { Command } from 'commander';
import type { SaveFormat } from '../../archive/save.js';
import type { CliContext } from '../main.js';
import { createProgress } from '../progress.js';
import { openStrata, refuseTerminalOutput, streamToStdout } from './common.js';

interface SaveFlags {
  output?: string;
  format?: string;
}

function saveFormat(text: string | undefined): SaveFormat {
  if (text === undefined || text === 'docker') return 'docker';
  if (text === 'oci') return 'oci';
  throw new Error(`unsupported --format ${JSON.stringify(text)}: use docker or oci`);
}

/** Registers `strata save [-o FILE] [--format docker|oci] IMAGE...`. */
export function registerSaveCommand(program: Command, ctx: CliContext): void {
  program
    .command('save')
    .usage('[OPTIONS] IMAGE [IMAGE...]')
    .description('Save one or more images to a tar archive (streamed to STDOUT by default)')
    .argument('<image...>', 'Image names, IDs or ID prefixes')
    .option('-o, --output <file>', 'Write to a file, instead of STDOUT')
    .option('--format <format>', "Archive format: 'docker' (docker load and OCI tools read it) or 'oci'", 'docker')
    .action(async (refs: string[], flags: SaveFlags) => {
      const format = saveFormat(flags.format);
      if (flags.output === undefined) refuseTerminalOutput(ctx, 'save');
      const strata = await openStrata(ctx);
      // Resolved before a byte is written: a missing image leaves stdout empty and no file behind.
      const items = await strata.saveItems(refs);
      const progress = createProgress('Saving', undefined, { stream: ctx.stderr });
      let totalKnown = false;
      const onProgress = (done: number, total: number): void => {
        if (!totalKnown) progress.setTotal(total);
        totalKnown = true;
        progress.update(done);
      };
      try {
        if (flags.output !== undefined) await strata.saveToFile(items, flags.output, { format, onProgress });
        else await streamToStdout(ctx, strata.save(items, { format, onProgress }));
      } finally {
        progress.stop();
      }
    });
}
