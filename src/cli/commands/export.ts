/**
 * `strata export`: a container's whole file system as one tar (no layers, no
 * whiteouts, no volume content), to a file (`-o`, written atomically) or to
 * stdout, as `docker export` writes it.
 */
import type { Command } from 'commander';
import { exportContainer } from '../../container/export.js';
import { writeStreamToFile } from '../../strata.js';
import type { CliContext } from '../main.js';
import { refuseTerminalOutput, streamToStdout } from './common.js';
import { openContainerEngine } from './create.js';

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
      const engine = await openContainerEngine(ctx);
      const container = await engine.containers.get(name);
      const tar = exportContainer(container);
      if (flags.output !== undefined) await writeStreamToFile(tar, flags.output);
      else await streamToStdout(ctx, tar);
    });
}
