/**
 * Variable substitution as Docker applies it at dispatch time: which
 * instructions are expanded, how (one word, or word splitting for EXPOSE),
 * and with what lexer settings (heredoc bodies keep their quotes).
 */
import { DockerfileError } from './errors.js';
import { FlagError, parseRunMount } from './flags.js';
import { heredocBody } from './instructions.js';
import type { Instruction, InstructionKind } from './instructions.js';
import { lexWord, toLookup, ShellExpansionError } from './lexer.js';
import type { EnvLookup, EnvSource, LexOptions } from './lexer.js';

export { ShellExpansionError, lexWord, toLookup };
export type { EnvLookup, EnvSource, LexOptions, LexResult } from './lexer.js';

/**
 * Expands one word the way Docker expands instruction arguments (buildkit
 * `Lex.ProcessWord`): quotes removed, escapes applied, `$VAR`, `${VAR}`,
 * `${VAR:-w}`, `${VAR-w}`, `${VAR:+w}`, `${VAR+w}`, `${VAR:?msg}`,
 * `${VAR?msg}`, `${VAR#p}`, `${VAR##p}`, `${VAR%p}`, `${VAR%%p}`,
 * `${VAR/p/r}`, `${VAR//p/r}` substituted. Spaces are kept: the result is one
 * string.
 * @throws ShellExpansionError (`failed to process "...": ...`).
 */
export function expandWord(word: string, env: EnvSource, escapeChar = '\\', opts: LexOptions = {}): string {
  return lexWord(word, env, escapeChar, opts).result;
}

/**
 * Expands and then splits on unquoted blanks (buildkit `Lex.ProcessWords`).
 * Docker does this for EXPOSE only (`EXPOSE $PORTS` with `PORTS="80 443"`
 * exposes two ports); COPY/ADD sources and VOLUME paths are split on blanks
 * *before* expansion, at parse time, and each expanded as one word.
 */
export function expandWords(word: string, env: EnvSource, escapeChar = '\\', opts: LexOptions = {}): string[] {
  return lexWord(word, env, escapeChar, opts).words;
}

/**
 * The instructions whose arguments the builder itself substitutes. RUN, CMD,
 * ENTRYPOINT, SHELL and HEALTHCHECK are left to the shell at run time;
 * MAINTAINER and ONBUILD are stored verbatim. ARG defaults are substituted too
 * (`ARG B=$A`). RUN's `--mount` values are the one RUN part Docker expands.
 */
export const EXPANDING_INSTRUCTIONS: ReadonlySet<InstructionKind> = new Set<InstructionKind>([
  'ADD',
  'ARG',
  'COPY',
  'ENV',
  'EXPOSE',
  'FROM',
  'LABEL',
  'STOPSIGNAL',
  'USER',
  'VOLUME',
  'WORKDIR',
]);

/**
 * Returns a copy of `instruction` with Docker's dispatch-time substitution
 * applied, using the variables visible at that step (for FROM: the meta ARGs;
 * elsewhere: ENV of the stage, then declared ARGs, see `StageArgs.lookup`).
 * Heredoc bodies of COPY/ADD with an unquoted delimiter are expanded with
 * quotes kept and `\` as the escape, as Docker does (after `<<-` tab
 * stripping, so such heredocs come back with `chomp: false`). Instructions Docker does
 * not expand come back unchanged (RUN gets its `--mount` values expanded).
 * @throws DockerfileError at the instruction's line, wrapping the
 *   {@link ShellExpansionError} (or `--mount` error) as `cause`.
 */
export function expandInstruction<T extends Instruction>(
  instruction: T,
  env: EnvSource,
  escapeChar: '\\' | '`' = '\\',
  opts: { filename?: string } = {},
): T {
  try {
    return expandUnlocated(instruction, env, escapeChar);
  } catch (err) {
    if (err instanceof ShellExpansionError || err instanceof FlagError) {
      const located = new DockerfileError(err.message, instruction.line, {
        endLine: instruction.endLine,
        ...(opts.filename !== undefined ? { filename: opts.filename } : {}),
      });
      (located as { cause?: unknown }).cause = err;
      throw located;
    }
    throw err;
  }
}

function expandUnlocated<T extends Instruction>(instruction: T, env: EnvSource, escapeChar: '\\' | '`'): T {
  const lookup: EnvLookup = toLookup(env);
  const word = (w: string): string => lexWord(w, lookup, escapeChar).result;
  const out = structuredClone(instruction) as Instruction;
  switch (out.kind) {
    case 'ENV':
    case 'LABEL':
      out.pairs = out.pairs.map(([k, v]) => [word(k), word(v)]);
      break;
    case 'ARG':
      out.args = out.args.map((a) => (a.default === undefined ? { name: word(a.name) } : { name: word(a.name), default: word(a.default) }));
      break;
    case 'ADD':
    case 'COPY': {
      out.sources = out.sources.map(word);
      out.dest = word(out.dest);
      if (out.chown !== undefined) out.chown = word(out.chown);
      if (out.chmod !== undefined) out.chmod = word(out.chmod);
      if (out.exclude !== undefined) out.exclude = out.exclude.map(word);
      if (out.kind === 'ADD' && out.checksum !== undefined) out.checksum = word(out.checksum);
      // Docker strips `<<-` tabs before substituting; the result is the final file body.
      out.heredocs = out.heredocs.map((h) =>
        h.expand ? { ...h, chomp: false, content: lexWord(heredocBody(h), lookup, '\\', { skipProcessQuotes: true }).result } : h,
      );
      break;
    }
    case 'EXPOSE':
      out.ports = out.ports.flatMap((p) => lexWord(p, lookup, escapeChar).words);
      break;
    case 'FROM':
      out.image = word(out.image);
      if (out.platform !== undefined) out.platform = word(out.platform);
      break;
    case 'STOPSIGNAL':
      out.signal = word(out.signal);
      break;
    case 'USER':
      out.user = word(out.user);
      break;
    case 'VOLUME':
      out.paths = out.paths.map(word);
      break;
    case 'WORKDIR':
      out.path = word(out.path);
      break;
    case 'RUN': {
      const specs = out.flags.mount;
      if (Array.isArray(specs)) out.mounts = specs.map((spec) => parseRunMount(spec, word));
      break;
    }
    default:
      break;
  }
  return out as T;
}
