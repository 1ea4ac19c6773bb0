/**
 * `strata images`: the table `docker images` prints (REPOSITORY, TAG,
 * IMAGE ID, CREATED, SIZE), newest first, dangling images as `<none>`.
 */
import type { Command } from 'commander';
import type { ImageSummary } from '../../image/image-store.js';
import { parseReference, parseRepositoryReference } from '../../image/reference.js';
import { imagesCells, imagesHeaders, imagesRows, renderTable, type ImagesOptions } from '../../image/views.js';
import type { CliContext } from '../main.js';
import { openStrata } from './common.js';

interface ImagesFlags {
  quiet?: boolean;
  all?: boolean;
  trunc?: boolean;
  digests?: boolean;
}

/**
 * The images a `REPOSITORY[:TAG]` argument selects, each narrowed to the
 * matching names (so a multi-tagged image shows only the asked-for rows);
 * dangling images never match, as with docker.
 */
export function filterByReference(list: ImageSummary[], filter: string): ImageSummary[] {
  const wanted = parseRepositoryReference(filter);
  const matches = (text: string, byTag: boolean): boolean => {
    try {
      const ref = parseReference(text);
      if (ref.name !== wanted.name) return false;
      return !byTag || wanted.tag === undefined || ref.tag === wanted.tag;
    } catch {
      return false;
    }
  };
  const out: ImageSummary[] = [];
  for (const image of list) {
    const repoTags = image.repoTags.filter((t) => matches(t, true));
    // A digest-only name matches a bare repository filter, never a tag filter.
    const repoDigests = image.repoDigests.filter((d) => matches(d, false) && (wanted.tag === undefined || repoTags.length > 0));
    if (repoTags.length === 0 && repoDigests.length === 0) continue;
    out.push({ ...image, repoTags, repoDigests });
  }
  return out;
}

/** Registers `strata images [-q] [-a] [--no-trunc] [--digests] [REPOSITORY[:TAG]]`. */
export function registerImagesCommand(program: Command, ctx: CliContext): void {
  program
    .command('images')
    .usage('[OPTIONS] [REPOSITORY[:TAG]]')
    .description('List images')
    .argument('[reference]', 'Show only images of this repository (and tag)')
    .option('-q, --quiet', 'Only show image IDs')
    .option('-a, --all', 'Show all images (strata keeps no intermediate images, so this lists the same)')
    .option('--no-trunc', "Don't truncate output")
    .option('--digests', 'Show digests')
    .action(async (reference: string | undefined, flags: ImagesFlags) => {
      const strata = await openStrata(ctx);
      let list = await strata.list();
      if (reference !== undefined) list = filterByReference(list, reference);
      const options: ImagesOptions = { noTrunc: flags.trunc === false, digests: flags.digests === true };
      const rows = imagesRows(list, options);
      if (flags.quiet) {
        ctx.stdout.write(rows.map((row) => `${row.imageId}\n`).join(''));
        return;
      }
      ctx.stdout.write(renderTable(imagesHeaders(options), rows.map((row) => imagesCells(row, options))));
    });
}
