/**
 * `strata version`: what is running and where its state lives. Also the
 * reference shape for a command module: export one registrar that adds the
 * command to the program and reads the store root through the context.
 */
import type { Command } from 'commander';
import type { CliContext } from '../main.js';
import { formatTable } from '../output.js';

/** The facts `strata version` reports; field names follow docker's JSON casing. */
export interface VersionInfo {
  Version: string;
  NodeVersion: string;
  Os: string;
  Arch: string;
  Root: string;
}

// Node's architecture names differ from the GOARCH names images and docker use.
const GOARCH: Readonly<Record<string, string>> = {
  x64: 'amd64',
  ia32: '386',
  arm64: 'arm64',
  arm: 'arm',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loong64',
  mips: 'mips',
  mipsel: 'mipsle',
};

/** Collects {@link VersionInfo} for the current process and store root. */
export function versionInfo(ctx: CliContext): VersionInfo {
  return {
    Version: ctx.version,
    NodeVersion: process.version,
    Os: process.platform,
    Arch: GOARCH[process.arch] ?? process.arch,
    Root: ctx.root(),
  };
}

/** Registers `strata version [--format json]`. */
export function registerVersionCommand(program: Command, ctx: CliContext): void {
  program
    .command('version')
    .description('Show the strata version information')
    .option('-f, --format <format>', "Output format: 'json' (docker's Go templates are not supported)")
    .action((options: { format?: string }) => {
      const info = versionInfo(ctx);
      if (options.format !== undefined) {
        if (options.format !== 'json') {
          throw new Error(`unsupported --format ${JSON.stringify(options.format)}: only 'json' is supported`);
        }
        // Like `docker version --format json`: one compact line, for scripts.
        ctx.stdout.write(`${JSON.stringify(info)}\n`);
        return;
      }
      ctx.stdout.write(
        formatTable(
          [],
          [
            ['Version:', info.Version],
            ['Node.js version:', info.NodeVersion],
            ['OS/Arch:', `${info.Os}/${info.Arch}`],
            ['Root:', info.Root],
          ],
          { minWidth: 0, padding: 1 },
        ),
      );
    });
}
