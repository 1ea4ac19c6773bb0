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
async function listedHashes(dir: string, cacheDir: string, paths: string[]): Promise<string[]> {
  startContextListing(dir);
  const ctx = await BuildContext.open({ contextDir: dir, cacheDir });
  const hashes = (await ctx.resolveSources(paths, 'COPY')).map((s) => s.hash);
  await ctx.save();
  return hashes;
}

async function walkedHashes(dir: string, paths: string[]): Promise<string[]> {
  return (await (await BuildContext.open({ contextDir: dir })).resolveSources(paths, 'COPY')).map((s) => s.hash);
}

async function recordedFingerprints(cacheDir: string): Promise<string[]> {
  const name = (await readdir(cacheDir)).find((n) => n.startsWith('sources-'))!;
  const data = JSON.parse(await readFile(join(cacheDir, name), 'utf8')) as { sources: Record<string, { fingerprint: string }> };
  return Object.values(data.sources).map((s) => s.fingerprint);
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

  it('gives no fingerprint for a source holding a second link of a file', async () => {
    const dir = await fixture();
    await link(join(dir, 'top.txt'), join(dir, 'app', 'linked.txt'));
    const cacheDir = await tempDir('strata-listing-cache-');
    expect(await listedHashes(dir, cacheDir, ['app'])).toEqual(await walkedHashes(dir, ['app']));
    expect(await readdir(cacheDir)).not.toContainEqual(expect.stringMatching(/^sources-/));
  });

  it('is handed out once, and only for the directory it lists', async () => {
    const dir = await fixture();
    startContextListing(dir);
    expect(takeContextListing(join(dir, 'app'))).toBeUndefined();
    const text = await takeContextListing(dir);
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
