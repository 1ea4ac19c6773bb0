/**
 * `strata demo` (what `npm run demo` runs): makes an image of the sample app
 * that ships with strata (`testdata/sample-app`), saves it as a docker
 * archive in the current directory, and says what it made and what to try
 * next.
 *
 * Until `strata build` exists the image is put together the way
 * `docker import -c …` would: the files the Dockerfile's COPY steps name
 * (context filtered by its `.dockerignore`, placed where COPY puts them,
 * owned by root as COPY leaves them) become one layer, and its metadata
 * instructions (LABEL, ENV, WORKDIR, EXPOSE, CMD …) become `--change`s.
 * Anything else in the Dockerfile is refused by name rather than skipped.
 *
 * Running it again changes nothing: the layer and config are reproducible
 * (mtimes and `created` come from the sample's files, or SOURCE_DATE_EPOCH),
 * so the image ID and the archive's bytes stay the same; should the sample
 * change, the previous demo image is removed and its blobs collected.
 */
import { lstat, readFile, readlink, stat } from 'node:fs/promises';
import { posix, relative, resolve, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { loadDockerignore, type DockerignoreMatcher } from '../../build/dockerignore.js';
import { parseDockerfile, normalizeWorkdir, type CopyInstruction, type Instruction } from '../../build/dockerfile/index.js';
import { compressionOfMediaType } from '../../image/mediatypes.js';
import { tarFromChangeset, type ChangesetEntry } from '../../tar/changeset.js';
import type { EntryHeader } from '../../tar/entry.js';
import { statsToHeader, walkTree } from '../../tar/walk.js';
import type { Strata } from '../../strata.js';
import { defaultRoot } from '../../util/root.js';
import type { CliContext } from '../main.js';
import { humanSize } from '../output.js';
import { openStrata } from './common.js';

/** The name the demo image gets. */
export const DEMO_REF = 'strata-demo/sample-app:latest';
/** The archive the demo writes, relative to the current directory. */
export const DEMO_ARCHIVE = 'strata-demo.tar';

/** Instructions that only change the config, which `import --change` accepts. */
const CHANGE_KINDS = new Set(['CMD', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'HEALTHCHECK', 'LABEL', 'ONBUILD', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR']);

/** The sample app, found beside the installed package (dist/cli/commands → package root), not the current directory. */
export function sampleAppDir(): string {
  return fileURLToPath(new URL('../../../testdata/sample-app/', import.meta.url)).replace(/\/$/, '');
}

/** What the demo makes of a context and its Dockerfile. */
export interface DemoPlan {
  /** The layer's entries: every path the COPY steps create, keyed by path. */
  entries: Map<string, ChangesetEntry>;
  /** The Dockerfile's metadata instructions, as `--change` strings. */
  changes: string[];
  /** Seconds: the newest mtime among the copied files (for `created` and clamping). */
  newestMtime: number;
}

function unsupported(instruction: Instruction, why: string): Error {
  return new Error(`demo: Dockerfile line ${instruction.line}: ${instruction.original}: ${why} (the demo only copies context files and sets metadata)`);
}

function dirHeader(path: string, mtime: number): EntryHeader {
  return { path, type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime, size: 0 };
}

/** COPY leaves files owned by root and carries no extended attributes. */
function asCopied(header: EntryHeader, path: string): EntryHeader {
  const { uname: _uname, gname: _gname, xattrs: _xattrs, atime: _atime, ctime: _ctime, ...rest } = header;
  return { ...rest, path, uid: 0, gid: 0 };
}

/**
 * Reads the context's Dockerfile and works out the demo image: the
 * entries of its COPY steps and the config changes of its other steps.
 *
 * @throws Error naming the Dockerfile line of any instruction beyond that
 *   (a base image other than scratch, RUN, ADD, COPY flags, wildcards …).
 */
export async function planDemo(contextDir: string): Promise<DemoPlan> {
  const dockerfile = join(contextDir, 'Dockerfile');
  const ast = parseDockerfile(await readFile(dockerfile, 'utf8'), { filename: dockerfile });
  if (ast.stages.length !== 1) throw new Error(`demo: ${dockerfile} has ${ast.stages.length} stages; the demo makes single-stage images`);
  const stage = ast.stages[0]!;
  if (stage.baseName !== 'scratch') throw unsupported(stage.from, 'only FROM scratch is supported');
  const ignore = await loadDockerignore(contextDir);

  const plan: DemoPlan = { entries: new Map(), changes: [], newestMtime: 0 };
  let workdir = '/';
  for (const instruction of stage.instructions) {
    if (instruction.kind === 'COPY') {
      await planCopy(instruction, contextDir, workdir, ignore, plan);
    } else if (CHANGE_KINDS.has(instruction.kind)) {
      if (instruction.kind === 'WORKDIR') {
        if (instruction.path.includes('$')) throw unsupported(instruction, 'variables in WORKDIR are not supported');
        workdir = normalizeWorkdir(workdir, instruction.path);
      }
      plan.changes.push(instruction.original);
    } else {
      throw unsupported(instruction, `${instruction.kind} is not supported`);
    }
  }
  // Parents the COPY steps did not create themselves (WORKDIR's /app) come out as root-owned 0755 directories.
  for (const path of [...plan.entries.keys()]) {
    for (let parent = posix.dirname(path); parent !== '.' && !plan.entries.has(parent); parent = posix.dirname(parent)) {
      plan.entries.set(parent, { header: dirHeader(parent, plan.newestMtime) });
    }
  }
  return plan;
}

async function planCopy(copy: CopyInstruction, contextDir: string, workdir: string, ignore: DockerignoreMatcher, plan: DemoPlan): Promise<void> {
  const flags = Object.keys(copy.flags);
  if (flags.length > 0) throw unsupported(copy, `COPY --${flags[0]} is not supported`);
  if (copy.heredocs.length > 0) throw unsupported(copy, 'COPY from a here-document is not supported');
  if (copy.dest.includes('$')) throw unsupported(copy, 'variables in COPY destinations are not supported');
  // Docker: a relative destination is under WORKDIR; a trailing slash (or several sources) makes it a directory.
  const destIsDir = copy.dest.endsWith('/') || copy.sources.length > 1;
  const dest = posix.join(posix.resolve(workdir, copy.dest), '.').replace(/^\/+/, '');

  const put = (header: EntryHeader, path: string, sourcePath?: string): void => {
    plan.entries.set(path, sourcePath === undefined ? { header: asCopied(header, path) } : { header: asCopied(header, path), sourcePath });
    plan.newestMtime = Math.max(plan.newestMtime, Math.floor(header.mtime));
  };

  for (const source of copy.sources) {
    if (/[*?[\]$]/.test(source)) throw unsupported(copy, `wildcards and variables in COPY sources are not supported (${source})`);
    const rel = posix.normalize(source).replace(/^(\.\/)+/, '').replace(/\/+$/, '');
    if (rel.startsWith('..') || posix.isAbsolute(rel)) throw unsupported(copy, `${source} is outside the build context`);
    if (rel !== '.' && ignore.ignores(rel)) throw new Error(`demo: COPY ${source}: excluded by ${ignore.source ?? '.dockerignore'}`);
    const abs = resolve(contextDir, rel);
    const info = await stat(abs);
    if (!info.isDirectory()) {
      const target = destIsDir ? posix.join(dest, posix.basename(rel)) : dest;
      if (target === '') throw unsupported(copy, 'cannot copy a file onto the root directory');
      const linkStats = await lstat(abs);
      const header = statsToHeader(rel, linkStats, linkStats.isSymbolicLink() ? await readlink(abs) : undefined);
      if (!header) throw unsupported(copy, `${source} is a socket, which cannot be copied`);
      put(header, target, header.type === 'file' ? abs : undefined);
      continue;
    }
    // A directory's contents go into the destination, which takes the directory's own mode.
    if (dest !== '') put({ path: dest, type: 'directory', mode: info.mode & 0o7777, uid: 0, gid: 0, mtime: Math.floor(info.mtimeMs / 1000), size: 0 }, dest);
    const prefix = rel === '.' ? '' : `${rel}/`;
    const filter = (p: string, isDir: boolean): boolean => {
      const contextPath = `${prefix}${p}`;
      return isDir ? ignore.shouldDescend(contextPath) || !ignore.ignores(contextPath) : !ignore.ignores(contextPath);
    };
    for await (const entry of walkTree(abs, { filter })) {
      // A directory entered only for an exception pattern is not itself copied unless something in it is.
      if (entry.header.type === 'directory' && ignore.ignores(`${prefix}${entry.header.path}`)) continue;
      const target = dest === '' ? entry.header.path : `${dest}/${entry.header.path}`;
      put(entry.header, target, entry.header.type === 'file' ? entry.sourcePath : undefined);
    }
  }
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

/** What {@link runDemo} made. */
export interface DemoResult {
  id: string;
  manifestDigest: string;
  /** Whether the image was already there, identical, before this run. */
  unchanged: boolean;
  /** A previous demo image removed because the sample changed. */
  replaced?: string;
  archive: string;
  archiveSize: number;
  layers: { digest: string; size: number; mediaType: string; diffId: string; uncompressedSize: number }[];
}

/** Makes (or re-makes) the demo image in `strata` and saves it to `archive`. */
export async function runDemo(strata: Strata, contextDir: string, archive: string, env: NodeJS.ProcessEnv): Promise<DemoResult> {
  const plan = await planDemo(contextDir);
  const epoch = sourceDateEpoch(env) ?? plan.newestMtime;
  const tar = tarFromChangeset({ entries: [...plan.entries.values()], deletions: [], opaqueDirs: [] }, { sourceDateEpoch: epoch });

  const previous = await strata.images.resolve(DEMO_REF).then((image) => image.id, () => undefined);
  const imported = await strata.import(
    { stream: tar, label: contextDir },
    { ref: DEMO_REF, changes: plan.changes, message: 'strata demo: the COPY steps of testdata/sample-app/Dockerfile as one layer', sourceDateEpoch: epoch },
  );
  const result: Partial<DemoResult> = { id: imported.id, manifestDigest: imported.manifestDigest, unchanged: previous === imported.id };
  if (previous !== undefined && previous !== imported.id) {
    // The old image lost its tag to the new one; drop it unless something else still names it.
    const old = await strata.images.resolve(previous).catch(() => undefined);
    if (old && old.repoTags.length === 0 && old.repoDigests.length === 0) {
      await strata.rmi([previous]);
      result.replaced = previous;
    }
  }

  const image = await strata.images.resolve(DEMO_REF);
  const sizes = await strata.images.layerSizesOf(image.manifest, image.config);
  result.layers = image.manifest.layers.map((layer, i) => ({
    digest: layer.digest,
    size: layer.size,
    mediaType: layer.mediaType,
    diffId: image.config.rootfs.diff_ids[i]!,
    uncompressedSize: sizes[i]!,
  }));
  await strata.saveToFile([DEMO_REF], archive, { format: 'docker' });
  result.archive = archive;
  result.archiveSize = (await stat(archive)).size;
  return result as DemoResult;
}

/** Registers `strata demo [-o FILE]`. */
export function registerDemoCommand(program: Command, ctx: CliContext): void {
  program
    .command('demo')
    .description(`Make an image of the bundled sample app (${DEMO_REF}) and save it to ./${DEMO_ARCHIVE}`)
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
      const rootFlag = root === defaultRoot(ctx.env) ? '' : ` --root ${shellWord(root)}`;
      const shownContext = relative(process.cwd(), contextDir);
      const lines = [
        `Made ${DEMO_REF} from ${shownContext.startsWith('..') ? contextDir : shownContext || '.'}${result.unchanged ? ' (unchanged since the last run)' : ''}`,
        `  image ID:  ${result.id}`,
        `  manifest:  ${result.manifestDigest}`,
        `  layers:`,
        ...result.layers.map(
          (l) => `    ${l.digest}  ${humanSize(l.size)} ${compressionOfMediaType(l.mediaType) ?? l.mediaType}, ${humanSize(l.uncompressedSize)} as tar (DiffID ${l.diffId})`,
        ),
        `  store:     ${root}`,
        ...(result.replaced ? [`  replaced:  ${result.replaced} (the previous demo image, removed)`] : []),
        `Saved it to ${result.archive} (${humanSize(result.archiveSize)}, docker format)`,
        '',
        'Try next:',
        `  strata${rootFlag} images`,
        `  strata${rootFlag} history ${DEMO_REF}`,
        `  strata${rootFlag} inspect ${DEMO_REF}`,
        `  docker load -i ${shellWord(result.archive)}`,
        `  skopeo inspect ${shellWord(`oci:${root}:${DEMO_REF}`)}`,
        `  tar -tvf ${shellWord(result.archive)}`,
      ];
      ctx.stdout.write(`${lines.join('\n')}\n`);
    });
}
