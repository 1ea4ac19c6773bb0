/**
 * `strata build` on the command line (run in-process through the CLI's main
 * with only the build command registered): flags as docker's, output on
 * stdout, one-line errors.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { parseBuildArgs, registerBuildCommand } from '../../src/cli/commands/build.js';
import { BASE_ENTRIES, cleanupAll, collectOutput, makeContext, makeImageFromEntries, openStore, tempDir, type TestStore } from './engine-helpers.js';

let store: TestStore;

beforeAll(async () => {
  store = await openStore();
  await makeImageFromEntries(store, 'base:1', BASE_ENTRIES);
});
afterAll(cleanupAll);

async function cli(args: string[], env: NodeJS.ProcessEnv = {}, root = store.root): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = collectOutput();
  const stderr = collectOutput();
  const code = await main(['node', 'strata', '--root', root, 'build', ...args], { stdout: stdout.stream, stderr: stderr.stream, env }, [registerBuildCommand]);
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}

describe('strata build', () => {
  it('builds, tags and writes the ID file', async () => {
    const ctx = await makeContext({ Dockerfile: 'FROM base:1\nARG A\nARG B\nLABEL a=$A b=$B\nCOPY f /f\n', f: 'f\n' });
    const iid = join(await tempDir(), 'iid');
    const res = await cli(['-t', 'cli:1', '-t', 'cli:2', '--build-arg', 'A=from-flag', '--build-arg', 'B', '--iidfile', iid, ctx], { B: 'from-env' });
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^Step 1\/5 : FROM base:1\n/);
    expect(res.stdout).toMatch(/Successfully built [a-f0-9]{12}\nSuccessfully tagged cli:1\nSuccessfully tagged cli:2\n$/);
    const image = await store.images.resolve('cli:2');
    expect(await readFile(iid, 'utf8')).toBe(image.id);
    expect(image.config.config!.Labels).toEqual({ a: 'from-flag', b: 'from-env' });
  });

  it('-q prints only the ID; -f names another Dockerfile; --target picks a stage', async () => {
    const ctx = await makeContext({ 'other.Dockerfile': 'FROM base:1 AS one\nLABEL stage=one\nFROM base:1\nLABEL stage=two\n' });
    const res = await cli(['-q', '-f', join(ctx, 'other.Dockerfile'), '--target', 'one', ctx]);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^sha256:[a-f0-9]{64}\n$/);
    expect((await store.images.resolve(res.stdout.trim())).config.config!.Labels).toEqual({ stage: 'one' });
  });

  it('--no-cache and --source-date-epoch', async () => {
    const ctx = await makeContext({ Dockerfile: 'FROM base:1\nLABEL x=1\n' });
    const first = await cli(['-q', '--source-date-epoch', '86400', ctx]);
    const again = await cli(['--no-cache', '--source-date-epoch', '86400', ctx]);
    expect(again.stdout).not.toContain('Using cache');
    expect(again.stdout).toContain(`Successfully built ${first.stdout.trim().slice(7, 19)}`);
    const fromEnv = await cli(['-q', ctx], { SOURCE_DATE_EPOCH: '86400' });
    expect(fromEnv.stdout).toBe(first.stdout);
  });

  it('fails with one line and status 1', async () => {
    const bad = await makeContext({ Dockerfile: 'FROM base:1\nCOPY\n' });
    const res = await cli([bad]);
    expect(res.code).toBe(1);
    expect(res.stderr).toBe('strata: Dockerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined\n');
    const missing = await makeContext({ Dockerfile: 'FROM base:1\nCOPY nope /x\n' });
    const res2 = await cli([missing]);
    expect(res2.code).toBe(1);
    expect(res2.stderr).toBe('strata: COPY failed: file not found in build context or excluded by .dockerignore: stat nope: file does not exist\n');
    expect((await cli(['--network', 'bridge', missing])).stderr).toMatch(/^strata: network mode "bridge" not supported/);
    expect((await cli(['https://github.com/x/y.git'])).stderr).toMatch(/^strata: unable to prepare context: remote contexts/);
  });

  it('reads --build-arg like docker', () => {
    expect(parseBuildArgs(['A=1', 'B=', 'C', 'D'], { C: 'env' })).toEqual({ A: '1', B: '', C: 'env', D: undefined });
    expect(() => parseBuildArgs(['=x'], {})).toThrow('the name is empty');
  });
});
