/**
 * Issue 3, acceptance 3, the seed example: testdata/sample-app (an app.py
 * and static files, FROM scratch, no RUN) builds to the image `docker build`
 * makes, and a container that changes app.py records the change in its own
 * layer: the image's layer (blob, snapshot, exported tar) stays as it was,
 * and a commit adds a layer on top instead of touching the ones below.
 */
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/build/engine.js';
import { commit } from '../../src/container/commit.js';
import { ContainerStore } from '../../src/container/container-store.js';
import { diff } from '../../src/container/diff.js';
import { ContainerFs } from '../../src/container/fs.js';
import { Strata } from '../../src/strata.js';
import { expectSameBuild, openStrataWithBusybox, summarizeLayer } from '../helpers/compare.js';
import { dockerAvailable, dockerUnavailableReason } from '../helpers/docker.js';

const SAMPLE_APP = resolve(import.meta.dirname, '..', '..', 'testdata', 'sample-app');
const withDocker = dockerAvailable();

function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

describe('the seed example: testdata/sample-app', () => {
  let work = '';
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'strata-bd-seed-'));
  });

  it.skipIf(!withDocker)(`builds to the image docker build makes${withDocker ? '' : ` (${dockerUnavailableReason()})`}`, async () => {
    const strata = await openStrataWithBusybox(join(work, 'differential'));
    await expectSameBuild(strata, { name: 'sample-app', prepare: (ctx) => cp(SAMPLE_APP, ctx, { recursive: true }) }, work);
  });

  it("a container's change to app.py leaves the image's layer unchanged", async () => {
    const strata = await Strata.open({ root: join(work, 'store') });
    const built = await build({ content: strata.content, images: strata.images, root: strata.root }, { contextDir: SAMPLE_APP, tags: ['sample-app:1'] });
    const image = await strata.images.resolve('sample-app:1');
    // Layers, as Docker makes them: WORKDIR /app (on scratch it creates /app), requirements.txt, app.py, static/.
    expect(image.manifest.layers).toHaveLength(4);
    const appIndex = 2;
    const appLayer = image.manifest.layers[appIndex]!;
    const original = await readFile(join(SAMPLE_APP, 'app.py'));
    const layerBefore = await summarizeLayer(strata.exportLayer(appLayer.digest));
    expect(layerBefore.find((entry) => entry.path === 'app/app.py')?.sha256).toBe(sha256Hex(original));

    const containers = await ContainerStore.open(strata.root, { images: strata.images });
    const container = await containers.create('sample-app:1', { name: 'seed' });
    const fs = await ContainerFs.open(container);
    const patched = `${original.toString('utf8')}\n# patched inside the container\n`;
    await fs.writeFile('/app/app.py', patched);
    expect(await fs.readFile('/app/app.py', 'utf8')).toBe(patched);
    expect(await diff(container)).toEqual([
      { kind: 'C', path: '/app' },
      { kind: 'C', path: '/app/app.py' },
    ]);

    // The image did not change: same manifest, same blob, same layer content,
    // and the unpacked snapshot under the container still holds the original.
    const after = await strata.images.resolve('sample-app:1');
    expect(after.manifestDigest).toBe(built.manifestDigest);
    expect(after.manifest.layers[appIndex]).toEqual(appLayer);
    expect(await summarizeLayer(strata.exportLayer(appLayer.digest))).toEqual(layerBefore);
    const snapshots = await container.lowerDirs(); // top layer first
    expect(sha256Hex(await readFile(join(snapshots[snapshots.length - 1 - appIndex]!, 'app', 'app.py')))).toBe(sha256Hex(original));
    const report = await strata.fsck();
    expect(report.faults).toEqual([]);

    // A second container of the same image sees the original file.
    const other = await ContainerFs.open(await containers.create('sample-app:1', { name: 'seed-2' }));
    expect(await other.readFile('/app/app.py', 'utf8')).toBe(original.toString('utf8'));

    // Committing adds one layer with the change; the ones below are the image's own.
    const committed = await commit(container, { ref: 'sample-app:patched' });
    expect(committed.manifest.layers).toHaveLength(5);
    expect(committed.manifest.layers.slice(0, 4)).toEqual(image.manifest.layers);
    const top = await summarizeLayer(strata.exportLayer(committed.manifest.layers[4]!.digest));
    expect(top.map((entry) => entry.path)).toEqual(['app', 'app/app.py']);
    expect(top[1]!.sha256).toBe(sha256Hex(patched));
  });
});
