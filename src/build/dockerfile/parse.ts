/**
 * Dockerfile parsing with Docker's exact rules (buildkit
 * `frontend/dockerfile/parser` for structure, `instructions` for the typed
 * model): parser directives, escape-char line continuations, comments inside
 * continuations, empty continuation lines, heredocs, builder flags, JSON exec
 * form, and Docker's error messages.
 *
 * The structure pass is implemented here rather than taken from
 * `dockerfile-ast`, which diverges from Docker on directives (it applies
 * `# escape=` after an unknown directive, accepts repeated and invalid ones),
 * continuations (`foo \\` at the end of a line does not continue it in
 * Docker), comment lines inside continuations (it keeps them in the
 * arguments) and unterminated heredocs (it accepts them). Each case is in
 * test/build/dockerfile-astcompat.test.ts.
 */
import { DockerfileError } from './errors.js';
import { FlagError, extractBuilderFlags, parseFlags, parseRunMount, parseRunNetwork, parseRunSecurity } from './flags.js';
import type { FlagType, ParsedFlags } from './flags.js';
import {
  GoParseError,
  goParseInt,
  goQuote,
  goSortStrings,
  goTrimLeftSpace,
  goTrimSpace,
  isGoSpace,
  parseGoDuration,
  suggest,
} from './gocompat.js';
import { INSTRUCTION_KINDS } from './instructions.js';
import type {
  AddInstruction,
  ArgDefinition,
  ArgInstruction,
  CommandLine,
  CopyInstruction,
  DockerfileAst,
  FromInstruction,
  HealthcheckInstruction,
  Heredoc,
  Instruction,
  InstructionKind,
  ParseWarning,
  RunInstruction,
  Stage,
} from './instructions.js';
import { lexWord, ShellExpansionError } from './lexer.js';

/** Options of {@link parseDockerfile}. */
export interface ParseOptions {
  /** Name used in error messages (default `Dockerfile`). */
  filename?: string;
}

/** A message that becomes a {@link DockerfileError} once its line is known. */
class ParseFailure extends Error {}

const DIRECTIVE_RE = /^#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*([^\n]+?)[\t\n\f\r ]*$/;
const KNOWN_DIRECTIVES = new Set(['syntax', 'escape', 'check']);
/** buildkit's reWhitespace: note it does not include '\n' or non-ASCII spaces. */
const WHITESPACE_RE = /[\t\v\f\r ]+/;
const HEREDOC_RE = /^(\d*)<<(-?)([^<]*)$/;
const STAGE_NAME_RE = /^[a-z][a-z0-9_.-]*$/;

/** Parser-directive state: which were seen, the escape token, when to stop looking. */
class Directives {
  escape: '\\' | '`' = '\\';
  continuation = Directives.continuationFor('\\');
  done = false;
  readonly seen = new Map<string, string>();

  static continuationFor(escape: string): RegExp {
    const e = escape === '\\' ? '\\\\' : escape;
    // An escape as the last non-blank character continues the line, unless it
    // is itself escaped (buildkit cannot see "foo \\\" either).
    return new RegExp(`([^${e}])${e}[ \\t]*$|^${e}[ \\t]*$`, 'u');
  }

  /** Looks at one (left-trimmed) line while directives may still appear. */
  consider(line: string): void {
    if (this.done) return;
    const m = DIRECTIVE_RE.exec(line);
    if (!m) {
      this.done = true;
      return;
    }
    const key = m[1]!.toLowerCase();
    if (!KNOWN_DIRECTIVES.has(key)) {
      this.done = true;
      return;
    }
    if (this.seen.has(key)) throw new ParseFailure(`only one ${key} parser directive can be used`);
    const value = m[2]!;
    this.seen.set(key, value);
    if (key === 'escape') {
      if (value !== '`' && value !== '\\') throw new ParseFailure(`invalid escape token '${value}' does not match \` or \\`);
      this.escape = value;
      this.continuation = Directives.continuationFor(value);
    }
  }

  /** Removes a trailing continuation escape; reports whether the instruction ends here. */
  trimContinuation(line: string): { line: string; end: boolean } {
    if (this.continuation.test(line)) return { line: line.replace(this.continuation, '$1'), end: false };
    return { line, end: true };
  }
}

/** buildkit's parse tree node, before typing. */
interface RawNode {
  /** Lowercased keyword. */
  cmd: string;
  /** Keyword as written. */
  keyword: string;
  flags: string[];
  args: string[];
  json: boolean;
  /** ENV/LABEL: `key value` legacy form. */
  legacy: boolean;
  /** The joined line, as Docker keeps it. */
  original: string;
  child?: RawNode;
  heredocs: Heredoc[];
  startLine: number;
  endLine: number;
}

function trimNewline(s: string): string {
  return s.replace(/[\r\n]+$/, '');
}

function splitLines(text: string): string[] {
  return text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
}

class NotStringArrayError extends ParseFailure {
  constructor() {
    super('when using JSON array syntax, arrays must be comprised of strings only');
  }
}

/** Index just past the first JSON value of `s` (which starts with `[`), or -1. */
function firstJsonValueEnd(s: string): number {
  let depth = 0;
  let inString = false;
  let escaped = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '[' || c === '{') depth++;
    else if (c === ']' || c === '}') {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

/**
 * Docker's JSON exec-form test: the text (after leading blanks) must start with
 * `[` and its first JSON value must decode; anything after that value is
 * ignored (Go's json.Decoder). Returns undefined when it is not JSON (shell
 * form); throws when it is a JSON array with non-string elements.
 */
export function parseJsonArray(rest: string): string[] | undefined {
  const text = goTrimLeftSpace(rest);
  if (!text.startsWith('[')) return undefined;
  const end = firstJsonValueEnd(text);
  if (end < 0) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text.slice(0, end));
  } catch {
    return undefined;
  }
  if (!Array.isArray(value)) return undefined;
  const out: string[] = [];
  for (const item of value) {
    if (typeof item !== 'string') throw new NotStringArrayError();
    // Go decodes an unpaired surrogate escape to U+FFFD.
    out.push(item.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd'));
  }
  return out;
}

/** buildkit's parseWords: splits on blanks, keeping quotes and escapes in the words. */
function parseWords(rest: string, escape: string): string[] {
  const chars = Array.from(rest);
  const words: string[] = [];
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let word = '';
  let quote = '';
  let blankOK = false;
  for (let pos = 0; pos <= chars.length; pos++) {
    let ch = pos < chars.length ? chars[pos]! : '';
    if (phase === 'spaces') {
      if (pos === chars.length) break;
      if (isGoSpace(ch)) continue;
      phase = 'word';
    }
    if (pos === chars.length) {
      if (blankOK || word.length > 0) words.push(word);
      break;
    }
    if (phase === 'word') {
      if (isGoSpace(ch)) {
        phase = 'spaces';
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
      }
      if (ch === escape) {
        if (pos + 1 === chars.length) continue;
        word += ch;
        pos++;
        ch = chars[pos]!;
      }
      word += ch;
      continue;
    }
    if (ch === quote) phase = 'word';
    if (ch === escape && quote !== "'") {
      if (pos + 1 === chars.length) {
        phase = 'word';
        continue;
      }
      pos++;
      word += ch;
      ch = chars[pos]!;
    }
    word += ch;
  }
  return words;
}

function splitWhitespace(rest: string): string[] {
  return rest === '' ? [] : rest.split(new RegExp(WHITESPACE_RE.source, 'g'));
}

function parseMaybeJson(rest: string): { args: string[]; json: boolean } {
  if (rest === '') return { args: [], json: false };
  const json = parseJsonArray(rest);
  if (json) return { args: json, json: true };
  return { args: [rest], json: false };
}

function parseMaybeJsonToList(rest: string): { args: string[]; json: boolean } {
  const json = parseJsonArray(rest);
  if (json) return { args: json, json: true };
  return { args: splitWhitespace(rest), json: false };
}

function parseNameVal(rest: string, key: string, escape: string): { args: string[]; legacy: boolean } {
  const words = parseWords(rest, escape);
  if (words.length === 0) return { args: [], legacy: false };
  if (!words[0]!.includes('=')) {
    const m = WHITESPACE_RE.exec(rest);
    if (!m) throw new ParseFailure(`${key} must have two arguments`);
    return { args: [rest.slice(0, m.index), rest.slice(m.index + m[0].length)], legacy: true };
  }
  const args: string[] = [];
  for (const word of words) {
    const eq = word.indexOf('=');
    if (eq < 0) throw new ParseFailure(`Syntax error - can't find = in ${goQuote(word)}. Must be of the form: name=value`);
    args.push(word.slice(0, eq), word.slice(eq + 1));
  }
  return { args, legacy: false };
}

/** buildkit's splitCommand + dispatch table: one joined line to a raw node. */
function nodeFromLine(line: string, escape: string): RawNode {
  const trimmed = goTrimSpace(line);
  const m = WHITESPACE_RE.exec(trimmed);
  const keyword = m ? trimmed.slice(0, m.index) : trimmed;
  let flags: string[] = [];
  let rest = '';
  if (m) {
    const extracted = extractBuilderFlags(trimmed.slice(m.index + m[0].length));
    flags = extracted.flags;
    rest = goTrimSpace(extracted.rest);
  }
  const cmd = keyword.toLowerCase();
  const node: RawNode = { cmd, keyword, flags, args: [], json: false, legacy: false, original: line, heredocs: [], startLine: 0, endLine: 0 };
  switch (cmd) {
    case 'add':
    case 'copy':
    case 'volume':
      Object.assign(node, parseMaybeJsonToList(rest));
      break;
    case 'arg':
      node.args = parseWords(rest, escape);
      break;
    case 'cmd':
    case 'entrypoint':
    case 'run':
    case 'shell':
      Object.assign(node, parseMaybeJson(rest));
      break;
    case 'env':
    case 'label':
      Object.assign(node, parseNameVal(rest, cmd === 'env' ? 'ENV' : 'LABEL', escape));
      break;
    case 'expose':
    case 'from':
      node.args = splitWhitespace(rest);
      break;
    case 'healthcheck': {
      const chars = Array.from(rest);
      let sep = 0;
      while (sep < chars.length && !isGoSpace(chars[sep]!)) sep++;
      if (sep === 0) break;
      let next = sep;
      while (next < chars.length && isGoSpace(chars[next]!)) next++;
      const cmdPart = parseMaybeJson(chars.slice(next).join(''));
      node.args = [chars.slice(0, sep).join(''), ...cmdPart.args];
      node.json = cmdPart.json;
      break;
    }
    case 'maintainer':
    case 'stopsignal':
    case 'user':
    case 'workdir':
      node.args = rest === '' ? [] : [rest];
      break;
    case 'onbuild':
      if (rest !== '') {
        node.child = nodeFromLine(rest, escape);
        node.args = [node.child.keyword, ...node.child.args];
      }
      break;
    default:
      // Unknown instructions parse (without arguments) and fail when typed, as in buildkit.
      break;
  }
  return node;
}

function canContainHeredoc(node: RawNode): boolean {
  const target = node.cmd === 'onbuild' && node.child ? node.child : node;
  return (target.cmd === 'run' || target.cmd === 'copy' || target.cmd === 'add') && !target.json;
}

/** Docker's heredoc recognition for one word (`<<EOF`, `<<-"EOF"`, `3<<EOF`), or undefined. */
export function parseHeredocWord(word: string): Omit<Heredoc, 'content'> | undefined {
  const m = HEREDOC_RE.exec(word);
  if (!m) return undefined;
  const rest = m[3]!;
  if (rest === '') return undefined;
  const fd = m[1] === '' ? 0 : Number(m[1]);
  let words: string[];
  let rawWords: string[];
  try {
    words = lexWord(rest, {}, '\\', { skipUnsetEnv: true }).words;
    if (words.length !== 1) return undefined;
    rawWords = lexWord(rest, {}, '\\', { skipUnsetEnv: true, rawQuotes: true }).words;
  } catch (err) {
    if (err instanceof ShellExpansionError) throw new ParseFailure(err.message);
    throw err;
  }
  if (rawWords.length !== words.length) {
    throw new ParseFailure(`internal lexing of heredoc produced inconsistent results: ${rest}`);
  }
  const quotes = (s: string): number => (s.match(/['"]/g) ?? []).length;
  return {
    name: words[0]!,
    expand: quotes(words[0]!) === quotes(rawWords[0]!),
    chomp: m[2] === '-',
    fileDescriptor: Number.isSafeInteger(fd) ? fd : 0,
  };
}

function heredocsFromLine(line: string): Omit<Heredoc, 'content'>[] {
  let words: string[];
  try {
    words = lexWord(line, {}, '\\', { rawQuotes: true, rawEscapes: true, skipUnsetEnv: true }).words;
  } catch {
    // buildkit ignores lexing errors here: such a line simply has no heredocs.
    return [];
  }
  const out: Omit<Heredoc, 'content'>[] = [];
  for (const word of words) {
    const h = parseHeredocWord(word);
    if (h) out.push(h);
  }
  return out;
}

interface ScanResult {
  nodes: RawNode[];
  directives: Directives;
  warnings: ParseWarning[];
}

/** The structure pass: lines to raw nodes (buildkit parser.Parse). */
function scan(text: string, filename: string): ScanResult {
  const lines = splitLines(text);
  const directives = new Directives();
  const nodes: RawNode[] = [];
  const warnings: ParseWarning[] = [];
  let idx = 0;
  let currentLine = 0;
  const fail = (message: string, line: number, endLine?: number): never => {
    throw new DockerfileError(message, line, endLine === undefined ? { filename } : { filename, endLine });
  };
  const consider = (token: string, line: number): void => {
    try {
      directives.consider(token);
    } catch (err) {
      if (err instanceof ParseFailure) fail(err.message, line);
      throw err;
    }
  };
  const stripComment = (token: string): string => (token.startsWith('#') ? '' : token);

  while (idx < lines.length) {
    let raw = lines[idx++]!;
    if (currentLine === 0) raw = raw.replace(/^\uFEFF/, '');
    let token = goTrimLeftSpace(trimNewline(raw));
    consider(token, currentLine + 1);
    token = stripComment(token);
    currentLine++;
    const startLine = currentLine;
    let { line, end } = directives.trimContinuation(token);
    if (end && line === '') continue;

    let hasEmptyContinuation = false;
    while (!end && idx < lines.length) {
      const rawContinuation = lines[idx++]!;
      let continuation = trimNewline(rawContinuation);
      consider(continuation, currentLine + 1);
      continuation = stripComment(continuation);
      currentLine++;
      if (goTrimLeftSpace(trimNewline(rawContinuation)).startsWith('#')) continue;
      if (goTrimLeftSpace(continuation) === '') {
        hasEmptyContinuation = true;
        continue;
      }
      const trimmed = directives.trimContinuation(continuation);
      line += trimmed.line;
      end = trimmed.end;
    }
    if (hasEmptyContinuation) {
      warnings.push({ line: startLine, message: `Empty continuation line found in: ${line}` });
    }

    let node: RawNode;
    try {
      node = nodeFromLine(line, directives.escape);
    } catch (err) {
      if (err instanceof ParseFailure) fail(err.message, startLine, currentLine);
      throw err;
    }

    if (canContainHeredoc(node)) {
      let heredocs: Omit<Heredoc, 'content'>[];
      try {
        heredocs = heredocsFromLine(line);
      } catch (err) {
        if (err instanceof ParseFailure) fail(err.message, startLine, currentLine);
        throw err;
      }
      for (const heredoc of heredocs) {
        let content = '';
        let terminated = false;
        while (idx < lines.length) {
          const body = lines[idx++]!;
          currentLine++;
          let candidate = trimNewline(body);
          if (heredoc.chomp) candidate = candidate.replace(/^\t+/, '');
          if (candidate === heredoc.name) {
            terminated = true;
            break;
          }
          content += body;
        }
        if (!terminated) fail('unterminated heredoc', startLine, currentLine);
        node.heredocs.push({ ...heredoc, content });
      }
    }
    node.startLine = startLine;
    node.endLine = currentLine;
    nodes.push(node);
  }

  if (nodes.length === 0) fail('file with no instructions', currentLine);
  return { nodes, directives, warnings };
}

const NO_FLAGS: Readonly<Record<string, FlagType>> = {};

function flagsOf(node: RawNode, spec: Readonly<Record<string, FlagType>>): ParsedFlags {
  try {
    return parseFlags(node.flags, spec);
  } catch (err) {
    if (err instanceof FlagError) throw new ParseFailure(err.message);
    throw err;
  }
}

function base<K extends InstructionKind>(kind: K, node: RawNode, flags: ParsedFlags | undefined) {
  return {
    kind,
    line: node.startLine,
    endLine: node.endLine,
    original: goTrimSpace(node.original),
    flags: flags ? { ...flags.values } : {},
  };
}

function commandLine(node: RawNode): CommandLine {
  return node.json ? { form: 'exec', command: node.args } : { form: 'shell', command: node.args.join(' ') };
}

function atLeastOne(node: RawNode, name: string): void {
  if (node.args.length === 0) throw new ParseFailure(`${name} requires at least one argument`);
}

function exactlyOne(node: RawNode, name: string): void {
  if (node.args.length !== 1) throw new ParseFailure(`${name} requires exactly one argument`);
}

function keyValuePairs(node: RawNode, name: string): [string, string][] {
  atLeastOne(node, name);
  const pairs: [string, string][] = [];
  for (let i = 0; i < node.args.length; i += 2) {
    if (node.args[i] === '') throw new ParseFailure(`${name} names can not be blank`);
    pairs.push([node.args[i]!, node.args[i + 1] ?? '']);
  }
  return pairs;
}

/** Go's time.ParseDuration with buildkit's HEALTHCHECK minimum (1ms, zero allowed). */
function parseInterval(flag: string, value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  let nanos: bigint;
  try {
    nanos = parseGoDuration(value);
  } catch (err) {
    if (err instanceof GoParseError) throw new ParseFailure(err.message);
    throw err;
  }
  if (nanos === 0n) return undefined;
  if (nanos < 1_000_000n) throw new ParseFailure(`Interval ${goQuote(flag)} cannot be less than 1ms`);
  return Number(nanos);
}

function sourcesAndDest(node: RawNode, name: string): { sources: string[]; dest: string; heredocs: Heredoc[] } {
  const dest = node.args[node.args.length - 1]!;
  if (parseHeredocWordQuiet(dest)) throw new ParseFailure(`${name} cannot accept a heredoc as a destination`);
  const byName = new Map(node.heredocs.map((h) => [h.name, h] as const));
  const sources: string[] = [];
  const heredocs: Heredoc[] = [];
  for (const src of node.args.slice(0, -1)) {
    const h = parseHeredocWordQuiet(src);
    if (h) {
      const body = byName.get(h.name);
      heredocs.push({ ...h, content: body?.content ?? '' });
    } else {
      sources.push(src);
    }
  }
  return { sources, dest, heredocs };
}

function parseHeredocWordQuiet(word: string): Omit<Heredoc, 'content'> | undefined {
  try {
    return parseHeredocWord(word);
  } catch {
    return undefined;
  }
}

function copyLike(node: RawNode, name: 'COPY' | 'ADD', flags: ParsedFlags) {
  const { sources, dest, heredocs } = sourcesAndDest(node, name);
  const out = {
    sources,
    dest,
    link: flags.bools.link === true,
    heredocs,
    json: node.json,
  } as CopyInstruction | AddInstruction;
  if (flags.strings.chown !== undefined) out.chown = flags.strings.chown;
  if (flags.strings.chmod !== undefined) out.chmod = flags.strings.chmod;
  if (flags.lists.exclude !== undefined) out.exclude = [...flags.lists.exclude];
  return out;
}

/** buildkit instructions.ParseInstruction: a raw node to a typed instruction. */
function typeNode(node: RawNode, filename: string): Instruction {
  switch (node.cmd) {
    case 'env':
    case 'label': {
      const name = node.cmd === 'env' ? 'ENV' : 'LABEL';
      const flags = flagsOf(node, NO_FLAGS);
      const pairs = keyValuePairs(node, name);
      return { ...base(name, node, flags), pairs, legacy: node.legacy } as Instruction;
    }
    case 'maintainer': {
      exactlyOne(node, 'MAINTAINER');
      const flags = flagsOf(node, NO_FLAGS);
      return { ...base('MAINTAINER', node, flags), name: node.args[0]! };
    }
    case 'add': {
      if (node.args.length < 2) {
        throw new ParseFailure('ADD requires at least two arguments, but only one was provided. Destination could not be determined');
      }
      const flags = flagsOf(node, {
        chown: 'string',
        chmod: 'string',
        link: 'bool',
        'keep-git-dir': 'bool',
        checksum: 'string',
        exclude: 'strings',
        unpack: 'bool',
      });
      const add = { ...base('ADD', node, flags), ...copyLike(node, 'ADD', flags), keepGitDir: flags.bools['keep-git-dir'] === true } as AddInstruction;
      if (flags.strings.checksum !== undefined) add.checksum = flags.strings.checksum;
      if (flags.bools.unpack !== undefined) add.unpack = flags.bools.unpack;
      return add;
    }
    case 'copy': {
      if (node.args.length < 2) {
        throw new ParseFailure('COPY requires at least two arguments, but only one was provided. Destination could not be determined');
      }
      const flags = flagsOf(node, {
        chown: 'string',
        from: 'string',
        chmod: 'string',
        link: 'bool',
        parents: 'bool',
        exclude: 'strings',
      });
      const copy = { ...base('COPY', node, flags), ...copyLike(node, 'COPY', flags), parents: flags.bools.parents === true } as CopyInstruction;
      if (flags.strings.from !== undefined) copy.from = flags.strings.from;
      return copy;
    }
    case 'from': {
      let name: string | undefined;
      if (node.args.length === 3 && node.args[1]!.toLowerCase() === 'as') {
        name = node.args[2]!.toLowerCase();
        if (!STAGE_NAME_RE.test(name)) {
          throw new ParseFailure(`invalid name for build stage: ${goQuote(node.args[2]!)}, name can't start with a number or contain symbols`);
        }
      } else if (node.args.length !== 1) {
        throw new ParseFailure('FROM requires either one or three arguments');
      }
      const flags = flagsOf(node, { platform: 'string' });
      const from: FromInstruction = { ...base('FROM', node, flags), image: node.args[0]! };
      if (name !== undefined) from.name = name;
      if (flags.strings.platform !== undefined) from.platform = flags.strings.platform;
      return from;
    }
    case 'onbuild': {
      atLeastOne(node, 'ONBUILD');
      const flags = flagsOf(node, NO_FLAGS);
      const trigger = goTrimSpace(node.args[0]!).toUpperCase();
      if (trigger === 'ONBUILD') throw new ParseFailure('Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed');
      if (trigger === 'MAINTAINER' || trigger === 'FROM') throw new ParseFailure(`${trigger} isn't allowed as an ONBUILD trigger`);
      let expression = node.original.replace(/^[\t\n\f\r ]*ONBUILD[\t\n\f\r ]*/i, '');
      for (const h of node.heredocs) expression += '\n' + h.content + h.name;
      return { ...base('ONBUILD', node, flags), trigger: expression, parsed: parseTrigger(expression, node, filename) };
    }
    case 'workdir': {
      exactlyOne(node, 'WORKDIR');
      const flags = flagsOf(node, NO_FLAGS);
      return { ...base('WORKDIR', node, flags), path: node.args[0]! };
    }
    case 'run': {
      const flags = flagsOf(node, { mount: 'strings', network: 'string', security: 'string' });
      const run = { ...base('RUN', node, flags), ...commandLine(node), heredocs: node.heredocs } as RunInstruction;
      try {
        if (flags.lists.mount) run.mounts = flags.lists.mount.map((spec) => parseRunMount(spec));
        if (flags.strings.network !== undefined) run.network = parseRunNetwork(flags.strings.network);
        if (flags.strings.security !== undefined) run.security = parseRunSecurity(flags.strings.security);
      } catch (err) {
        if (err instanceof FlagError) throw new ParseFailure(err.message);
        throw err;
      }
      return run;
    }
    case 'cmd':
    case 'entrypoint': {
      const flags = flagsOf(node, NO_FLAGS);
      return { ...base(node.cmd === 'cmd' ? 'CMD' : 'ENTRYPOINT', node, flags), ...commandLine(node) } as Instruction;
    }
    case 'healthcheck': {
      atLeastOne(node, 'HEALTHCHECK');
      const type = node.args[0]!.toUpperCase();
      const rest = node.args.slice(1);
      if (type === 'NONE') {
        if (rest.length !== 0) throw new ParseFailure('HEALTHCHECK NONE takes no arguments');
        // Docker does not look at flags for HEALTHCHECK NONE.
        return { ...base('HEALTHCHECK', node, undefined), none: true };
      }
      const flags = flagsOf(node, {
        interval: 'string',
        timeout: 'string',
        'start-period': 'string',
        'start-interval': 'string',
        retries: 'string',
      });
      if (type !== 'CMD') throw new ParseFailure(`Unknown type ${goQuote(type)} in HEALTHCHECK (try CMD)`);
      const argv = node.json ? rest : rest.length === 0 ? [] : [rest.join(' ')];
      if (argv.length === 0) throw new ParseFailure('Missing command after HEALTHCHECK CMD');
      const check: HealthcheckInstruction = {
        ...base('HEALTHCHECK', node, flags),
        none: false,
        test: [node.json ? 'CMD' : 'CMD-SHELL', ...argv],
      };
      const interval = parseInterval('interval', flags.strings.interval);
      const timeout = parseInterval('timeout', flags.strings.timeout);
      const startPeriod = parseInterval('start-period', flags.strings['start-period']);
      const startInterval = parseInterval('start-interval', flags.strings['start-interval']);
      if (interval !== undefined) check.interval = interval;
      if (timeout !== undefined) check.timeout = timeout;
      if (startPeriod !== undefined) check.startPeriod = startPeriod;
      if (startInterval !== undefined) check.startInterval = startInterval;
      const retriesText = flags.strings.retries;
      if (retriesText !== undefined && retriesText !== '') {
        let retries: bigint;
        try {
          retries = goParseInt(retriesText, 10, 32);
        } catch (err) {
          if (err instanceof GoParseError) throw new ParseFailure(err.message);
          throw err;
        }
        if (retries < 0n) throw new ParseFailure(`--retries cannot be negative (${retries})`);
        if (retries > 0n) check.retries = Number(retries);
      }
      return check;
    }
    case 'expose': {
      atLeastOne(node, 'EXPOSE');
      const flags = flagsOf(node, NO_FLAGS);
      return { ...base('EXPOSE', node, flags), ports: goSortStrings([...node.args]) };
    }
    case 'user': {
      exactlyOne(node, 'USER');
      const flags = flagsOf(node, NO_FLAGS);
      return { ...base('USER', node, flags), user: node.args[0]! };
    }
    case 'volume': {
      atLeastOne(node, 'VOLUME');
      const flags = flagsOf(node, NO_FLAGS);
      const paths = node.args.map((p) => goTrimSpace(p));
      if (paths.some((p) => p === '')) throw new ParseFailure('VOLUME specified can not be an empty string');
      return { ...base('VOLUME', node, flags), paths };
    }
    case 'stopsignal': {
      exactlyOne(node, 'STOPSIGNAL');
      // Docker does not parse flags for STOPSIGNAL; they are ignored.
      return { ...base('STOPSIGNAL', node, undefined), signal: node.args[0]! };
    }
    case 'arg': {
      atLeastOne(node, 'ARG');
      // Docker does not parse flags for ARG; they are ignored.
      const args: ArgDefinition[] = node.args.map((word) => {
        const eq = word.indexOf('=');
        if (eq < 0) return { name: word };
        if (eq === 0) throw new ParseFailure('ARG names can not be blank');
        return { name: word.slice(0, eq), default: word.slice(eq + 1) };
      });
      return { ...base('ARG', node, undefined), args } satisfies ArgInstruction;
    }
    case 'shell': {
      const flags = flagsOf(node, NO_FLAGS);
      if (node.args.length === 0) throw new ParseFailure('SHELL requires at least one argument');
      if (!node.json) throw new ParseFailure('SHELL requires the arguments to be in JSON form');
      return { ...base('SHELL', node, flags), command: node.args };
    }
  }
  const keyword = node.keyword.toUpperCase();
  const hint = suggest(keyword, INSTRUCTION_KINDS);
  throw new ParseFailure(`unknown instruction: ${keyword}${hint ? ` (did you mean ${hint}?)` : ''}`);
}

/**
 * Parses an ONBUILD trigger the way Docker does when the image is used as a
 * base (a fresh parse with default directives). Docker itself only does this
 * later; refusing a broken trigger now is deliberate.
 */
function parseTrigger(expression: string, node: RawNode, filename: string): Instruction {
  let parsed: RawNode[];
  try {
    parsed = scan(expression, filename).nodes;
  } catch (err) {
    if (err instanceof DockerfileError) throw new ParseFailure(`invalid ONBUILD trigger: ${err.detail}`);
    throw err;
  }
  if (parsed.length !== 1) throw new ParseFailure('onbuild trigger should be a single expression');
  const child = parsed[0]!;
  child.startLine = node.startLine;
  child.endLine = node.endLine;
  return typeNode(child, filename);
}

/**
 * Parses an ONBUILD trigger as stored in an image config (`OnBuild`), the way
 * Docker does when that image is used as a base: a fresh parse with default
 * directives, exactly one instruction, and not FROM, ONBUILD or MAINTAINER.
 * @throws DockerfileError located at `opts.line` (default 1).
 */
export function parseOnbuildTrigger(trigger: string, opts: { line?: number; filename?: string } = {}): Instruction {
  const line = opts.line ?? 1;
  const filename = opts.filename ?? 'Dockerfile';
  const node: RawNode = {
    cmd: 'onbuild',
    keyword: 'ONBUILD',
    flags: [],
    args: [],
    json: false,
    legacy: false,
    original: trigger,
    heredocs: [],
    startLine: line,
    endLine: line,
  };
  try {
    const parsed = parseTrigger(trigger, node, filename);
    if (parsed.kind === 'FROM' || parsed.kind === 'ONBUILD' || parsed.kind === 'MAINTAINER') {
      throw new ParseFailure(`${parsed.kind} isn't allowed as an ONBUILD trigger`);
    }
    return parsed;
  } catch (err) {
    if (err instanceof ParseFailure) throw new DockerfileError(err.message, line, { filename });
    throw err;
  }
}

/**
 * Parses a Dockerfile with Docker's rules.
 * @throws DockerfileError with the line of the offending instruction.
 */
export function parseDockerfile(text: string, opts: ParseOptions = {}): DockerfileAst {
  const filename = opts.filename ?? 'Dockerfile';
  const { nodes, directives, warnings } = scan(text, filename);
  const ast: DockerfileAst = {
    escapeChar: directives.escape,
    directiveNotes: [],
    metaArgs: [],
    stages: [],
    warnings,
  };
  const syntax = directives.seen.get('syntax');
  if (syntax !== undefined) {
    ast.syntax = syntax;
    ast.directiveNotes.push(`syntax directive "${syntax}" ignored: strata always uses its built-in Dockerfile front end`);
  }
  const check = directives.seen.get('check');
  if (check !== undefined) ast.directiveNotes.push(`check directive "${check}" ignored: strata does not run build checks`);

  const names = new Map<string, number>();
  for (const node of nodes) {
    let instruction: Instruction;
    try {
      instruction = typeNode(node, filename);
    } catch (err) {
      if (err instanceof ParseFailure) {
        throw new DockerfileError(err.message, node.startLine, { endLine: node.endLine, filename });
      }
      throw err;
    }
    if (instruction.kind === 'FROM') {
      if (instruction.name !== undefined) {
        if (names.has(instruction.name)) {
          throw new DockerfileError(`Duplicate stage name '${instruction.name}', stage names should be unique`, node.startLine, {
            endLine: node.endLine,
            filename,
          });
        }
        names.set(instruction.name, ast.stages.length);
      }
      const stage: Stage = {
        index: ast.stages.length,
        baseName: instruction.image,
        from: instruction,
        instructions: [],
        line: instruction.line,
      };
      if (instruction.name !== undefined) stage.name = instruction.name;
      if (instruction.platform !== undefined) stage.platform = instruction.platform;
      ast.stages.push(stage);
      continue;
    }
    if (ast.stages.length === 0) {
      if (instruction.kind === 'ARG') {
        ast.metaArgs.push(instruction);
        continue;
      }
      throw new DockerfileError('no build stage in current context', node.startLine, { endLine: node.endLine, filename });
    }
    ast.stages[ast.stages.length - 1]!.instructions.push(instruction);
  }
  return ast;
}

/** The instructions of a stage, FROM first, as `docker build` counts steps. */
export function stageSteps(stage: Stage): Instruction[] {
  return [stage.from, ...stage.instructions];
}
