/**
 * Runs the built `strata` binary (dist/cli/strata.cjs, the package's bin:
 * the bundled CLI behind its code-cache launcher, built by the global setup
 * or `npm run build`) as a child process, with its own store root, optional
 * stdin bytes, and stdout kept as bytes for archive commands.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const REPO = resolve(import.meta.dirname, '..', '..');
/** The binary under test; STRATA_CLI_MAIN points elsewhere when iterating. */
export const CLI = process.env.STRATA_CLI_MAIN ?? join(REPO, 'dist', 'cli', 'strata.cjs');
/** Where the launcher keeps its code cache during tests (the test HOME does not exist). */
export const CODE_CACHE_HOME = join(tmpdir(), 'strata-test-code-cache');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout as bytes (archives). */
  bytes: Buffer;
}

export interface RunOptions {
  /** Bytes fed to stdin (stdin is empty otherwise). */
  input?: Buffer;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

/** Runs `strata ARGS…` and collects its output and exit status. */
export function strata(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npm run build)`);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: options.cwd,
      env: { PATH: process.env.PATH, HOME: '/home/nobody-strata-test', XDG_CACHE_HOME: CODE_CACHE_HOME, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      const bytes = Buffer.concat(out);
      resolvePromise({ code: code ?? -1, stdout: bytes.toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), bytes });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? Buffer.alloc(0));
  });
}

/**
 * Runs `strata ARGS…` as nobody (through setpriv, so it needs root) in
 * `home`, which is also its HOME, and collects its output and exit status.
 */
export function strataAsNobody(home: string, args: readonly string[]): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn('/usr/bin/setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, ...args], {
      cwd: home,
      env: { PATH: process.env.PATH, HOME: home },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => {
      const bytes = Buffer.concat(out);
      resolvePromise({ code: code ?? -1, stdout: bytes.toString('utf8'), stderr, bytes });
    });
  });
}

/** A scratch directory with a `root/` store path; `cleanup` removes it. */
export async function workspace(prefix = 'strata-cli-'): Promise<{ dir: string; root: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, root: join(dir, 'root'), cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A small root filesystem under `dir/name`, with `extra` files added. */
export async function makeTree(dir: string, name: string, extra: Record<string, string> = {}): Promise<string> {
  const root = join(dir, name);
  await mkdir(join(root, 'etc'), { recursive: true });
  await mkdir(join(root, 'bin'), { recursive: true });
  await writeFile(join(root, 'etc', 'hostname'), 'strata\n');
  await writeFile(join(root, 'bin', 'hello'), '#!/bin/sh\necho hello\n');
  await chmod(join(root, 'bin', 'hello'), 0o755);
  await symlink('hello', join(root, 'bin', 'hi'));
  for (const [path, content] of Object.entries(extra)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), content);
  }
  return root;
}

/** Whether util-linux `script` is installed (it gives a command a terminal as stdout). */
export function scriptAvailable(): boolean {
  return spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** Whether `name --version` runs. */
export function toolAvailable(name: string): boolean {
  return spawnSync(name, ['--version'], { stdio: 'ignore' }).status === 0;
}
