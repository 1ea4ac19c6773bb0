/**
 * Turning RUN/CMD/ENTRYPOINT command lines into argv, as Docker does: shell
 * form goes through the SHELL (default `/bin/sh -c`), exec form is used as
 * is, and RUN heredocs follow BuildKit (a lone heredoc runs its body; one
 * starting with `#!` runs as a script file; anything else is handed to the
 * shell with the bodies re-attached).
 */
import { posix } from 'node:path';
import type { CommandLine, RunInstruction } from './instructions.js';
import { heredocBody } from './instructions.js';
import { parseHeredocWord } from './parse.js';

/** Docker's default SHELL on Linux. */
export const DEFAULT_SHELL: readonly string[] = ['/bin/sh', '-c'];

/**
 * The argv of a CMD/ENTRYPOINT/RUN command line (moby resolveCmdLine): an
 * empty command gives `[]`, shell form is prefixed with `shell`.
 */
export function resolveCommandLine(cmd: CommandLine, shell: readonly string[] = DEFAULT_SHELL): string[] {
  if (cmd.form === 'exec') return [...cmd.command];
  if (cmd.command === '') return [];
  return [...shell, cmd.command];
}

/** A file BuildKit materializes for a RUN heredoc script. */
export interface InlineRunFile {
  /** Absolute path inside the container (`/dev/pipes/<name>`, mounted read-only). */
  path: string;
  content: string;
  mode: number;
}

/** The argv of a RUN, heredocs included, and any script file it needs. */
export interface ResolvedRun {
  args: string[];
  files: InlineRunFile[];
}

/**
 * Resolves a RUN into what is executed (BuildKit's dispatchRun):
 * - `RUN <<EOF` with a body starting `#!`: the body becomes an executable
 *   file at `/dev/pipes/EOF`, run through the shell;
 * - `RUN <<EOF` otherwise: the body itself is the shell command;
 * - anything else with heredocs (`RUN cat <<EOF > f`): the command line with
 *   each body and terminator re-attached, for the shell to interpret.
 * Heredoc bodies of RUN are never substituted by the builder.
 */
export function resolveRunCommand(run: RunInstruction, shell: readonly string[] = DEFAULT_SHELL): ResolvedRun {
  if (run.form === 'exec' || run.heredocs.length === 0) return { args: resolveCommandLine(run, shell), files: [] };
  const first = run.heredocs[0]!;
  let word: ReturnType<typeof parseHeredocWord>;
  try {
    word = parseHeredocWord(run.command);
  } catch {
    word = undefined;
  }
  if (word) {
    if (first.content.startsWith('#!')) {
      const path = posix.join('/dev/pipes/', first.name);
      return { args: [...shell, path], files: [{ path, content: heredocBody(first), mode: 0o755 }] };
    }
    return { args: [...shell, heredocBody(first)], files: [] };
  }
  let full = run.command;
  for (const h of run.heredocs) full += '\n' + h.content + h.name;
  return { args: [...shell, full], files: [] };
}
