/**
 * `strata create`: a container from an image, with `docker create`'s flags,
 * printing the new container's id. The flag handling here (mounts, `-e`,
 * labels, network, runtime) is shared with `strata run`.
 */
import { Option, type Command } from 'commander';
import type { ContainerCreateOptions } from '../../container/run.js';
import type { NetworkMode } from '../../runtime/spec.js';
import { parseMountFlag, parseVolumeFlag, type MountSpec } from '../../volume/mountspec.js';
import type { CliContext } from '../main.js';
import { collect, openStrata } from './common.js';

/** The flags `create` and `run` share. */
export interface CreateFlags {
  name?: string;
  volume?: string[];
  mount?: string[];
  env?: string[];
  workdir?: string;
  user?: string;
  runtime?: string;
  network?: string;
  entrypoint?: string;
  hostname?: string;
  label?: string[];
  rm?: boolean;
}

/** Adds `docker create`'s flags that strata has to `command`. */
export function addCreateOptions(command: Command): Command {
  return command
    .option('--name <name>', 'Assign a name to the container')
    .option('-v, --volume <spec>', 'Bind mount a volume (NAME:/path, /host:/path[:opts], or /path for an anonymous volume)', collect)
    .option('--mount <spec>', 'Attach a filesystem mount to the container (type=volume|bind|tmpfs,...)', collect)
    .option('-e, --env <var>', 'Set environment variables (KEY=VALUE, or KEY to pass this environment\'s value)', collect)
    .option('-w, --workdir <dir>', 'Working directory inside the container')
    .option('-u, --user <user>', 'Username or UID (format: <name|uid>[:<group|gid>])')
    .option('--entrypoint <command>', 'Overwrite the default ENTRYPOINT of the image')
    .option('--hostname <name>', 'Container host name')
    .option('-l, --label <label>', 'Set meta data on a container (KEY=VALUE)', collect)
    .option('--runtime <runtime>', 'OCI runtime to use for this container (name on PATH or absolute path; default runc, else crun)')
    .addOption(new Option('--network <mode>', 'Connect the container to a network').choices(['none', 'host']).default('none'))
    .option('--rm', 'Automatically remove the container (and its anonymous volumes) when it exits')
    .argument('<image>', 'Image name, ID or ID prefix')
    .argument('[command...]', 'Command and arguments (replace the image\'s CMD)')
    // `strata run IMG sh -c '…'`: everything after the image belongs to the command.
    .passThroughOptions();
}

/** docker's `-e KEY`: the value comes from this environment, and a variable that is not set is dropped. */
function envEntries(values: readonly string[], env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  for (const value of values) {
    if (value === '' || value.startsWith('=')) throw new Error(`invalid environment variable: ${value}`);
    if (value.includes('=')) out.push(value);
    else if (env[value] !== undefined) out.push(`${value}=${env[value]}`);
  }
  return out;
}

function labelMap(values: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf('=');
    if (eq === 0 || value === '') throw new Error(`invalid label '${value}': empty name`);
    if (eq < 0) labels[value] = '';
    else labels[value.slice(0, eq)] = value.slice(eq + 1);
  }
  return labels;
}

/**
 * The library options for `create`/`run` flags. Mount flags are parsed here
 * (relative `./host` paths against the current directory) and their warnings
 * printed, as the docker CLI does.
 */
export function createOptionsFrom(ctx: CliContext, flags: CreateFlags, command: readonly string[]): ContainerCreateOptions {
  const mounts: MountSpec[] = [
    ...(flags.volume ?? []).map((raw) => parseVolumeFlag(raw)),
    ...(flags.mount ?? []).map((raw) => parseMountFlag(raw)),
  ];
  for (const mount of mounts) for (const warning of mount.warnings ?? []) ctx.stderr.write(`WARNING: ${warning}\n`);
  const opts: ContainerCreateOptions = { mounts, network: (flags.network ?? 'none') as NetworkMode, autoRemove: flags.rm === true };
  if (flags.name !== undefined) opts.name = flags.name;
  if (command.length > 0) opts.cmd = [...command];
  // docker: --entrypoint "" clears the image's; a value is one word, not split.
  if (flags.entrypoint !== undefined) opts.entrypoint = flags.entrypoint === '' ? [] : [flags.entrypoint];
  if (flags.env !== undefined) opts.env = envEntries(flags.env, ctx.env);
  if (flags.workdir !== undefined) {
    if (!flags.workdir.startsWith('/')) throw new Error(`the working directory '${flags.workdir}' is invalid, it needs to be an absolute path`);
    opts.workingDir = flags.workdir;
  }
  if (flags.user !== undefined) opts.user = flags.user;
  if (flags.hostname !== undefined) opts.hostname = flags.hostname;
  if (flags.label !== undefined) opts.labels = labelMap(flags.label);
  if (flags.runtime !== undefined) opts.runtime = flags.runtime;
  return opts;
}

/** Registers `strata create [OPTIONS] IMAGE [COMMAND] [ARG...]`. */
export function registerCreateCommand(program: Command, ctx: CliContext): void {
  addCreateOptions(program.command('create').usage('[OPTIONS] IMAGE [COMMAND] [ARG...]').description('Create a new container')).action(
    async (image: string, command: string[], flags: CreateFlags) => {
      const strata = await openStrata(ctx);
      const container = await strata.createContainer(image, createOptionsFrom(ctx, flags, command));
      ctx.stdout.write(`${container.id}\n`);
    },
  );
}
