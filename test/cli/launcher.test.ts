/**
 * The `strata` launcher (dist/cli/strata.cjs, the package's bin): it runs the
 * bundled CLI with a V8 code cache kept per user, and must behave exactly as
 * the CLI whatever state that cache is in. Runs the built files (global setup).
 */
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO } from './helpers.js';

const LAUNCHER = join(REPO, 'dist', 'cli', 'strata.cjs');
const VERSION = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')).version as string;
const scratch: string[] = [];
afterAll(() => Promise.all(scratch.map((dir) => rm(dir, { recursive: true, force: true }))));

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-launcher-'));
  scratch.push(dir);
  return dir;
}

function run(launcher: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [launcher, ...args], { env: { PATH: process.env.PATH, ...env }, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** Where a cache file records how long the run that wrote it lasted (after its 8-byte magic). */
const WRITER_RUN_OFFSET = 8;

function writerRunMs(file: Buffer): number {
  expect(file.subarray(0, WRITER_RUN_OFFSET).toString('latin1')).toBe('strata\0\x01');
  return file.readDoubleLE(WRITER_RUN_OFFSET);
}

/** `file` as if the run that wrote it had lasted `ms`. */
function withWriterRunMs(file: Buffer, ms: number): Buffer {
  writerRunMs(file);
  const copy = Buffer.from(file);
  copy.writeDoubleLE(ms, WRITER_RUN_OFFSET);
  return copy;
}

const versionLine = { code: 0, stdout: `strata version ${VERSION}\n`, stderr: '' };

describe('strata launcher', () => {
  it('writes a code cache on the first run of a command and uses it on the next', async () => {
    const home = await tempDir();
    const cacheDir = join(home, 'cache', 'strata', 'code-cache');
    expect(await run(LAUNCHER, ['--version'], { XDG_CACHE_HOME: join(home, 'cache') })).toEqual(versionLine);
    const [first] = await readdir(cacheDir);
    expect(first).toMatch(/^[0-9a-f]{8}-v\d+\.\d+\.\d+-[a-z0-9]+-\d+-\d+-none\.bin$/);
    // As if written by a short run, however long this one took on a busy machine.
    const written = withWriterRunMs(await readFile(join(cacheDir, first!)), 50);
    await writeFile(join(cacheDir, first!), written);
    expect(await run(LAUNCHER, ['--version'], { XDG_CACHE_HOME: join(home, 'cache') })).toEqual(versionLine);
    // Accepted, so not written again.
    expect(await readdir(cacheDir)).toEqual([first]);
    expect((await readFile(join(cacheDir, first!))).equals(written)).toBe(true);
    // Each command has its own.
    expect(await run(LAUNCHER, ['--root', join(home, 'root'), 'images', '-q'], { XDG_CACHE_HOME: join(home, 'cache') })).toMatchObject({ code: 0, stderr: '' });
    expect((await readdir(cacheDir)).sort()).toEqual([first, first!.replace(/-none\.bin$/, '-images.bin')].sort());
  });

  it('is written while a long run is still going, and replaced by the next short run', async () => {
    // A long run's cache would lack the code V8 drops on the way (bytecode flushing).
    const home = await tempDir();
    const cacheDir = join(home, 'strata', 'code-cache');
    const context = join(home, 'context');
    await mkdir(context);
    await writeFile(join(context, 'Dockerfile'), 'FROM scratch\nCOPY Dockerfile /\n');
    // "Long": still going 1 ms after start. The build waits on I/O many times before it ends.
    const early = { XDG_CACHE_HOME: home, STRATA_CODE_CACHE_EARLY_MS: '1' };
    expect(await run(LAUNCHER, ['--root', join(home, 'root'), 'build', '-q', context], early)).toMatchObject({ code: 0, stderr: '' });
    const [name] = await readdir(cacheDir);
    const path = join(cacheDir, name!);
    expect(writerRunMs(await readFile(path))).toBe(1);
    // Written early, by a run at least EARLY_WRITE_MS long: a run shorter than that replaces it.
    const patient = { XDG_CACHE_HOME: home, STRATA_CODE_CACHE_EARLY_MS: '600000' };
    await writeFile(path, withWriterRunMs(await readFile(path), 600_000));
    expect(await run(LAUNCHER, ['--root', join(home, 'root'), 'build', '-q', context], patient)).toMatchObject({ code: 0, stderr: '' });
    const rewritten = writerRunMs(await readFile(path));
    expect(rewritten).toBeGreaterThan(0);
    expect(rewritten).toBeLessThan(600_000);
    // A cache from a run that ended before EARLY_WRITE_MS stays.
    const kept = await readFile(path);
    expect(await run(LAUNCHER, ['--root', join(home, 'root'), 'build', '-q', context], patient)).toMatchObject({ code: 0, stderr: '' });
    expect((await readFile(path)).equals(kept)).toBe(true);
  });

  it('runs correctly on a damaged cache and replaces it', async () => {
    const home = await tempDir();
    const cacheDir = join(home, 'strata', 'code-cache');
    await run(LAUNCHER, ['--version'], { XDG_CACHE_HOME: home });
    const [name] = await readdir(cacheDir);
    await writeFile(join(cacheDir, name!), Buffer.from('not a V8 code cache at all'.repeat(100)));
    expect(await run(LAUNCHER, ['--version'], { XDG_CACHE_HOME: home })).toEqual(versionLine);
    expect((await readFile(join(cacheDir, name!))).toString('latin1')).not.toContain('not a V8 code cache');
  });

  it('does not use a cache directory others can write to, nor make a home directory', async () => {
    const home = await tempDir();
    const cacheDir = join(home, 'strata', 'code-cache');
    await mkdir(cacheDir, { recursive: true });
    await chmod(cacheDir, 0o777);
    expect(await run(LAUNCHER, ['--version'], { XDG_CACHE_HOME: home })).toEqual(versionLine);
    expect(await readdir(cacheDir)).toEqual([]);
    const missingHome = join(home, 'no-such-home');
    expect(await run(LAUNCHER, ['--version'], { HOME: missingHome })).toEqual(versionLine);
    expect(await readdir(home)).not.toContain('no-such-home');
  });

  it('can be turned off with STRATA_NO_CODE_CACHE=1', async () => {
    const home = await tempDir();
    expect(await run(LAUNCHER, ['--version'], { XDG_CACHE_HOME: home, STRATA_NO_CODE_CACHE: '1' })).toEqual(versionLine);
    expect(await readdir(home)).toEqual([]);
  });

  it('runs the unbundled CLI when there is no bundle beside it', async () => {
    const dir = await tempDir();
    await mkdir(join(dir, 'cli'));
    await copyFile(LAUNCHER, join(dir, 'cli', 'strata.cjs'));
    await symlink(join(REPO, 'dist', 'cli', 'main.js'), join(dir, 'cli', 'main.js'));
    expect(await run(join(dir, 'cli', 'strata.cjs'), ['--version'], { XDG_CACHE_HOME: dir })).toEqual(versionLine);
    expect(await run(join(dir, 'cli', 'strata.cjs'), ['no-such-command'], { XDG_CACHE_HOME: dir })).toMatchObject({ code: 1, stderr: expect.stringContaining("unknown command 'no-such-command'") });
  });
});
