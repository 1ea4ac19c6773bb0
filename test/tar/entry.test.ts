import { describe, expect, it } from 'vitest';
import {
  InvalidEntryPathError,
  OPAQUE_WHITEOUT,
  WHITEOUT_PREFIX,
  comparePaths,
  isOpaqueWhiteout,
  isWhiteout,
  normalizeEntryPath,
  whiteoutPathFor,
  whiteoutTarget,
} from '../../src/tar/entry.js';

describe('normalizeEntryPath', () => {
  it.each([
    ['a', 'a'],
    ['./a/b', 'a/b'],
    ['/a/b/', 'a/b'],
    ['a//b///c', 'a/b/c'],
    ['././a/./b/.', 'a/b'],
    ['//etc/passwd', 'etc/passwd'],
    ['dir/', 'dir'],
    ['.hidden/..dots/...', '.hidden/..dots/...'],
  ])('%j -> %j', (raw, expected) => {
    expect(normalizeEntryPath(raw)).toBe(expected);
  });

  it.each(['', '.', './', '/', '//', './/.'])('%j is the root', (raw) => {
    expect(normalizeEntryPath(raw)).toBeUndefined();
  });

  it.each(['..', '../etc/passwd', 'a/../../b', 'a/..', '/../x'])('refuses %j and names it', (raw) => {
    expect(() => normalizeEntryPath(raw)).toThrow(InvalidEntryPathError);
    expect(() => normalizeEntryPath(raw)).toThrow(JSON.stringify(raw));
  });

  it('refuses NUL bytes', () => {
    expect(() => normalizeEntryPath('a\0b')).toThrow(/NUL/);
  });
});

describe('whiteouts', () => {
  it('recognizes whiteout names by basename', () => {
    expect(WHITEOUT_PREFIX).toBe('.wh.');
    expect(OPAQUE_WHITEOUT).toBe('.wh..wh..opq');
    expect(isWhiteout('a/.wh.b')).toBe(true);
    expect(isWhiteout('.wh..wh..opq')).toBe(true);
    expect(isWhiteout('.wh.x/b')).toBe(false);
    expect(isWhiteout('a/b.wh.c')).toBe(false);
    expect(isOpaqueWhiteout('x/.wh..wh..opq')).toBe(true);
    expect(isOpaqueWhiteout('x/.wh.opq')).toBe(false);
  });

  it('maps a whiteout to the path it deletes', () => {
    expect(whiteoutTarget('a/b/.wh.c')).toBe('a/b/c');
    expect(whiteoutTarget('.wh.top')).toBe('top');
    expect(whiteoutTarget('.wh..hidden')).toBe('.hidden');
    expect(whiteoutTarget('a/b')).toBeUndefined();
    expect(whiteoutTarget('a/.wh..wh..opq')).toBeUndefined();
    expect(whiteoutTarget('a/.wh..wh.plnk')).toBeUndefined();
    expect(() => whiteoutTarget('a/.wh.')).toThrow(/names no deletable file/);
    expect(() => whiteoutTarget('a/.wh...')).toThrow(InvalidEntryPathError);
  });

  it('builds whiteout paths', () => {
    expect(whiteoutPathFor('a/b/c')).toBe('a/b/.wh.c');
    expect(whiteoutPathFor('top')).toBe('.wh.top');
    expect(whiteoutTarget(whiteoutPathFor('x/y z'))).toBe('x/y z');
  });
});

describe('comparePaths', () => {
  const sorted = (paths: string[]): string[] => [...paths].sort(comparePaths);

  it('puts a directory right before its own children', () => {
    expect(sorted(['a-c', 'a/b', 'a', 'a.d', 'a/b/c', 'a0'])).toEqual(['a', 'a/b', 'a/b/c', 'a-c', 'a.d', 'a0']);
  });

  it('uses UTF-8 byte order, not locale or UTF-16 order', () => {
    // 'B' (0x42) < 'a' (0x61); U+FFFD (EF BF BD) < U+1F600 (F0 9F 98 80), although its UTF-16 units are larger.
    expect(sorted(['a', 'B', '\u{1F600}', '\uFFFD', 'é'])).toEqual(['B', 'a', 'é', '\uFFFD', '\u{1F600}']);
  });
});
