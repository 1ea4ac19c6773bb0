/**
 * `docker diff`: the expected outputs below are what Docker 20.10 printed
 * for the same base tree and commands (with its map order replaced by name
 * order); the same changes are made through ContainerFs, by processes in a
 * mounted overlay, and, when the test dockerd is there, by docker itself.
 */
import { chmod, mkdir, mkdtemp, symlink, utimes, lutimes, writeFile, readdir, copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diff, formatChanges } from '../../src/container/diff.js';
import { ContainerFs } from '../../src/container/fs.js';
import { tarFromTree } from '../../src/tar/write.js';
import { dockerAvailable, dockerOk } from '../helpers/docker.js';
import { canMountOverlay, execFileAsync, isRoot, makeImage, mountOverlay, sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
let base: string;
const overlayOk = await canMountOverlay();

const APPLETS = ['sh', 'echo', 'mkdir', 'rm', 'mv', 'touch', 'ln', 'cat', 'chmod'];

beforeAll(async () => {
  sb = await sandbox();
  base = join(sb.dir, 'base');
  for (const dir of ['bin', 'app', 'etc/sub', 'data/keep']) await mkdir(join(base, dir), { recursive: true });
  await copyFile('/bin/busybox', join(base, 'bin/busybox'));
  await chmod(join(base, 'bin/busybox'), 0o755);
  for (const applet of APPLETS) await symlink('busybox', join(base, 'bin', applet));
  await writeFile(join(base, 'app/app.py'), 'print(1)\n');
  await writeFile(join(base, 'etc/sub/f'), 'x\n');
  await writeFile(join(base, 'data/keep/k'), 'k\n');
  const when = new Date('2020-01-01T00:00:00Z');
  const stamp = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      if (e.isDirectory()) await stamp(join(dir, e.name));
      else await lutimes(join(dir, e.name), when, when);
    }
    await utimes(dir, when, when);
  };
  await stamp(base);
  await makeImage(sb.images, 'diffbase:1', [{ dir: base }]);
});

afterAll(async () => {
  await sb.cleanup();
});

interface Case {
  name: string;
  /** What the container does (docker: `sh -c`; mounted overlay: run in its root, so paths are relative). */
  shell: string;
  api: (f: ContainerFs) => Promise<void>;
  expected: string;
}

const CASES: Case[] = [
  {
    name: 'a new file and an appended lower file',
    shell: 'echo t > temp.txt; echo more >> app/app.py',
    api: async (f) => {
      await f.writeFile('/temp.txt', 't\n');
      await f.writeFile('/app/app.py', 'more\n', { flag: 'a' });
    },
    expected: 'C /app\nC /app/app.py\nA /temp.txt\n',
  },
  {
    name: 'a recreated (opaque) directory and a deleted file',
    shell: 'rm -rf etc/sub; mkdir etc/sub; echo n > etc/sub/g; rm data/keep/k',
    api: async (f) => {
      await f.rm('/etc/sub', { recursive: true });
      await f.mkdir('/etc/sub');
      await f.writeFile('/etc/sub/g', 'n\n');
      await f.rm('/data/keep/k');
    },
    expected: 'C /data\nC /data/keep\nD /data/keep/k\nC /etc\nC /etc/sub\nA /etc/sub/g\nD /etc/sub/f\n',
  },
  {
    name: 'a renamed lower directory and a chmod',
    shell: 'mv etc/sub etc/sub2; chmod 600 app/app.py',
    api: async (f) => {
      await f.rename('/etc/sub', '/etc/sub2');
      await f.chmod('/app/app.py', 0o600);
    },
    expected: 'C /app\nC /app/app.py\nC /etc\nA /etc/sub2\nA /etc/sub2/f\nD /etc/sub\n',
  },
  {
    name: 'many additions',
    shell: 'touch zz aa mm app/b app/a app/c; mkdir q; touch q/x',
    api: async (f) => {
      for (const p of ['/zz', '/aa', '/mm', '/app/b', '/app/a', '/app/c']) await f.writeFile(p, '');
      await f.mkdir('/q');
      await f.writeFile('/q/x', '');
    },
    expected: 'A /aa\nC /app\nA /app/a\nA /app/b\nA /app/c\nA /mm\nA /q\nA /q/x\nA /zz\n',
  },
  {
    name: 'a chmod of a lower directory',
    shell: 'chmod 700 etc/sub',
    api: (f) => f.chmod('/etc/sub', 0o700),
    expected: 'C /etc\nC /etc/sub\n',
  },
  {
    name: 'a changed mtime',
    shell: 'touch -d 2021-01-01 etc/sub/f',
    api: (f) => f.utimes('/etc/sub/f', new Date('2021-01-01T00:00:00Z'), new Date('2021-01-01T00:00:00Z')),
    expected: 'C /etc\nC /etc/sub\nC /etc/sub/f\n',
  },
];

describe.skipIf(!isRoot)('diff (needs root: whiteouts and opaque markers)', () => {
  it('is empty for a fresh container', async () => {
    expect(await diff(await sb.containers.create('diffbase:1'))).toEqual([]);
  });

  for (const c of CASES) {
    it(`matches docker diff through the API: ${c.name}`, async () => {
      const container = await sb.containers.create('diffbase:1');
      await c.api(await ContainerFs.open(container));
      expect(formatChanges(await diff(container))).toBe(c.expected);
    });

    it.skipIf(!overlayOk)(`matches docker diff after processes in an overlay mount: ${c.name}`, async () => {
      const container = await sb.containers.create('diffbase:1');
      const mnt = await mkdtemp(join(sb.dir, 'mnt-'));
      const unmount = await mountOverlay(await container.lowerDirs(), container.upperDir, container.workDir, mnt);
      try {
        await execFileAsync('sh', ['-c', c.shell], { cwd: mnt });
      } finally {
        await unmount();
      }
      expect(formatChanges(await diff(container))).toBe(c.expected);
    });
  }
});

describe.skipIf(!isRoot)('diff against the test dockerd', () => {
  it.skipIf(!dockerAvailable())('gives the same changes as docker diff', async () => {
    const tag = `strata-test/diffbase:${process.pid}`;
    await dockerOk(['import', '-', tag], { input: tarFromTree(base) });
    try {
      for (const c of CASES) {
        const name = `strata-diff-${process.pid}-${CASES.indexOf(c)}`;
        await dockerOk(['run', '--name', name, '--network', 'none', tag, 'sh', '-c', `cd / && ${c.shell}`]);
        try {
          const out = (await dockerOk(['diff', name])).stdout.toString('utf8');
          const theirs = out.trim().split('\n').sort();
          const ours = c.expected.trim().split('\n').sort();
          expect(theirs, c.name).toEqual(ours);
        } finally {
          await dockerOk(['rm', '-f', name]);
        }
      }
    } finally {
      await dockerOk(['rmi', '-f', tag]);
    }
  });
});

describe.skipIf(!isRoot)('the runtime’s init layer', () => {
  it('is seen through the container’s file system but, as in Docker, is not part of its diff', async () => {
    const container = await sb.containers.create('diffbase:1');
    // What the runtime makes at first start (see src/container/run.ts).
    await mkdir(join(container.initDir, 'etc'), { recursive: true });
    await writeFile(join(container.initDir, '.dockerenv'), '');
    await writeFile(join(container.initDir, 'etc/hosts'), '');
    const fsys = await ContainerFs.open(container);
    expect(await fsys.exists('/.dockerenv')).toBe(true);
    expect(await fsys.readdir('/etc')).toEqual(['hosts', 'sub']);
    expect(await diff(container)).toEqual([]);
    await fsys.rm('/etc/hosts');
    await fsys.writeFile('/new', 'n');
    expect(formatChanges(await diff(container))).toBe('C /etc\nD /etc/hosts\nA /new\n');
  });
});
