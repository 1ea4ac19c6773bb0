/**
 * The container and volume commands of the `strata` binary: output formats
 * (docker's), exit statuses, and one-line errors.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readTar } from '../../src/tar/read.js';
import { makeBusyboxRootfs } from '../helpers/busybox.js';
import { canRunContainers, NEEDS_CONTAINERS } from '../runtime/helpers.js';
import { CLI, strata as runStrata, workspace, type RunOptions, type RunResult } from './helpers.js';

let ws: Awaited<ReturnType<typeof workspace>>;
const IMAGE = 'cli/box:1';

function strata(args: string[], options?: RunOptions): Promise<RunResult> {
  return runStrata(['--root', ws.root, ...args], options);
}

async function ok(args: string[], options?: RunOptions): Promise<string> {
  const result = await strata(args, options);
  expect(result.stderr, `strata ${args.join(' ')}`).toBe('');
  expect(result.code, `strata ${args.join(' ')}`).toBe(0);
  return result.stdout;
}

async function fails(args: string[], code = 1, options?: RunOptions): Promise<string> {
  const result = await strata(args, options);
  expect(result.code, `strata ${args.join(' ')}`).toBe(code);
  expect(result.stderr.split('\n').filter(Boolean), 'one line').toHaveLength(1);
  return result.stderr;
}

async function tarNames(bytes: Buffer): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of readTar(Readable.from([bytes]))) {
    names.push(entry.header.path);
    entry.body.resume();
  }
  return names;
}

beforeAll(async () => {
  ws = await workspace('strata-cli-containers-');
  if (!canRunContainers) return;
  const rootfs = join(ws.dir, 'rootfs');
  await makeBusyboxRootfs(rootfs);
  await mkdir(join(rootfs, 'app/sub'), { recursive: true });
  await writeFile(join(rootfs, 'app/app.py'), 'print(1)\n');
  await writeFile(join(rootfs, 'app/sub/deep'), 'deep\n');
  await mkdir(join(rootfs, 'data'));
  await writeFile(join(rootfs, 'data/seed'), 'seed\n');
  await ok(['import', '--change', 'CMD ["sh"]', '--change', 'VOLUME /data', rootfs, IMAGE]);
});

/** No containers (running ones killed) and no volumes: each test starts from an empty store but for the image. */
async function reset(): Promise<void> {
  const ids = (await ok(['ps', '-a', '-q', '--no-trunc'])).split('\n').filter(Boolean);
  if (ids.length > 0) await ok(['rm', '-f', '-v', ...ids]);
  await ok(['volume', 'prune', '-a', '-f']);
}

afterAll(async () => {
  if (ws && canRunContainers) await reset();
  await ws?.cleanup();
});

describe('container commands without a container', () => {
  it('fail in one line with exit status 1', async () => {
    expect(await fails(['diff', 'nope'])).toBe('strata: No such container: nope\n');
    expect(await fails(['rm', 'nope'])).toBe('strata: No such container: nope\n');
    expect(await fails(['cp', '/a', '/b'])).toBe('strata: must specify at least one container source\n');
    expect(await fails(['cp', 'a:/x', 'b:/y'])).toBe('strata: copying between containers is not supported\n');
    expect(await fails(['volume', 'inspect', 'nope'])).toBe('strata: Error: get nope: no such volume\n');
    expect(await fails(['run', '--network', 'bridge', IMAGE])).toMatch(/^strata: option '--network <mode>' argument 'bridge' is invalid/);
  });

  it('ps prints only the header when there is nothing', async () => {
    expect(await ok(['ps'])).toBe('CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES\n');
    expect(await ok(['ps', '-a', '-q'])).toBe('');
  });
});

describe.skipIf(!canRunContainers)(`container commands (${NEEDS_CONTAINERS})`, () => {
  beforeEach(reset);

  it('create prints the id, ps shows it as docker does, start -a runs it', async () => {
    const id = (await ok(['create', '--name', 'made', IMAGE, 'sh', '-c', 'echo from made; exit 4'])).trim();
    expect(id).toMatch(/^[a-f0-9]{64}$/);
    const table = await ok(['ps', '-a']);
    const [header, row] = table.split('\n');
    expect(header).toMatch(/^CONTAINER ID +IMAGE +COMMAND +CREATED +STATUS +PORTS +NAMES$/);
    expect(row).toMatch(new RegExp(`^${id.slice(0, 12)} +cli/box:1 +"sh -c echo from mad…" +Less than a second ago +Created +made$`));
    expect(await ok(['ps', '-a', '-q', '--no-trunc'])).toContain(`${id}\n`);

    const started = await strata(['start', '-a', 'made']);
    expect(started).toMatchObject({ code: 4, stdout: 'from made\n', stderr: '' });
    expect(await ok(['ps', '-a', '--no-trunc'])).toMatch(new RegExp(`^${id} +cli/box:1 +"sh -c echo from made; exit 4" +\\S.* +Exited \\(4\\) .* ago +made$`, 'm'));
    expect(await ok(['ps'])).not.toContain('made');
    await ok(['rm', 'made']);
  });

  it('run exits with the process\'s status, and 127 with a one-line error for a missing command', async () => {
    expect(await strata(['run', '--rm', IMAGE, 'sh', '-c', 'echo out; echo err >&2; exit 3'])).toMatchObject({ code: 3, stdout: 'out\n', stderr: 'err\n' });
    // The runtime's own diagnosis is the one line.
    expect(await fails(['run', '--rm', IMAGE, 'no-such-command'], 127)).toMatch(/"no-such-command": executable file not found/);
    expect(await fails(['run', '--rm', IMAGE, '/app/app.py'], 126)).toMatch(/permission denied/);
    expect(await ok(['run', '--rm', '-e', 'GREETING=hi', '-w', '/app', '-u', 'nobody', IMAGE, 'sh', '-c', 'echo $GREETING; pwd; id -un'])).toBe('hi\n/app\nnobody\n');
    expect(await ok(['run', '--rm', '-i', IMAGE, 'cat'], { input: Buffer.from('piped in\n') })).toBe('piped in\n');
    expect(await ok(['ps', '-a', '-q'])).toBe('');
  });

  it('--rm removes the container however it is started; an unknown --runtime is refused at create', async () => {
    await ok(['create', '--rm', '--name', 'once', '-v', '/scratch', IMAGE, 'true']);
    expect((await ok(['volume', 'ls', '-q'])).split('\n').filter(Boolean)).toHaveLength(2);
    await ok(['start', '-a', 'once']);
    expect(await ok(['ps', '-a', '-q'])).toBe('');
    // Its anonymous volumes (the image's /data and /scratch) went with it.
    expect(await ok(['volume', 'ls', '-q'])).toBe('');

    expect(await fails(['create', '--runtime', '/nonexistent/runc', IMAGE])).toBe(
      'strata: cannot run containers: OCI runtime /nonexistent/runc is not an executable file\n',
    );
    expect(await ok(['ps', '-a', '-q'])).toBe('');
  });

  it.skipIf(!existsSync('/usr/bin/setpriv'))('says in one line that containers need root when run as another user (needs setpriv)', async () => {
    const root = join(ws.dir, 'nobody-root');
    // The workspace is private (0700); nobody must be able to reach its own store in it.
    await chmod(ws.dir, 0o711);
    await mkdir(root, { mode: 0o777 });
    await chmod(root, 0o777);
    const asNobody = (args: string[]): Promise<RunResult> =>
      new Promise((resolve, reject) => {
        const child = spawn('/usr/bin/setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, CLI, '--root', join(root, 'store'), ...args], {
          env: { PATH: process.env.PATH, HOME: root },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr, bytes: Buffer.from(stdout) }));
      });
    const tree = join(root, 'tree');
    await mkdir(join(tree, 'etc'), { recursive: true, mode: 0o755 });
    await writeFile(join(tree, 'etc/hostname'), 'x\n');
    await chmod(join(tree, 'etc/hostname'), 0o644);
    expect(await asNobody(['import', '--change', 'CMD ["true"]', tree, 'mine:1'])).toMatchObject({ code: 0, stderr: '' });
    const refused = await asNobody(['run', 'mine:1']);
    expect(refused).toMatchObject({
      code: 1,
      stdout: '',
      stderr: 'strata: cannot run containers: not running as root (rootless runtimes are not supported yet); run strata as root, e.g. with sudo\n',
    });
    // Created before start refused; `--rm` takes it away again.
    expect((await asNobody(['ps', '-a', '-q'])).stdout.split('\n').filter(Boolean)).toHaveLength(1);
    expect((await asNobody(['run', '--rm', 'mine:1'])).code).toBe(1);
    expect((await asNobody(['ps', '-a', '-q'])).stdout.split('\n').filter(Boolean)).toHaveLength(1);
  });

  it('start without -a runs the container in the background; rm refuses it, commit pauses it, rm -f kills it', async () => {
    await ok(['create', '--name', 'bg', IMAGE, 'sh', '-c', 'echo hi > /marker; exec sleep 300']);
    expect(await ok(['start', 'bg'])).toBe('bg\n');
    expect(await ok(['ps'])).toMatch(/^\S+ +cli\/box:1 +"sh -c echo hi > \/ma…" +.* ago +Up .* +bg$/m);
    expect(await fails(['rm', 'bg'])).toMatch(/^strata: cannot remove container "\/bg": container is running/);
    expect(await fails(['start', '-a', 'bg'])).toBe('strata: container bg is already running\n');
    expect((await ok(['commit', 'bg'])).trim()).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(await ok(['rm', '-f', 'bg'])).toBe('bg\n');
    expect(await ok(['ps', '-a', '-q'])).toBe('');
  });

  it('rm -v removes the anonymous volumes of the image VOLUME and -v /path, never named ones', async () => {
    const before: string[] = [];
    await ok(['run', '--name', 'vols', '-v', '/anon', '-v', 'named_one:/named', IMAGE, 'sh', '-c', 'cat /data/seed > /named/copy']);
    const during = (await ok(['volume', 'ls', '-q'])).split('\n').filter((v) => v !== '' && !before.includes(v));
    expect(during).toHaveLength(3);
    expect(await ok(['volume', 'ls', '-f', 'dangling=true', '-q'])).toBe(before.map((v) => `${v}\n`).join(''));
    expect(await ok(['rm', '-v', 'vols'])).toBe('vols\n');
    const after = (await ok(['volume', 'ls', '-q'])).split('\n').filter((v) => v !== '' && !before.includes(v));
    expect(after).toEqual(['named_one']);
    // The image's /data content was copied into its anonymous volume and read back from there.
    expect(await ok(['run', '--rm', '-v', 'named_one:/n', IMAGE, 'cat', '/n/copy'])).toBe('seed\n');
    await ok(['volume', 'rm', 'named_one']);
  });

  it('cp copies out to the host, in from the host, and streams tars both ways', async () => {
    await ok(['run', '--name', 'cpc', IMAGE, 'sh', '-c', 'echo made > /app/made']);
    const out = join(ws.dir, 'cp-out');
    await mkdir(out);
    await ok(['cp', 'cpc:/app', join(out, 'app-copy')]);
    expect(await readFile(join(out, 'app-copy/made'), 'utf8')).toBe('made\n');
    expect(await readFile(join(out, 'app-copy/sub/deep'), 'utf8')).toBe('deep\n');
    await ok(['cp', 'cpc:/app/app.py', out]);
    expect(await readFile(join(out, 'app.py'), 'utf8')).toBe('print(1)\n');
    await ok(['cp', 'cpc:/app/.', join(out, 'contents')]);
    expect(existsSync(join(out, 'contents/made'))).toBe(true);
    expect(await fails(['cp', 'cpc:/app', join(out, 'app.py')])).toBe('strata: cannot copy directory\n');
    expect(await fails(['cp', 'cpc:/missing', out])).toBe('strata: Could not find the file /missing in container cpc\n');
    expect(await fails(['cp', 'cpc:/app/app.py', join(out, 'no/such/dir/')])).toBe(`strata: stat ${join(out, 'no/such')}: no such file or directory\n`);

    const tar = await strata(['cp', 'cpc:/app', '-']);
    expect(tar.code).toBe(0);
    expect(await tarNames(tar.bytes)).toEqual(['app', 'app/app.py', 'app/made', 'app/sub', 'app/sub/deep']);

    await writeFile(join(out, 'host.txt'), 'from host\n');
    await ok(['cp', join(out, 'host.txt'), 'cpc:/app/']);
    await ok(['cp', '-', 'cpc:/'], { input: tar.bytes });
    expect(await ok(['diff', 'cpc'])).toBe('C /app\nA /app/host.txt\nA /app/made\n');
    await ok(['rm', 'cpc']);
  });

  it('export writes the whole file system as a tar; commit makes an image that runs with the changes', async () => {
    await ok(['run', '--name', 'ex', IMAGE, 'sh', '-c', 'echo exported > /new.txt; rm /app/app.py']);
    const tar = await strata(['export', 'ex']);
    expect(tar.code).toBe(0);
    const names = await tarNames(tar.bytes);
    expect(names).toContain('new.txt');
    expect(names).toContain('bin/busybox');
    expect(names).not.toContain('app/app.py');
    const file = join(ws.dir, 'ex.tar');
    await ok(['export', '-o', file, 'ex']);
    expect(await readFile(file)).toEqual(tar.bytes);

    const id = (await ok(['commit', '-c', 'ENV COMMITTED=yes', '-m', 'a message', '-a', 'Tester <t@example.com>', 'ex', 'cli/committed:1'])).trim();
    expect(id).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(await ok(['images', '-q', 'cli/committed'])).toBe(`${id.slice(7, 19)}\n`);
    expect(await ok(['run', '--rm', 'cli/committed:1', 'sh', '-c', 'cat /new.txt; echo $COMMITTED; ls /app'])).toBe('exported\nyes\nsub\n');
    expect((await ok(['history', 'cli/committed:1'])).split('\n')[1]).toMatch(/a message$/);

    // Docker refuses to remove an image a container uses.
    expect(await fails(['rmi', IMAGE])).toMatch(/^strata: conflict: unable to remove repository reference "cli\/box:1" \(must force\) - container [a-f0-9]{12} is using its referenced image [a-f0-9]{12}\n$/);
    await ok(['rm', 'ex']);
  });
});

describe.skipIf(!canRunContainers)(`volume commands (${NEEDS_CONTAINERS})`, () => {
  beforeEach(reset);

  it('create, ls, inspect, export, import, rm and prune as docker volume does', async () => {
    expect(await ok(['volume', 'create', '--label', 'team=a', 'vol_a'])).toBe('vol_a\n');
    expect(await ok(['volume', 'create', 'vol_a'])).toBe('vol_a\n');
    const anonymous = (await ok(['volume', 'create'])).trim();
    expect(anonymous).toMatch(/^[a-f0-9]{64}$/);
    expect(await ok(['volume', 'ls'])).toBe(`DRIVER    VOLUME NAME\nlocal     ${anonymous}\nlocal     vol_a\n`);
    expect(await ok(['volume', 'ls', '-q', '-f', 'label=team=a'])).toBe('vol_a\n');
    const [inspected] = JSON.parse(await ok(['volume', 'inspect', 'vol_a'])) as Record<string, unknown>[];
    expect(inspected).toMatchObject({ Driver: 'local', Labels: { team: 'a' }, Name: 'vol_a', Options: {}, Scope: 'local' });
    expect(inspected!.Mountpoint).toBe(join(ws.root, 'strata', 'volumes', 'vol_a', '_data'));

    await ok(['run', '--rm', '-v', 'vol_a:/v', IMAGE, 'sh', '-c', 'mkdir /v/d && echo content > /v/d/f']);
    const exported = await strata(['volume', 'export', 'vol_a']);
    expect(exported.code).toBe(0);
    expect(await tarNames(exported.bytes)).toEqual(['d', 'd/f']);
    await ok(['volume', 'import', 'vol_b', '-'], { input: exported.bytes });
    expect(await ok(['run', '--rm', '-v', 'vol_b:/v', IMAGE, 'cat', '/v/d/f'])).toBe('content\n');

    expect(await fails(['volume', 'rm', 'nope'])).toBe('strata: get nope: no such volume\n');
    expect(await ok(['volume', 'rm', '-f', 'nope'])).toBe('nope\n');

    // Declined at the prompt: nothing goes.
    expect(await ok(['volume', 'prune'], { input: Buffer.from('n\n') })).toBe(
      'WARNING! This will remove anonymous local volumes not used by at least one container.\nAre you sure you want to continue? [y/N] Total reclaimed space: 0B\n',
    );
    const pruned = await ok(['volume', 'prune'], { input: Buffer.from('y\n') });
    expect(pruned).toMatch(new RegExp(`\\[y/N\\] Deleted Volumes:\\n${anonymous}\\n\\nTotal reclaimed space: 0B\\n$`));
    const all = await ok(['volume', 'prune', '-a', '-f']);
    expect(all).toMatch(/^Deleted Volumes:\nvol_a\nvol_b\n\nTotal reclaimed space: 16B\n$/);
    expect(await ok(['volume', 'ls', '-q'])).toBe('');
  });
});
