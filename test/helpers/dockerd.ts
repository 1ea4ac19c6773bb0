/**
 * A private dockerd for the test run, and the docker CLI pointed at it.
 *
 * Interop tests compare strata against real docker (save/load, build,
 * export). They must not depend on, or disturb, a system daemon, so the
 * global setup starts its own dockerd with every path (socket, data, exec
 * root, pidfile, config) under /tmp/strata-test-docker-<pid>, no networking
 * (no bridge, no iptables) and its own containerd namespaces, and stops it
 * when the run ends.
 *
 * This module has no vitest runtime dependency so the global setup (which
 * runs outside any test worker) can use it; tests use ./docker.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, existsSync, openSync, closeSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { constants as osConstants, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BUSYBOX_IMAGE, BUSYBOX_PATH, makeBusyboxRootfs } from './busybox.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** `unix:///…/docker.sock` of the test dockerd, or undefined when there is none. */
    dockerHost: string | undefined;
    /** DOCKER_CONFIG directory for the CLI (keeps ~/.docker out of tests). */
    dockerConfigDir: string | undefined;
    /** Why there is no test dockerd; empty when there is one. */
    dockerUnavailableReason: string;
  }
}

/** The docker CLI used by tests: Debian's, which matches the Debian daemon's API version. */
export const DOCKER_CLI = process.env.STRATA_TEST_DOCKER_CLI ?? '/usr/bin/docker';

/** Prefix of every test dockerd's state directory; the suffix is the owning process id. */
export const TEST_DOCKER_DIR_PREFIX = 'strata-test-docker-';

/** What the CLI needs to reach a daemon. */
export interface DockerTarget {
  host: string;
  configDir: string;
}

/** Options for {@link runDocker}. */
export interface DockerRunOptions {
  /** Standard input for the command; without it stdin is closed. */
  input?: Buffer | string | Readable;
  /** Stream stdout here (e.g. a file for `docker save`) instead of buffering it. */
  stdout?: Writable;
  /** Extra environment variables. */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Kill the command after this long (default 120 s). */
  timeoutMs?: number;
}

/** Outcome of one docker CLI invocation. */
export interface DockerResult {
  /** Everything the command printed on stdout (empty when `stdout` was redirected). */
  stdout: Buffer;
  stderr: string;
  /** Exit status; 128 + signal number if it was killed by a signal. */
  code: number;
}

/** A running test dockerd. */
export interface TestDockerd extends DockerTarget {
  /** State directory holding socket, data root, exec root and logs. */
  dir: string;
  /** Storage driver it runs with (overlay2, or vfs when overlay2 would not start). */
  storageDriver: string;
  serverVersion: string;
  /** Stops the daemon (its containers with it) and removes its state directory. */
  stop(): Promise<void>;
}

const STDERR_LIMIT = 1 << 20;

/** Environment for the docker CLI talking to `target`. */
export function dockerEnv(target: DockerTarget, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DOCKER_HOST: target.host,
    DOCKER_CONFIG: target.configDir,
    // The classic builder: what strata's build is compared against, and the
    // only one Debian's docker.io ships (no buildx).
    DOCKER_BUILDKIT: '0',
    DOCKER_CLI_HINTS: 'false',
    ...extra,
  };
  delete env.DOCKER_CONTEXT;
  delete env.DOCKER_TLS_VERIFY;
  delete env.DOCKER_CERT_PATH;
  return env;
}

/** Runs the docker CLI against `target`; resolves whatever the exit status (see {@link DockerResult}). */
export function runDocker(target: DockerTarget, args: readonly string[], options: DockerRunOptions = {}): Promise<DockerResult> {
  const timeoutMs = options.timeoutMs ?? 120_000;
  return new Promise((resolvePromise, rejectPromise) => {
    const child = spawn(DOCKER_CLI, args, {
      env: dockerEnv(target, options.env),
      cwd: options.cwd,
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const stdoutChunks: Buffer[] = [];
    let stderr = '';
    let settled = false;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      rejectPromise(err);
    };
    const timer = setTimeout(() => {
      fail(new Error(`docker ${args.join(' ')} timed out after ${timeoutMs} ms; stderr: ${stderr.trim()}`));
    }, timeoutMs);
    child.on('error', (err) => fail(new Error(`cannot run ${DOCKER_CLI}: ${err.message}`)));

    const stdoutDone = options.stdout
      ? pipeline(child.stdout!, options.stdout)
      : new Promise<void>((res) => {
          child.stdout!.on('data', (chunk: Buffer) => stdoutChunks.push(chunk));
          child.stdout!.on('end', res);
        });
    stdoutDone.catch((err: Error) => fail(new Error(`docker ${args[0]}: writing stdout failed: ${err.message}`)));
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      if (stderr.length < STDERR_LIMIT) stderr += chunk;
    });

    const input = options.input;
    if (input !== undefined) {
      // The command may exit without reading all of its input (a usage error);
      // that EPIPE is not the failure worth reporting, the exit status is.
      child.stdin!.on('error', () => {});
      if (input instanceof Readable) {
        input.on('error', (err) => fail(new Error(`docker ${args[0]}: reading input failed: ${err.message}`)));
        input.pipe(child.stdin!);
      } else {
        child.stdin!.end(input);
      }
    }

    child.on('close', (code, signal) => {
      void stdoutDone.then(() => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const status = code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0);
        resolvePromise({ stdout: Buffer.concat(stdoutChunks), stderr, code: status });
      }, () => {});
    });
  });
}

/** Like {@link runDocker} but throws, with the command's stderr, unless it exits 0. */
export async function runDockerOk(target: DockerTarget, args: readonly string[], options?: DockerRunOptions): Promise<DockerResult> {
  const result = await runDocker(target, args, options);
  if (result.code !== 0) {
    throw new Error(`docker ${args.join(' ')} failed (exit ${result.code}): ${result.stderr.trim() || '(no stderr)'}`);
  }
  return result;
}

function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * Why a test dockerd cannot be started on this machine, or undefined when the
 * prerequisites are there (Linux, root, dockerd, containerd, runc, the CLI).
 */
export function dockerdPrerequisiteProblem(): string | undefined {
  if (process.platform !== 'linux') return `dockerd needs Linux (this is ${process.platform})`;
  const uid = process.getuid?.();
  if (uid !== 0) return `dockerd needs root (running as uid ${uid})`;
  if (!findExecutable('dockerd')) return 'dockerd is not installed (Debian: apt-get install docker.io)';
  if (!findExecutable('containerd')) return 'containerd is not installed (Debian: apt-get install containerd)';
  if (!findExecutable('runc')) return 'runc is not installed (Debian: apt-get install runc)';
  if (!existsSync(DOCKER_CLI)) return `docker CLI ${DOCKER_CLI} is not installed (Debian: apt-get install docker.io)`;
  return undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function processName(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isSafeInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Resolves once `pid` has exited, or false after `timeoutMs`. */
async function waitForExit(pid: number, timeoutMs: number, child?: ChildProcess): Promise<boolean> {
  if (child && child.exitCode === null && child.signalCode === null) {
    return new Promise((res) => {
      const timer = setTimeout(() => res(!isAlive(pid)), timeoutMs);
      child.once('exit', () => {
        clearTimeout(timer);
        res(true);
      });
    });
  }
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid) && !isZombie(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((res) => setTimeout(res, 100));
  }
  return true;
}

function isZombie(pid: number): boolean {
  try {
    return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return true;
  }
}

/** Mount points at or below `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  const mounts: string[] = [];
  let table: string;
  try {
    table = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return mounts;
  }
  for (const line of table.split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    const mountPoint = field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
    if (mountPoint === dir || mountPoint.startsWith(`${dir}/`)) mounts.push(mountPoint);
  }
  return mounts.sort((a, b) => b.length - a.length);
}

function run(command: string, args: string[]): Promise<number> {
  return new Promise((res) => {
    const child = spawn(command, args, { stdio: 'ignore' });
    child.on('error', () => res(-1));
    child.on('close', (code) => res(code ?? -1));
  });
}

/**
 * Removes a test dockerd's state directory, but only once nothing is mounted
 * below it: a container's bind mount of a host directory would otherwise have
 * that directory's contents deleted through it.
 */
async function removeStateDir(dir: string): Promise<void> {
  for (const mountPoint of mountsUnder(dir)) await run('umount', ['-l', mountPoint]);
  const left = mountsUnder(dir);
  if (left.length > 0) {
    process.stderr.write(`strata test dockerd: leaving ${dir} in place, still mounted: ${left.join(', ')}\n`);
    return;
  }
  await rm(dir, { recursive: true, force: true });
}

async function terminate(pid: number | undefined, expectedName: string, child?: ChildProcess): Promise<void> {
  if (pid === undefined || !isAlive(pid)) return;
  // The pid file may be stale and the number reused by something else.
  if (!child && processName(pid) !== expectedName) return;
  process.kill(pid, 'SIGTERM');
  if (await waitForExit(pid, 30_000, child)) return;
  process.kill(pid, 'SIGKILL');
  await waitForExit(pid, 10_000, child);
}

/**
 * Stops and removes test dockerds left by runs that died without their
 * teardown (killed runner, crashed machine). A directory counts as stale when
 * the process whose id it carries is gone.
 */
export async function cleanupStaleTestDockerds(parent = tmpdir()): Promise<void> {
  let names: string[];
  try {
    names = readdirSync(parent).filter((name) => name.startsWith(TEST_DOCKER_DIR_PREFIX));
  } catch {
    return;
  }
  for (const name of names) {
    const owner = Number.parseInt(name.slice(TEST_DOCKER_DIR_PREFIX.length), 10);
    if (!Number.isSafeInteger(owner) || owner === process.pid || isAlive(owner)) continue;
    const dir = join(parent, name);
    await terminate(readPid(join(dir, 'docker.pid')), 'dockerd');
    await terminate(readPid(join(dir, 'exec', 'containerd', 'containerd.pid')), 'containerd');
    await removeStateDir(dir);
  }
}

function ping(socketPath: string): Promise<boolean> {
  return new Promise((res) => {
    const req = request({ socketPath, path: '/_ping', method: 'GET', timeout: 2000 }, (response) => {
      response.resume();
      res(response.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => res(false));
    req.end();
  });
}

function logTail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Options for {@link startTestDockerd}. */
export interface StartOptions {
  /** Parent of the state directory (default: the OS temp dir). */
  parent?: string;
  /** How long to wait for the daemon to answer (default 60 s). */
  readyTimeoutMs?: number;
  /** Storage drivers to try in order (default overlay2, then vfs). */
  storageDrivers?: string[];
}

async function startWithDriver(dir: string, storageDriver: string, readyTimeoutMs: number): Promise<TestDockerd> {
  await removeStateDir(dir);
  await mkdir(join(dir, 'cli-config'), { recursive: true });
  const socketPath = join(dir, 'docker.sock');
  const configFile = join(dir, 'daemon.json');
  // An explicit empty config keeps the host's /etc/docker/daemon.json (hosts,
  // registry mirrors, a different data root) from leaking into the test daemon.
  await writeFile(configFile, '{}\n');
  const logFile = join(dir, 'dockerd.log');
  const logFd = openSync(logFile, 'a');
  const tag = `strata-test-${process.pid}`;
  const args = [
    '--host', `unix://${socketPath}`,
    '--data-root', join(dir, 'data'),
    '--exec-root', join(dir, 'exec'),
    '--pidfile', join(dir, 'docker.pid'),
    '--config-file', configFile,
    '--iptables=false',
    '--ip6tables=false',
    '--bridge=none',
    '--storage-driver', storageDriver,
    // If a system containerd is running, dockerd connects to it instead of
    // starting its own; separate namespaces keep parallel test daemons apart.
    '--containerd-namespace', tag,
    '--containerd-plugins-namespace', `${tag}-plugins`,
    '--shutdown-timeout', '5',
    '--log-level', 'warn',
  ];
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin` };
  delete env.DOCKER_HOST;
  delete env.NOTIFY_SOCKET;
  const child = spawn('dockerd', args, { stdio: ['ignore', logFd, logFd], env });
  closeSync(logFd);
  // The runner must be able to exit even if teardown is never reached.
  child.unref();

  const target: DockerTarget = { host: `unix://${socketPath}`, configDir: join(dir, 'cli-config') };
  const stop = async (): Promise<void> => {
    await terminate(child.pid, 'dockerd', child);
    await terminate(readPid(join(dir, 'exec', 'containerd', 'containerd.pid')), 'containerd');
    await removeStateDir(dir);
  };

  let exited: string | undefined;
  child.on('exit', (code, signal) => {
    exited = `dockerd exited (${signal ?? `status ${code}`})`;
  });
  child.on('error', (err) => {
    exited = `cannot start dockerd: ${err.message}`;
  });

  // Readiness, not a test delay: poll the API socket until it answers, the
  // daemon dies, or the bound runs out.
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (exited !== undefined) {
      const reason = `${exited} with --storage-driver ${storageDriver}:\n${logTail(logFile)}`;
      await stop();
      throw new Error(reason);
    }
    if (await ping(socketPath)) break;
    if (Date.now() > deadline) {
      const reason = `dockerd did not answer on ${socketPath} within ${readyTimeoutMs} ms:\n${logTail(logFile)}`;
      await stop();
      throw new Error(reason);
    }
    await new Promise((res) => setTimeout(res, 100));
  }

  try {
    const version = await runDockerOk(target, ['version', '--format', '{{.Server.Version}}']);
    const driver = await runDockerOk(target, ['info', '--format', '{{.Driver}}']);
    const daemon: TestDockerd = {
      ...target,
      dir,
      storageDriver: driver.stdout.toString().trim(),
      serverVersion: version.stdout.toString().trim(),
      stop,
    };
    // The daemon is only useful if it can run a container: overlay2 may start
    // and still fail to mount on some backing file systems.
    await ensureBusyboxImageOn(daemon);
    await runDockerOk(daemon, ['run', '--rm', '--network', 'none', BUSYBOX_IMAGE, 'true']);
    return daemon;
  } catch (err) {
    const reason = `dockerd with --storage-driver ${storageDriver} is not usable: ${(err as Error).message}\n${logTail(logFile)}`;
    await stop();
    throw new Error(reason);
  }
}

/**
 * Starts a private dockerd and waits until it can run a container. Tries
 * overlay2 first and falls back to vfs.
 *
 * @throws Error explaining every attempt's failure, with the daemon log's tail
 */
export async function startTestDockerd(options: StartOptions = {}): Promise<TestDockerd> {
  const problem = dockerdPrerequisiteProblem();
  if (problem) throw new Error(problem);
  const parent = options.parent ?? tmpdir();
  const dir = join(parent, `${TEST_DOCKER_DIR_PREFIX}${process.pid}`);
  const failures: string[] = [];
  for (const driver of options.storageDrivers ?? ['overlay2', 'vfs']) {
    try {
      return await startWithDriver(dir, driver, options.readyTimeoutMs ?? 60_000);
    } catch (err) {
      failures.push((err as Error).message);
    }
  }
  throw new Error(failures.join('\n---\n'));
}

/**
 * Makes sure `strata-test/busybox:latest` exists on the daemon, importing it
 * from a fresh {@link makeBusyboxRootfs} tree (no network involved) if not.
 *
 * @returns the image reference
 */
export async function ensureBusyboxImageOn(target: DockerTarget): Promise<string> {
  const present = await runDocker(target, ['image', 'inspect', '--format', '{{.Id}}', BUSYBOX_IMAGE]);
  if (present.code === 0) return BUSYBOX_IMAGE;
  const work = await mkdtemp(join(tmpdir(), 'strata-busybox-'));
  try {
    const rootfs = join(work, 'rootfs');
    await makeBusyboxRootfs(rootfs);
    const tar = spawn('tar', ['--sort=name', '--numeric-owner', '--owner=0', '--group=0', '-C', rootfs, '-cf', '-', '.'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let tarStderr = '';
    tar.stderr.setEncoding('utf8').on('data', (chunk: string) => (tarStderr += chunk));
    const tarExit = new Promise<number>((res) => {
      tar.on('error', () => res(-1));
      tar.on('close', (code) => res(code ?? -1));
    });
    const imported = await runDocker(
      target,
      ['import', '--change', `ENV PATH=${BUSYBOX_PATH}`, '--change', 'CMD ["sh"]', '-', BUSYBOX_IMAGE],
      { input: tar.stdout },
    );
    const tarCode = await tarExit;
    if (tarCode !== 0) throw new Error(`tar of the busybox rootfs failed (exit ${tarCode}): ${tarStderr.trim()}`);
    if (imported.code !== 0) throw new Error(`docker import of ${BUSYBOX_IMAGE} failed: ${imported.stderr.trim()}`);
    return BUSYBOX_IMAGE;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** True for the values CI systems set `CI` to. */
export function isCi(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = env.CI?.toLowerCase();
  return value !== undefined && value !== '' && value !== '0' && value !== 'false';
}
