/**
 * `strata build`: builds an image from a Dockerfile and a context directory,
 * printing the classic builder's progress (`Step 1/5 : FROM …`) on stdout, or
 * with `-q` only the image ID.
 */
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { BuildOptions } from '../../build/engine.js';
import type { CliContext } from '../main.js';
import { collect, openStrata } from './common.js';

interface BuildFlags {
  file?: string;
  tag?: string[];
  buildArg?: string[];
  target?: string;
  cache?: boolean;
  iidfile?: string;
  sourceDateEpoch?: string;
  runtime?: string;
  network?: string;
  compression?: string;
  quiet?: boolean;
  platform?: string;
}

/**
 * `--build-arg` values as Docker's CLI reads them: `K=V` sets V; `K` alone
 * takes K's value from the environment, and is passed without a value when
 * the environment has none.
 */
export function parseBuildArgs(values: readonly string[], env: NodeJS.ProcessEnv): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const value of values) {
    const eq = value.indexOf('=');
    if (eq === 0) throw new Error(`invalid argument "${value}" for "--build-arg" flag: the name is empty`);
    if (eq > 0) out[value.slice(0, eq)] = value.slice(eq + 1);
    else out[value] = env[value];
  }
  return out;
}

/** Registers `strata build [OPTIONS] PATH`. */
export function registerBuildCommand(program: Command, ctx: CliContext): void {
  program
    .command('build')
    .usage('[OPTIONS] PATH')
    .description('Build an image from a Dockerfile')
    .argument('<path>', 'The build context directory')
    .option('-f, --file <file>', "Name of the Dockerfile (default: 'PATH/Dockerfile')")
    .option('-t, --tag <name:tag>', "Name and optionally a tag in the 'name:tag' format (repeatable)", collect)
    .option('--build-arg <key=value>', 'Set build-time variables (repeatable; KEY alone takes it from the environment)', collect)
    .option('--target <stage>', 'Set the target build stage to build')
    .option('--no-cache', 'Do not use cache when building the image')
    .option('--iidfile <file>', 'Write the image ID to the file')
    .option('--source-date-epoch <seconds>', 'Date every history entry and clamp file times to this time (default: $SOURCE_DATE_EPOCH)')
    .option('--runtime <path>', 'OCI runtime for RUN steps (default: runc, then crun)')
    .option('--network <mode>', 'Network of RUN steps: none (default) or host')
    .option('--compression <type>', 'How new layers are stored: none (default, like Docker) or gzip')
    .option('-q, --quiet', 'Suppress the build output and print image ID on success')
    .option('--platform <os/arch[/variant]>', 'Set platform if server is multi-platform capable')
    .action(async (contextArg: string, flags: BuildFlags) => {
      if (contextArg === '-') throw new Error('building from a context on stdin is not supported; pass a directory');
      if (/^[a-z][a-z0-9+.-]*:\/\//i.test(contextArg) || /^git@/.test(contextArg)) {
        throw new Error(`unable to prepare context: remote contexts (${contextArg}) are not supported; clone or download it and pass the directory`);
      }
      if (flags.network !== undefined && flags.network !== 'none' && flags.network !== 'host') {
        throw new Error(`network mode "${flags.network}" not supported by strata build (use none or host)`);
      }
      const options: BuildOptions = {
        contextDir: resolve(contextArg),
        output: ctx.stdout,
        buildArgs: parseBuildArgs(flags.buildArg ?? [], ctx.env),
      };
      // Like docker's CLI, a relative -f is relative to the current directory.
      if (flags.file !== undefined) options.dockerfile = resolve(flags.file);
      if (flags.tag !== undefined) options.tags = flags.tag;
      if (flags.target !== undefined) options.target = flags.target;
      if (flags.cache === false) options.noCache = true;
      if (flags.runtime !== undefined) options.runtime = flags.runtime;
      if (flags.network !== undefined) options.network = flags.network as 'none' | 'host';
      if (flags.compression !== undefined) {
        if (flags.compression !== 'none' && flags.compression !== 'gzip' && flags.compression !== 'zstd') {
          throw new Error(`invalid --compression "${flags.compression}": use none, gzip or zstd`);
        }
        options.compression = flags.compression;
      }
      if (flags.quiet) options.quiet = true;
      if (flags.platform !== undefined) options.platform = flags.platform;
      const epoch = flags.sourceDateEpoch ?? ctx.env.SOURCE_DATE_EPOCH;
      if (epoch !== undefined && epoch !== '') {
        if (!/^[0-9]+$/.test(epoch)) throw new Error(`invalid --source-date-epoch ${JSON.stringify(epoch)}: expected a whole number of seconds`);
        options.sourceDateEpoch = Number(epoch);
      }
      const strata = await openStrata(ctx);
      const result = await strata.build(options);
      if (flags.iidfile !== undefined) await writeFile(flags.iidfile, result.id);
    });
}
