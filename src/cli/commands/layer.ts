/**
 * `strata layer`: commands on single layers. `layer export` streams one
 * layer's tar, named by its blob digest, DiffID or ChainID, in the
 * compression asked for; the bytes are verified as they go, and a file
 * written with `-o` appears only once they all checked out.
 */
import type { Command } from 'commander';
import type { Compression } from '../../image/mediatypes.js';
import { writeStreamToFile } from '../../strata.js';
import type { CliContext } from '../main.js';
import { createProgress } from '../progress.js';
import { countBytes, openStrata, refuseTerminalOutput, streamToStdout } from './common.js';

const COMPRESSIONS: readonly Compression[] = ['none', 'gzip', 'zstd'];

function compressionOf(text: string): Compression {
  if ((COMPRESSIONS as readonly string[]).includes(text)) return text as Compression;
  throw new Error(`unsupported --compression ${JSON.stringify(text)}: use none, gzip or zstd`);
}

/** Registers `strata layer export [--compression none|gzip|zstd] [-o FILE] DIGEST`. */
export function registerLayerCommands(program: Command, ctx: CliContext): void {
  const layer = program.command('layer').usage('COMMAND').description('Manage layers');
  layer
    .command('export')
    .usage('[OPTIONS] DIGEST')
    .description("Write one layer's tar (by blob digest, DiffID or ChainID) to STDOUT or a file")
    .argument('<digest>', 'Layer blob digest, DiffID or ChainID (sha256:…)')
    .option('--compression <type>', 'Compression of the output: none, gzip or zstd', 'none')
    .option('-o, --output <file>', 'Write to a file, instead of STDOUT')
    .action(async (digest: string, flags: { compression: string; output?: string }) => {
      const compression = compressionOf(flags.compression);
      if (flags.output === undefined) refuseTerminalOutput(ctx, 'export a layer');
      const strata = await openStrata(ctx);
      const progress = createProgress('Exporting', undefined, { stream: ctx.stderr });
      try {
        let tar: NodeJS.ReadableStream = strata.exportLayer(digest, { compression });
        if (progress.visible) tar = countBytes(tar, (n) => progress.update(n));
        if (flags.output !== undefined) await writeStreamToFile(tar, flags.output);
        else await streamToStdout(ctx, tar);
      } finally {
        progress.stop();
      }
    });
}
