/**
 * `strata demo` (what `npm run demo` runs): builds the sample app that ships
 * with strata (`testdata/sample-app`: FROM scratch, COPY and metadata, so no
 * root is needed) with the real build engine, saves the image as a docker
 * archive in the current directory, and says what it made and what to try
 * next.
 *
 * Running it again changes nothing: the build is dated by SOURCE_DATE_EPOCH,
 * or else by the newest file the build reads, so every step is a cache hit,
 * and the image ID and the archive's bytes stay the same. Should the sample
 * change, the previous demo image is removed (its layers stay in the build
 * cache, as Docker's do).
 */
import { stat } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { packageFile } from '../paths.js';
import type { Command } from 'commander';
import { loadDockerignore } from '../../build/dockerignore.js';
import type { Digest } from '../../content/digest.js';
import { compressionOfMediaType } from '../../image/mediatypes.js';
import { walkTree } from '../../tar/walk.js';
import type { Strata } from '../../strata.js';
import { defaultRoot } from '../../util/root.js';
import type { CliContext } from '../main.js';
import { humanSize } from '../output.js';
import { openStrata } from './common.js';

/** The name the demo image gets. */
export const DEMO_REF = 'strata-demo/sample-app:latest';
/** The archive the demo writes, relative to the current directory. */
export const DEMO_ARCHIVE = 'strata-demo.tar';

/** The sample app, found beside the installed package (dist/cli/commands → package root), not the current directory. */
export function sampleAppDir(): string {
  return packageFile('testdata/sample-app/').replace(/\/$/, '');
}

/**
 * The build's date when SOURCE_DATE_EPOCH is not set: the newest mtime (whole
 * seconds) among the files the build reads — the Dockerfile, the
 * `.dockerignore` and every context file it does not exclude — so the date
 * moves only when the sample does.
 */
export async function contextEpoch(contextDir: string): Promise<number> {
  const ignore = await loadDockerignore(contextDir);
  let newest = 0;
  const filter = (path: string, isDir: boolean): boolean => (isDir ? ignore.shouldDescend(path) || !ignore.ignores(path) : ignore.sentToBuilder(path));
  for await (const entry of walkTree(contextDir, { filter })) {
    if (entry.header.type === 'directory') continue;
    newest = Math.max(newest, Math.floor(entry.header.mtime));
  }
  return newest;
}

/** `SOURCE_DATE_EPOCH` when set to a whole number of seconds. */
function sourceDateEpoch(env: NodeJS.ProcessEnv): number | undefined {
  const text = env.SOURCE_DATE_EPOCH;
  if (text === undefined || text === '') return undefined;
  if (!/^\d+$/.test(text)) throw new Error(`SOURCE_DATE_EPOCH must be a whole number of seconds, not ${JSON.stringify(text)}`);
  return Number(text);
}

/** Quotes a word for a POSIX shell when it needs it. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** A layer of the demo image. */
export interface DemoLayer {
  /** Blob digest (what `docker save` names it by). */
  digest: Digest;
  /** Blob size. */
  size: number;
  mediaType: string;
  diffId: Digest;
  /** Size of the plain tar. */
  uncompressedSize: number;
}

/** One build step, as the demo reports it. */
export interface DemoStep {
  /** The instruction as written, on one line. */
  instruction: string;
  /** Whether the step's result came from the build cache (always true for FROM). */
  cached: boolean;
  /** The layer the step added, if it added one. */
  layer?: DemoLayer;
}

/** What {@link runDemo} made. */
export interface DemoResult {
  id: Digest;
  manifestDigest: Digest;
  /** The seconds the build was dated with (and file times clamped to). */
  sourceDateEpoch: number;
  /** Whether the image was already there, identical, before this run. */
  unchanged: boolean;
  /** A previous demo image removed because the sample changed. */
  replaced?: Digest;
  steps: DemoStep[];
  /** The image's layers, bottom first. */
  layers: DemoLayer[];
  archive: string;
  archiveSize: number;
}

/**
 * Builds `contextDir`'s Dockerfile into `strata` as {@link DEMO_REF} and
 * saves it (docker format) to `archive`, written atomically.
 */
export async function runDemo(strata: Strata, contextDir: string, archive: string, env: NodeJS.ProcessEnv): Promise<DemoResult> {
  const epoch = sourceDateEpoch(env) ?? (await contextEpoch(contextDir));
  const previous = await strata.images.resolve(DEMO_REF).then(
    (image) => image.id,
    () => undefined,
  );
  const built = await strata.build({ contextDir, tags: [DEMO_REF], sourceDateEpoch: epoch });

  let replaced: Digest | undefined;
  if (previous !== undefined && previous !== built.id) {
    // The old image lost its tag to the new one; drop it unless something else still names it.
    const old = await strata.images.resolve(previous).catch(() => undefined);
    if (old && old.repoTags.length === 0 && old.repoDigests.length === 0) {
      const removal = await strata.rmi([previous]);
      if (removal.items[0]?.error === undefined) replaced = previous;
    }
  }

  const image = await strata.images.resolve(built.id);
  const sizes = await strata.images.layerSizesOf(image.manifest, image.config);
  const layers: DemoLayer[] = image.manifest.layers.map((layer, i) => ({
    digest: layer.digest as Digest,
    size: layer.size,
    mediaType: layer.mediaType,
    diffId: image.config.rootfs.diff_ids[i]! as Digest,
    uncompressedSize: sizes[i]!,
  }));
  const byDiffId = new Map(layers.map((layer) => [layer.diffId, layer]));
  const steps = built.steps.map((step): DemoStep => {
    const out: DemoStep = { instruction: step.instruction.replace(/\\?\s*\n\s*/g, ' ').replace(/\s+/g, ' ').trim(), cached: step.cached };
    const layer = step.layer !== undefined ? byDiffId.get(step.layer) : undefined;
    if (layer) out.layer = layer;
    return out;
  });

  await strata.saveToFile([DEMO_REF], archive, { format: 'docker' });
  const result: DemoResult = {
    id: built.id,
    manifestDigest: built.manifestDigest,
    sourceDateEpoch: epoch,
    unchanged: previous === built.id,
    steps,
    layers,
    archive,
    archiveSize: (await stat(archive)).size,
  };
  if (replaced !== undefined) result.replaced = replaced;
  return result;
}

/** `text` cut to `width` columns with an ellipsis, then padded to it. */
function column(text: string, width: number): string {
  const cut = text.length > width ? `${text.slice(0, width - 1)}…` : text;
  return cut.padEnd(width);
}

/** The report {@link registerDemoCommand} prints. */
export function formatDemo(result: DemoResult, opts: { root: string; rootFlag: string; shownContext: string }): string {
  const width = Math.min(56, Math.max(...result.steps.map((s) => s.instruction.length)));
  const numberWidth = String(result.steps.length).length * 2 + 1;
  const stepLines = result.steps.flatMap((step, i) => {
    const status = step.instruction.startsWith('FROM ') ? 'base' : step.cached ? 'cached' : 'built';
    const lines = [`    ${`${i + 1}/${result.steps.length}`.padStart(numberWidth)}  ${column(step.instruction, width)}  ${status}`];
    const l = step.layer;
    if (l) {
      const compression = compressionOfMediaType(l.mediaType) ?? l.mediaType;
      // Build layers are stored as plain tars unless asked otherwise; then the blob is the tar.
      const size = compression === 'none' ? `${humanSize(l.size)} tar` : `${humanSize(l.size)} ${compression}, ${humanSize(l.uncompressedSize)} as tar`;
      lines.push(`    ${' '.repeat(numberWidth)}  layer ${l.digest}  ${size}`);
    }
    return lines;
  });
  const { rootFlag } = opts;
  const date = new Date(result.sourceDateEpoch * 1000).toISOString().replace('.000Z', 'Z');
  const lines = [
    `Built ${DEMO_REF} from ${opts.shownContext}/Dockerfile${result.unchanged ? ' (unchanged since the last run)' : ''}`,
    `  image ID:  ${result.id}`,
    `  manifest:  ${result.manifestDigest}`,
    `  dated:     ${date} (SOURCE_DATE_EPOCH=${result.sourceDateEpoch})`,
    `  steps:`,
    ...stepLines,
    `  store:     ${opts.root}`,
    ...(result.replaced ? [`  replaced:  ${result.replaced} (the previous demo image, removed)`] : []),
    `Saved it to ${result.archive} (${humanSize(result.archiveSize)}, docker format)`,
    '',
    'Try next:',
    `  strata${rootFlag} images`,
    `  strata${rootFlag} history ${DEMO_REF}`,
    `  strata${rootFlag} inspect ${DEMO_REF}`,
    `  strata${rootFlag} build --source-date-epoch ${result.sourceDateEpoch} -t ${DEMO_REF} ${shellWord(opts.shownContext)}   # every step cached, same ID`,
    `  docker load -i ${shellWord(result.archive)}`,
    `  skopeo inspect ${shellWord(`oci:${opts.root}:${DEMO_REF}`)}`,
    `  tar -tvf ${shellWord(result.archive)}`,
  ];
  return `${lines.join('\n')}\n`;
}

/** Registers `strata demo [-o FILE]`. */
export function registerDemoCommand(program: Command, ctx: CliContext): void {
  program
    .command('demo')
    .description(`Build the bundled sample app (${DEMO_REF}) and save it to ./${DEMO_ARCHIVE}`)
    .option('-o, --output <file>', `Where to write the docker archive (default ./${DEMO_ARCHIVE})`)
    .action(async (flags: { output?: string }) => {
      const contextDir = sampleAppDir();
      try {
        await stat(join(contextDir, 'Dockerfile'));
      } catch {
        throw new Error(`demo: the sample app is not installed at ${contextDir} (run the demo from a strata checkout)`);
      }
      const strata = await openStrata(ctx);
      const archive = resolve(flags.output ?? DEMO_ARCHIVE);
      const result = await runDemo(strata, contextDir, archive, ctx.env);
      const root = strata.root;
      const shown = relative(process.cwd(), contextDir);
      ctx.stdout.write(
        formatDemo(result, {
          root,
          rootFlag: root === defaultRoot(ctx.env) ? '' : ` --root ${shellWord(root)}`,
          shownContext: shown.startsWith('..') ? contextDir : shown || '.',
        }),
      );
    });
}
