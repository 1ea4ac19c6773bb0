/**
 * Image history entries as Docker's classic builder writes them (moby
 * `builder/dockerfile/dispatchers.go` and `internals.go`). `created_by` is the
 * builder's container command joined with spaces:
 *
 * - metadata steps commit `[shell..., "#(nop) ", "<CMD> <args>"]`, hence the
 *   two spaces in `/bin/sh -c #(nop)  ENV A=b`;
 * - WORKDIR, COPY and ADD use the older one-argument form
 *   `[shell..., "#(nop) <comment>"]`, one space, and COPY/ADD end with a
 *   space: `/bin/sh -c #(nop) COPY file:<hash> in /app `;
 * - RUN is the command itself, prefixed by `|N K=V ...` when build args are
 *   in scope.
 *
 * Argument lists are printed with Go's `%q`/`%v` verbs (`CMD ["/bin/sh" "-c"
 * "x"]`, `VOLUME [/data]`), reproduced by `gocompat`. The SHELL in effect is
 * used for the `#(nop)` prefix too.
 */
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { DEFAULT_SHELL, resolveCommandLine, resolveRunCommand } from './commandline.js';
import { formatGoDuration, goFormatSlice, goQuote, goQuoteRune, goQuoteSlice, goSortStrings } from './gocompat.js';
import type { Instruction, InstructionKind } from './instructions.js';

/** diff_id of an empty layer (a tar of two zero blocks): such layers are flagged `empty_layer`. */
export const EMPTY_LAYER_DIFF_ID = 'sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef';

/** What {@link createdBy} needs beyond the (expanded) instruction. */
export interface HistoryContext {
  /** SHELL in effect before this instruction (default `/bin/sh -c`). */
  shell?: readonly string[];
  /** RUN: `StageArgs.historyArgs(configEnv)` — null/absent when no build args are in scope. */
  buildArgs?: readonly string[] | null;
  /** COPY/ADD: one content hash per source, e.g. `file:<hex>` or `dir:<hex>`. */
  sourceHashes?: readonly string[];
  /** WORKDIR: the working directory before this instruction (default: none set). */
  workingDir?: string;
}

function hashStringSlice(prefix: string, values: readonly string[]): string {
  return `${prefix}:` + createHash('sha256').update(values.join(',')).digest('hex');
}

/** Docker's hash for several COPY/ADD sources: `multi:` + sha256 of the comma-joined source hashes, in order. */
export function multiSourceHash(hashes: readonly string[]): string {
  return hashStringSlice('multi', hashes);
}

/**
 * Docker's hash of a directory source: `dir:` + sha256 of the comma-joined,
 * byte-sorted hashes of every entry below it (each entry's hash being the
 * build context's per-path content hash, computed by the caller).
 */
export function directorySourceHash(entryHashes: readonly string[]): string {
  return hashStringSlice('dir', goSortStrings([...entryHashes]));
}

/**
 * Docker's WORKDIR resolution (moby normalizeWorkdir on Linux): a relative path
 * is joined to the current one and cleaned; an absolute path is kept as written.
 */
export function normalizeWorkdir(current: string, requested: string): string {
  if (requested === '') throw new Error('cannot normalize nothing');
  if (!requested.startsWith('/')) return posix.join('/', current, requested);
  return requested;
}

const METADATA_KINDS: ReadonlySet<InstructionKind> = new Set<InstructionKind>([
  'ARG',
  'CMD',
  'ENTRYPOINT',
  'ENV',
  'EXPOSE',
  'HEALTHCHECK',
  'LABEL',
  'MAINTAINER',
  'ONBUILD',
  'SHELL',
  'STOPSIGNAL',
  'USER',
  'VOLUME',
]);

/** True for instructions that only change the image config (always `empty_layer`). */
export function isMetadataInstruction(kind: InstructionKind): boolean {
  return METADATA_KINDS.has(kind);
}

/**
 * Docker's `empty_layer` rule: an entry is empty when its layer diff is the
 * empty tar. Metadata instructions always are; RUN, COPY, ADD and WORKDIR are
 * when they changed nothing (e.g. `RUN true`, or WORKDIR of an existing
 * directory), which only the caller can tell.
 */
export function isEmptyLayer(instruction: Instruction, layerIsEmpty?: boolean): boolean {
  if (instruction.kind === 'FROM') throw new Error('FROM creates no history entry');
  if (METADATA_KINDS.has(instruction.kind)) return true;
  if (layerIsEmpty === undefined) throw new Error(`${instruction.kind} needs to know whether its layer diff is empty`);
  return layerIsEmpty;
}

function nop(shell: readonly string[], comment: string): string {
  return [...shell, '#(nop) ', comment].join(' ');
}

function nopSingle(shell: readonly string[], comment: string): string {
  return [...shell, '#(nop) ' + comment].join(' ');
}

/**
 * The `created_by` Docker's classic builder records for `instruction`, which
 * must already be expanded (`expandInstruction`) since Docker records
 * substituted values.
 */
export function createdBy(instruction: Instruction, ctx: HistoryContext = {}): string {
  const shell = ctx.shell ?? DEFAULT_SHELL;
  switch (instruction.kind) {
    case 'FROM':
      throw new Error('FROM creates no history entry (the base image history is inherited)');
    case 'RUN': {
      const { args } = resolveRunCommand(instruction, shell);
      const prefix = ctx.buildArgs ? [`|${ctx.buildArgs.length}`, ...ctx.buildArgs] : [];
      return [...prefix, ...args].join(' ');
    }
    case 'CMD':
      return nop(shell, `CMD ${goQuoteSlice(resolveCommandLine(instruction, shell))}`);
    case 'ENTRYPOINT':
      return nop(shell, `ENTRYPOINT ${goQuoteSlice(resolveCommandLine(instruction, shell))}`);
    case 'SHELL':
      // Docker commits after setting the new shell, so the prefix is the new one.
      return nop(instruction.command, `SHELL ${goFormatSlice(instruction.command)}`);
    case 'ENV':
    case 'LABEL':
      return nop(shell, [instruction.kind, ...instruction.pairs.map(([k, v]) => `${k}=${v}`)].join(' '));
    case 'ARG':
      return nop(shell, 'ARG ' + instruction.args.map((a) => (a.default === undefined ? a.name : `${a.name}=${a.default}`)).join(' '));
    case 'EXPOSE':
      return nop(shell, 'EXPOSE ' + instruction.ports.join(' '));
    case 'VOLUME':
      return nop(shell, `VOLUME ${goFormatSlice(instruction.paths)}`);
    case 'USER':
      return nop(shell, `USER ${instruction.user}`);
    case 'STOPSIGNAL':
      return nop(shell, `STOPSIGNAL ${instruction.signal}`);
    case 'MAINTAINER':
      return nop(shell, `MAINTAINER ${instruction.name}`);
    case 'ONBUILD':
      return nop(shell, `ONBUILD ${instruction.trigger}`);
    case 'HEALTHCHECK': {
      // Go's %q of a *HealthConfig: &{Test Interval Timeout StartPeriod StartInterval Retries}.
      const h = instruction.none
        ? { test: ['NONE'], interval: 0, timeout: 0, startPeriod: 0, startInterval: 0, retries: 0 }
        : {
            test: instruction.test,
            interval: instruction.interval ?? 0,
            timeout: instruction.timeout ?? 0,
            startPeriod: instruction.startPeriod ?? 0,
            startInterval: instruction.startInterval ?? 0,
            retries: instruction.retries ?? 0,
          };
      const durations = [h.interval, h.timeout, h.startPeriod, h.startInterval].map((d) => goQuote(formatGoDuration(d)));
      return nop(shell, `HEALTHCHECK &{${goQuoteSlice(h.test)} ${durations.join(' ')} ${goQuoteRune(h.retries)}}`);
    }
    case 'WORKDIR':
      return nopSingle(shell, 'WORKDIR ' + normalizeWorkdir(ctx.workingDir ?? '', instruction.path));
    case 'COPY':
    case 'ADD': {
      const hashes = ctx.sourceHashes ?? [];
      if (hashes.length === 0) throw new Error(`${instruction.kind} needs the content hashes of its sources`);
      const srcHash = hashes.length === 1 ? hashes[0]! : multiSourceHash(hashes);
      // Docker really prints no space between the chown flag and the hash.
      const chown = instruction.chown ? `--chown=${instruction.chown}` : '';
      return nopSingle(shell, `${instruction.kind} ${chown}${srcHash} in ${instruction.dest} `);
    }
  }
}
