import { describe, expect, it } from 'vitest';
import { formatGoDuration, parseGoDuration } from '../../src/build/dockerfile/index.js';
import { goParseInt, goQuote, goQuoteRune, goQuoteSlice, goSortStrings, isGoSpace } from '../../src/build/dockerfile/gocompat.js';

describe('Go time.ParseDuration', () => {
  const ok: [string, bigint][] = [
    ['0', 0n],
    ['30s', 30_000_000_000n],
    ['1m30s', 90_000_000_000n],
    ['1.5h', 5_400_000_000_000n],
    ['300ms', 300_000_000n],
    ['2us', 2_000n],
    ['2µs', 2_000n],
    ['2μs', 2_000n],
    ['7ns', 7n],
    ['.5s', 500_000_000n],
    ['1.s', 1_000_000_000n],
    ['-1.5s', -1_500_000_000n],
    ['+3m', 180_000_000_000n],
    ['1h2m3s4ms', 3_723_004_000_000n],
  ];
  it.each(ok)('%s', (text, nanos) => {
    expect(parseGoDuration(text)).toBe(nanos);
  });

  const bad: [string, string][] = [
    ['', 'time: invalid duration ""'],
    ['abc', 'time: invalid duration "abc"'],
    ['.s', 'time: invalid duration ".s"'],
    ['10', 'time: missing unit in duration "10"'],
    ['1x', 'time: unknown unit "x" in duration "1x"'],
    ['1d', 'time: unknown unit "d" in duration "1d"'],
    ['99999999999h', 'time: invalid duration "99999999999h"'],
  ];
  it.each(bad)('%j fails', (text, message) => {
    expect(() => parseGoDuration(text)).toThrow(message);
  });
});

describe('Go Duration.String', () => {
  const cases: [bigint, string][] = [
    [0n, '0s'],
    [1n, '1ns'],
    [1_100n, '1.1µs'],
    [2_200_000n, '2.2ms'],
    [3_300_000_000n, '3.3s'],
    [60_000_000_000n, '1m0s'],
    [90_000_000_000n, '1m30s'],
    [3_600_000_000_000n, '1h0m0s'],
    [4_000_000_000_000n, '1h6m40s'],
    [-1_500_000_000n, '-1.5s'],
  ];
  it.each(cases)('%s -> %s', (nanos, text) => {
    expect(formatGoDuration(nanos)).toBe(text);
  });
});

describe('Go %q and friends', () => {
  it('quotes strings like strconv.Quote', () => {
    expect(goQuote('a "b" \\ c')).toBe('"a \\"b\\" \\\\ c"');
    expect(goQuote('tab\tnl\nbell\x07del\x7f')).toBe('"tab\\tnl\\nbell\\adel\\x7f"');
    expect(goQuote('é 한 😀')).toBe('"é 한 😀"');
    expect(goQuote('\u00a0\u200b')).toBe('"\\u00a0\\u200b"');
  });
  it('quotes integers like %q does', () => {
    expect(goQuoteRune(0)).toBe("'\\x00'");
    expect(goQuoteRune(3)).toBe("'\\x03'");
    expect(goQuoteRune(65)).toBe("'A'");
    expect(goQuoteRune(39)).toBe("'\\''");
  });
  it('prints string slices with %q', () => {
    expect(goQuoteSlice([])).toBe('[]');
    expect(goQuoteSlice(['a', 'b c'])).toBe('["a" "b c"]');
  });
  it('parses integers like strconv.ParseInt', () => {
    expect(goParseInt('-12', 10, 32)).toBe(-12n);
    expect(() => goParseInt('1_0', 10, 32)).toThrow('strconv.ParseInt: parsing "1_0": invalid syntax');
    expect(() => goParseInt('2147483648', 10, 32)).toThrow('value out of range');
  });
  it('sorts by UTF-8 bytes and knows Go spaces', () => {
    expect(goSortStrings(['b', 'B', '\uff21', '\u{1F600}', 'a'])).toEqual(['B', 'a', 'b', '\uff21', '\u{1F600}']);
    expect(isGoSpace('\u0085')).toBe(true);
    expect(isGoSpace('\ufeff')).toBe(false);
    expect(isGoSpace('\u3000')).toBe(true);
  });
});
