/**
 * Random sequences of changes, made once through ContainerFs and once by the
 * kernel in a mounted overlay of another container of the same image: each
 * change succeeds or fails alike, and the two trees end up the same.
 */
import { execFile } from 'node:child_process';
import { appendFile, chmod, link, mkdir, mkdtemp, readdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerFs } from '../../src/container/fs.js';
import { makeLayer } from '../../src/layer/make.js';
import { changesetFromUpper } from '../../src/snapshot/upperdiff.js';
import { canMountOverlay, hostOps, listing, makeFixtureImage, mountOverlay, sandbox, type Sandbox } from './helpers.js';

const execFileAsync = promisify(execFile);
const overlayOk = await canMountOverlay();
let sb: Sandbox;

beforeAll(async () => {
  sb = await sandbox();
  await makeFixtureImage(sb.images, sb.dir);
});

afterAll(async () => {
  await sb.cleanup();
});

// Paths of the fixture image (and new ones), none of them through its escaping symlinks.
const PATHS = ['/bin/tool', '/bin/tool-link', '/etc', '/etc/conf', '/etc/conf2', '/etc/new', '/data', '/data/one', '/data/sub', '/data/sub/two', '/data/x', '/share', '/share/doc', '/share/hard1', '/opq', '/opq/new', '/opq/old', '/new', '/new/deep'];
const TARGETS = ['etc', 'conf', 'data/one', 'nowhere'];

type Op =
  | { kind: 'write' | 'append' | 'rm' | 'mkdir'; path: string }
  | { kind: 'chmod'; path: string; mode: number }
  | { kind: 'rename' | 'link'; path: string; to: string }
  | { kind: 'symlink'; path: string; target: string };

const path = fc.constantFrom(...PATHS);
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constantFrom('write' as const, 'append' as const, 'rm' as const, 'mkdir' as const), path }),
  fc.record({ kind: fc.constant('chmod' as const), path, mode: fc.constantFrom(0o700, 0o644, 0o755) }),
  fc.record({ kind: fc.constantFrom('rename' as const, 'link' as const), path, to: path }),
  fc.record({ kind: fc.constant('symlink' as const), path, target: fc.constantFrom(...TARGETS) }),
);

async function viaApi(fsys: ContainerFs, o: Op): Promise<boolean> {
  try {
    switch (o.kind) {
      case 'write':
        await fsys.writeFile(o.path, `w ${o.path}\n`);
        break;
      case 'append':
        await fsys.writeFile(o.path, `a ${o.path}\n`, { flag: 'a' });
        break;
      case 'rm':
        await fsys.rm(o.path, { recursive: true });
        break;
      case 'mkdir':
        await fsys.mkdir(o.path, { mode: 0o755 });
        break;
      case 'chmod':
        await fsys.chmod(o.path, o.mode);
        break;
      case 'rename':
        await fsys.rename(o.path, o.to);
        break;
      case 'link':
        await fsys.link(o.path, o.to);
        break;
      case 'symlink':
        await fsys.symlink(o.target, o.path);
        break;
    }
    return true;
  } catch {
    return false;
  }
}

async function viaKernel(mnt: string, o: Op): Promise<boolean> {
  const at = (p: string): string => join(mnt, p);
  try {
    switch (o.kind) {
      case 'write':
        await writeFile(at(o.path), `w ${o.path}\n`);
        break;
      case 'append':
        await appendFile(at(o.path), `a ${o.path}\n`);
        break;
      case 'rm':
        await rm(at(o.path), { recursive: true });
        break;
      case 'mkdir':
        await mkdir(at(o.path), { mode: 0o755 });
        await chmod(at(o.path), 0o755);
        break;
      case 'chmod':
        await chmod(at(o.path), o.mode);
        break;
      case 'rename':
        try {
          await rename(at(o.path), at(o.to));
        } catch (err) {
          // overlayfs cannot rename a merged directory without redirects: mv copies and deletes
          // instead, replacing an empty directory and refusing a non-empty one, as rename(2) would.
          if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
          const existing = await readdir(at(o.to)).catch(() => undefined);
          if (existing !== undefined && existing.length > 0) return false;
          await rm(at(o.to), { recursive: true, force: true });
          await execFileAsync('mv', ['--', at(o.path), at(o.to)]);
        }
        break;
      case 'link':
        await link(at(o.path), at(o.to));
        break;
      case 'symlink':
        await symlink(o.target, at(o.path));
        break;
    }
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(!overlayOk)('ContainerFs against the kernel (needs root and overlayfs)', () => {
  it('random change sequences end in the same tree, with the same successes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 8 }), async (ops) => {
        const api = await sb.containers.create('fixture:1');
        const kernel = await sb.containers.create('fixture:1');
        const fsys = await ContainerFs.open(api);
        const mnt = await mkdtemp(join(sb.dir, 'mnt-'));
        const unmount = await mountOverlay(await kernel.lowerDirs(), kernel.upperDir, kernel.workDir, mnt);
        try {
          for (const o of ops) {
            const ours = await viaApi(fsys, o);
            const theirs = await viaKernel(mnt, o);
            expect(ours, JSON.stringify(o)).toBe(theirs);
          }
          expect(await listing(fsys)).toEqual(await listing(hostOps(mnt)));
          await unmount();
          // And the two upper dirs make the same layer (mtimes clamped: they are the only thing time-dependent).
          const layerOf = async (upper: string) =>
            (await makeLayer(sb.images.content, { changeset: await changesetFromUpper(upper) }, { compression: 'none', sourceDateEpoch: 946684800 })).diffId;
          expect(await layerOf(api.upperDir), JSON.stringify(ops)).toBe(await layerOf(kernel.upperDir));
        } finally {
          await unmount();
          await rm(mnt, { recursive: true });
          await sb.containers.remove(api.id);
          await sb.containers.remove(kernel.id);
        }
      }),
      { numRuns: Number(process.env.STRATA_FS_PROPERTY_RUNS ?? 25) },
    );
  });
});
