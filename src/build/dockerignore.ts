/**
 * `.dockerignore` with Docker's semantics (docker/cli + moby/patternmatcher):
 * reading (comments, BOM, `filepath.Clean`, leading `/` stripped), matching
 * (last matching pattern wins, `!` exceptions, a pattern also matches
 * everything under a matched directory, `**` spans directories), validation
 * (`!` alone and malformed patterns are errors), and which file applies
 * (`<Dockerfile>.dockerignore` beside the Dockerfile wins over the context's
 * `.dockerignore`, as in BuildKit).
 *
 * Single patterns are compiled by `@balena/dockerignore`, a port of an older
 * moby matcher; this wrapper fixes where it differs from today's Docker:
 * - it matches case-insensitively by default (Docker on Linux does not);
 * - it escapes only `.` and `$`, so `+ ( ) | { }` were regex operators;
 * - it drops patterns starting with `#`, which Docker's reader yields for a
 *   line like `  #x` (only a `#` in the first column starts a comment);
 * - it checks parent directories only at the pattern's own depth, where
 *   Docker checks every parent;
 * - it silently ignores `!` alone and throws raw RegExp errors for malformed
 *   patterns, where Docker refuses the file with a clear error.
 */
import { isAbsolute, join, posix, relative, resolve, sep } from 'node:path';
import balenaIgnore from '@balena/dockerignore';
import { goTrimSpace } from './dockerfile/gocompat.js';
import { readFileOrUndefined } from '../util/fs.js';

/** A `.dockerignore` Docker would refuse. */
export class DockerignoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DockerignoreError';
  }
}

/** Matches context-relative paths against `.dockerignore` patterns. */
export interface DockerignoreMatcher {
  /** The patterns as Docker reads them (cleaned, `!` kept for exceptions). */
  readonly patterns: readonly string[];
  /** The ignore file the patterns came from (absolute), if any. */
  readonly source?: string;
  /**
   * True when `relPath` (relative to the context, `/`-separated) is excluded:
   * COPY and ADD cannot see it. This includes the Dockerfile and the
   * `.dockerignore` themselves when a pattern matches them.
   */
  ignores(relPath: string): boolean;
  /**
   * True when the Docker CLI would send `relPath` to the builder: everything
   * not ignored, plus the Dockerfile and `.dockerignore` even when ignored
   * (the daemon reads them, then removes them from the context).
   */
  sentToBuilder(relPath: string): boolean;
  /**
   * Whether a context walk must enter directory `relDir`: always when it is
   * not ignored; when it is, only if an exception pattern starts with
   * `relDir/` (Docker's shortcut — `!**\/keep` does not rescue files under an
   * ignored directory).
   */
  shouldDescend(relDir: string): boolean;
  /**
   * The most `/`-separated segments any pattern can match, when every pattern
   * has a fixed number (no `**`, character class or escape): a path deeper
   * than that is ignored exactly when its parent is. Undefined otherwise.
   */
  readonly maxDepth: number | undefined;
}

/** Go's filepath.Clean for `/`-separated paths. */
function cleanPath(p: string): string {
  if (p === '') return '.';
  const normalized = posix.normalize(p);
  return normalized.length > 1 && normalized.endsWith('/') ? normalized.slice(0, -1) : normalized;
}

const trimSpace = goTrimSpace;

/**
 * Reads `.dockerignore` text the way Docker does (ignorefile.ReadAll): BOM
 * stripped, lines starting with `#` skipped (before trimming), blanks
 * trimmed, empty lines skipped, each pattern cleaned and a leading `/` removed.
 */
export function readDockerignore(text: string): string[] {
  const patterns: string[] = [];
  const lines = text.replace(/^\ufeff/, '').split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  for (const rawLine of lines) {
    const line = rawLine.replace(/\r$/, '');
    if (line.startsWith('#')) continue;
    let pattern = trimSpace(line);
    if (pattern === '') continue;
    const invert = pattern[0] === '!';
    if (invert) pattern = trimSpace(pattern.slice(1));
    if (pattern.length > 0) {
      pattern = cleanPath(pattern);
      if (pattern.length > 1 && pattern[0] === '/') pattern = pattern.slice(1);
    }
    patterns.push(invert ? '!' + pattern : pattern);
  }
  return patterns;
}

/** Go's filepath.Match syntax check (run by Docker on every pattern). */
function checkPatternSyntax(pattern: string): void {
  const bad = (): never => {
    throw new DockerignoreError(`invalid .dockerignore pattern ${JSON.stringify(pattern)}: syntax error in pattern`);
  };
  const chars = Array.from(pattern);
  let i = 0;
  // One class member (Go getEsc): not '-' or ']' first, escape needs a char, and the class must go on.
  const member = (): void => {
    const c = chars[i];
    if (c === undefined || c === '-' || c === ']') bad();
    if (c === '\\') {
      i++;
      if (chars[i] === undefined) bad();
    }
    i++;
    if (i >= chars.length) bad();
  };
  while (i < chars.length) {
    const c = chars[i]!;
    if (c === '\\') {
      if (i + 1 >= chars.length) bad();
      i += 2;
      continue;
    }
    if (c !== '[') {
      i++;
      continue;
    }
    i++;
    if (chars[i] === '^') i++;
    let ranges = 0;
    for (;;) {
      if (chars[i] === ']' && ranges > 0) {
        i++;
        break;
      }
      member();
      if (chars[i] === '-') {
        i++;
        member();
      }
      ranges++;
    }
  }
}

/** Escapes regex operators Docker treats literally but balena would not. */
function escapeForBalena(pattern: string): string {
  let out = '';
  const chars = Array.from(pattern);
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!;
    if (c === '\\' && i + 1 < chars.length) {
      out += c + chars[++i]!;
    } else if ('+()|{}'.includes(c) || (i === 0 && c === '#')) {
      out += '\\' + c;
    } else {
      out += c;
    }
  }
  return out;
}

interface CompiledPattern {
  /** The cleaned pattern without its `!`. */
  text: string;
  exclusion: boolean;
  /**
   * How many `/`-separated segments a path must have for this pattern to
   * match it, when that is fixed: without `**`, a character class or an
   * escape, no wildcard can match a `/`. Undefined otherwise.
   */
  segments: number | undefined;
  /** True when the path itself matches (no parent check). */
  matches(path: string): boolean;
}

function compile(pattern: string): CompiledPattern {
  let text = trimSpace(pattern);
  let exclusion = false;
  text = cleanPath(text);
  if (text[0] === '!') {
    if (text.length === 1) throw new DockerignoreError('illegal exclusion pattern: "!"');
    exclusion = true;
    text = text.slice(1);
  }
  checkPatternSyntax(text);
  // The package sets `default` to itself, which is also what TypeScript sees under NodeNext.
  const single = balenaIgnore.default({ ignorecase: false }).add(escapeForBalena(text));
  const fixedDepth = !text.includes('**') && !text.includes('[') && !text.includes('\\');
  return {
    text,
    exclusion,
    segments: fixedDepth ? text.split('/').length : undefined,
    // With one positive rule, balena's "ignores" is "this rule matches the
    // path or a prefix of it at the rule's depth" — a subset of Docker's
    // parent check, which matchesOrParent below completes.
    matches: (path) => single.ignores(path),
  };
}

/** True for a relative path filepath.Clean would leave alone (the common case, checked without normalizing). */
function isCleanRelPath(p: string): boolean {
  return p !== '' && p[0] !== '/' && p[p.length - 1] !== '/' && !p.includes('//') && !/(?:^|\/)\.\.?(?:\/|$)/.test(p);
}

function normalizeRelPath(relPath: string): string {
  if (sep === '/' && isCleanRelPath(relPath)) return relPath;
  let p = relPath.split(sep).join('/');
  p = cleanPath(p);
  while (p.startsWith('/')) p = p.slice(1);
  return p === '' ? '.' : p;
}

/**
 * Builds a matcher from patterns as {@link readDockerignore} returns them.
 * `dockerfile` is the Dockerfile's path relative to the context, if inside it.
 * @throws DockerignoreError for `!` alone or malformed patterns, as Docker refuses them.
 */
export function createDockerignoreMatcher(
  patterns: readonly string[],
  opts: { dockerfile?: string; source?: string } = {},
): DockerignoreMatcher {
  const compiled = patterns.filter((p) => trimSpace(p) !== '').map(compile);
  const hasExclusions = compiled.some((p) => p.exclusion);
  const dockerfile = opts.dockerfile === undefined ? undefined : normalizeRelPath(opts.dockerfile);
  const cache = new Map<string, boolean>();
  // Docker tests each pattern against the path and every parent of it. A
  // walk asks about a directory's children one after another, so what each
  // pattern says of a directory-or-its-parents is kept for the paths that
  // turn out to be parents, and every path costs one match per pattern.
  const parentHits = new Map<string, readonly boolean[]>();
  const hitsOf = (path: string, isParent: boolean): readonly boolean[] => {
    const known = parentHits.get(path);
    if (known !== undefined) return known;
    const slash = path.lastIndexOf('/');
    const above = slash < 0 ? undefined : hitsOf(path.slice(0, slash), true);
    let segments = 1;
    for (let at = path.indexOf('/'); at >= 0; at = path.indexOf('/', at + 1)) segments++;
    // A fixed-depth pattern is only tried at its depth; deeper paths inherit
    // from the parent at that depth, which is all balena's own check adds.
    const hits = compiled.map((pattern, i) => above?.[i] === true || ((pattern.segments === undefined || pattern.segments === segments) && pattern.matches(path)));
    if (isParent) parentHits.set(path, hits);
    return hits;
  };

  const ignores = (relPath: string): boolean => {
    const path = normalizeRelPath(relPath);
    // The context root itself is always sent.
    if (path === '.') return false;
    const cached = cache.get(path);
    if (cached !== undefined) return cached;
    let matched = false;
    if (compiled.length > 0) {
      const hits = hitsOf(path, false);
      // Later patterns win; an exception only matters once something matched.
      for (let i = 0; i < compiled.length; i++) {
        if (compiled[i]!.exclusion === matched && hits[i]) matched = !compiled[i]!.exclusion;
      }
    }
    cache.set(path, matched);
    return matched;
  };

  const depths = compiled.map((p) => p.segments);
  const matcher: DockerignoreMatcher = {
    patterns: [...patterns],
    maxDepth: depths.every((d) => d !== undefined) ? Math.max(0, ...(depths as number[])) : undefined,
    ignores,
    sentToBuilder(relPath) {
      const path = normalizeRelPath(relPath);
      if (path === '.dockerignore' || (dockerfile !== undefined && path === dockerfile)) return true;
      return !ignores(path);
    },
    shouldDescend(relDir) {
      const dir = normalizeRelPath(relDir);
      if (!ignores(dir)) return true;
      if (!hasExclusions) return false;
      const dirSlash = dir + '/';
      return compiled.some((p) => p.exclusion && (p.text + '/').startsWith(dirSlash));
    },
  };
  if (opts.source !== undefined) (matcher as { source?: string }).source = opts.source;
  return matcher;
}

/**
 * Loads the ignore rules for a build: `<dockerfilePath>.dockerignore` (beside
 * the Dockerfile) when it exists, else `<contextDir>/.dockerignore`, else
 * nothing is ignored. A relative `dockerfilePath` is taken relative to the
 * context (default `<contextDir>/Dockerfile`).
 * @throws DockerignoreError for patterns Docker refuses.
 */
export async function loadDockerignore(contextDir: string, dockerfilePath?: string): Promise<DockerignoreMatcher> {
  const context = resolve(contextDir);
  const dockerfile = dockerfilePath === undefined ? join(context, 'Dockerfile') : isAbsolute(dockerfilePath) ? dockerfilePath : join(context, dockerfilePath);
  const relDockerfile = relative(context, dockerfile);
  const insideContext = relDockerfile !== '' && !relDockerfile.startsWith('..') && !isAbsolute(relDockerfile);
  const opts: { dockerfile?: string; source?: string } = insideContext ? { dockerfile: relDockerfile } : {};

  for (const candidate of [`${dockerfile}.dockerignore`, join(context, '.dockerignore')]) {
    const text = readFileOrUndefined(candidate)?.toString('utf8');
    if (text === undefined) continue;
    return createDockerignoreMatcher(readDockerignore(text), { ...opts, source: candidate });
  }
  return createDockerignoreMatcher([], opts);
}
