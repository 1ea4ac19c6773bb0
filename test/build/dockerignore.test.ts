import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import balenaIgnore from '@balena/dockerignore';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerignoreError, createDockerignoreMatcher, loadDockerignore, readDockerignore } from '../../src/build/dockerignore.js';

function matcher(text: string, dockerfile?: string) {
  return createDockerignoreMatcher(readDockerignore(text), dockerfile === undefined ? {} : { dockerfile });
}

describe('readDockerignore (Docker ignorefile.ReadAll)', () => {
  it('skips comments and blank lines, trims, cleans and strips a leading slash', () => {
    const text = '\uFEFF# comment\n\n  *.log  \n./build/\n/abs/path\n!  /keep/me/\na//b/../c\r\n  # not a comment\n.\n/\n!\n';
    expect(readDockerignore(text)).toEqual(['*.log', 'build', 'abs/path', '!keep/me', 'a/c', '# not a comment', '.', '/', '!']);
  });

  it('returns nothing for an empty file', () => {
    expect(readDockerignore('')).toEqual([]);
    expect(readDockerignore('\n\n# only comments\n')).toEqual([]);
  });
});

describe('matching', () => {
  const cases: [string, string, boolean][] = [
    ['*.md', 'README.md', true],
    ['*.md', 'docs/README.md', false],
    ['**/*.md', 'docs/deep/README.md', true],
    ['**/*.md', 'README.md', true],
    ['docs', 'docs/a/b.txt', true],
    ['docs', 'docsite/x', false],
    ['docs/*', 'docs/a/b', true],
    ['*/temp*', 'x/temporary', true],
    ['*/temp*', 'x/y/temp', false],
    ['temp?', 'temp1', true],
    ['temp?', 'temp/', false],
    ['[abc].txt', 'b.txt', true],
    ['[^abc].txt', 'b.txt', false],
    ['\\*.txt', '*.txt', true],
    ['\\*.txt', 'a.txt', false],
    ['**', 'anything/at/all', true],
    ['dir/**', 'dir/x/y', true],
    ['dir/**', 'dirx', false],
    ['**/node_modules', 'a/b/node_modules/pkg/index.js', true],
    ['.git', '.git/objects/ab', true],
    ['*.MD', 'README.md', false],
    ['a+b', 'aab', false],
    ['a+b', 'a+b', true],
    ['(x)|y', '(x)|y', true],
    ['{a}', '{a}', true],
    ['  #hash', '#hash', true],
    ['a[^x]b', 'a/b/c', true],
    ['*', '.', false],
  ];
  it.each(cases)('%j vs %s -> %s', (patterns, path, ignored) => {
    expect(matcher(patterns).ignores(path)).toBe(ignored);
  });

  it('lets later patterns and ! exceptions decide', () => {
    const m = matcher('*\n!src\nsrc/*.tmp\n!src/keep.tmp\n');
    expect(m.ignores('README.md')).toBe(true);
    expect(m.ignores('src/main.ts')).toBe(false);
    expect(m.ignores('src/x.tmp')).toBe(true);
    expect(m.ignores('src/keep.tmp')).toBe(false);
    const reversed = matcher('!src\n*\n');
    expect(reversed.ignores('src/main.ts')).toBe(true);
  });

  it('re-includes a file under an ignored directory', () => {
    const m = matcher('build\n!build/keep.txt\n');
    expect(m.ignores('build/other')).toBe(true);
    expect(m.ignores('build/keep.txt')).toBe(false);
  });

  it('normalizes the paths it is asked about', () => {
    const m = matcher('docs\n');
    expect(m.ignores('./docs/a')).toBe(true);
    expect(m.ignores('/docs/a')).toBe(true);
    expect(m.ignores('docs/../docs/a')).toBe(true);
    expect(m.ignores('.')).toBe(false);
  });

  it('differs from plain @balena/dockerignore exactly where Docker does', () => {
    const plain = (pattern: string, path: string) => balenaIgnore.default().add([pattern]).ignores(path);
    expect(plain('*.MD', 'README.md')).toBe(true);
    expect(plain('a+b', 'aab')).toBe(true);
    // Docker's reader turns the line '  #hash' into the pattern '#hash', which balena drops.
    expect(plain('#hash', '#hash')).toBe(false);
    expect(plain('a[^x]b', 'a/b/c')).toBe(false);
  });
});

describe('pattern errors', () => {
  it.each([
    ['!', 'illegal exclusion pattern: "!"'],
    ['[', 'syntax error in pattern'],
    ['a[]', 'syntax error in pattern'],
    ['a[b-', 'syntax error in pattern'],
    ['abc\\', 'syntax error in pattern'],
  ])('%j is refused', (pattern, message) => {
    expect(() => createDockerignoreMatcher([pattern])).toThrow(DockerignoreError);
    expect(() => createDockerignoreMatcher([pattern])).toThrow(message);
  });
});

describe('what the CLI sends and walks', () => {
  it('sends the Dockerfile and .dockerignore even when ignored, but COPY cannot see them', () => {
    const m = matcher('*\n!app\n', 'Dockerfile');
    expect(m.sentToBuilder('Dockerfile')).toBe(true);
    expect(m.sentToBuilder('.dockerignore')).toBe(true);
    expect(m.ignores('Dockerfile')).toBe(true);
    expect(m.ignores('.dockerignore')).toBe(true);
    expect(m.sentToBuilder('other')).toBe(false);
    expect(m.sentToBuilder('app/x')).toBe(true);
  });

  it('descends into an ignored directory only for an exception that starts with it', () => {
    expect(matcher('build\n!build/keep\n').shouldDescend('build')).toBe(true);
    expect(matcher('build\n!**/keep\n').shouldDescend('build')).toBe(false);
    expect(matcher('build\n').shouldDescend('build')).toBe(false);
    expect(matcher('build\n').shouldDescend('src')).toBe(true);
  });
});

describe('loadDockerignore', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'strata-dockerignore-'));
    await mkdir(join(dir, 'ctx', 'docker'), { recursive: true });
    await mkdir(join(dir, 'bare'), { recursive: true });
    await writeFile(join(dir, 'ctx', '.dockerignore'), 'node_modules\n*.log\n');
    await writeFile(join(dir, 'ctx', 'docker', 'app.Dockerfile.dockerignore'), '*.md\n');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads <context>/.dockerignore', async () => {
    const m = await loadDockerignore(join(dir, 'ctx'));
    expect(m.patterns).toEqual(['node_modules', '*.log']);
    expect(m.source).toBe(join(dir, 'ctx', '.dockerignore'));
    expect(m.ignores('node_modules/x/y.js')).toBe(true);
    expect(m.ignores('README.md')).toBe(false);
  });

  it('prefers <Dockerfile>.dockerignore beside the Dockerfile', async () => {
    const m = await loadDockerignore(join(dir, 'ctx'), 'docker/app.Dockerfile');
    expect(m.patterns).toEqual(['*.md']);
    expect(m.source).toBe(join(dir, 'ctx', 'docker', 'app.Dockerfile.dockerignore'));
    expect(m.ignores('README.md')).toBe(true);
    expect(m.ignores('node_modules/x')).toBe(false);
  });

  it('falls back to the context file when the Dockerfile has none', async () => {
    const m = await loadDockerignore(join(dir, 'ctx'), join(dir, 'ctx', 'other.Dockerfile'));
    expect(m.patterns).toEqual(['node_modules', '*.log']);
  });

  it('ignores nothing without an ignore file', async () => {
    const m = await loadDockerignore(join(dir, 'bare'));
    expect(m.patterns).toEqual([]);
    expect(m.source).toBeUndefined();
    expect(m.ignores('anything')).toBe(false);
  });
});
