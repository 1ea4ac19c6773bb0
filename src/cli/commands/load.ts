/**
 * `strata load`: images from a tar archive (docker save, old or Docker 25+
 * form; an OCI archive) on stdin or in a file, or from an OCI layout
 * directory, printed as `docker load` prints them.
 */
import type { Command } from 'commander';
import type { LoadedImage } from '../../archive/load.js';
import type { LoadInput } from '../../strata.js';
import type { CliContext } from '../main.js';
import { createProgress } from '../progress.js';
import { isTerminal, openStrata, statInput } from './common.js';

/** docker's lines: `Loaded image: NAME` per name, `Loaded image ID: ID` for an image loaded without one. */
export function loadedLines(images: readonly LoadedImage[]): string[] {
  const lines: string[] = [];
  for (const image of images) {
    if (image.tags.length === 0) lines.push(`Loaded image ID: ${image.id}`);
    for (const tag of image.tags) lines.push(`Loaded image: ${tag}`);
  }
  return lines;
}

/** Registers `strata load [-i FILE|DIR] [-q]`. */
export function registerLoadCommand(program: Command, ctx: CliContext): void {
  program
    .command('load')
    .usage('[OPTIONS]')
    .description('Load images from a tar archive or an OCI layout directory (read from STDIN by default)')
    .option('-i, --input <path>', 'Read from a tar archive file or an OCI layout directory, instead of STDIN')
    .option('-q, --quiet', 'Suppress the progress output (the loaded images are still listed)')
    .action(async (flags: { input?: string; quiet?: boolean }) => {
      let input: LoadInput;
      let total: number | undefined;
      if (flags.input !== undefined) {
        const info = await statInput(flags.input);
        input = info.isDirectory() ? { dir: flags.input } : { file: flags.input };
        if (!info.isDirectory()) total = info.size;
      } else {
        if (isTerminal(process.stdin)) throw new Error('requested load from stdin, but stdin is empty');
        input = process.stdin;
      }
      const strata = await openStrata(ctx);
      const progress = createProgress('Loading', total, { stream: ctx.stderr, quiet: flags.quiet === true });
      let loaded: LoadedImage[];
      try {
        loaded = await strata.load(input, { onProgress: (bytes) => progress.update(bytes) });
      } finally {
        progress.stop();
      }
      ctx.stdout.write(loadedLines(loaded).map((line) => `${line}\n`).join(''));
    });
}
