import { describe, expect, it } from 'vitest';
import { LayerLinter, LayerSecurityError, validateLayerEntry, type LintInput } from '../../src/tar/validate.js';

type Spec = [name: string, type?: string, linkname?: string];

function lint(...entries: Spec[]): LayerLinter {
  const linter = new LayerLinter();
  for (const [rawName, type = 'file', linkname] of entries) linter.check({ rawName, type, linkname });
  return linter;
}

/** Lints `entries` and returns the error thrown for the last one (failing if an earlier one throws or none does). */
function refusal(...entries: Spec[]): LayerSecurityError {
  const linter = new LayerLinter();
  const last = entries.length - 1;
  for (const [index, [rawName, type = 'file', linkname]] of entries.entries()) {
    const input: LintInput = { rawName, type, linkname };
    if (index < last) {
      linter.check(input);
      continue;
    }
    try {
      linter.check(input);
    } catch (err) {
      expect(err).toBeInstanceOf(LayerSecurityError);
      const error = err as LayerSecurityError;
      expect(error.entry).toBe(rawName);
      expect(error.message.startsWith(`refusing layer entry '`)).toBe(true);
      return error;
    }
  }
  throw new Error(`expected '${entries[last]![0]}' to be refused`);
}

describe('validateLayerEntry: names', () => {
  it.each([
    ['/etc/passwd', /absolute/],
    ['../escape', /'\.\.'/],
    ['a/../../escape', /'\.\.'/],
    ['a/../b', /'\.\.'/],
    ['a/..', /'\.\.'/],
    ['a\0b', /NUL/],
    ['', /empty/],
  ])('refuses %j', (rawName, why) => {
    expect(() => validateLayerEntry({ rawName, type: 'file' })).toThrow(why);
  });

  it('names the raw entry in the error, control characters escaped', () => {
    const error = refusal(['evil\0name']);
    expect(error.entry).toBe('evil\0name');
    expect(error.message).toBe("refusing layer entry 'evil\\x00name': name contains a NUL byte");
  });

  it('normalizes ./ prefixes, repeated and trailing slashes', () => {
    expect(validateLayerEntry({ rawName: './usr//bin/./', type: 'directory' })).toMatchObject({ kind: 'entry', path: 'usr/bin' });
  });

  it('skips the root entry in its usual spellings, but only as a directory', () => {
    for (const rawName of ['./', '.', './/', '/']) expect(validateLayerEntry({ rawName, type: 'directory' }).kind).toBe('root');
    expect(() => validateLayerEntry({ rawName: './', type: 'symlink', linkname: '/' })).toThrow(/root entry must be a directory/);
  });

  it('accepts tar-stream type names and refuses unknown types', () => {
    expect(validateLayerEntry({ rawName: 'h', type: 'link', linkname: 'f' })).toMatchObject({ type: 'hardlink', linkTarget: 'f' });
    expect(validateLayerEntry({ rawName: 'd', type: 'character-device' })).toMatchObject({ type: 'char' });
    expect(validateLayerEntry({ rawName: 'x', type: 'contiguous-file' })).toMatchObject({ type: 'file' });
    expect(() => validateLayerEntry({ rawName: 'x', type: 'gnu-sparse' })).toThrow(/unsupported entry type 'gnu-sparse'/);
    expect(() => validateLayerEntry({ rawName: 'x', type: 'pax-header' })).toThrow(LayerSecurityError);
  });
});

describe('validateLayerEntry: whiteouts', () => {
  it('classifies plain and opaque whiteouts', () => {
    expect(validateLayerEntry({ rawName: './a/.wh.b', type: 'file' })).toMatchObject({ kind: 'whiteout', target: 'a/b' });
    expect(validateLayerEntry({ rawName: '.wh.top', type: 'file' })).toMatchObject({ kind: 'whiteout', target: 'top' });
    expect(validateLayerEntry({ rawName: 'a/.wh..wh..opq', type: 'file' })).toMatchObject({ kind: 'opaque', dir: 'a' });
    expect(validateLayerEntry({ rawName: '.wh..wh..opq', type: 'file' })).toMatchObject({ kind: 'opaque', dir: '' });
  });

  it.each([
    ['.wh..', /names '\.'/],
    ['.wh...', /names '\.\.'/],
    ['.wh.', /names ''/],
    ['a/.wh..', /names '\.'/],
    ['.wh..wh.plnk', /AUFS metadata/],
    ['.wh.a/b', /whiteout name/],
  ])('refuses %j', (rawName, why) => {
    expect(() => validateLayerEntry({ rawName, type: 'file' })).toThrow(why);
  });

  it('refuses whiteouts that are not regular files', () => {
    expect(() => validateLayerEntry({ rawName: '.wh.a', type: 'directory' })).toThrow(/whiteout entries must be regular files/);
    expect(() => validateLayerEntry({ rawName: 'a/.wh..wh..opq', type: 'symlink', linkname: 'x' })).toThrow(/regular files/);
  });
});

describe('validateLayerEntry: hardlinks', () => {
  it.each([
    ['/etc/passwd', /absolute/],
    ['../../etc/passwd', /'\.\.'/],
    ['a/../b', /'\.\.'/],
    ['', /empty/],
    ['./', /layer root/],
    ['h', /itself/],
  ])('refuses a hardlink to %j', (linkname, why) => {
    expect(() => validateLayerEntry({ rawName: 'h', type: 'hardlink', linkname })).toThrow(why);
  });
});

describe('LayerLinter', () => {
  it('accepts an ordinary layer, in any order of parents and children', () => {
    const linter = lint(
      ['./', 'directory'],
      ['usr/bin/tool'],
      ['usr/', 'directory'],
      ['usr/bin/', 'directory'],
      ['usr/bin/alias', 'hardlink', 'usr/bin/tool'],
      ['usr/lib/libc.so', 'symlink', '/lib/libc.so.6'],
      ['etc/.wh.motd'],
      ['var/cache/.wh..wh..opq'],
      ['var/cache/new'],
      ['lib/hard-to-lower', 'hardlink', 'bin/busybox'],
    );
    expect(linter.summary()).toEqual({ entries: 7, whiteouts: 1, opaques: 1 });
  });

  it('refuses a path under a symlink the layer itself created', () => {
    expect(refusal(['evil', 'symlink', '/tmp/outside'], ['evil/pwned']).reason).toMatch(/parent 'evil' is a symlink created earlier/);
    expect(refusal(['evil', 'symlink', '.'], ['evil/x/y', 'directory']).reason).toMatch(/symlink/);
  });

  it('refuses a path under a non-directory the layer created', () => {
    expect(refusal(['f'], ['f/g']).reason).toMatch(/parent 'f' is a file created earlier in this layer, not a directory/);
    expect(refusal(['f'], ['f/.wh..wh..opq']).reason).toMatch(/not a directory/);
  });

  it('refuses replacing a directory earlier entries were written into', () => {
    expect(refusal(['a/b'], ['a', 'symlink', '/etc']).reason).toMatch(/would replace directory 'a'/);
    expect(refusal(['a/b', 'directory'], ['a']).reason).toMatch(/would replace directory/);
  });

  it('refuses duplicate entries but tolerates a repeated directory', () => {
    expect(refusal(['f'], ['./f']).reason).toMatch(/duplicate entry/);
    expect(refusal(['d', 'directory'], ['d']).reason).toMatch(/duplicate entry/);
    expect(refusal(['l', 'symlink', 'x'], ['l', 'symlink', 'y']).reason).toMatch(/duplicate/);
    expect(refusal(['.wh.x'], ['./.wh.x']).reason).toMatch(/duplicate whiteout/);
    expect(refusal(['d/.wh..wh..opq'], ['d/.wh..wh..opq']).reason).toMatch(/duplicate opaque/);
    expect(() => lint(['d', 'directory'], ['d/', 'directory'])).not.toThrow();
  });

  it('refuses a whiteout and a real entry for the same name, in either order', () => {
    expect(refusal(['.wh.a'], ['a']).reason).toMatch(/also whites out/);
    expect(refusal(['a'], ['.wh.a']).reason).toMatch(/also adds/);
    expect(refusal(['a/b'], ['.wh.a']).reason).toMatch(/writes into/);
    expect(refusal(['.wh.a'], ['a/b']).reason).toMatch(/parent 'a' is whited out/);
    expect(refusal(['.wh.a'], ['a/.wh..wh..opq']).reason).toMatch(/whited out/);
  });

  it('allows an opaque marker together with the directory\'s new children', () => {
    expect(() => lint(['d/x'], ['d/.wh..wh..opq'], ['d', 'directory'], ['d/y'])).not.toThrow();
  });

  it('checks hardlink targets against what the layer created', () => {
    expect(refusal(['d', 'directory'], ['h', 'hardlink', 'd']).reason).toMatch(/is a directory, not a regular file/);
    expect(refusal(['d/x'], ['h', 'hardlink', 'd']).reason).toMatch(/is a directory/);
    expect(refusal(['s', 'symlink', '/etc/passwd'], ['h', 'hardlink', 's']).reason).toMatch(/is a symlink/);
    expect(refusal(['s', 'symlink', '/etc'], ['h', 'hardlink', 's/passwd']).reason).toMatch(/under a symlink/);
    expect(refusal(['p', 'fifo'], ['h', 'hardlink', 'p']).reason).toMatch(/fifo, not a regular file/);
    expect(refusal(['.wh.f'], ['h', 'hardlink', 'f']).reason).toMatch(/whited out/);
    expect(refusal(['h', 'hardlink', '/etc/passwd']).reason).toMatch(/absolute/);
    expect(() => lint(['f'], ['h1', 'hardlink', 'f'], ['h2', 'hardlink', 'h1'])).not.toThrow();
  });
});
