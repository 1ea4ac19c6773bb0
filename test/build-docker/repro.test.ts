/**
 * Issue 3 acceptance: reproducible builds. The same Dockerfile and context,
 * checked out twice (different paths, different mtimes) and built on two
 * EMPTY strata stores:
 * - with SOURCE_DATE_EPOCH, the two images have the same manifest digest
 *   (and so the same config and layers), RUN steps included;
 * - without it, every COPY/ADD layer blob is still byte-identical.
 * No docker involved; RUN needs root, runc or crun, and overlayfs.
 */
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build, type BuildOptions, type BuildResult } from '../../src/build/engine.js';
import { checkRuntimeUsable, findRuntime } from '../../src/runtime/detect.js';
import { overlaySupported } from '../../src/runtime/overlay.js';
import { Strata } from '../../src/strata.js';
import { BUSYBOX_BINARY } from '../helpers/busybox.js';
import { prepareContext } from '../helpers/compare.js';

async function runUnavailableReason(): Promise<string> {
  try {
    await findRuntime(undefined, { purpose: 'build' });
    await checkRuntimeUsable({ purpose: 'build' });
    return (await overlaySupported()) ? '' : 'overlayfs cannot be mounted here';
  } catch (err) {
    return (err as Error).message;
  }
}
const noRunReason = await runUnavailableReason();

const EPOCH = 1_700_000_000;

/** Sets every mtime under `dir` (symlinks included) to `seconds`. */
async function touchTree(dir: string, seconds: number): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await touchTree(path, seconds);
    if (!entry.isSymbolicLink()) await utimes(path, seconds, seconds);
  }
  await utimes(dir, seconds, seconds);
}

describe('reproducible builds on two empty stores', () => {
  let work = '';
  let vendorTarGz: Buffer;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'strata-bd-repro-'));
    const vendor = join(work, 'vendor-src');
    await mkdir(join(vendor, 'lib'), { recursive: true });
    await writeFile(join(vendor, 'lib', 'vendored.txt'), 'vendored\n');
    const tar = execFileSync('tar', ['--sort=name', '--numeric-owner', '--owner=0', '--group=0', '--mtime=2020-01-01 00:00Z', '-C', vendor, '-cf', '-', '.']);
    vendorTarGz = gzipSync(tar);
  });
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** A fresh checkout of the fixture (its own path), with all mtimes set to `mtime`, built on a fresh empty store. */
  async function buildFresh(name: string, mtime: number, options: Partial<BuildOptions>): Promise<{ strata: Strata; result: BuildResult }> {
    const contextDir = await prepareContext(
      {
        name,
        fixture: 'repro',
        async prepare(ctx) {
          await copyFile(BUSYBOX_BINARY, join(ctx, 'busybox'));
          await writeFile(join(ctx, 'vendor.tar.gz'), vendorTarGz);
          await touchTree(ctx, mtime);
        },
      },
      work,
    );
    const root = join(work, `root-${name}`);
    const strata = await Strata.open({ root });
    expect(await strata.list()).toEqual([]);
    const result = await build({ content: strata.content, images: strata.images, root: strata.root }, { contextDir, tags: ['repro:latest'], ...options });
    return { strata, result };
  }

  it.skipIf(noRunReason !== '')(`with SOURCE_DATE_EPOCH: the same manifest digest, RUN steps included${noRunReason ? ` (RUN unavailable: ${noRunReason})` : ''}`, async () => {
    const first = await buildFresh('epoch-a', 1_600_000_000, { sourceDateEpoch: EPOCH });
    const second = await buildFresh('epoch-b', 1_650_000_000, { sourceDateEpoch: EPOCH });
    expect(second.result.manifestDigest).toBe(first.result.manifestDigest);
    expect(second.result.id).toBe(first.result.id);
    const image = await first.strata.images.resolve('repro:latest');
    const when = new Date(EPOCH * 1000).toISOString().replace('.000Z', 'Z');
    expect(image.config.created).toBe(when);
    expect(new Set(image.config.history?.map((entry) => entry.created))).toEqual(new Set([when]));
    // Two RUN steps really ran and left layers.
    expect(image.manifest.layers).toHaveLength(5);
  });

  it('without SOURCE_DATE_EPOCH: COPY and ADD layers are byte-identical whatever the checkout', async () => {
    const first = await buildFresh('plain-a', 1_600_000_000, { dockerfile: 'Dockerfile.norun' });
    const second = await buildFresh('plain-b', 1_650_000_000, { dockerfile: 'Dockerfile.norun' });
    const one = await first.strata.images.resolve('repro:latest');
    const two = await second.strata.images.resolve('repro:latest');
    expect(one.manifest.layers).toHaveLength(3);
    expect(two.manifest.layers.map((layer) => layer.digest)).toEqual(one.manifest.layers.map((layer) => layer.digest));
    expect(two.config.rootfs.diff_ids).toEqual(one.config.rootfs.diff_ids);
  });

  it.skipIf(noRunReason !== '')(`without SOURCE_DATE_EPOCH and with RUN: the COPY and ADD layers are still byte-identical${noRunReason ? ` (RUN unavailable: ${noRunReason})` : ''}`, async () => {
    const first = await buildFresh('run-a', 1_600_000_000, {});
    const second = await buildFresh('run-b', 1_650_000_000, {});
    const layersOf = async (strata: Strata) => (await strata.images.resolve('repro:latest')).manifest.layers.map((layer) => layer.digest);
    const one = await layersOf(first.strata);
    const two = await layersOf(second.strata);
    // Layers: COPY busybox, RUN --install, COPY app, ADD vendor, RUN state.
    for (const index of [0, 2, 3]) expect(two[index], `layer ${index}`).toBe(one[index]);
  });
});
