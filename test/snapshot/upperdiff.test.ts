import { spawnSync } from 'node:child_process';
import { chmod, link, lstat, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UpperDirError, changesetFromUpper, isOverlayWhiteout, readOpaque } from '../../src/snapshot/upperdiff.js';
import { makeWhiteouts, setXattrs } from '../../src/tar/extract.js';
import { isRoot } from './helpers.js';

const hasGetfattr = spawnSync('sh', ['-c', 'command -v getfattr'], { stdio: 'ignore' }).status === 0;
/** Crafting trusted.overlay.* needs root; the user namespace works for anyone. */
const ns = isRoot ? 'trusted' : 'user';

let work: string;
let upper: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'strata-upper-'));
  upper = join(work, 'upper');
  await mkdir(upper);
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function xattr(rel: string, name: string, value: string | Buffer): Promise<void> {
  await setXattrs([{ path: rel === '' ? upper : join(upper, rel), xattrs: { [name]: Buffer.from(value) } }]);
}

const diff = (opts: Parameters<typeof changesetFromUpper>[1] = {}) => changesetFromUpper(upper, { overlayXattrs: ns, ...opts });

describe.skipIf(!hasGetfattr)('changesetFromUpper (skipped: getfattr missing)', () => {
  it('turns files, whiteouts and opaque directories into entries, deletions and opaque dirs, in archive order', async () => {
    await mkdir(join(upper, 'etc'));
    await writeFile(join(upper, 'etc/z.conf'), 'zz');
    await writeFile(join(upper, 'etc/a.conf'), 'a');
    await makeWhiteouts([join(upper, 'etc/removed'), join(upper, 'gone')]);
    await mkdir(join(upper, 'opt/app'), { recursive: true });
    await xattr('opt/app', `${ns}.overlay.opaque`, 'y');
    await writeFile(join(upper, 'opt/app/fresh'), 'fresh');
    await symlink('etc/a.conf', join(upper, 'link'));
    await chmod(join(upper, 'etc/a.conf'), 0o600);

    const cs = await diff();
    expect(cs.entries.map((e) => `${e.header.type} ${e.header.path}`)).toEqual([
      'directory etc',
      'file etc/a.conf',
      'file etc/z.conf',
      'symlink link',
      'directory opt',
      'directory opt/app',
      'file opt/app/fresh',
    ]);
    expect(cs.deletions).toEqual(['etc/removed', 'gone']);
    expect(cs.opaqueDirs).toEqual(['opt/app']);
    const conf = cs.entries.find((e) => e.header.path === 'etc/a.conf')!;
    expect(conf.header).toMatchObject({ mode: 0o600, size: 1, uid: process.geteuid!(), gid: process.getegid!() });
    expect(conf.sourcePath).toBe(join(upper, 'etc/a.conf'));
    expect(cs.entries.find((e) => e.header.path === 'link')!.header.linkname).toBe('etc/a.conf');
  });

  it('reads whiteouts that share one inode (as the kernel makes them since 5.8) as deletions, not hardlinks', async () => {
    await makeWhiteouts([join(upper, 'a')]);
    await link(join(upper, 'a'), join(upper, 'b'));
    await mkdir(join(upper, 'd'));
    await link(join(upper, 'a'), join(upper, 'd/c'));
    const cs = await diff();
    expect(cs.deletions).toEqual(['a', 'b', 'd/c']);
    expect(cs.entries.map((e) => e.header.path)).toEqual(['d']);
  });

  it('keeps hardlinks within the upper as hardlink entries to the first path', async () => {
    await writeFile(join(upper, 'one'), 'shared');
    await link(join(upper, 'one'), join(upper, 'two'));
    const cs = await diff();
    expect(cs.entries.map((e) => [e.header.path, e.header.type, e.header.linkname])).toEqual([
      ['one', 'file', undefined],
      ['two', 'hardlink', 'one'],
    ]);
  });

  it('keeps file capabilities and user xattrs, drops overlayfs bookkeeping', async () => {
    await writeFile(join(upper, 'ping'), 'elf');
    await mkdir(join(upper, 'dir'));
    // Version-2 VFS capability blob: cap_net_raw permitted + effective.
    const capability = Buffer.from('0100000200200000000000000000000000000000', 'hex');
    if (isRoot) await xattr('ping', 'security.capability', capability);
    await xattr('ping', 'user.note', 'hi');
    await xattr('dir', `${ns}.overlay.origin`, Buffer.from([0, 1, 2]));
    await xattr('dir', `${ns}.overlay.impure`, 'y');
    const cs = await diff();
    const ping = cs.entries.find((e) => e.header.path === 'ping')!;
    expect(ping.header.xattrs).toEqual({ ...(isRoot ? { 'security.capability': capability } : {}), 'user.note': Buffer.from('hi') });
    expect(cs.entries.find((e) => e.header.path === 'dir')!.header.xattrs).toBeUndefined();
    expect(cs.opaqueDirs).toEqual([]);
  });

  it("does not take opaque=x (a directory holding xattr whiteouts) for opacity, and reads xattr whiteouts as deletions", async () => {
    await mkdir(join(upper, 'd'));
    await xattr('d', `${ns}.overlay.opaque`, 'x');
    await writeFile(join(upper, 'd/hidden'), '');
    await xattr('d/hidden', `${ns}.overlay.whiteout`, 'y');
    const cs = await diff();
    expect(cs.opaqueDirs).toEqual([]);
    expect(cs.deletions).toEqual(['d/hidden']);
  });

  it('an opaque upper root makes the root opaque', async () => {
    await xattr('', `${ns}.overlay.opaque`, 'y');
    await writeFile(join(upper, 'only'), '');
    expect((await diff()).opaqueDirs).toEqual(['']);
  });

  it('refuses a redirected directory with a message that says how to mount', async () => {
    await mkdir(join(upper, 'renamed'));
    await xattr('renamed', `${ns}.overlay.redirect`, '/original');
    const failure = diff();
    await expect(failure).rejects.toBeInstanceOf(UpperDirError);
    await expect(failure).rejects.toThrow(/renamed lower directory .*"\/original".*redirect_dir=off/);
  });

  it('refuses a file named like a whiteout', async () => {
    await writeFile(join(upper, '.wh.sneaky'), '');
    await expect(diff()).rejects.toThrow(/\.wh\.sneaky: names starting with \.wh\. are reserved/);
  });

  it('metacopy files: refused without lower dirs, read from the lower that holds the data otherwise', async () => {
    const lowerTop = join(work, 'lower-top');
    const lowerBottom = join(work, 'lower-bottom');
    await mkdir(join(lowerTop, 'bin'), { recursive: true });
    await mkdir(join(lowerBottom, 'bin'), { recursive: true });
    await writeFile(join(lowerBottom, 'bin/tool'), 'real data');
    await mkdir(join(upper, 'bin'));
    await writeFile(join(upper, 'bin/tool'), '');
    await chmod(join(upper, 'bin/tool'), 0o700);
    await xattr('bin/tool', `${ns}.overlay.metacopy`, Buffer.from([0, 1]));

    await expect(diff()).rejects.toThrow(/metadata-only copy-up .*pass lowerDirs, or mount with metacopy=off/);
    const cs = await diff({ lowerDirs: [lowerTop, lowerBottom] });
    const tool = cs.entries.find((e) => e.header.path === 'bin/tool')!;
    expect(tool.header).toMatchObject({ type: 'file', mode: 0o700, size: 'real data'.length });
    expect(tool.sourcePath).toBe(join(lowerBottom, 'bin/tool'));

    // An opaque directory in the top lower hides the bottom one's data.
    await xattr(join('..', 'lower-top', 'bin'), `${ns}.overlay.opaque`, 'y');
    await expect(diff({ lowerDirs: [lowerTop, lowerBottom] })).rejects.toThrow(/no lower directory holds its data/);
  });

  it('refuses something that is not a directory', async () => {
    await writeFile(join(work, 'file'), '');
    await expect(changesetFromUpper(join(work, 'file'))).rejects.toBeInstanceOf(UpperDirError);
  });
});

describe('isOverlayWhiteout and readOpaque', () => {
  it('a 0/0 character device is a whiteout; files, directories and other devices are not', async () => {
    await makeWhiteouts([join(upper, 'wh')]);
    await writeFile(join(upper, 'file'), '');
    expect(isOverlayWhiteout(await lstat(join(upper, 'wh')))).toBe(true);
    expect(isOverlayWhiteout(await lstat(join(upper, 'wh'), { bigint: true }))).toBe(true);
    expect(isOverlayWhiteout(await lstat(join(upper, 'file')))).toBe(false);
    expect(isOverlayWhiteout(await lstat(upper))).toBe(false);
    expect(isOverlayWhiteout(await lstat('/dev/null'))).toBe(false);
  });

  it.skipIf(!hasGetfattr)('readOpaque is true only for opaque=y, never through a symlink (skipped: getfattr missing)', async () => {
    await mkdir(join(upper, 'yes'));
    await mkdir(join(upper, 'no'));
    await mkdir(join(upper, 'x'));
    await xattr('yes', `${ns}.overlay.opaque`, 'y');
    await xattr('x', `${ns}.overlay.opaque`, 'x');
    await symlink('yes', join(upper, 'link'));
    expect(await readOpaque(join(upper, 'yes'), ns)).toBe(true);
    expect(await readOpaque(join(upper, 'no'), ns)).toBe(false);
    expect(await readOpaque(join(upper, 'x'), ns)).toBe(false);
    expect(await readOpaque(join(upper, 'link'), ns)).toBe(false);
    await expect(readOpaque(join(upper, 'missing'), ns)).rejects.toThrow(/missing/);
  });
});
