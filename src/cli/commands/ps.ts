/**
 * `strata ps`: the table `docker ps` prints (CONTAINER ID, IMAGE, COMMAND,
 * CREATED, STATUS, PORTS, NAMES), newest first; running containers only
 * unless `-a`.
 */
import type { Command } from 'commander';
import type { Container } from '../../container/container-store.js';
import { containerCommand } from '../../container/run.js';
import type { ImageStore } from '../../image/image-store.js';
import { ellipsis, humanDuration, renderTable, truncateId } from '../../image/views.js';
import type { CliContext } from '../main.js';
import { openStrata } from './common.js';

interface PsFlags {
  all?: boolean;
  quiet?: boolean;
  trunc?: boolean;
}

/** Column titles of `docker ps`. */
export const PS_HEADERS = ['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES'] as const;

/**
 * Docker's STATUS: `Created`, `Up 5 minutes`, `Exited (0) 2 hours ago`; a
 * record that says running whose process is gone (its supervisor died) is `Dead`.
 */
export function containerStatus(container: Container, now = Date.now()): string {
  const state = container.record.State;
  switch (state.Status) {
    case 'created':
      return 'Created';
    case 'running':
      return container.isRunning ? `Up ${humanDuration(now - Date.parse(state.StartedAt))}` : 'Dead';
    case 'exited':
      return `Exited (${state.ExitCode}) ${humanDuration(now - Date.parse(state.FinishedAt))} ago`;
  }
}

/**
 * Docker's IMAGE column: the reference the container was created from while
 * it still names the same image, else the image ID.
 */
async function imageColumn(images: ImageStore, container: Container, noTrunc: boolean): Promise<string> {
  const { ImageRef, Image } = container.record;
  try {
    if ((await images.resolve(ImageRef)).id === Image) return ImageRef;
  } catch {
    // The name is gone or points elsewhere now.
  }
  return noTrunc ? Image : truncateId(Image);
}

/** Docker's COMMAND column: Entrypoint and Cmd joined, cut to 20 columns unless `--no-trunc`, quoted. */
export function commandColumn(container: Container, noTrunc: boolean): string {
  const command = containerCommand(container.record.Config).join(' ');
  return JSON.stringify(noTrunc ? command : ellipsis(command, 20));
}

/** Registers `strata ps [-a] [-q] [--no-trunc]`. */
export function registerPsCommand(program: Command, ctx: CliContext): void {
  program
    .command('ps')
    .usage('[OPTIONS]')
    .description('List containers')
    .option('-a, --all', 'Show all containers (default shows just running)')
    .option('-q, --quiet', 'Only display container IDs')
    .option('--no-trunc', "Don't truncate output")
    .action(async (flags: PsFlags) => {
      const strata = await openStrata(ctx);
      const noTrunc = flags.trunc === false;
      const containers = await strata.listContainers({ all: flags.all === true });
      const id = (c: Container): string => (noTrunc ? c.id : c.id.slice(0, 12));
      if (flags.quiet) {
        ctx.stdout.write(containers.map((c) => `${id(c)}\n`).join(''));
        return;
      }
      const now = Date.now();
      const rows: string[][] = [];
      for (const container of containers) {
        rows.push([
          id(container),
          await imageColumn(strata.images, container, noTrunc),
          commandColumn(container, noTrunc),
          `${humanDuration(now - Date.parse(container.record.Created))} ago`,
          containerStatus(container, now),
          '',
          container.name,
        ]);
      }
      ctx.stdout.write(renderTable(PS_HEADERS, rows));
    });
}
