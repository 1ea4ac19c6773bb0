/**
 * A build run without root gives the layers a build run as root gives. COPY
 * into a directory of the base image copies that directory up into the
 * layer; without root, the base image's snapshot belongs to the user who
 * unpacked it, and the layer must still record the image's owner (root), as
 * Docker does (snapshot/owners.ts).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Strata } from '../../src/strata.js';
import { makeTree, strata, strataAsNobody as asNobody, workspace } from './helpers.js';

const canDropRoot = process.geteuid?.() === 0 && existsSync('/usr/bin/setpriv');
const cleanups: Array<() => Promise<void>> = [];
afterAll(() => Promise.all(cleanups.map((c) => c())));

async function diffIds(root: string, ref: string): Promise<string[]> {
  const lib = await Strata.open({ root });
  return (await lib.images.resolve(ref)).config.rootfs.diff_ids;
}

describe('strata build without root', () => {
  it.skipIf(!canDropRoot)('gives the layers a root build gives, owners of copied-up directories included (needs root to switch to nobody, and setpriv)', async () => {
    const ws = await workspace('strata-build-unprivileged-');
    cleanups.push(ws.cleanup);
    // The workspace is private (0700); nobody must reach its own directory in it.
    await chmod(ws.dir, 0o711);
    const home = join(ws.dir, 'nobody');
    await mkdir(home);
    await chown(home, 65534, 65534);
    // A base image whose directories belong to root.
    const tree = await makeTree(ws.dir, 'rootfs');
    const rootfs = join(ws.dir, 'rootfs.tar');
    expect(spawnSync('tar', ['-C', tree, '--owner=0', '--group=0', '--numeric-owner', '--mtime=@1600000000', '-cf', rootfs, '.']).status).toBe(0);
    await chmod(rootfs, 0o644);
    const context = join(ws.dir, 'context');
    await mkdir(context, { mode: 0o755 });
    await writeFile(join(context, 'Dockerfile'), 'FROM base:1\nCOPY hello.txt /bin/hello.txt\nCOPY note.txt /etc/app/note.txt\n');
    await writeFile(join(context, 'hello.txt'), 'hello\n');
    await writeFile(join(context, 'note.txt'), 'note\n');
    await chmod(context, 0o755);

    const build = ['build', '-q', '--source-date-epoch', '1700000000', '-t', 'app:1', context];
    const nobodyRoot = join(home, 'store');
    expect(await asNobody(home, ['--root', nobodyRoot, 'import', rootfs, 'base:1'])).toMatchObject({ code: 0, stderr: '' });
    expect(await asNobody(home, ['--root', nobodyRoot, ...build])).toMatchObject({ code: 0, stderr: '' });
    expect(await strata(['--root', ws.root, 'import', rootfs, 'base:1'])).toMatchObject({ code: 0, stderr: '' });
    expect(await strata(['--root', ws.root, ...build])).toMatchObject({ code: 0, stderr: '' });

    const asRoot = await diffIds(ws.root, 'app:1');
    expect(asRoot).toHaveLength(3);
    expect(await diffIds(nobodyRoot, 'app:1')).toEqual(asRoot);
  });
});
