/**
 * `strata export`: a container's whole file system as one tar (no layers, no
 * whiteouts, no volume content), to a file (`-o`, written atomically) or to
 * stdout, as `docker export` writes it.
 */
import type { Command } from 'commander';
import { writeStreamToFile } from '../../strata.js';
import type { CliContext } from '../main.js';
import { openStrata, refuseTerminalOutput, streamToStdout } from './common.js';

/** Registers `strata export [-o FILE] CONTAINER`. */
export function registerExportCommand(program: Command, ctx: CliContext): void {
  program
    .command('export')
    .usage('[OPTIONS] CONTAINER')
    .description("Export a container's filesystem as a tar archive")
    .argument('<container>', 'Container name, ID or ID prefix')
    .option('-o, --output <file>', 'Write to a file, instead of STDOUT')
    .action(async (name: string, flags: { output?: string }) => {
      if (flags.output === undefined) refuseTerminalOutput(ctx, 'save');
      const strata = await openStrata(ctx);
      // Looked up first, so that a missing container is an error before -o's file is touched.
      const tar = strata.exportContainer(await strata.container(name));
      if (flags.output !== undefined) await writeStreamToFile(tar, flags.output);
      else await streamToStdout(ctx, tar);
    });
}
