/**
 * Issue 4 acceptance, through the `strata` binary:
 *
 * 1. A container's changes are its own: `strata run` changes a file of the
 *    image and adds one, `strata diff` reports them as `docker diff` does, a
 *    second container sees the image unchanged, and `strata rm` discards them.
 * 2. Volumes outlive containers: data written to a volume (created
 *    beforehand, created on first use, given with `--mount`) or to a bind-mounted
 *    host directory is there for the next container; a volume in use cannot be
 *    removed.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBusyboxRootfs } from '../helpers/busybox.js';
import { strata as runStrata, workspace, type RunOptions, type RunResult } from '../cli/helpers.js';
import { canRunContainers, NEEDS_CONTAINERS } from '../runtime/helpers.js';

let ws: Awaited<ReturnType<typeof workspace>>;
const IMAGE = 'acceptance/app:1';

function strata(args: string[], options?: RunOptions): Promise<RunResult> {
  return runStrata(['--root', ws.root, ...args], options);
}

async function ok(args: string[], options?: RunOptions): Promise<string> {
  const result = await strata(args, options);
  expect(result.stderr, `strata ${args.join(' ')}`).toBe('');
  expect(result.code, `strata ${args.join(' ')}`).toBe(0);
  return result.stdout;
}

beforeAll(async () => {
  if (!canRunContainers) return;
  ws = await workspace('strata-issue4-');
  const rootfs = join(ws.dir, 'rootfs');
  await makeBusyboxRootfs(rootfs);
  await mkdir(join(rootfs, 'app'));
  await writeFile(join(rootfs, 'app/app.py'), 'print("hello from app")\n');
  await ok(['import', '--change', 'CMD ["sh"]', rootfs, IMAGE]);
});

afterAll(async () => {
  await ws?.cleanup();
});

describe.skipIf(!canRunContainers)(`issue 4 acceptance through the CLI (${NEEDS_CONTAINERS})`, () => {
  it('1: a container\'s changes show in diff, stay out of other containers, and go with rm', async () => {
    await ok(['run', '--name', 'c1', IMAGE, 'sh', '-c', 'echo new > /temp.txt; echo changed >> /app/app.py']);
    expect(await ok(['diff', 'c1'])).toBe('C /app\nC /app/app.py\nA /temp.txt\n');

    expect(await ok(['run', '--rm', IMAGE, 'cat', '/app/app.py'])).toBe('print("hello from app")\n');
    const missing = await strata(['run', '--rm', IMAGE, 'cat', '/temp.txt']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/temp\.txt.*No such file or directory/);

    const id = (await ok(['ps', '-a', '-q', '--no-trunc'])).trim();
    const containerDir = join(ws.root, 'strata', 'containers', id);
    expect(await readFile(join(containerDir, 'upper', 'temp.txt'), 'utf8')).toBe('new\n');
    expect(await ok(['rm', 'c1'])).toBe('c1\n');
    expect(existsSync(containerDir)).toBe(false);
    const gone = await strata(['diff', 'c1']);
    expect(gone).toMatchObject({ code: 1, stdout: '', stderr: 'strata: No such container: c1\n' });
    expect(await ok(['ps', '-a', '-q'])).toBe('');
  });

  it('2: volume data outlives containers (created before, created on use, --mount, bind), and a volume in use cannot be removed', async () => {
    expect(await ok(['volume', 'create', 'data_volume'])).toBe('data_volume\n');
    const writerId = (await ok(['create', '--name', 'writer', '-v', 'data_volume:/var/lib/data', IMAGE, 'sh', '-c', 'echo x > /var/lib/data/f'])).trim();
    await ok(['start', '-a', 'writer']);
    const refused = await strata(['volume', 'rm', 'data_volume']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(`strata: remove data_volume: volume is in use - [${writerId}]\n`);
    await ok(['rm', 'writer']);
    expect(await ok(['run', '--rm', '-v', 'data_volume:/var/lib/data', IMAGE, 'cat', '/var/lib/data/f'])).toBe('x\n');

    // A volume that did not exist yet is created by the first run.
    await ok(['run', '--rm', '-v', 'made_on_use:/data', IMAGE, 'sh', '-c', 'echo y > /data/g']);
    expect(await ok(['volume', 'ls', '-q'])).toBe('data_volume\nmade_on_use\n');
    expect(await ok(['run', '--rm', '-v', 'made_on_use:/elsewhere', IMAGE, 'cat', '/elsewhere/g'])).toBe('y\n');

    // --mount type=volume, new and existing.
    await ok(['run', '--rm', '--mount', 'type=volume,source=mounted,target=/m', IMAGE, 'sh', '-c', 'echo z > /m/h']);
    expect(await ok(['run', '--rm', '--mount', 'type=volume,src=mounted,dst=/m,readonly', IMAGE, 'cat', '/m/h'])).toBe('z\n');

    // A bind mount of a host directory.
    const host = join(ws.dir, 'host-data');
    await mkdir(host);
    await ok(['run', '--rm', '-v', `${host}:/host`, IMAGE, 'sh', '-c', 'echo w > /host/i']);
    expect(await readFile(join(host, 'i'), 'utf8')).toBe('w\n');
    expect(await ok(['run', '--rm', '--mount', `type=bind,src=${host},dst=/again`, IMAGE, 'cat', '/again/i'])).toBe('w\n');

    // Nothing uses the volumes any more: now they can go.
    expect(await ok(['volume', 'rm', 'data_volume', 'made_on_use', 'mounted'])).toBe('data_volume\nmade_on_use\nmounted\n');
  });
});
