import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cgroupMode, checkRuntimeUsable, findRuntime, RuntimeUnavailableError } from '../../src/runtime/detect.js';
import { isLinux, isRoot, runcPath } from './helpers.js';

let scratch: string;
let emptyDir: string;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'strata-detect-'));
  emptyDir = join(scratch, 'empty');
  await mkdir(emptyDir);
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** A fake runtime: a script printing `output` for --version (or failing). */
async function fakeRuntime(name: string, script: string): Promise<string> {
  const dir = join(scratch, `bin-${name}`);
  await mkdir(dir, { recursive: true });
  const path = join(dir, name);
  await writeFile(path, `#!/bin/sh\n${script}\n`);
  await chmod(path, 0o755);
  return path;
}

function oneLine(err: unknown): string {
  expect(err).toBeInstanceOf(RuntimeUnavailableError);
  expect((err as RuntimeUnavailableError).code).toBe('RUNTIME_UNAVAILABLE');
  const message = (err as Error).message;
  expect(message).not.toContain('\n');
  return message;
}

describe('findRuntime', () => {
  it.skipIf(!isLinux || runcPath === undefined)('finds runc by default (needs runc)', async () => {
    const runtime = await findRuntime();
    expect(runtime.name).toBe('runc');
    expect(runtime.path).toMatch(/\/runc$/);
    expect(runtime.version).toMatch(/^\d+\.\d+/);
  });

  it.skipIf(!isLinux)('takes a runtime by absolute or relative path and reads its name and version', async () => {
    const path = await fakeRuntime('my-runtime', 'echo "youki version 0.3.3"; echo "commit: abc"');
    expect(await findRuntime(path)).toEqual({ path, name: 'youki', version: '0.3.3' });
    expect(await findRuntime(relative(process.cwd(), path))).toEqual({ path, name: 'youki', version: '0.3.3' });
    const bare = await fakeRuntime('bare', 'echo "1.2.3"');
    expect(await findRuntime(bare)).toEqual({ path: bare, name: 'bare', version: '1.2.3' });
  });

  it.skipIf(!isLinux)('looks a name up on PATH, then in the sbin directories', async () => {
    const path = await fakeRuntime('crun', 'echo "crun version 9.9"');
    expect(await findRuntime('crun', { env: { PATH: join(scratch, 'bin-crun') }, fallbackDirs: [] })).toEqual({ path, name: 'crun', version: '9.9' });
    expect(await findRuntime('crun', { env: { PATH: '' }, fallbackDirs: [join(scratch, 'bin-crun')] })).toMatchObject({ path });
    // Default order: runc before crun.
    const runc = await fakeRuntime('runc', 'echo "runc version 1.0"');
    expect((await findRuntime(undefined, { env: { PATH: `${join(scratch, 'bin-crun')}:${join(scratch, 'bin-runc')}` }, fallbackDirs: [] })).path).toBe(runc);
  });

  it.skipIf(!isLinux)('explains in one line when no runtime is found', async () => {
    const none = { env: { PATH: emptyDir }, fallbackDirs: [] };
    expect(oneLine(await findRuntime(undefined, { ...none, purpose: 'build' }).catch((e: unknown) => e))).toBe(
      'cannot run RUN steps: no OCI runtime found (install runc: apt-get install runc, or pass --runtime PATH)',
    );
    expect(oneLine(await findRuntime(undefined, none).catch((e: unknown) => e))).toMatch(/^cannot run containers: no OCI runtime found/);
    expect(oneLine(await findRuntime('krun', none).catch((e: unknown) => e))).toBe(
      'cannot run containers: OCI runtime "krun" not found on PATH (install it, e.g. apt-get install krun, or pass --runtime with its absolute path)',
    );
    expect(oneLine(await findRuntime(join(scratch, 'nope'), none).catch((e: unknown) => e))).toBe(
      `cannot run containers: OCI runtime ${join(scratch, 'nope')} is not an executable file`,
    );
    const broken = await fakeRuntime('broken', 'echo "exploded" >&2; exit 2');
    expect(oneLine(await findRuntime(broken).catch((e: unknown) => e))).toBe(
      `cannot run containers: OCI runtime ${broken} does not work (\`broken --version\` failed: exploded)`,
    );
    expect(oneLine(await findRuntime('', none).catch((e: unknown) => e))).toBe('cannot run containers: --runtime must not be empty');
  });

  it('refuses non-Linux hosts', async () => {
    expect(oneLine(await findRuntime(undefined, { platform: 'darwin' }).catch((e: unknown) => e))).toMatch(/^cannot run containers: not Linux \(this is darwin\)/);
  });
});

describe('checkRuntimeUsable', () => {
  it.skipIf(!isLinux || !isRoot)('passes as root on Linux with cgroups (needs root)', async () => {
    await expect(checkRuntimeUsable()).resolves.toBeUndefined();
    expect(['v1', 'v2', 'hybrid']).toContain(await cgroupMode());
  });

  it('refuses non-root users and non-Linux hosts', async () => {
    expect(oneLine(await checkRuntimeUsable({ platform: 'linux', euid: 1000, purpose: 'build' }).catch((e: unknown) => e))).toBe(
      'cannot run RUN steps: not running as root (rootless runtimes are not supported yet); run strata as root, e.g. with sudo',
    );
    expect(oneLine(await checkRuntimeUsable({ platform: 'win32', euid: 0 }).catch((e: unknown) => e))).toMatch(/^cannot run containers: not Linux/);
  });

  it('refuses a host without a cgroup filesystem', async () => {
    expect(oneLine(await checkRuntimeUsable({ platform: 'linux', euid: 0, cgroupRoot: join(scratch, 'missing') }).catch((e: unknown) => e))).toMatch(
      /^cannot run containers: no cgroup filesystem at .*missing \(ENOENT\); mount one: mount -t cgroup2 none/,
    );
    expect(oneLine(await checkRuntimeUsable({ platform: 'linux', euid: 0, cgroupRoot: emptyDir }).catch((e: unknown) => e))).toMatch(
      /holds no cgroup controllers/,
    );
  });

  it('tells cgroup layouts apart', async () => {
    const v2 = join(scratch, 'cg-v2');
    await mkdir(v2);
    await writeFile(join(v2, 'cgroup.controllers'), 'cpu memory\n');
    expect(await cgroupMode({ cgroupRoot: v2 })).toBe('v2');
    const hybrid = join(scratch, 'cg-hybrid');
    await mkdir(join(hybrid, 'memory'), { recursive: true });
    await mkdir(join(hybrid, 'unified'));
    expect(await cgroupMode({ cgroupRoot: hybrid })).toBe('hybrid');
    const v1 = join(scratch, 'cg-v1');
    await mkdir(join(v1, 'devices'), { recursive: true });
    expect(await cgroupMode({ cgroupRoot: v1 })).toBe('v1');
  });
});
