/**
 * Docker's shell-word lexer (buildkit `frontend/dockerfile/shell`): quote
 * removal, escapes, `$VAR` / `${VAR...}` substitution and word splitting, with
 * the same rules and error messages. This is deliberately not a POSIX shell:
 * no command substitution, no globbing, no `${#VAR}`, and the quirks below are
 * Docker's, kept on purpose (e.g. an escape before an ordinary character drops
 * the escape, `${VAR/pat}` without a replacement is a syntax error).
 */
import { goQuote, isGoSpace } from './gocompat.js';

/** Looks up a variable; `undefined` means unset (not the same as empty). */
export type EnvLookup = (name: string) => string | undefined;

/** Anything that can answer variable look-ups. */
export type EnvSource =
  | EnvLookup
  | ReadonlyMap<string, string>
  | Readonly<Record<string, string | undefined>>
  | readonly string[];

/** Switches of buildkit's `shell.Lex` (all off for ordinary expansion). */
export interface LexOptions {
  /** Keep quote characters in the output (used to detect quoted heredoc names). */
  rawQuotes?: boolean;
  /** Keep escape characters in the output. */
  rawEscapes?: boolean;
  /** Treat quotes as ordinary characters (heredoc bodies are expanded this way). */
  skipProcessQuotes?: boolean;
  /** Leave references to unset variables as written instead of expanding to ''. */
  skipUnsetEnv?: boolean;
}

/** A word that Docker's lexer refuses (bad substitution, unmatched quote, `${X?}`...). */
export class ShellExpansionError extends Error {
  /** The word being processed. */
  readonly word: string;
  /** The reason, without the `failed to process` prefix. */
  readonly reason: string;
  constructor(word: string, reason: string) {
    super(`failed to process ${goQuote(word)}: ${reason}`);
    this.name = 'ShellExpansionError';
    this.word = word;
    this.reason = reason;
  }
}

/** Result of one lexer pass. */
export interface LexResult {
  /** The word with quotes removed and variables substituted (spaces kept). */
  result: string;
  /** The same, split into words after substitution (quoted spaces don't split). */
  words: string[];
  /** Names that were looked up and were set. */
  matched: Set<string>;
  /** Names that were looked up and were unset. */
  unmatched: Set<string>;
}

/** Normalizes the accepted environment shapes to a look-up function. */
export function toLookup(env: EnvSource): EnvLookup {
  if (typeof env === 'function') return env as EnvLookup;
  if (Array.isArray(env)) {
    // A `K=V` list (Docker's Env). Later duplicates win, as in buildkit's EnvsFromSlice.
    const map = new Map<string, string>();
    for (const entry of env as readonly string[]) {
      const eq = entry.indexOf('=');
      if (eq < 0) map.set(entry, '');
      else map.set(entry.slice(0, eq), entry.slice(eq + 1));
    }
    return (name) => map.get(name);
  }
  if (env instanceof Map) return (name) => env.get(name);
  const record = env as Readonly<Record<string, string | undefined>>;
  return (name) => (Object.prototype.hasOwnProperty.call(record, name) ? record[name] : undefined);
}

class LexFailure extends Error {}

class WordSplitter {
  private buf = '';
  private inWord = false;
  private readonly words: string[] = [];

  addChar(ch: string): void {
    if (isGoSpace(ch)) {
      if (this.inWord && this.buf.length !== 0) {
        this.words.push(this.buf);
        this.buf = '';
        this.inWord = false;
      }
    } else {
      this.addRawChar(ch);
    }
  }

  addRawChar(ch: string): void {
    this.buf += ch;
    this.inWord = true;
  }

  addString(str: string): void {
    for (const ch of str) this.addChar(ch);
  }

  addRawString(str: string): void {
    this.buf += str;
    this.inWord = true;
  }

  finish(): string[] {
    if (this.buf.length > 0) {
      this.words.push(this.buf);
      this.buf = '';
      this.inWord = false;
    }
    return this.words;
  }
}

const EOF = undefined;

class ShellWord {
  private readonly chars: string[];
  private pos = 0;
  private rawEscapes: boolean;
  readonly matched = new Set<string>();
  readonly unmatched = new Set<string>();

  constructor(
    word: string,
    private readonly env: EnvLookup,
    private readonly escapeToken: string,
    private readonly opts: LexOptions,
  ) {
    this.chars = Array.from(word);
    this.rawEscapes = opts.rawEscapes ?? false;
  }

  private peek(): string | undefined {
    return this.chars[this.pos];
  }

  private next(): string | undefined {
    const ch = this.chars[this.pos];
    if (ch !== undefined) this.pos++;
    return ch;
  }

  run(): { result: string; words: string[] } {
    return this.processStopOn(EOF, this.rawEscapes);
  }

  private processStopOn(stopChar: string | undefined, rawEscapes: boolean): { result: string; words: string[] } {
    let result = '';
    const words = new WordSplitter();
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      while (this.peek() !== EOF) {
        const ch = this.peek()!;
        if (stopChar !== EOF && ch === stopChar) {
          this.next();
          return { result, words: words.finish() };
        }
        if (ch === '$' || (!this.opts.skipProcessQuotes && (ch === "'" || ch === '"'))) {
          const tmp = ch === '$' ? this.processDollar() : ch === "'" ? this.processSingleQuote() : this.processDoubleQuote();
          result += tmp;
          if (ch === '$') words.addString(tmp);
          else words.addRawString(tmp);
          continue;
        }
        let c = this.next()!;
        if (c === this.escapeToken) {
          if (this.rawEscapes) {
            words.addRawChar(c);
            result += c;
          }
          const escaped = this.next();
          // An escape at the very end of the word is dropped.
          if (escaped === EOF) break;
          c = escaped;
          words.addRawChar(c);
        } else {
          words.addChar(c);
        }
        result += c;
      }
      if (stopChar !== EOF) {
        throw new LexFailure(`unexpected end of statement while looking for matching ${stopChar}`);
      }
      return { result, words: words.finish() };
    } finally {
      this.rawEscapes = saved;
    }
  }

  private processSingleQuote(): string {
    let result = '';
    const open = this.next()!;
    if (this.opts.rawQuotes) result += open;
    for (;;) {
      const ch = this.next();
      if (ch === EOF) throw new LexFailure('unexpected end of statement while looking for matching single-quote');
      if (ch === "'") {
        if (this.opts.rawQuotes) result += ch;
        return result;
      }
      result += ch;
    }
  }

  private processDoubleQuote(): string {
    let result = '';
    const open = this.next()!;
    if (this.opts.rawQuotes) result += open;
    for (;;) {
      const peeked = this.peek();
      if (peeked === EOF) throw new LexFailure('unexpected end of statement while looking for matching double-quote');
      if (peeked === '"') {
        this.next();
        if (this.opts.rawQuotes) result += '"';
        return result;
      }
      if (peeked === '$') {
        result += this.processDollar();
        continue;
      }
      let ch = this.next()!;
      if (ch === this.escapeToken) {
        if (this.rawEscapes) result += ch;
        const after = this.peek();
        if (after === EOF) continue;
        // Inside double quotes only ", $ and the escape itself can be escaped.
        if (after === '"' || after === '$' || after === this.escapeToken) ch = this.next()!;
      }
      result += ch;
    }
  }

  private getEnv(name: string): { value: string; set: boolean } {
    const value = this.env(name);
    if (value !== undefined) {
      this.matched.add(name);
      return { value, set: true };
    }
    this.unmatched.add(name);
    return { value: '', set: false };
  }

  private processDollar(): string {
    this.next();
    if (this.peek() !== '{') {
      const name = this.processName();
      if (name === '') return '$';
      const { value, set } = this.getEnv(name);
      if (!set && this.opts.skipUnsetEnv) return '$' + name;
      return value;
    }
    this.next();
    const first = this.peek();
    if (first === EOF) throw new LexFailure("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw new LexFailure('syntax error: bad substitution');
    const name = this.processName();
    let ch = this.next();
    // Docker reports a modifier of U+FFFD here; a missing brace is what happened.
    if (ch === EOF) throw new LexFailure("syntax error: missing '}'");
    let chs = ch;
    let nullIsUnset = false;
    switch (ch) {
      case '}': {
        const { value, set } = this.getEnv(name);
        if (!set && this.opts.skipUnsetEnv) return `\${${name}}`;
        return value;
      }
      case ':':
      case '+':
      case '-':
      case '?':
      case '#':
      case '%': {
        if (ch === ':') {
          nullIsUnset = true;
          const modifier = this.next();
          if (modifier === EOF) throw new LexFailure("syntax error: missing '}'");
          ch = modifier;
          chs += ch;
        }
        const patternOp = ch === '#' || ch === '%';
        if (nullIsUnset && patternOp) throw new LexFailure(`unsupported modifier (${chs}) in substitution`);
        let word: string;
        try {
          word = this.processStopOn('}', patternOp).result;
        } catch (err) {
          if (err instanceof LexFailure && this.peek() === EOF) throw new LexFailure("syntax error: missing '}'");
          throw err;
        }
        const { value, set } = this.getEnv(name);
        if (this.opts.skipUnsetEnv && !set) return `\${${name}${chs}${word}}`;
        switch (ch) {
          case '-':
            return !set || (nullIsUnset && value === '') ? word : value;
          case '+':
            return !set || (nullIsUnset && value === '') ? '' : word;
          case '?':
            if (!set) throw new LexFailure(`${name}: ${word !== '' ? word : 'is not allowed to be unset'}`);
            if (nullIsUnset && value === '') throw new LexFailure(`${name}: ${word !== '' ? word : 'is not allowed to be empty'}`);
            return value;
          case '%':
          case '#': {
            let pattern = word;
            let greedy = false;
            if (pattern.length > 0 && pattern[0] === ch) {
              greedy = true;
              pattern = pattern.slice(1);
            }
            return ch === '%' ? trimSuffix(pattern, value, greedy) : trimPrefix(pattern, value, greedy);
          }
          default:
            throw new LexFailure(`unsupported modifier (${chs}) in substitution`);
        }
      }
      case '/': {
        const replaceAll = this.peek() === '/';
        if (replaceAll) this.next();
        let pattern: string;
        try {
          pattern = this.processStopOn('/', true).result;
        } catch (err) {
          if (err instanceof LexFailure && this.peek() === EOF) throw new LexFailure("syntax error: missing '/' in ${}");
          throw err;
        }
        let replacement: string;
        try {
          replacement = this.processStopOn('}', true).result;
        } catch (err) {
          if (err instanceof LexFailure && this.peek() === EOF) throw new LexFailure("syntax error: missing '}'");
          throw err;
        }
        const { value, set } = this.getEnv(name);
        if (this.opts.skipUnsetEnv && !set) return `\${${name}/${pattern}/${replacement}}`;
        const re = shellPatternToRegExp(pattern, true, false);
        return replaceAll ? goReplaceAll(re, value, replacement) : replaceFirst(re, value, replacement);
      }
      default:
        throw new LexFailure(`unsupported modifier (${chs}) in substitution`);
    }
  }

  private processName(): string {
    let name = '';
    while (this.peek() !== EOF) {
      const ch = this.peek()!;
      if (name.length === 0 && /^\p{Nd}$/u.test(ch)) {
        while (this.peek() !== EOF && /^\p{Nd}$/u.test(this.peek()!)) name += this.next();
        return name;
      }
      if (name.length === 0 && '@*#?-$!0'.includes(ch)) {
        this.next();
        return ch;
      }
      if (!/^[\p{L}\p{Nd}_]$/u.test(ch)) break;
      name += this.next();
    }
    return name;
  }
}

/**
 * Converts a `${VAR#pattern}`-style shell pattern (`*`, `?`, `\` escapes, no
 * bracket expressions) to a regular expression, as buildkit does.
 */
function shellPatternToRegExp(pattern: string, greedy: boolean, anchored: boolean): RegExp {
  const chars = Array.from(pattern);
  // Go's `.` excludes only '\n'; JS's also excludes '\r' and U+2028/9.
  const any = '[^\\n]';
  let out = anchored ? '^' : '';
  const star = greedy ? `${any}*` : `${any}*?`;
  for (let i = 0; i < chars.length; i++) {
    const tok = chars[i]!;
    switch (tok) {
      case '*':
        out += star;
        continue;
      case '?':
        out += any;
        continue;
      case '\\': {
        const after = chars[i + 1];
        // `\}` and `\/` only protect the ${} syntax; they are not part of the pattern.
        if (after === '}' || after === '/') continue;
        i++;
        if (after !== '*' && after !== '?' && after !== '\\') {
          throw new LexFailure(`invalid pattern (${pattern}) in substitution: invalid escape '\\${after ?? '\ufffd'}'`);
        }
        out += '\\' + after;
        continue;
      }
      case '[':
      case ']':
      case '{':
      case '}':
      case '.':
      case '+':
      case '(':
      case ')':
      case '|':
      case '^':
      case '$':
        out += '\\' + tok;
        continue;
      default:
        out += tok;
    }
  }
  return new RegExp(out, 'gu');
}

function findFirst(re: RegExp, value: string, from = 0): RegExpExecArray | null {
  re.lastIndex = from;
  return re.exec(value);
}

function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const m = findFirst(shellPatternToRegExp(pattern, greedy, true), value);
  return m ? value.slice(m.index + m[0].length) : value;
}

function reversePattern(pattern: string): string {
  const runes = Array.from(pattern);
  const out = new Array<string>(runes.length);
  const last = runes.length - 1;
  for (let i = 0; i <= last; ) {
    const tok = runes[i]!;
    const outIdx = last - i;
    if (tok === '\\' && i !== last) {
      out[outIdx - 1] = tok;
      out[outIdx] = runes[i + 1]!;
      i += 2;
    } else {
      out[outIdx] = tok;
      i++;
    }
  }
  return out.join('');
}

function reverseString(s: string): string {
  return Array.from(s).reverse().join('');
}

function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  // Regular expressions can't find the shortest rightmost match, so buildkit
  // reverses both the pattern and the value and trims a prefix instead.
  return reverseString(trimPrefix(reversePattern(pattern), reverseString(value), greedy));
}

function replaceFirst(re: RegExp, value: string, replacement: string): string {
  const m = findFirst(re, value);
  if (!m) return value;
  return value.slice(0, m.index) + replacement + value.slice(m.index + m[0].length);
}

/** Go's `Regexp.Expand` template rules for a regexp with no groups. */
function expandTemplate(template: string, match: string): string {
  let out = '';
  for (let i = 0; i < template.length; i++) {
    const ch = template[i]!;
    if (ch !== '$') {
      out += ch;
      continue;
    }
    const rest = template.slice(i + 1);
    if (rest.startsWith('$')) {
      out += '$';
      i++;
      continue;
    }
    const braced = /^\{([A-Za-z0-9_]+)\}/.exec(rest);
    const bare = /^[A-Za-z0-9_]+/.exec(rest);
    const name = braced ? braced[1]! : bare ? bare[0] : undefined;
    if (name === undefined) {
      out += '$';
      continue;
    }
    if (/^[0-9]+$/.test(name) && Number(name) === 0) out += match;
    i += braced ? braced[0].length : bare![0].length;
  }
  return out;
}

/** Go's `Regexp.ReplaceAllString`, whose empty-match rules differ from JS's. */
function goReplaceAll(re: RegExp, src: string, replacement: string): string {
  let out = '';
  let lastMatchEnd = 0;
  let searchPos = 0;
  while (searchPos <= src.length) {
    const m = findFirst(re, src, searchPos);
    if (!m) break;
    const start = m.index;
    const end = start + m[0].length;
    out += src.slice(lastMatchEnd, start);
    if (end > lastMatchEnd || start === 0) out += expandTemplate(replacement, m[0]);
    lastMatchEnd = end;
    const width = searchPos < src.length ? String.fromCodePoint(src.codePointAt(searchPos)!).length : 1;
    if (searchPos + width > end) searchPos += width;
    else if (searchPos + 1 > end) searchPos++;
    else searchPos = end;
  }
  return out + src.slice(lastMatchEnd);
}

/**
 * Runs Docker's lexer over `word`: the full result (quotes removed,
 * substitutions done), the split words, and which variables were used.
 * @throws ShellExpansionError for anything Docker's lexer refuses.
 */
export function lexWord(word: string, env: EnvSource, escapeChar = '\\', opts: LexOptions = {}): LexResult {
  const sw = new ShellWord(word, toLookup(env), escapeChar, opts);
  try {
    const { result, words } = sw.run();
    return { result, words, matched: sw.matched, unmatched: sw.unmatched };
  } catch (err) {
    if (err instanceof LexFailure) throw new ShellExpansionError(word, err.message);
    throw err;
  }
}
