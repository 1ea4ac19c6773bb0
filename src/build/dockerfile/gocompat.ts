/**
 * Small re-implementations of the Go standard library behaviours that leak into
 * what Docker prints and accepts: `unicode.IsSpace`, `strings.TrimSpace`,
 * `strconv.Quote` (the `%q` verb), `time.ParseDuration`, `Duration.String`,
 * `strconv.ParseInt/ParseUint/ParseBool`. Docker's history strings and error
 * messages are produced by these, so matching them byte for byte needs them.
 */
import { sortNames } from '../../tar/entry.js';

/** Go's `unicode.IsSpace` (differs from JS `\s`: includes U+0085, excludes U+FEFF). */
export function isGoSpace(ch: string): boolean {
  switch (ch) {
    case '\t':
    case '\n':
    case '\v':
    case '\f':
    case '\r':
    case ' ':
    case '\u0085':
    case '\u00a0':
      return true;
  }
  const cp = ch.codePointAt(0) ?? 0;
  if (cp < 0x1680) return false;
  return /^[\p{Zs}\p{Zl}\p{Zp}]$/u.test(ch);
}

/** Go's `strings.TrimLeftFunc(s, unicode.IsSpace)`. */
export function goTrimLeftSpace(s: string): string {
  let i = 0;
  for (const ch of s) {
    if (!isGoSpace(ch)) break;
    i += ch.length;
  }
  return s.slice(i);
}

/** Go's `strings.TrimRightFunc(s, unicode.IsSpace)`. */
export function goTrimRightSpace(s: string): string {
  const chars = Array.from(s);
  let end = chars.length;
  while (end > 0 && isGoSpace(chars[end - 1]!)) end--;
  return chars.slice(0, end).join('');
}

/** Go's `strings.TrimSpace`. */
export function goTrimSpace(s: string): string {
  return goTrimRightSpace(goTrimLeftSpace(s));
}

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;

function escapeRune(cp: number, quote: string): string {
  const ch = String.fromCodePoint(cp);
  if (ch === quote || ch === '\\') return '\\' + ch;
  // Printable ASCII without the Unicode-class test, whose first use compiles it (about a millisecond).
  if (cp >= 0x20 && cp < 0x7f) return ch;
  if (PRINTABLE.test(ch)) return ch;
  switch (ch) {
    case '\x07':
      return '\\a';
    case '\b':
      return '\\b';
    case '\f':
      return '\\f';
    case '\n':
      return '\\n';
    case '\r':
      return '\\r';
    case '\t':
      return '\\t';
    case '\v':
      return '\\v';
  }
  if (cp < 0x20 || cp === 0x7f) return '\\x' + cp.toString(16).padStart(2, '0');
  // A lone surrogate is not valid text; Go would see invalid UTF-8 and print U+FFFD.
  if (cp >= 0xd800 && cp <= 0xdfff) return '\\ufffd';
  if (cp < 0x10000) return '\\u' + cp.toString(16).padStart(4, '0');
  return '\\U' + cp.toString(16).padStart(8, '0');
}

/** Go's `strconv.Quote` (what `%q` and `%#v` print for a string). */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) out += escapeRune(ch.codePointAt(0)!, '"');
  return out + '"';
}

/** What Go's `%q` prints for an integer: `strconv.QuoteRune` of it (e.g. `'\x00'`). */
export function goQuoteRune(n: number): string {
  const cp = n < 0 || n > 0x10ffff || (n >= 0xd800 && n <= 0xdfff) ? 0xfffd : n;
  return "'" + escapeRune(cp, "'") + "'";
}

/** What Go's `%q` prints for a `[]string`: `["a" "b"]`. */
export function goQuoteSlice(values: readonly string[]): string {
  return '[' + values.map(goQuote).join(' ') + ']';
}

/** What Go's `%v` prints for a `[]string`: `[a b]`. */
export function goFormatSlice(values: readonly string[]): string {
  return '[' + values.join(' ') + ']';
}

const NANOS: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  'µs': 1_000n, // U+00B5 micro sign
  'μs': 1_000n, // U+03BC Greek mu
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};

const INT64_MAX = (1n << 63n) - 1n;

/** Error thrown by the Go-compatible parsers; the message is Go's. */
export class GoParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GoParseError';
  }
}

/**
 * Go's `time.ParseDuration`: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, e.g. `1m30s`,
 * `1.5h`, `300ms`. Returns nanoseconds.
 */
export function parseGoDuration(text: string): bigint {
  const orig = text;
  const invalid = (): never => {
    throw new GoParseError(`time: invalid duration ${goQuote(orig)}`);
  };
  let s = text;
  let neg = false;
  if (s !== '' && (s[0] === '-' || s[0] === '+')) {
    neg = s[0] === '-';
    s = s.slice(1);
  }
  if (s === '0') return 0n;
  if (s === '') invalid();
  let total = 0n;
  while (s !== '') {
    if (!(s[0] === '.' || (s[0]! >= '0' && s[0]! <= '9'))) invalid();
    const intMatch = /^[0-9]*/.exec(s)![0];
    s = s.slice(intMatch.length);
    const pre = intMatch !== '';
    let fracDigits = '';
    let post = false;
    if (s[0] === '.') {
      s = s.slice(1);
      fracDigits = /^[0-9]*/.exec(s)![0];
      s = s.slice(fracDigits.length);
      post = fracDigits !== '';
    }
    if (!pre && !post) invalid();
    const unitMatch = /^[^0-9.]*/.exec(s)![0];
    s = s.slice(unitMatch.length);
    if (unitMatch === '') throw new GoParseError(`time: missing unit in duration ${goQuote(orig)}`);
    const unit = NANOS[unitMatch];
    if (unit === undefined) {
      throw new GoParseError(`time: unknown unit ${goQuote(unitMatch)} in duration ${goQuote(orig)}`);
    }
    const whole = pre ? BigInt(intMatch) : 0n;
    if (whole > INT64_MAX / unit) invalid();
    let value = whole * unit;
    if (post) {
      // Go truncates the fraction toward zero, digit by digit.
      let scale = 1n;
      let frac = 0n;
      for (const d of fracDigits) {
        if (scale > INT64_MAX / 10n) break;
        frac = frac * 10n + BigInt(d);
        scale *= 10n;
      }
      value += (frac * unit) / scale;
    }
    total += value;
    if (total > INT64_MAX) invalid();
  }
  return neg ? -total : total;
}

function fmtFrac(v: bigint, prec: number): { digits: string; rest: bigint } {
  let printed = false;
  let out = '';
  for (let i = 0; i < prec; i++) {
    const digit = v % 10n;
    printed = printed || digit !== 0n;
    if (printed) out = digit.toString() + out;
    v /= 10n;
  }
  return { digits: printed ? '.' + out : '', rest: v };
}

/** Go's `time.Duration.String()`: `0s`, `1.5s`, `1m30s`, `1h0m0s`, `500ms`, `2µs`. */
export function formatGoDuration(nanos: bigint | number): string {
  let u = BigInt(nanos);
  const neg = u < 0n;
  if (neg) u = -u;
  let out: string;
  if (u < 1_000_000_000n) {
    if (u === 0n) return '0s';
    let prec: number;
    let unit: string;
    if (u < 1_000n) {
      prec = 0;
      unit = 'ns';
    } else if (u < 1_000_000n) {
      prec = 3;
      unit = 'µs';
    } else {
      prec = 6;
      unit = 'ms';
    }
    const { digits, rest } = fmtFrac(u, prec);
    out = rest.toString() + digits + unit;
  } else {
    const { digits, rest } = fmtFrac(u, 9);
    out = (rest % 60n).toString() + digits + 's';
    const minutes = rest / 60n;
    if (minutes > 0n) {
      out = (minutes % 60n).toString() + 'm' + out;
      const hours = minutes / 60n;
      if (hours > 0n) out = hours.toString() + 'h' + out;
    }
  }
  return neg ? '-' + out : out;
}

/** Go's `strconv.ParseInt(s, base, bits)` for bases 2..36 (no base-0 prefixes). */
export function goParseInt(s: string, base: number, bits: number, fn = 'ParseInt'): bigint {
  const syntax = (): never => {
    throw new GoParseError(`strconv.${fn}: parsing ${goQuote(s)}: invalid syntax`);
  };
  if (s === '') syntax();
  let body = s;
  let neg = false;
  if (fn === 'ParseInt' && (body[0] === '+' || body[0] === '-')) {
    neg = body[0] === '-';
    body = body.slice(1);
  }
  if (body === '') syntax();
  let value = 0n;
  const b = BigInt(base);
  for (const ch of body.toLowerCase()) {
    const d = parseInt(ch, 36);
    if (Number.isNaN(d) || d >= base || !/^[0-9a-z]$/.test(ch)) syntax();
    value = value * b + BigInt(d);
  }
  const max = fn === 'ParseInt' ? (1n << BigInt(bits - 1)) - 1n : (1n << BigInt(bits)) - 1n;
  const min = fn === 'ParseInt' ? -(1n << BigInt(bits - 1)) : 0n;
  const signed = neg ? -value : value;
  if (signed > max || signed < min) {
    throw new GoParseError(`strconv.${fn}: parsing ${goQuote(s)}: value out of range`);
  }
  return signed;
}

/** Go's `strconv.ParseUint`. */
export function goParseUint(s: string, base: number, bits: number): bigint {
  return goParseInt(s, base, bits, 'ParseUint');
}

/** Go's `strconv.ParseBool`. */
export function goParseBool(s: string): boolean {
  switch (s) {
    case '1':
    case 't':
    case 'T':
    case 'TRUE':
    case 'true':
    case 'True':
      return true;
    case '0':
    case 'f':
    case 'F':
    case 'FALSE':
    case 'false':
    case 'False':
      return false;
  }
  throw new GoParseError(`strconv.ParseBool: parsing ${goQuote(s)}: invalid syntax`);
}

/** Sorts strings by their UTF-8 bytes, as Go's `sort.Strings` does. */
export function goSortStrings(values: string[]): string[] {
  return sortNames(values);
}

/** Levenshtein distance, for "did you mean" hints. */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}

/** The closest candidate within a small edit distance, if any (case-insensitive). */
export function suggest(value: string, candidates: readonly string[]): string | undefined {
  const v = value.toLowerCase();
  const allowed = v.length <= 3 ? 1 : 2;
  let best: string | undefined;
  let bestDist = Infinity;
  for (const c of candidates) {
    const d = editDistance(v, c.toLowerCase());
    if (d < bestDist) {
      bestDist = d;
      best = c;
    }
  }
  return bestDist > 0 && bestDist <= allowed ? best : undefined;
}
