/**
 * Go's `path/filepath.Match` on Linux, which Docker uses for COPY/ADD source
 * wildcards: `*` matches any run of non-`/` characters, `?` one non-`/`
 * character, `[...]` a class (`^` negates, `a-z` ranges), `\` escapes the next
 * character. A malformed pattern is reported, not thrown, because Docker
 * ignores the error and treats it as "no match".
 */

/** The outcome of {@link goMatch}: whether `name` matches, and whether the pattern was malformed. */
export interface GoMatchResult {
  matched: boolean;
  badPattern: boolean;
}

const BAD: GoMatchResult = { matched: false, badPattern: true };

/** True when `name` contains an unescaped `*`, `?` or `[` (moby containsWildcards). */
export function containsWildcards(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const ch = name[i];
    if (ch === '\\') i++;
    else if (ch === '*' || ch === '?' || ch === '[') return true;
  }
  return false;
}

/** Splits off the next chunk: leading stars, then up to the next star outside a class. */
function scanChunk(pattern: string[]): { star: boolean; chunk: string[]; rest: string[] } {
  let star = false;
  let p = pattern;
  while (p.length > 0 && p[0] === '*') {
    p = p.slice(1);
    star = true;
  }
  let inRange = false;
  let i = 0;
  scan: for (; i < p.length; i++) {
    switch (p[i]) {
      case '\\':
        if (i + 1 < p.length) i++;
        break;
      case '[':
        inRange = true;
        break;
      case ']':
        inRange = false;
        break;
      case '*':
        if (!inRange) break scan;
        break;
    }
  }
  return { star, chunk: p.slice(0, i), rest: p.slice(i) };
}

/** One (possibly escaped) character of a class; undefined when malformed. */
function getEsc(chunk: string[]): { ch: string; rest: string[] } | undefined {
  if (chunk.length === 0 || chunk[0] === '-' || chunk[0] === ']') return undefined;
  let c = chunk;
  if (c[0] === '\\') {
    c = c.slice(1);
    if (c.length === 0) return undefined;
  }
  const ch = c[0]!;
  const rest = c.slice(1);
  if (rest.length === 0) return undefined;
  return { ch, rest };
}

/** Matches `chunk` against the start of `s`; returns what is left of `s`, or undefined; `bad` for a malformed chunk. */
function matchChunk(chunkIn: string[], sIn: string[]): { rest?: string[]; bad: boolean } {
  let chunk = chunkIn;
  let s = sIn;
  let failed = false;
  while (chunk.length > 0) {
    if (!failed && s.length === 0) failed = true;
    const c = chunk[0]!;
    if (c === '[') {
      let r = '';
      if (!failed) {
        r = s[0]!;
        s = s.slice(1);
      }
      chunk = chunk.slice(1);
      let negated = false;
      if (chunk.length > 0 && chunk[0] === '^') {
        negated = true;
        chunk = chunk.slice(1);
      }
      let match = false;
      let ranges = 0;
      for (;;) {
        if (chunk.length > 0 && chunk[0] === ']' && ranges > 0) {
          chunk = chunk.slice(1);
          break;
        }
        const lo = getEsc(chunk);
        if (lo === undefined) return { bad: true };
        chunk = lo.rest;
        let hi = lo.ch;
        if (chunk[0] === '-') {
          const h = getEsc(chunk.slice(1));
          if (h === undefined) return { bad: true };
          hi = h.ch;
          chunk = h.rest;
        }
        const code = r.codePointAt(0) ?? -1;
        if (lo.ch.codePointAt(0)! <= code && code <= hi.codePointAt(0)!) match = true;
        ranges++;
      }
      if (match === negated) failed = true;
    } else if (c === '?') {
      if (!failed) {
        if (s[0] === '/') failed = true;
        s = s.slice(1);
      }
      chunk = chunk.slice(1);
    } else {
      let literal = c;
      if (c === '\\') {
        chunk = chunk.slice(1);
        if (chunk.length === 0) return { bad: true };
        literal = chunk[0]!;
      }
      if (!failed) {
        if (literal !== s[0]) failed = true;
        s = s.slice(1);
      }
      chunk = chunk.slice(1);
    }
  }
  return failed ? { bad: false } : { rest: s, bad: false };
}

/** Go's `filepath.Match(pattern, name)` with `/` as the separator. */
export function goMatch(pattern: string, name: string): GoMatchResult {
  let p = Array.from(pattern);
  let n = Array.from(name);
  outer: while (p.length > 0) {
    const { star, chunk, rest } = scanChunk(p);
    p = rest;
    if (star && chunk.length === 0) return { matched: !n.includes('/'), badPattern: false };
    const first = matchChunk(chunk, n);
    if (first.rest !== undefined && (first.rest.length === 0 || p.length > 0)) {
      n = first.rest;
      continue;
    }
    if (first.bad) return BAD;
    if (star) {
      for (let i = 0; i < n.length && n[i] !== '/'; i++) {
        const t = matchChunk(chunk, n.slice(i + 1));
        if (t.rest !== undefined) {
          if (p.length === 0 && t.rest.length > 0) continue;
          n = t.rest;
          continue outer;
        }
        if (t.bad) return BAD;
      }
    }
    // Go checks the rest of the pattern for syntax errors before saying no.
    while (p.length > 0) {
      const next = scanChunk(p);
      p = next.rest;
      if (matchChunk(next.chunk, []).bad) return BAD;
    }
    return { matched: false, badPattern: false };
  }
  return { matched: n.length === 0, badPattern: false };
}
