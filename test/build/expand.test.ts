import { describe, expect, it } from 'vitest';
import { expandWord, expandWords, lexWord, ShellExpansionError } from '../../src/build/dockerfile/index.js';

const env: Record<string, string> = {
  PWD: '/home',
  SHELL: 'bash',
  KOREAN: '한국어',
  EMPTY: '',
  FILE: 'archive.tar.gz',
  P: '/usr/local/bin',
  SPACED: 'a b',
  X: 'x',
  '1': 'one',
  STAR: 'a*b',
};

describe('expandWord: quoting and escapes', () => {
  const cases: [string, string][] = [
    ['hello', 'hello'],
    ['"hello world"', 'hello world'],
    ["'hello world'", 'hello world'],
    ['he"llo w"orld', 'hello world'],
    [String.raw`he\ llo`, 'he llo'],
    [String.raw`\a`, 'a'],
    [String.raw`a\\b`, String.raw`a\b`],
    ['a\\', 'a'],
    [String.raw`"\a"`, String.raw`\a`],
    [String.raw`"a\"b"`, 'a"b'],
    [String.raw`"a\\b"`, String.raw`a\b`],
    [String.raw`"\$PWD"`, '$PWD'],
    [String.raw`\$PWD`, '$PWD'],
    ["'$PWD'", '$PWD'],
    [String.raw`'\$PWD'`, String.raw`\$PWD`],
    [`"it's"`, "it's"],
    [`'say "hi"'`, 'say "hi"'],
    ['""', ''],
    ["''", ''],
  ];
  it.each(cases)('%s -> %s', (word, expected) => {
    expect(expandWord(word, env)).toBe(expected);
  });
});

describe('expandWord: variables', () => {
  const cases: [string, string][] = [
    ['$PWD', '/home'],
    ['${PWD}', '/home'],
    ['"$PWD"', '/home'],
    ['x$PWD/y', 'x/home/y'],
    ['${PWD}_x', '/home_x'],
    ['$PWD_x', ''],
    ['$UNSET', ''],
    ['${UNSET}', ''],
    ['$', '$'],
    ['a$', 'a$'],
    ['$ x', '$ x'],
    ['$.', '$.'],
    ['$}', '$}'],
    ['$1', 'one'],
    ['$12', ''],
    ['${1}', 'one'],
    ['$@', ''],
    ['$KOREAN', '한국어'],
    ['${KOREAN}s', '한국어s'],
    ['$SHELL$PWD', 'bash/home'],
  ];
  it.each(cases)('%s -> %s', (word, expected) => {
    expect(expandWord(word, env)).toBe(expected);
  });
});

describe('expandWord: modifiers', () => {
  const cases: [string, string][] = [
    ['${UNSET:-default}', 'default'],
    ['${EMPTY:-default}', 'default'],
    ['${PWD:-default}', '/home'],
    ['${UNSET-default}', 'default'],
    ['${EMPTY-default}', ''],
    ['${PWD:+alt}', 'alt'],
    ['${EMPTY:+alt}', ''],
    ['${UNSET:+alt}', ''],
    ['${EMPTY+alt}', 'alt'],
    ['${UNSET+alt}', ''],
    ['${EMPTY?}', ''],
    ['${PWD:?must}', '/home'],
    ['${UNSET:-${PWD}/x}', '/home/x'],
    ['${UNSET:-"a b"}', 'a b'],
    ["${UNSET:-'$PWD'}", '$PWD'],
    ['${UNSET:-${ALSO:-deep}}', 'deep'],
    ['${UNSET:-}', ''],
    ['${FILE#*.}', 'tar.gz'],
    ['${FILE##*.}', 'gz'],
    ['${FILE%.*}', 'archive.tar'],
    ['${FILE%%.*}', 'archive'],
    ['${FILE#nomatch}', 'archive.tar.gz'],
    ['${FILE#archive?}', 'tar.gz'],
    ['${P#/usr}', '/local/bin'],
    ['${P%/*}', '/usr/local'],
    ['${P##*/}', 'bin'],
    ['${P/local/share}', '/usr/share/bin'],
    ['${P//\\//:}', ':usr:local:bin'],
    ['${P/o/0}', '/usr/l0cal/bin'],
    ['${P//o/0}', '/usr/l0cal/bin'],
    ['${FILE//a/A}', 'Archive.tAr.gz'],
    ['${FILE/*./X}', 'Xgz'],
    ['${UNSET/a/b}', ''],
    ['${STAR#a\\*}', 'b'],
    ['${STAR/\\*/+}', 'a+b'],
  ];
  it.each(cases)('%s -> %s', (word, expected) => {
    expect(expandWord(word, env)).toBe(expected);
  });
});

describe('expandWord: errors', () => {
  const cases: [string, string][] = [
    ['${UNSET:?must be set}', 'UNSET: must be set'],
    ['${UNSET?}', 'UNSET: is not allowed to be unset'],
    ['${UNSET:?}', 'UNSET: is not allowed to be unset'],
    ['${EMPTY:?}', 'EMPTY: is not allowed to be empty'],
    ['${PWD', "syntax error: missing '}'"],
    ['${', "syntax error: missing '}'"],
    ['${UNSET:-x', "syntax error: missing '}'"],
    ['${}', 'syntax error: bad substitution'],
    ['${:a}', 'syntax error: bad substitution'],
    ['${{a}', 'syntax error: bad substitution'],
    ['${PWD!}', 'unsupported modifier (!) in substitution'],
    ['${PWD=x}', 'unsupported modifier (=) in substitution'],
    ['${#PWD}', 'unsupported modifier (P) in substitution'],
    ['${FILE:#x}', 'unsupported modifier (:#) in substitution'],
    ['${FILE:%x}', 'unsupported modifier (:%) in substitution'],
    ['${FILE/x}', "syntax error: missing '/' in ${}"],
    ['${FILE/x/y', "syntax error: missing '}'"],
    ['"unterminated', 'unexpected end of statement while looking for matching double-quote'],
    ["'unterminated", 'unexpected end of statement while looking for matching single-quote'],
    ['${FILE#*\\.}', "invalid pattern (*\\.) in substitution: invalid escape '\\.'"],
    ['${FILE#a\\b}', "invalid pattern (a\\b) in substitution: invalid escape '\\b'"],
  ];
  it.each(cases)('%s fails: %s', (word, reason) => {
    let caught: unknown;
    try {
      expandWord(word, env);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ShellExpansionError);
    const err = caught as ShellExpansionError;
    expect(err.reason).toBe(reason);
    expect(err.message).toBe(`failed to process ${JSON.stringify(word)}: ${reason}`);
  });
});

describe('expandWord: backtick escape', () => {
  it('uses ` instead of \\', () => {
    expect(expandWord('`$PWD', env, '`')).toBe('$PWD');
    expect(expandWord(String.raw`C:\path`, env, '`')).toBe(String.raw`C:\path`);
    expect(expandWord('"a`"b"', env, '`')).toBe('a"b');
  });
});

describe('expandWord: environment shapes', () => {
  it('accepts a function, a Map, a record and a K=V list', () => {
    expect(expandWord('$A', (n) => (n === 'A' ? '1' : undefined))).toBe('1');
    expect(expandWord('$A', new Map([['A', '2']]))).toBe('2');
    expect(expandWord('$A', { A: '3' })).toBe('3');
    expect(expandWord('$A-$B', ['A=4', 'B'])).toBe('4-');
    expect(expandWord('${B-unset}', ['A=4', 'B'])).toBe('');
  });
  it('is case-sensitive and ignores inherited object keys', () => {
    expect(expandWord('$pwd', env)).toBe('');
    expect(expandWord('${toString:-none}', {})).toBe('none');
  });
});

describe('expandWords: word splitting after expansion', () => {
  const cases: [string, string[]][] = [
    ['a b', ['a', 'b']],
    ['  a   b  ', ['a', 'b']],
    ['$SPACED', ['a', 'b']],
    ['"$SPACED"', ['a b']],
    ['x$SPACED', ['xa', 'b']],
    ["'a b'c d", ['a bc', 'd']],
    ['a "" b', ['a', 'b']],
    ['', []],
    ['""', []],
    [String.raw`\ a`, [' a']],
    ['${UNSET:-"x y"} z', ['x', 'y', 'z']],
    ['80/tcp $X', ['80/tcp', 'x']],
  ];
  it.each(cases)('%s -> %j', (word, expected) => {
    expect(expandWords(word, env)).toEqual(expected);
  });
});

describe('lexWord options', () => {
  it('reports matched and unmatched variables', () => {
    const r = lexWord('$PWD ${UNSET:-x} $EMPTY', env);
    expect([...r.matched].sort()).toEqual(['EMPTY', 'PWD']);
    expect([...r.unmatched]).toEqual(['UNSET']);
  });
  it('skipUnsetEnv keeps references to unset variables', () => {
    expect(lexWord('$UNSET ${UNSET} ${UNSET:-d} $PWD', env, '\\', { skipUnsetEnv: true }).result).toBe('$UNSET ${UNSET} ${UNSET:-d} /home');
  });
  it('rawQuotes and rawEscapes keep the syntax characters', () => {
    expect(lexWord(`"a" 'b'`, env, '\\', { rawQuotes: true }).result).toBe(`"a" 'b'`);
    expect(lexWord(String.raw`a\ b`, env, '\\', { rawEscapes: true }).result).toBe(String.raw`a\ b`);
  });
  it('skipProcessQuotes leaves quotes alone but substitutes (heredoc bodies)', () => {
    expect(lexWord(String.raw`echo "$PWD" '\$x'`, env, '\\', { skipProcessQuotes: true }).result).toBe(`echo "/home" '$x'`);
  });
});
