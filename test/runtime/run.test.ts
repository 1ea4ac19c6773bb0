import { watch } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findRuntime, type RuntimeInfo } from '../../src/runtime/detect.js';
import { etcFiles, prepareInitLayer } from '../../src/runtime/initlayer.js';
import { mountOverlay } from '../../src/runtime/overlay.js';
import { ContainerIdInUseError, ContainerRuntimeError, InvalidContainerIdError, runProcess, type ProcessResult } from '../../src/runtime/run.js';
import { buildSpec, resolveUser, type NetworkMode, type ProcessSpecOptions } from '../../src/runtime/spec.js';
import { canRunContainers, Collector, makeRootfs, NEEDS_CONTAINERS } from './helpers.js';

describe.skipIf(!canRunContainers)(`runProcess with runc (${NEEDS_CONTAINERS})`, () => {
  let scratch: string;
  let lower: string;
  let initLayer: string;
  let stateDir: string;
  let runtime: RuntimeInfo;
  let counter = 0;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'strata-run-'));
    lower = await makeRootfs(join(scratch, 'lower'));
    initLayer = join(scratch, 'init');
    await prepareInitLayer(initLayer, { lowerDirs: [lower] });
    stateDir = join(scratch, 'state');
    runtime = await findRuntime('runc');
  });

  afterAll(async () => {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  interface Run {
    result: ProcessResult;
    stdout: string;
    stderr: string;
    upper: string;
  }

  /** Runs `args` in a fresh container: overlay of [init, lower] with its own upper dir. */
  async function run(
    args: string[],
    opts: Omit<ProcessSpecOptions, 'args'> & {
      userSpec?: string;
      stdin?: NodeJS.ReadableStream;
      stdout?: Collector;
      signal?: AbortSignal;
      id?: string;
      network?: NetworkMode;
    } = {},
  ): Promise<Run> {
    const dir = join(scratch, `c${counter++}`);
    const [upper, work, merged, etc] = ['upper', 'work', 'merged', 'etc'].map((name) => join(dir, name)) as [string, string, string, string];
    for (const d of [upper, work, merged]) await mkdir(d, { recursive: true });
    const release = await mountOverlay({ lowerDirs: [initLayer, lower], upperDir: upper, workDir: work, target: merged });
    try {
      const network = opts.network ?? 'none';
      const hostname = opts.hostname ?? 'strata-test';
      const files = await etcFiles(etc, { hostname, network });
      const user = opts.userSpec !== undefined ? await resolveUser(merged, opts.userSpec) : undefined;
      const spec = buildSpec({ ...opts, args, hostname, network, user, binds: [...files.mounts, ...(opts.binds ?? [])] });
      const stdout = opts.stdout ?? new Collector();
      const stderr = new Collector();
      const result = await runProcess({ runtime, rootfs: merged, spec, stateDir, stdout, stderr, stdin: opts.stdin ?? null, signal: opts.signal, id: opts.id });
      return { result, stdout: stdout.text, stderr: stderr.text, upper };
    } finally {
      await release();
    }
  }

  it('streams stdout and stderr separately, returns the exit code, and leaves changes only in the upper dir', async () => {
    const { result, stdout, stderr, upper } = await run(['sh', '-c', 'echo hello; echo err >&2; touch /newfile; rm /bin/cat; exit 3']);
    expect(result.exitCode).toBe(3);
    expect(stdout).toBe('hello\n');
    expect(stderr).toBe('err\n');
    expect((await stat(join(upper, 'newfile'))).isFile()).toBe(true);
    const whiteout = await lstat(join(upper, 'bin', 'cat'));
    expect(whiteout.isCharacterDevice()).toBe(true);
    expect(whiteout.rdev).toBe(0);
    // The lower layer is untouched.
    expect((await lstat(join(lower, 'bin', 'cat'))).isSymbolicLink()).toBe(true);
    await expect(lstat(join(lower, 'newfile'))).rejects.toMatchObject({ code: 'ENOENT' });
    // Mount points and bind targets came from the init layer, not the upper dir.
    expect((await readdir(upper)).sort()).toEqual(['bin', 'newfile']);
    expect(await readdir(join(upper, 'bin'))).toEqual(['cat']);
  });

  it('binds /etc/hosts, /etc/hostname and /etc/resolv.conf so writes to them stay out of the upper dir', async () => {
    const { result, stdout, upper } = await run(['sh', '-c', 'head -1 /etc/hosts; echo "10.1.1.1 added" >> /etc/hosts; ls -a /.dockerenv']);
    expect(result.exitCode).toBe(0);
    expect(stdout).toBe('127.0.0.1\tlocalhost\n/.dockerenv\n');
    expect(await readdir(upper)).toEqual([]);
  });

  it('runs as the user -u names, with its supplementary groups', async () => {
    const { result, stdout } = await run(['id'], { userSpec: 'app' });
    expect(result.exitCode).toBe(0);
    expect(stdout).toMatch(/^uid=1000\(app\) gid=1000\(app\) groups=2000\(extra\)\n$/);
  });

  it('runs as root by default with Docker\'s hostname, HOME and PATH', async () => {
    const { stdout } = await run(['sh', '-c', 'id -u; hostname; cat /etc/hostname; echo "$HOSTNAME $HOME $PATH"']);
    expect(stdout).toBe('0\nstrata-test\nstrata-test\nstrata-test /root /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n');
  });

  it('uses the working directory and passes the environment', async () => {
    const { stdout } = await run(['sh', '-c', 'pwd; echo "$GREETING"; echo "$PATH"'], { cwd: '/tmp', env: ['GREETING=hi there', 'PATH=/bin'] });
    expect(stdout).toBe('/tmp\nhi there\n/bin\n');
  });

  it('with network none sees only loopback', async () => {
    const { stdout } = await run(['cat', '/proc/net/dev']);
    const interfaces = stdout.split('\n').slice(2).filter((line) => line.trim() !== '').map((line) => line.split(':')[0]!.trim());
    expect(interfaces).toEqual(['lo']);
  });

  it('with network host sees the host interfaces', async () => {
    const { readFile } = await import('node:fs/promises');
    const hostInterfaces = (await readFile('/proc/net/dev', 'utf8')).split('\n').slice(2).filter((l) => l.trim() !== '').map((l) => l.split(':')[0]!.trim()).sort();
    const { stdout } = await run(['cat', '/proc/net/dev'], { network: 'host' });
    const interfaces = stdout.split('\n').slice(2).filter((line) => line.trim() !== '').map((line) => line.split(':')[0]!.trim()).sort();
    expect(interfaces).toEqual(hostInterfaces);
  });

  it('has Docker\'s /dev, a read-only /proc/sys, and masked /proc/keys and /sys/firmware', async () => {
    const { stdout } = await run([
      'sh',
      '-c',
      'ls /dev; echo ---; echo 1 > /proc/sys/kernel/hostname 2>/dev/null && echo writable || echo readonly; wc -c < /proc/keys; ls /sys/firmware | wc -l',
    ]);
    const [dev, rest] = stdout.split('---\n') as [string, string];
    expect(dev.trim().split('\n')).toEqual(
      expect.arrayContaining(['null', 'zero', 'full', 'random', 'urandom', 'tty', 'ptmx', 'pts', 'shm', 'mqueue']),
    );
    expect(rest.split('\n').map((line) => line.trim())).toEqual(['readonly', '0', '0', '']);
  });

  it('copies stdin into the process', async () => {
    const { stdout } = await run(['wc', '-c'], { stdin: Readable.from([Buffer.from('12345'), Buffer.from('678')]) });
    expect(stdout.trim()).toBe('8');
  });

  it('runs containers concurrently under distinct random ids', async () => {
    const runs = await Promise.all([0, 1, 2].map((i) => run(['sh', '-c', `echo run${i}`])));
    expect(runs.map((r) => r.stdout)).toEqual(['run0\n', 'run1\n', 'run2\n']);
    expect(new Set(runs.map((r) => r.result.id)).size).toBe(3);
    expect(await readdir(stateDir)).toEqual([]);
  });

  it('kills the process when aborted, and cleans up', async () => {
    const controller = new AbortController();
    const stdout = new Collector();
    const pending = run(['sh', '-c', 'echo started; sleep 600; echo survived'], { signal: controller.signal, stdout });
    await stdout.waitFor('started\n');
    controller.abort(new Error('stop it'));
    await expect(pending).rejects.toThrow('stop it');
    expect(stdout.text).toBe('started\n');
    expect(await readdir(stateDir)).toEqual([]);
  });

  // Abort at three moments: while the bundle is written (before the runtime
  // starts), when the runtime creates the container's state (before the
  // process exists), and when the process has just been started.
  it.each([
    ['the bundle is written', 'bundle', 'config.json'],
    ['the runtime creates its state', 'state', undefined],
    ['the runtime writes the pid file', 'bundle', 'pid'],
  ] as const)('kills a container aborted when %s', async (_moment, watched, file) => {
    const dir = join(scratch, `early-abort-${counter++}`);
    const [upper, work, merged, bundleDir, runState] = ['upper', 'work', 'merged', 'bundle', 'state'].map((name) => join(dir, name)) as [
      string,
      string,
      string,
      string,
      string,
    ];
    for (const d of [upper, work, merged, bundleDir, runState]) await mkdir(d, { recursive: true });
    const release = await mountOverlay({ lowerDirs: [initLayer, lower], upperDir: upper, workDir: work, target: merged });
    try {
      const controller = new AbortController();
      const watcher = watch(watched === 'bundle' ? bundleDir : runState, (_event, name) => {
        if (file === undefined || name === file) controller.abort(new Error('early'));
      });
      const stdout = new Collector();
      try {
        const spec = buildSpec({ args: ['sh', '-c', 'echo running; sleep 600'] });
        const pending = runProcess({ runtime, rootfs: merged, spec, stateDir: runState, bundleDir, stdout, stderr: new Collector(), signal: controller.signal });
        await expect(pending).rejects.toThrow('early');
      } finally {
        watcher.close();
      }
      expect(await readdir(runState)).toEqual([]);
      // The caller's bundle directory stays; what was written into it goes.
      expect(await readdir(bundleDir)).toEqual([]);
    } finally {
      await release();
    }
  });

  it('does not start a run whose signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort(new Error('too late'));
    const spec = buildSpec({ args: ['true'] });
    await expect(
      runProcess({ runtime, rootfs: lower, spec, stateDir, stdout: new Collector(), stderr: new Collector(), signal: controller.signal }),
    ).rejects.toThrow('too late');
  });

  it('reports a missing executable as a runtime error with exit code 127', async () => {
    const error = await run(['/bin/no-such-program']).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(ContainerRuntimeError);
    expect((error as ContainerRuntimeError).exitCode).toBe(127);
    expect((error as Error).message).toMatch(/no-such-program/);
  });

  it('refuses an invalid id and an id in use', async () => {
    await expect(run(['true'], { id: '../escape' })).rejects.toBeInstanceOf(InvalidContainerIdError);
    const stdin = new PassThrough();
    const stdout = new Collector();
    const first = run(['sh', '-c', 'echo ready; cat; echo done'], { id: 'strata-fixed-id', stdin, stdout });
    await stdout.waitFor('ready\n');
    await expect(run(['true'], { id: 'strata-fixed-id' })).rejects.toBeInstanceOf(ContainerIdInUseError);
    stdin.end('x');
    expect((await first).stdout).toBe('ready\nxdone\n');
  });

  it('kills the process and rejects when an output stream fails', async () => {
    const failing = new Writable({
      write(_chunk, _enc, done) {
        done(new Error('sink broke'));
      },
    });
    const dir = join(scratch, 'sinkfail');
    const [upper, work, merged] = ['upper', 'work', 'merged'].map((name) => join(dir, name)) as [string, string, string];
    for (const d of [upper, work, merged]) await mkdir(d, { recursive: true });
    const release = await mountOverlay({ lowerDirs: [initLayer, lower], upperDir: upper, workDir: work, target: merged });
    try {
      const spec = buildSpec({ args: ['sh', '-c', 'echo one; sleep 600'] });
      await expect(runProcess({ runtime, rootfs: merged, spec, stateDir, stdout: failing, stderr: new Collector() })).rejects.toThrow('sink broke');
    } finally {
      await release();
    }
    expect(await readdir(stateDir)).toEqual([]);
  });
});

it('reports a runtime binary that cannot be started', async () => {
  const stateDir = await mkdtemp(join(tmpdir(), 'strata-run-missing-'));
  try {
    const error = await runProcess({
      runtime: { path: join(stateDir, 'no-such-runtime'), name: 'runc', version: '1' },
      rootfs: stateDir,
      spec: buildSpec({ args: ['true'] }),
      stateDir,
      stdout: new Collector(),
      stderr: new Collector(),
    }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(ContainerRuntimeError);
    expect((error as ContainerRuntimeError).exitCode).toBe(125);
    expect((error as Error).message).toMatch(/^cannot start OCI runtime .*no-such-runtime: spawn .* ENOENT$/);
  } finally {
    await rm(stateDir, { recursive: true, force: true });
  }
});
