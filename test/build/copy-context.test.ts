/**
 * The build context: wildcard matching (Go's filepath.Match), source
 * resolution with Docker's errors, .dockerignore, and the per-path hashes
 * Docker records in `created_by` — the expected values below were produced by
 * `docker build` (Docker 20.10, classic builder) from the same files.
 */
import { chmod, link, mkdir, rm, utimes, writeFile, symlink, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BuildContext, BuildContextError, dockerEntryHasher } from '../../src/build/context.js';
import { containsWildcards, goMatch } from '../../src/build/gomatch.js';
import { multiSourceHash } from '../../src/build/dockerfile/index.js';
import { cleanupAll, tempDir } from './engine-helpers.js';

afterAll(cleanupAll);

/** The context the docker reference hashes were computed from. */
async function dockerFixture(): Promise<string> {
  const ctx = await tempDir('strata-ctx-');
  await writeFile(join(ctx, 'f.txt'), 'hello\n');
  await chmod(join(ctx, 'f.txt'), 0o640);
  await mkdir(join(ctx, 'srcdir', 'sub'), { recursive: true });
  await writeFile(join(ctx, 'srcdir', 's1'), 's1\n');
  await chmod(join(ctx, 'srcdir', 's1'), 0o600);
  await writeFile(join(ctx, 'srcdir', 'sub', 's2'), 's2\n');
  await chmod(join(ctx, 'srcdir', 'sub', 's2'), 0o644);
  await chmod(join(ctx, 'srcdir', 'sub'), 0o700);
  await chmod(join(ctx, 'srcdir'), 0o750);
  await symlink('s1', join(ctx, 'srcdir', 'lnk'));
  await mkdir(join(ctx, 'emptydir'));
  await chmod(join(ctx, 'emptydir'), 0o755);
  return ctx;
}

describe('goMatch (filepath.Match)', () => {
  const cases: [string, string, boolean][] = [
    ['*', 'abc', true],
    ['*', 'a/b', false],
    ['a*', 'abc', true],
    ['*c', 'abc', true],
    ['a*/b', 'abc/b', true],
    ['a*/b', 'a/c/b', false],
    ['a?c', 'abc', true],
    ['a?c', 'a/c', false],
    ['[abc]', 'b', true],
    ['[^abc]', 'b', false],
    ['[a-c]x', 'bx', true],
    ['[a-c]x', 'dx', false],
    ['a\\*b', 'a*b', true],
    ['a\\*b', 'axb', false],
    ['srcdir/s*', 'srcdir/s1', true],
    ['srcdir/s*', 'srcdir/sub', true],
    ['srcdir/s*', 'srcdir/sub/s2', false],
    ['*.txt', 'f.txt', true],
    ['arr[[]0].txt', 'arr[0].txt', true],
  ];
  it.each(cases)('%s matches %s: %s', (pattern, name, matched) => {
    expect(goMatch(pattern, name)).toEqual({ matched, badPattern: false });
  });

  it('reports malformed patterns as no match, like Docker', () => {
    expect(goMatch('[', 'a')).toEqual({ matched: false, badPattern: true });
    expect(goMatch('a[', 'b')).toEqual({ matched: false, badPattern: true });
    expect(goMatch('[]a]', ']')).toEqual({ matched: false, badPattern: true });
    expect(goMatch('x\\', 'x')).toEqual({ matched: false, badPattern: true });
  });

  it('finds wildcards unless escaped', () => {
    expect(containsWildcards('a*')).toBe(true);
    expect(containsWildcards('a?')).toBe(true);
    expect(containsWildcards('a[b]')).toBe(true);
    expect(containsWildcards('a\\*')).toBe(false);
    expect(containsWildcards('plain/path')).toBe(false);
  });
});

describe('BuildContext sources', () => {
  it('hashes files and directories exactly as docker build records them', async () => {
    const ctx = await BuildContext.open({ contextDir: await dockerFixture() });
    const [file] = await ctx.resolveSources(['f.txt'], 'COPY');
    expect(file!.hash).toBe('file:077daf6e781347041c2bc56ae1c443267eb3c7a7851da924910e659d7ba734e2');
    const [dir] = await ctx.resolveSources(['srcdir'], 'COPY');
    expect(dir!.isDir).toBe(true);
    expect(dir!.hash).toBe('dir:59b8883ec5685504685ce32925d6996f287a21fb2e5882b29e3323f38710d0f8');
    const [empty] = await ctx.resolveSources(['emptydir'], 'COPY');
    expect(empty!.hash).toBe('dir:93a9a9800d5c10fba0084b62000633f57cbe66a25ce9b3fdf5af0373fedd1ade');
    // A symlink source is followed; its hash is its target's.
    const [link] = await ctx.resolveSources(['srcdir/lnk'], 'COPY');
    expect(link!.hash).toBe('file:63b323a9296dc8f53c5896f42b98f7f37ce57d4176a3d07c0f31ca63d52c2fb7');
    expect(link!.rel).toBe('srcdir/lnk');
    expect(link!.resolvedRel).toBe('srcdir/s1');
    const multi = await ctx.resolveSources(['f.txt', 'srcdir/s1'], 'COPY');
    expect(multiSourceHash(multi.map((s) => s.hash))).toBe('multi:4c716376a68eec62d71a4fa7eb314c0e12cdb77d0c039c12b5e57cab6d7def26');
    const globbed = await ctx.resolveSources(['srcdir/s*'], 'COPY');
    expect(globbed.map((s) => s.rel)).toEqual(['srcdir/s1', 'srcdir/sub']);
    expect(multiSourceHash(globbed.map((s) => s.hash))).toBe('multi:18567d2f7079c4866959718aa4f9eda10041606a8b8bdd437641d5876e2d9a1d');
  });

  it('hashes the second path of a hardlinked file as a link to the first, as the CLI sends it', async () => {
    const dir = await tempDir('strata-ctx-');
    await writeFile(join(dir, 'a'), 'same\n');
    await chmod(join(dir, 'a'), 0o644);
    await link(join(dir, 'a'), join(dir, 'b'));
    const ctx = await BuildContext.open({ contextDir: dir });
    const [a, b] = await ctx.resolveSources(['a', 'b'], 'COPY');
    const fileHasher = dockerEntryHasher({ name: 'a', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 5 });
    fileHasher.update(Buffer.from('same\n'));
    expect(a!.hash).toBe(`file:${fileHasher.digest()}`);
    expect(b!.hash).toBe(`file:${dockerEntryHasher({ name: 'b', type: 'hardlink', mode: 0o644, uid: 0, gid: 0, size: 0, linkname: 'a' }).digest()}`);
  });

  it('does not hash mtimes or owners', async () => {
    const dir = await dockerFixture();
    const before = (await (await BuildContext.open({ contextDir: dir })).resolveSources(['srcdir'], 'COPY'))[0]!.hash;
    await utimes(join(dir, 'srcdir', 's1'), 12345, 12345);
    const after = (await (await BuildContext.open({ contextDir: dir })).resolveSources(['srcdir'], 'COPY'))[0]!.hash;
    expect(after).toBe(before);
    await writeFile(join(dir, 'srcdir', 's1'), 's1!\n');
    const changed = (await (await BuildContext.open({ contextDir: dir })).resolveSources(['srcdir'], 'COPY'))[0]!.hash;
    expect(changed).not.toBe(before);
  });

  it("refuses a missing source with Docker's message", async () => {
    const ctx = await BuildContext.open({ contextDir: await dockerFixture() });
    await expect(ctx.resolveSources(['missing'], 'COPY')).rejects.toThrow(
      'COPY failed: file not found in build context or excluded by .dockerignore: stat missing: file does not exist',
    );
    await expect(ctx.resolveSources(['*.nomatch'], 'COPY')).rejects.toThrow('COPY failed: no source files were specified');
    await expect(ctx.resolveSources(['../x'], 'ADD')).rejects.toThrow('ADD failed: forbidden path outside the build context: ../x ()');
    await expect(ctx.resolveSources(['srcdir/../../x'], 'COPY')).rejects.toBeInstanceOf(BuildContextError);
  });

  it('keeps symlinks inside the context', async () => {
    const dir = await dockerFixture();
    await symlink('/etc/passwd', join(dir, 'abs'));
    await symlink('../../../../etc', join(dir, 'up'));
    await writeFile(join(dir, 'passwd-in-context'), 'x');
    const ctx = await BuildContext.open({ contextDir: dir });
    // /etc/passwd is looked up in the context, not on the host.
    await expect(ctx.resolveSources(['abs'], 'COPY')).rejects.toThrow('stat abs: file does not exist');
    await expect(ctx.resolveSources(['up/passwd'], 'COPY')).rejects.toThrow('file does not exist');
  });

  it('strips a leading / or ./ from sources', async () => {
    const ctx = await BuildContext.open({ contextDir: await dockerFixture() });
    expect((await ctx.resolveSources(['/f.txt'], 'COPY'))[0]!.rel).toBe('f.txt');
    expect((await ctx.resolveSources(['./f.txt'], 'COPY'))[0]!.rel).toBe('f.txt');
    expect((await ctx.resolveSources(['.'], 'COPY'))[0]!.rel).toBe('');
  });

  it('hides what .dockerignore excludes, the Dockerfile included', async () => {
    const dir = await dockerFixture();
    await writeFile(join(dir, '.dockerignore'), 'srcdir/sub\n*.txt\n!keep.txt\nDockerfile\n');
    await writeFile(join(dir, 'keep.txt'), 'k');
    await writeFile(join(dir, 'Dockerfile'), 'FROM scratch\n');
    const ctx = await BuildContext.open({ contextDir: dir });
    await expect(ctx.resolveSources(['f.txt'], 'COPY')).rejects.toThrow('excluded by .dockerignore');
    await expect(ctx.resolveSources(['Dockerfile'], 'COPY')).rejects.toThrow('excluded by .dockerignore');
    expect((await ctx.resolveSources(['keep.txt'], 'COPY'))[0]!.rel).toBe('keep.txt');
    const [src] = await ctx.resolveSources(['srcdir'], 'COPY');
    const seen: string[] = [];
    for await (const entry of ctx.entries(src!)) seen.push(entry.header.path);
    expect(seen).toEqual(['lnk', 's1']);
    const all = await ctx.resolveSources(['*'], 'COPY');
    expect(all.map((s) => s.rel)).toEqual(['.dockerignore', 'emptydir', 'keep.txt', 'srcdir']);
  });

  it('remembers file hashes in a stat cache and re-hashes a changed file', async () => {
    const dir = await dockerFixture();
    const cacheDir = await tempDir('strata-statcache-');
    const first = await BuildContext.open({ contextDir: dir, cacheDir });
    const h1 = (await first.resolveSources(['f.txt'], 'COPY'))[0]!.hash;
    await first.save();
    const names = (await readdir(cacheDir)).sort();
    expect(names).toEqual([expect.stringMatching(/^sources-[a-f0-9]{32}\.json$/), expect.stringMatching(/^stat-[a-f0-9]{32}\.json$/)]);
    const statFile = join(cacheDir, names[1]!);
    const saved = JSON.parse(await readFile(statFile, 'utf8'));
    expect(saved.entries['f.txt'].sum).toBe(h1.slice('file:'.length));
    // Forge the cached hash (and forget the per-source record, which would
    // answer first): an unchanged file is not read again, so the forged value comes back.
    saved.entries['f.txt'].sum = 'f'.repeat(64);
    await writeFile(statFile, JSON.stringify(saved));
    await rm(join(cacheDir, names[0]!));
    const second = await BuildContext.open({ contextDir: dir, cacheDir });
    expect((await second.resolveSources(['f.txt'], 'COPY'))[0]!.hash).toBe(`file:${'f'.repeat(64)}`);
    // A changed file (new size and ctime) is hashed again.
    await writeFile(join(dir, 'f.txt'), 'changed\n');
    const third = await BuildContext.open({ contextDir: dir, cacheDir });
    const h3 = (await third.resolveSources(['f.txt'], 'COPY'))[0]!.hash;
    expect(h3).not.toBe(h1);
    expect(h3).not.toBe(`file:${'f'.repeat(64)}`);
  });

  describe('per-source records', () => {
    /** Resolves `paths` with the stat cache in `cacheDir`, saving it afterwards. */
    async function hashesWithCache(dir: string, cacheDir: string, paths: string[]): Promise<string[]> {
      const ctx = await BuildContext.open({ contextDir: dir, cacheDir });
      const sources = await ctx.resolveSources(paths, 'COPY');
      await ctx.save();
      return sources.map((s) => s.hash);
    }
    /** What a context with nothing remembered says. */
    async function freshHashes(dir: string, paths: string[]): Promise<string[]> {
      return (await (await BuildContext.open({ contextDir: dir })).resolveSources(paths, 'COPY')).map((s) => s.hash);
    }
    /** Replaces the recorded hash of every source, so that a reused record shows. */
    async function forgeSources(cacheDir: string): Promise<string> {
      const name = (await readdir(cacheDir)).find((n) => n.startsWith('sources-'))!;
      const data = JSON.parse(await readFile(join(cacheDir, name), 'utf8'));
      for (const entry of Object.values(data.sources) as { hash: string }[]) entry.hash = `dir:${'a'.repeat(64)}`;
      await writeFile(join(cacheDir, name), JSON.stringify(data));
      return `dir:${'a'.repeat(64)}`;
    }

    it('reuse a directory hash while nothing below it changes, and see a change anywhere in it', async () => {
      const dir = await dockerFixture();
      const cacheDir = await tempDir('strata-statcache-');
      const [real] = await hashesWithCache(dir, cacheDir, ['srcdir']);
      expect(real).toBe((await freshHashes(dir, ['srcdir']))[0]);
      const forged = await forgeSources(cacheDir);
      expect(await hashesWithCache(dir, cacheDir, ['srcdir'])).toEqual([forged]);
      // Same size, new content, deep down: lstat (mtime, ctime) tells.
      await writeFile(join(dir, 'srcdir', 'sub', 's2'), 'S2\n');
      const [changed] = await hashesWithCache(dir, cacheDir, ['srcdir']);
      expect(changed).not.toBe(real);
      expect(changed).toBe((await freshHashes(dir, ['srcdir']))[0]);
    });

    it('see a change where a symlink in the source leads, even outside the source', async () => {
      const dir = await dockerFixture();
      await symlink('../f.txt', join(dir, 'srcdir', 'outside'));
      const cacheDir = await tempDir('strata-statcache-');
      const [real] = await hashesWithCache(dir, cacheDir, ['srcdir']);
      await forgeSources(cacheDir);
      await writeFile(join(dir, 'f.txt'), 'other\n');
      const [changed] = await hashesWithCache(dir, cacheDir, ['srcdir']);
      expect(changed).not.toBe(real);
      expect(changed).toBe((await freshHashes(dir, ['srcdir']))[0]);
    });

    it('are not used for a source holding a file with other links, whose hash depends on the whole context', async () => {
      const dir = await dockerFixture();
      await link(join(dir, 'f.txt'), join(dir, 'srcdir', 'linked'));
      const cacheDir = await tempDir('strata-statcache-');
      const [real] = await hashesWithCache(dir, cacheDir, ['srcdir']);
      expect(await readdir(cacheDir)).not.toContainEqual(expect.stringMatching(/^sources-/));
      expect(await hashesWithCache(dir, cacheDir, ['srcdir'])).toEqual([real]);
    });

    it('ignore files that .dockerignore hides coming and going', async () => {
      const dir = await dockerFixture();
      await writeFile(join(dir, '.dockerignore'), 'srcdir/*.log\n');
      const cacheDir = await tempDir('strata-statcache-');
      const [real] = await hashesWithCache(dir, cacheDir, ['srcdir']);
      const forged = await forgeSources(cacheDir);
      await writeFile(join(dir, 'srcdir', 'debug.log'), 'noise\n');
      expect(await hashesWithCache(dir, cacheDir, ['srcdir'])).toEqual([forged]);
      expect((await freshHashes(dir, ['srcdir']))[0]).toBe(real);
    });
  });

  it('refuses a context that does not exist', async () => {
    await expect(BuildContext.open({ contextDir: '/nonexistent/strata/context' })).rejects.toThrow('unable to prepare context');
  });
});
