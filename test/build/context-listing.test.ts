/**
 * find's listing of the build context (context-listing.cts), which the
 * `strata` launcher starts for `strata build` so the context walk runs on
 * another core: sources must hash exactly as with the in-process walk,
 * changes anywhere must be seen, and the launcher must guess the context
 * argument of `strata build` right (a wrong guess only costs a find).
 */
import { spawnSync } from 'node:child_process';
import { chmod, link, mkdir, readdir, readFile, realpath, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { BuildContext } from '../../src/build/context.js';
import { prefetchForBuild, startContextListing, takeContextListing } from '../../src/build/context-listing.cjs';
import { registerBuildCommand } from '../../src/cli/commands/build.js';
import type { CliContext } from '../../src/cli/main.js';
import { cleanupAll, tempDir } from './engine-helpers.js';

afterAll(cleanupAll);

const findWorks = spawnSync('find', ['/', '-maxdepth', '0', '-printf', '%y'], { encoding: 'utf8' }).stdout === 'd';

/** A context with nesting, an ignored directory, an exception, a symlink out of the source, an empty dir. */
async function fixture(): Promise<string> {
  const dir = await realpath(await tempDir('strata-listing-'));
  await mkdir(join(dir, 'app', 'lib', 'deep'), { recursive: true });
  await writeFile(join(dir, 'app', 'main.js'), 'main\n');
  await writeFile(join(dir, 'app', 'lib', 'a.js'), 'a\n');
  await writeFile(join(dir, 'app', 'lib', 'deep', 'b.js'), 'b\n');
  await chmod(join(dir, 'app', 'lib', 'deep', 'b.js'), 0o600);
  await mkdir(join(dir, 'app', 'empty'));
  await symlink('../../top.txt', join(dir, 'app', 'lib', 'top-link'));
  await writeFile(join(dir, 'top.txt'), 'top\n');
  await mkdir(join(dir, 'app', 'logs'));
  await writeFile(join(dir, 'app', 'logs', 'x.log'), 'noise\n');
  await writeFile(join(dir, 'app', 'logs', 'keep.log'), 'kept\n');
  await writeFile(join(dir, '.dockerignore'), 'app/logs\n!app/logs/keep.log\n**/*.tmp\n');
  return dir;
}

/** Hashes of `paths` with a listing started (as the launcher does) and a stat cache in `cacheDir`. */
async function listedHashes(dir: string, cacheDir: string, paths: string[], dockerfile?: string): Promise<string[]> {
  startContextListing(dir);
  const ctx = await BuildContext.open({ contextDir: dir, cacheDir, ...(dockerfile !== undefined ? { dockerfile } : {}) });
  const hashes = (await ctx.resolveSources(paths, 'COPY')).map((s) => s.hash);
  await ctx.save();
  return hashes;
}

async function walkedHashes(dir: string, paths: string[], dockerfile?: string): Promise<string[]> {
  const ctx = await BuildContext.open({ contextDir: dir, ...(dockerfile !== undefined ? { dockerfile } : {}) });
  return (await ctx.resolveSources(paths, 'COPY')).map((s) => s.hash);
}

interface SourcesRecord {
  sources: Record<string, { fingerprint: string; hash: string }>;
  listing?: { digest: string; fingerprints: Record<string, string | null> };
}

async function sourcesFile(cacheDir: string): Promise<string> {
  return join(cacheDir, (await readdir(cacheDir)).find((n) => n.startsWith('sources-'))!);
}

async function recorded(cacheDir: string): Promise<SourcesRecord> {
  return JSON.parse(await readFile(await sourcesFile(cacheDir), 'utf8')) as SourcesRecord;
}

/**
 * Makes the records say that, with the last listing, source `rel` had a
 * fingerprint no walk or listing makes, and hash `forged`: a build that
 * answers `forged` took the recorded fingerprint.
 */
async function forgeListedFingerprint(cacheDir: string, rel: string): Promise<void> {
  const record = await recorded(cacheDir);
  record.listing!.fingerprints[rel] = 'find1:forged';
  record.sources[rel] = { fingerprint: 'find1:forged', hash: 'forged' };
  await writeFile(await sourcesFile(cacheDir), JSON.stringify(record));
}

async function recordedFingerprints(cacheDir: string): Promise<string[]> {
  return Object.values((await recorded(cacheDir)).sources).map((s) => s.fingerprint);
}

describe.skipIf(!findWorks)('context listing by find (needs GNU find)', () => {
  it('gives the hashes the in-process walk gives, and is what the fingerprints came from', async () => {
    const dir = await fixture();
    const cacheDir = await tempDir('strata-listing-cache-');
    const paths = ['app', '.', 'app/lib'];
    expect(await listedHashes(dir, cacheDir, paths)).toEqual(await walkedHashes(dir, paths));
    const fingerprints = await recordedFingerprints(cacheDir);
    expect(fingerprints.filter((f) => f.startsWith('find1:'))).toHaveLength(3);
    // Again, from the records: still the same.
    expect(await listedHashes(dir, cacheDir, paths)).toEqual(await walkedHashes(dir, paths));
  });

  it('sees a change deep down, behind a symlink, in the rescued file, and ignores ignored files', async () => {
    const dir = await fixture();
    const cacheDir = await tempDir('strata-listing-cache-');
    const [before] = await listedHashes(dir, cacheDir, ['app']);
    await writeFile(join(dir, 'app', 'logs', 'x.log'), 'more noise\n');
    await writeFile(join(dir, 'app', 'ignored.tmp'), 'tmp\n');
    expect(await listedHashes(dir, cacheDir, ['app'])).toEqual([before]);
    for (const change of [
      () => writeFile(join(dir, 'app', 'lib', 'deep', 'b.js'), 'B\n'),
      () => writeFile(join(dir, 'top.txt'), 'TOP\n'),
      () => writeFile(join(dir, 'app', 'logs', 'keep.log'), 'changed\n'),
      () => chmod(join(dir, 'app', 'empty'), 0o700),
      () => writeFile(join(dir, 'app', 'lib', 'new.js'), 'new\n'),
    ]) {
      const [previous] = await listedHashes(dir, cacheDir, ['app']);
      await change();
      const [now] = await listedHashes(dir, cacheDir, ['app']);
      expect(now).not.toBe(previous);
      expect([now]).toEqual(await walkedHashes(dir, ['app']));
    }
  });

  it('takes the fingerprints recorded for a listing while not a byte of it changes', async () => {
    const dir = await fixture();
    const cacheDir = await tempDir('strata-listing-cache-');
    const [app] = await listedHashes(dir, cacheDir, ['app', '.']);
    await forgeListedFingerprint(cacheDir, 'app');
    expect(await listedHashes(dir, cacheDir, ['app'])).toEqual(['forged']);
    // An ignored file changes: the listing differs, so the fingerprint is made again.
    await writeFile(join(dir, 'app', 'logs', 'x.log'), 'more noise\n');
    expect(await listedHashes(dir, cacheDir, ['app'])).toEqual([app]);
  });

  it('makes the fingerprints again when the ignore rules or the context directory change, not only the listing', async () => {
    const dir = await fixture();
    // An ignore file beside a Dockerfile outside the context: not in the listing.
    const outside = await tempDir('strata-listing-dockerfile-');
    const dockerfile = join(outside, 'Dockerfile');
    await writeFile(dockerfile, 'FROM scratch\nCOPY app /app\n');
    await writeFile(`${dockerfile}.dockerignore`, 'app/logs\n');
    const cacheDir = await tempDir('strata-listing-cache-');
    await listedHashes(dir, cacheDir, ['app', '.'], dockerfile);
    await forgeListedFingerprint(cacheDir, 'app');
    expect(await listedHashes(dir, cacheDir, ['app'], dockerfile)).toEqual(['forged']);
    await writeFile(`${dockerfile}.dockerignore`, 'app/logs\napp/main.js\n');
    const afterIgnore = await listedHashes(dir, cacheDir, ['app'], dockerfile);
    expect(afterIgnore).not.toEqual(['forged']);
    expect(afterIgnore).toEqual(await walkedHashes(dir, ['app'], dockerfile));

    await listedHashes(dir, cacheDir, ['.'], dockerfile);
    await forgeListedFingerprint(cacheDir, '');
    expect(await listedHashes(dir, cacheDir, ['.'], dockerfile)).toEqual(['forged']);
    await chmod(dir, 0o750);
    const afterChmod = await listedHashes(dir, cacheDir, ['.'], dockerfile);
    expect(afterChmod).not.toEqual(['forged']);
    expect(afterChmod).toEqual(await walkedHashes(dir, ['.'], dockerfile));
  });

  it('gives no fingerprint for a source holding a second link of a file', async () => {
    const dir = await fixture();
    await link(join(dir, 'top.txt'), join(dir, 'app', 'linked.txt'));
    const cacheDir = await tempDir('strata-listing-cache-');
    expect(await listedHashes(dir, cacheDir, ['app'])).toEqual(await walkedHashes(dir, ['app']));
    expect(await recordedFingerprints(cacheDir)).toEqual([]);
    expect((await recorded(cacheDir)).listing?.fingerprints).toEqual({ app: null });
  });

  it('holds listings larger than a pipe, in a file that is never left behind', async () => {
    const dir = await realpath(await tempDir('strata-listing-big-'));
    const names = Array.from({ length: 1500 }, (_, i) => `a-file-with-a-long-enough-name-${String(i).padStart(5, '0')}.txt`);
    await Promise.all(names.map((name) => writeFile(join(dir, name), name)));
    const temp = await tempDir('strata-listing-tmp-');
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = temp;
    try {
      startContextListing(dir);
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
    expect(await readdir(temp)).toEqual([]);
    const bytes = await takeContextListing(dir);
    expect(bytes!.length).toBeGreaterThan(128 * 1024);
    expect(bytes!.toString('utf8').split('\0').filter((_, i) => i % 2 === 0 && _ !== '').sort()).toEqual(names);
    expect(await readdir(temp)).toEqual([]);
  });

  it('is handed out once, and only for the directory it lists', async () => {
    const dir = await fixture();
    startContextListing(dir);
    expect(takeContextListing(join(dir, 'app'))).toBeUndefined();
    const text = (await takeContextListing(dir))?.toString('utf8');
    expect(text).toContain('app/lib/deep/b.js\0f 600 2 ');
    expect(takeContextListing(dir)).toBeUndefined();
  });
});

describe('the launcher finds the context of strata build', () => {
  const guessed = async (args: (dir: string) => string[]): Promise<boolean> => {
    const dir = await realpath(await tempDir('strata-guess-'));
    prefetchForBuild(args(dir));
    const listing = takeContextListing(dir);
    await listing;
    return listing !== undefined;
  };

  it.runIf(process.platform === 'linux')('after options with values, before or after the context, with global options first', async () => {
    expect(await guessed((d) => ['build', d])).toBe(true);
    expect(await guessed((d) => ['--root', '/tmp/r', 'build', '-t', 'x:1', '-f', 'Dockerfile', '--build-arg', 'A=1', d])).toBe(true);
    expect(await guessed((d) => ['build', d, '-t', 'x:1', '--no-cache', '-q'])).toBe(true);
    expect(await guessed((d) => ['build', '--target=final', '--', d])).toBe(true);
    // Not build, or no single context: nothing.
    expect(await guessed((d) => ['images', d])).toBe(false);
    expect(await guessed((d) => ['build', d, d])).toBe(false);
  });

  it("knows every option of strata build that takes a value", () => {
    const program = new Command();
    registerBuildCommand(program, {} as CliContext);
    const build = program.commands.find((c) => c.name() === 'build')!;
    const withValues = build.options.filter((o) => o.required || o.optional).flatMap((o) => [o.short, o.long].filter((f): f is string => f !== undefined));
    const launcherDir = join(import.meta.dirname, '..', '..', 'src', 'build', 'context-listing.cts');
    return readFile(launcherDir, 'utf8').then((source) => {
      for (const flag of withValues) expect(source, `BUILD_OPTIONS_WITH_VALUES lacks ${flag}`).toContain(`'${flag}'`);
    });
  });
});
