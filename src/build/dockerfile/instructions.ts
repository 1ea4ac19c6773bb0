/**
 * The typed Dockerfile model produced by {@link parseDockerfile}. Values are
 * Docker's parsed-but-unexpanded words: variable substitution and quote removal
 * happen at dispatch time with the environment of that step (see
 * `expandInstruction`), exactly as Docker does.
 */

/** Every instruction keyword Docker knows. */
export type InstructionKind =
  | 'ADD'
  | 'ARG'
  | 'CMD'
  | 'COPY'
  | 'ENTRYPOINT'
  | 'ENV'
  | 'EXPOSE'
  | 'FROM'
  | 'HEALTHCHECK'
  | 'LABEL'
  | 'MAINTAINER'
  | 'ONBUILD'
  | 'RUN'
  | 'SHELL'
  | 'STOPSIGNAL'
  | 'USER'
  | 'VOLUME'
  | 'WORKDIR';

/** All keywords, in Docker's documentation order. */
export const INSTRUCTION_KINDS: readonly InstructionKind[] = [
  'ADD',
  'ARG',
  'CMD',
  'COPY',
  'ENTRYPOINT',
  'ENV',
  'EXPOSE',
  'FROM',
  'HEALTHCHECK',
  'LABEL',
  'MAINTAINER',
  'ONBUILD',
  'RUN',
  'SHELL',
  'STOPSIGNAL',
  'USER',
  'VOLUME',
  'WORKDIR',
];

/** A parsed `--flag` value: string flags, repeatable flags, and booleans that are on. */
export type FlagValue = string | string[] | true;

/** Fields every instruction has. */
export interface InstructionBase<K extends InstructionKind> {
  kind: K;
  /** 1-based line where the instruction starts. */
  line: number;
  /** 1-based line where it ends (after continuations and heredoc bodies). */
  endLine: number;
  /** The text Docker prints as `Step N/M : <original>`: continuations joined, comments dropped. */
  original: string;
  /** The `--flags` given, by name (raw, unexpanded). */
  flags: Record<string, FlagValue>;
}

/** A here-document attached to RUN, COPY or ADD. */
export interface Heredoc {
  /** The delimiter word with quotes removed; for COPY/ADD it is also the file name. */
  name: string;
  /** The body exactly as written: every line with its line ending, tabs kept (see {@link heredocBody}). */
  content: string;
  /** False when any part of the delimiter was quoted (`<<"EOF"`, `<<'EOF'`): no substitution in the body. */
  expand: boolean;
  /** `<<-`: leading tabs are stripped from body lines and from the terminator. */
  chomp: boolean;
  /** The file descriptor prefix of `3<<EOF` (0 when absent). */
  fileDescriptor: number;
}

/** The body a heredoc delivers: `content` with leading tabs removed when `chomp` is set. */
export function heredocBody(heredoc: Heredoc): string {
  return heredoc.chomp ? heredoc.content.replace(/^\t+/gm, '') : heredoc.content;
}

/**
 * Shell form keeps the command text (run through the SHELL at build time);
 * exec form is a JSON array of strings. An empty shell-form command (`CMD`
 * alone) means an empty command line, as in Docker.
 */
export type CommandLine = { form: 'shell'; command: string } | { form: 'exec'; command: string[] };

/** `RUN --mount` types. */
export type RunMountType = 'bind' | 'cache' | 'tmpfs' | 'secret' | 'ssh';

/** One `RUN --mount=...` specification. */
export interface RunMount {
  type: RunMountType;
  /** Stage name, stage index or image the source is taken from. */
  from?: string;
  source?: string;
  target?: string;
  readOnly: boolean;
  /** Cache id (`type=cache`) or secret id (`type=secret`). */
  id?: string;
  sharing?: 'shared' | 'private' | 'locked';
  required: boolean;
  mode?: number;
  uid?: number;
  gid?: number;
  /** tmpfs size in bytes. */
  size?: number;
  /** Secret exposed as this environment variable (`type=secret,env=NAME`). */
  env?: string;
}

export type RunNetwork = 'default' | 'none' | 'host';
export type RunSecurity = 'sandbox' | 'insecure';

export type RunInstruction = InstructionBase<'RUN'> &
  CommandLine & {
    heredocs: Heredoc[];
    /** Parsed `--mount` flags. Values containing `$` are kept verbatim until `expandInstruction`. */
    mounts?: RunMount[];
    network?: RunNetwork;
    security?: RunSecurity;
  };

export type CmdInstruction = InstructionBase<'CMD'> & CommandLine;
export type EntrypointInstruction = InstructionBase<'ENTRYPOINT'> & CommandLine;

export interface ShellInstruction extends InstructionBase<'SHELL'> {
  command: string[];
}

export interface EnvInstruction extends InstructionBase<'ENV'> {
  /** Key/value words (quotes and escapes still in place until expansion). */
  pairs: [string, string][];
  /** `ENV key value` (one pair, value is the rest of the line) rather than `key=value ...`. */
  legacy: boolean;
}

export interface LabelInstruction extends InstructionBase<'LABEL'> {
  pairs: [string, string][];
  legacy: boolean;
}

/** One name of an ARG instruction. */
export interface ArgDefinition {
  name: string;
  /** Absent for `ARG NAME` (no `=`); `''` for `ARG NAME=`. */
  default?: string;
}

export interface ArgInstruction extends InstructionBase<'ARG'> {
  args: ArgDefinition[];
}

export interface ExposeInstruction extends InstructionBase<'EXPOSE'> {
  /** As Docker stores them: sorted (by bytes) before expansion. */
  ports: string[];
}

export interface VolumeInstruction extends InstructionBase<'VOLUME'> {
  paths: string[];
}

export interface WorkdirInstruction extends InstructionBase<'WORKDIR'> {
  path: string;
}

export interface UserInstruction extends InstructionBase<'USER'> {
  user: string;
}

export interface StopSignalInstruction extends InstructionBase<'STOPSIGNAL'> {
  signal: string;
}

export interface MaintainerInstruction extends InstructionBase<'MAINTAINER'> {
  name: string;
}

/** Fields shared by COPY and ADD. */
export interface CopyLikeFields {
  /** Source paths (heredoc sources are in `heredocs`). */
  sources: string[];
  dest: string;
  chown?: string;
  chmod?: string;
  link: boolean;
  exclude?: string[];
  /** Inline sources (`COPY <<EOF /dst`). */
  heredocs: Heredoc[];
  /** True when written as a JSON array (`COPY ["a b", "/c"]`). */
  json: boolean;
}

export interface CopyInstruction extends InstructionBase<'COPY'>, CopyLikeFields {
  from?: string;
  parents: boolean;
}

export interface AddInstruction extends InstructionBase<'ADD'>, CopyLikeFields {
  checksum?: string;
  keepGitDir: boolean;
  /** `--unpack` given explicitly (absent: Docker's default, unpack local archives only). */
  unpack?: boolean;
}

export type HealthcheckInstruction = InstructionBase<'HEALTHCHECK'> &
  (
    | { none: true }
    | {
        none: false;
        /** `['CMD', ...argv]` (exec form) or `['CMD-SHELL', command]`. */
        test: string[];
        /** Nanoseconds; absent when not given or zero (inherit the default). */
        interval?: number;
        timeout?: number;
        startPeriod?: number;
        startInterval?: number;
        retries?: number;
      }
  );

export interface OnbuildInstruction extends InstructionBase<'ONBUILD'> {
  /** The trigger text stored in the image config (`RUN echo hi`), heredoc bodies appended. */
  trigger: string;
  /** The trigger parsed as Docker parses it when the image is used as a base. */
  parsed: Instruction;
}

export interface FromInstruction extends InstructionBase<'FROM'> {
  /** The base name as written (may contain `$VAR` referring to meta ARGs). */
  image: string;
  /** Stage name, lowercased. */
  name?: string;
  platform?: string;
}

export type Instruction =
  | AddInstruction
  | ArgInstruction
  | CmdInstruction
  | CopyInstruction
  | EntrypointInstruction
  | EnvInstruction
  | ExposeInstruction
  | FromInstruction
  | HealthcheckInstruction
  | LabelInstruction
  | MaintainerInstruction
  | OnbuildInstruction
  | RunInstruction
  | ShellInstruction
  | StopSignalInstruction
  | UserInstruction
  | VolumeInstruction
  | WorkdirInstruction;

/** One build stage: a FROM and the instructions up to the next FROM. */
export interface Stage {
  /** 0-based position, usable as `COPY --from=<index>`. */
  index: number;
  /** Lowercased `AS` name. */
  name?: string;
  /** The FROM base as written (unexpanded). */
  baseName: string;
  platform?: string;
  /** The FROM instruction itself. */
  from: FromInstruction;
  /** The instructions after FROM. */
  instructions: Instruction[];
  /** Line of the FROM. */
  line: number;
}

/** A non-fatal message Docker prints while parsing. */
export interface ParseWarning {
  line: number;
  message: string;
}

/** The whole parsed Dockerfile. */
export interface DockerfileAst {
  escapeChar: '\\' | '`';
  /** The `# syntax=` directive value, if present (strata always uses its own front end). */
  syntax?: string;
  /** Notes about directives that were recognized but have no effect here. */
  directiveNotes: string[];
  /** ARG instructions before the first FROM. */
  metaArgs: ArgInstruction[];
  stages: Stage[];
  /** Docker's parse warnings (empty continuation lines). */
  warnings: ParseWarning[];
}
