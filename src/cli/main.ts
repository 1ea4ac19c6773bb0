#!/usr/bin/env node
/**
 * The `strata` command line. Global options (`--root`, `--debug`) come before
 * the command, as with docker's global flags; each command lives in its own
 * module under `./commands/` and is added through {@link COMMANDS}.
 *
 * Failures print exactly one line, `strata: <message>`, on stderr and exit
 * with status 1, whether they come from a command or from argument parsing.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, type HelpContext } from 'commander';
import { resolveRoot } from '../util/root.js';
import { packageFile } from './paths.js';
import { stopAllProgress } from './progress.js';
import { registerVersionCommand } from './commands/version.js';
import { registerImagesCommand } from './commands/images.js';
import { registerInspectCommand } from './commands/inspect.js';
import { registerHistoryCommand } from './commands/history.js';
import { registerTagCommand } from './commands/tag.js';
import { registerRmiCommand } from './commands/rmi.js';
import { registerImportCommand } from './commands/import.js';
import { registerSaveCommand } from './commands/save.js';
import { registerLoadCommand } from './commands/load.js';
import { registerLayerCommands } from './commands/layer.js';
import { registerFsckCommand } from './commands/fsck.js';
import { registerGcCommand } from './commands/gc.js';
import { registerDemoCommand } from './commands/demo.js';
import { registerCreateCommand } from './commands/create.js';
import { registerRunCommand } from './commands/run.js';
import { registerStartCommand } from './commands/start.js';
import { registerPsCommand } from './commands/ps.js';
import { registerRmCommand } from './commands/rm.js';
import { registerDiffCommand } from './commands/diff.js';
import { registerCommitCommand } from './commands/commit.js';
import { registerExportCommand } from './commands/export.js';
import { registerCpCommand } from './commands/cp.js';
import { registerVolumeCommands } from './commands/volume.js';
import { registerBuildCommand } from './commands/build.js';

/** What every command receives besides its own arguments. */
export interface CliContext {
  /** strata's version (from package.json). */
  readonly version: string;
  /**
   * The store root: the global `--root` flag, else `$STRATA_ROOT`, else
   * `$XDG_DATA_HOME/strata`, else `~/.local/share/strata`. Call it inside an
   * action: global options are parsed before the action runs, not at registration.
   */
  root(): string;
  /** Where command output goes (process.stdout outside tests). */
  readonly stdout: NodeJS.WritableStream;
  /** Where diagnostics and progress go (process.stderr outside tests). */
  readonly stderr: NodeJS.WritableStream;
  /** Environment the command should read (process.env outside tests). */
  readonly env: NodeJS.ProcessEnv;
}

/** Adds one command (or a command group) to the program. */
export type CommandRegistrar = (program: Command, ctx: CliContext) => void;

/** Every command strata has; a new command module adds its registrar here. */
export const COMMANDS: readonly CommandRegistrar[] = [
  registerImagesCommand,
  registerInspectCommand,
  registerHistoryCommand,
  registerTagCommand,
  registerRmiCommand,
  registerImportCommand,
  registerSaveCommand,
  registerLoadCommand,
  registerLayerCommands,
  registerFsckCommand,
  registerGcCommand,
  registerBuildCommand,
  registerDemoCommand,
  registerCreateCommand, registerRunCommand, registerStartCommand, registerPsCommand, registerRmCommand, registerDiffCommand, registerCommitCommand, registerExportCommand, registerCpCommand, registerVolumeCommands,
  registerVersionCommand,
];

/**
 * An error whose message is meant for the user as is. Any thrown error is
 * reported as `strata: <message>`; this class only adds a chosen exit status.
 */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CliError';
    this.exitCode = options.exitCode ?? 1;
  }
}

/** Streams and environment for one run; defaults are the process's own. */
export interface CliIo {
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  env?: NodeJS.ProcessEnv;
}

/**
 * A Command whose bare invocation (no subcommand) prints help on stdout and
 * succeeds, like `docker` with no arguments, instead of commander's default of
 * help on stderr with status 1.
 */
class StrataCommand extends Command {
  override createCommand(name?: string): Command {
    return new StrataCommand(name);
  }

  override help(context?: HelpContext | ((str: string) => string)): never {
    if (typeof context === 'object' && context.error) {
      // Commander asks for error help when no subcommand was given, and when
      // `help <name>` names no command.
      if (this.args.length === 0) return super.help({ error: false });
      if (this.args[0] === 'help' && this.args[1] !== undefined) this.error(`unknown help topic '${this.args[1]}'`);
    }
    return super.help(context as HelpContext | undefined);
  }
}

function readPackageVersion(): string {
  const path = packageFile('package.json');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read strata's package.json at ${path}: ${(err as Error).message}`);
  }
  const version = (JSON.parse(text) as { version?: unknown }).version;
  if (typeof version !== 'string') throw new Error(`package.json at ${path} has no version`);
  return version;
}

/** Adds every registrar's commands to `program`. */
export function registerCommands(
  program: Command,
  ctx: CliContext,
  registrars: readonly CommandRegistrar[] = COMMANDS,
): void {
  for (const register of registrars) register(program, ctx);
}

/**
 * Builds the `strata` program: global options, commands, and output routed to
 * `io`. Commander's own exits are turned into thrown CommanderErrors so
 * {@link main} decides what is printed and the exit status.
 */
export function createProgram(io: CliIo = {}, registrars: readonly CommandRegistrar[] = COMMANDS): {
  program: Command;
  ctx: CliContext;
} {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const env = io.env ?? process.env;
  const version = readPackageVersion();
  const program = new StrataCommand('strata');
  const ctx: CliContext = {
    version,
    root: () => resolveRoot(program.opts<{ root?: string }>().root, env),
    stdout,
    stderr,
    env,
  };

  program
    .usage('[OPTIONS] COMMAND')
    .description("Docker's storage layer without a daemon: layers, images, builds, containers, volumes")
    .version(`strata version ${version}`, '-v, --version', 'Print version information and quit')
    .option('--root <dir>', 'Root directory of strata state (default: $STRATA_ROOT, $XDG_DATA_HOME/strata or ~/.local/share/strata)')
    .option('-D, --debug', 'Print stack traces of errors')
    .helpOption('-h, --help', 'Print usage')
    .helpCommand('help [command]', 'Help about any command')
    // Global options go before the command, as with docker.
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({
      writeOut: (text) => stdout.write(text),
      writeErr: (text) => stderr.write(text),
      // main() prints the one-line error itself.
      outputError: () => {},
    });

  registerCommands(program, ctx, registrars);
  // exitOverride and output routing are copied to subcommands only when they
  // are created with .command() after the call; apply them to every command.
  const inherit = (command: Command): void => {
    for (const sub of command.commands) {
      sub.exitOverride();
      sub.configureOutput(program.configureOutput());
      inherit(sub);
    }
  };
  inherit(program);
  return { program, ctx };
}

/** The message of anything thrown, as a single line; `joiner` replaces line breaks. */
function oneLine(err: unknown, joiner = '; '): string {
  const message = err instanceof Error ? err.message : String(err);
  const flat = message.trim().replace(/\s*\r?\n\s*/g, joiner);
  return flat === '' ? (err instanceof Error ? err.name : 'unknown error') : flat;
}

/**
 * Runs the CLI on `argv` (node-style: `[node, script, ...args]`).
 *
 * @param io - streams and environment (default: the process's own)
 * @param registrars - the commands to offer (default: {@link COMMANDS})
 * @returns the exit status: 0 on success (including `--help` and `--version`),
 *   1 (or a {@link CliError}'s own status) after printing `strata: <message>` to stderr
 */
export async function main(
  argv: readonly string[] = process.argv,
  io: CliIo = {},
  registrars: readonly CommandRegistrar[] = COMMANDS,
): Promise<number> {
  const stderr = io.stderr ?? process.stderr;
  const env = io.env ?? process.env;
  let debug = env.STRATA_DEBUG === '1';
  try {
    const { program } = createProgram(io, registrars);
    program.hook('preAction', (thisCommand) => {
      if (thisCommand.optsWithGlobals<{ debug?: boolean }>().debug) debug = true;
    });
    await program.parseAsync([...argv]);
    return 0;
  } catch (err) {
    stopAllProgress();
    // A status with nothing to say: `run` exits with its container's status, silently, as docker does.
    if (err instanceof CliError && err.message === '') return err.exitCode;
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return 0;
      // Help already went to stderr; its placeholder message is not for users.
      if (err.code === 'commander.help') return err.exitCode;
      // Commander phrases its errors "error: unknown command 'x'\n(Did you mean y?)".
      stderr.write(`strata: ${oneLine(err.message.replace(/^error:\s*/, ''), ' ')}\n`);
      return err.exitCode;
    }
    stderr.write(`strata: ${oneLine(err)}\n`);
    if (debug && err instanceof Error && err.stack) stderr.write(`${err.stack}\n`);
    return err instanceof CliError ? err.exitCode : 1;
  }
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    // npm's bin shim is a symlink to this file.
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

/**
 * Runs the CLI as the process's program: arguments from `process.argv`, exit
 * status in `process.exitCode`. Used by this module when node runs it, and
 * by the `strata` launcher (`strata.cjs`), which loads the bundled CLI.
 */
export async function runCli(): Promise<void> {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    // The reader went away (`strata images | head -1`): stop quietly, as a
    // SIGPIPE'd Unix tool would.
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
  process.exitCode = await main();
}

if (isEntryPoint()) void runCli();
