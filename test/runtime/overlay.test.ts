import { execFileSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mountOverlay, OverlayError, overlaySupported, unmount } from '../../src/runtime/overlay.js';
import { hasOverlay, isRoot } from './helpers.js';

const canMount = isRoot && hasOverlay;

function mountOptions(target: string): string | undefined {
  const line = execFileSync('cat', ['/proc/self/mountinfo'], { encoding: 'utf8' })
    .split('\n')
    .find((l) => l.split(' ')[4] === target);
  return line;
}

describe.skipIf(!canMount)('overlay mounts (needs root and overlayfs)', () => {
  let scratch: string;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'strata-overlay-'));
  });

  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  async function dirs(name: string, lowerCount: number, lowerName = (i: number) => `lower${i}`) {
    const base = join(scratch, name);
    const lowers = Array.from({ length: lowerCount }, (_, i) => join(base, lowerName(i)));
    const [upper, work, target] = ['upper', 'work', 'merged'].map((d) => join(base, d)) as [string, string, string];
    for (const dir of [...lowers, upper, work, target]) await mkdir(dir, { recursive: true });
    return { lowers, upper, work, target };
  }

  it('stacks lowers topmost first and records changes in the upper dir', async () => {
    const { lowers, upper, work, target } = await dirs('basic', 2);
    await writeFile(join(lowers[0]!, 'shared'), 'top');
    await writeFile(join(lowers[1]!, 'shared'), 'bottom');
    await writeFile(join(lowers[1]!, 'gone'), 'x');
    const release = await mountOverlay({ lowerDirs: lowers, upperDir: upper, workDir: work, target });
    try {
      expect(await readFile(join(target, 'shared'), 'utf8')).toBe('top');
      await rm(join(target, 'gone'));
      await writeFile(join(target, 'new'), 'n');
      expect(mountOptions(target)).toContain(' - overlay overlay ');
    } finally {
      await release();
    }
    await release(); // idempotent
    expect(mountOptions(target)).toBeUndefined();
    expect((await lstat(join(upper, 'gone'))).isCharacterDevice()).toBe(true);
    expect(await readFile(join(upper, 'new'), 'utf8')).toBe('n');
    expect(await readdir(lowers[1]!)).toEqual(['gone', 'shared']);
  });

  it('mounts through short links when paths are too long for one page or contain option syntax', async () => {
    // 60 lowers with ~120-character paths: about 7 KiB of lowerdir= as absolute paths.
    const { lowers, upper, work, target } = await dirs('many-layers', 60, (i) => `layer-${String(i).padStart(3, '0')}-${'x'.repeat(100)}`);
    for (const [i, lower] of lowers.entries()) await writeFile(join(lower, `f${i}`), String(i));
    const release = await mountOverlay({ lowerDirs: lowers, upperDir: upper, workDir: work, target });
    try {
      expect((await readdir(target)).length).toBe(60);
      expect(await readFile(join(target, 'f59'), 'utf8')).toBe('59');
    } finally {
      await release();
    }

    const odd = await dirs('odd,name:with"chars', 1);
    await writeFile(join(odd.lowers[0]!, 'file'), 'ok');
    const releaseOdd = await mountOverlay({ lowerDirs: odd.lowers, upperDir: odd.upper, workDir: odd.work, target: odd.target });
    try {
      expect(await readFile(join(odd.target, 'file'), 'utf8')).toBe('ok');
    } finally {
      await releaseOdd();
    }
    // The scratch link directories are gone.
    expect((await readdir(tmpdir())).filter((name) => name.startsWith('strata-ovl-'))).toEqual([]);
  });

  it('mounts two or more lowers read-only without an upper', async () => {
    const { lowers, target } = await dirs('readonly', 2);
    await writeFile(join(lowers[1]!, 'f'), 'x');
    const release = await mountOverlay({ lowerDirs: lowers, target });
    try {
      await expect(writeFile(join(target, 'g'), 'y')).rejects.toMatchObject({ code: 'EROFS' });
      expect(await readFile(join(target, 'f'), 'utf8')).toBe('x');
    } finally {
      await release();
    }
  });

  it('refuses unusable arguments and reports mount failures', async () => {
    const { lowers, upper, work, target } = await dirs('errors', 1);
    await expect(mountOverlay({ lowerDirs: [], upperDir: upper, workDir: work, target })).rejects.toThrow('at least one lower directory is needed');
    await expect(mountOverlay({ lowerDirs: lowers, upperDir: upper, target })).rejects.toThrow('upperDir and workDir go together');
    await expect(mountOverlay({ lowerDirs: lowers, target })).rejects.toThrow('needs two or more lower directories');
    await expect(mountOverlay({ lowerDirs: new Array(501).fill(lowers[0]), upperDir: upper, workDir: work, target })).rejects.toThrow('overlayfs stacks at most 500');
    const failure = await mountOverlay({ lowerDirs: [join(scratch, 'missing')], upperDir: upper, workDir: work, target }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(OverlayError);
    expect((failure as Error).message).toMatch(/^cannot mount overlay on .*errors\/merged \(1 lower dir with upper .*\): mount: /);
  });

  it('fails on a mount that stays busy, or detaches it lazily when asked', async () => {
    const { lowers, upper, work, target } = await dirs('busy', 1);
    await writeFile(join(lowers[0]!, 'held'), 'x');
    await mountOverlay({ lowerDirs: lowers, upperDir: upper, workDir: work, target });
    const held = await open(join(target, 'held'), 'r');
    try {
      await expect(unmount(target)).rejects.toThrow(/^cannot unmount .*busy\/merged: .*busy/);
      expect(mountOptions(target)).toBeDefined();
      await unmount(target, { lazyFallback: true });
      expect(mountOptions(target)).toBeUndefined();
    } finally {
      await held.close();
    }
  });

  it('treats unmounting something not mounted as done', async () => {
    const { target } = await dirs('unmounted', 0);
    await expect(unmount(target)).resolves.toBeUndefined();
  });

  it('reports support, and proves it with a test mount', async () => {
    expect(await overlaySupported()).toBe(true);
    expect(await overlaySupported(join(scratch, 'probe'))).toBe(true);
    expect(await readdir(join(scratch, 'probe'))).toEqual([]);
  });
});

it.skipIf(isRoot)('says overlay is unsupported when not root', async () => {
  expect(await overlaySupported()).toBe(false);
});
