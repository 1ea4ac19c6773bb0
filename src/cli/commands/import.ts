/**
 * `strata import`: a one-layer image from a root filesystem given as a
 * directory, a tarball (plain, gzip or zstd) or `-` for a tar on stdin, as
 * `docker import` makes one. Prints the new image's ID.
 */
import { createReadStream } from 'node:fs';
import type { Command } from 'commander';
import type { ImportOptions, ImportSource } from '../../archive/import.js';
import { parsePlatform } from '../../image/config.js';
import type { CliContext } from '../main.js';
import { createProgress } from '../progress.js';
import { collect, countBytes, isTerminal, openStrata, statInput } from './common.js';

interface ImportFlags {
  change?: string[];
  message?: string;
  platform?: string;
}

/** Registers `strata import [-c CHANGE]... [-m MSG] [--platform P] FILE|DIR|- [REPOSITORY[:TAG]]`. */
export function registerImportCommand(program: Command, ctx: CliContext): void {
  program
    .command('import')
    .usage('[OPTIONS] file|dir|- [REPOSITORY[:TAG]]')
    .description('Import the contents from a tarball or a directory to create a filesystem image')
    .argument('<source>', 'A tar file (plain, gzip or zstd), a directory, or - for a tar on stdin')
    .argument('[reference]', 'Name to tag the image with')
    .option('-c, --change <instruction>', 'Apply Dockerfile instruction to the created image (repeatable)', collect)
    .option('-m, --message <message>', 'Set commit message for imported image')
    .option('--platform <os/arch[/variant]>', 'Set platform of the imported image (default: this machine\'s)')
    .action(async (sourceArg: string, reference: string | undefined, flags: ImportFlags) => {
      const options: ImportOptions = {};
      if (reference !== undefined) options.ref = reference;
      if (flags.change) options.changes = flags.change;
      if (flags.message !== undefined) options.message = flags.message;
      if (flags.platform !== undefined) {
        const platform = parsePlatform(flags.platform);
        options.platform = { os: platform.os, architecture: platform.architecture, ...(platform.variant ? { variant: platform.variant } : {}) };
      }
      if (/^[a-z][a-z0-9+.-]*:\/\//i.test(sourceArg)) {
        throw new Error(`cannot import ${sourceArg}: importing from a URL is not supported; download it and import the file`);
      }

      let source: ImportSource;
      let total: number | undefined;
      if (sourceArg === '-') {
        if (isTerminal(process.stdin)) throw new Error('requested import from stdin, but stdin is a terminal; pipe a tar into it');
        source = { stream: process.stdin, label: '-' };
      } else {
        const info = await statInput(sourceArg);
        if (info.isDirectory()) source = { dir: sourceArg };
        else {
          total = info.size;
          source = { stream: createReadStream(sourceArg), label: sourceArg };
        }
      }
      const strata = await openStrata(ctx);
      const progress = 'stream' in source ? createProgress('Importing', total, { stream: ctx.stderr }) : undefined;
      try {
        if ('stream' in source && progress?.visible) source = { ...source, stream: countBytes(source.stream, (n) => progress.update(n)) };
        const result = await strata.import(source, options);
        progress?.stop();
        ctx.stdout.write(`${result.id}\n`);
      } finally {
        progress?.stop();
      }
    });
}
