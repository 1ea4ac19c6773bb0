/**
 * Acceptance items 1 and 2: strata's archives against the real tools.
 *
 * 1. `save` (docker format) is accepted by `docker load` (Docker 20.10 here)
 *    and the image runs; skopeo reads the same file as a docker-archive and
 *    as an oci-archive, copies the OCI side to a layout, and reads the store
 *    root itself; umoci unpacks `--format oci` output and the store root.
 * 2. What `docker save` writes (20.10: the old form with `<id>/layer.tar`)
 *    loads, saved again keeps every diffID and the image ID, and that
 *    archive goes back into Docker and runs.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageStore } from '../../src/image/image-store.js';
import { importImage } from '../../src/archive/import.js';
import { docker, dockerAvailable, dockerOk, ensureBusyboxImage, makeBusyboxRootfs } from '../helpers/docker.js';
import { diffListings, loadFile, openStore, runOk, saveToFile, treeListing, workspace } from '../archive/helpers.js';
import { validateOciLayout } from '../archive/oci-layout-validator.js';

// Skip reasons: no test dockerd (outside CI only: dockerAvailable() throws
// under CI), skopeo or umoci not installed, or not root (umoci unpack needs
// root to give files their owners).
const hasDocker = dockerAvailable();
const hasTool = (name: string): boolean => spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
const hasSkopeo = hasTool('skopeo');
const hasUmoci = hasTool('umoci');
const isRoot = process.getuid?.() === 0;
/** Images this file creates in the shared test dockerd; names are unique to it. */
const PREFIX = `strata-interop-archive-${process.pid}`;

let ws: { dir: string; cleanup: () => Promise<void> };
let store: ImageStore;
let rootfsDir: string;
/** The busybox rootfs imported into the store as IMPORTED. */
const IMPORTED = `${PREFIX}/busybox:imported`;

beforeAll(async () => {
  ws = await workspace('strata-interop-archive-');
  store = await openStore(join(ws.dir, 'store'));
  rootfsDir = (await makeBusyboxRootfs(join(ws.dir, 'rootfs'))).dir;
  await importImage(store, { dir: rootfsDir }, { ref: IMPORTED, changes: ['ENV PATH=/bin', 'CMD ["sh"]'] });
});

afterAll(async () => {
  if (hasDocker) {
    const images = await docker(['images', '--format', '{{.Repository}}:{{.Tag}}', '--filter', `reference=${PREFIX}/*`]);
    const names = images.stdout.toString().split('\n').filter(Boolean);
    if (names.length > 0) await docker(['rmi', '-f', ...names]);
  }
  await ws?.cleanup();
});

async function skopeoJson<T>(...args: string[]): Promise<T> {
  return JSON.parse(await runOk('skopeo', args)) as T;
}

describe('strata save → other tools', () => {
  it.skipIf(!hasDocker)('docker load accepts the docker-format archive and the image runs', async () => {
    const file = join(ws.dir, 'imported.tar');
    await saveToFile(store, [IMPORTED], file);
    const loaded = await dockerOk(['load', '-i', file]);
    expect(loaded.stdout.toString()).toContain(`Loaded image: ${IMPORTED}`);
    const ours = await store.resolve(IMPORTED);
    const inspect = JSON.parse((await dockerOk(['image', 'inspect', IMPORTED])).stdout.toString()) as [{ Id: string; RootFS: { Layers: string[] } }];
    expect(inspect[0].Id).toBe(ours.id);
    expect(inspect[0].RootFS.Layers).toEqual(ours.config.rootfs.diff_ids);
    const ran = await dockerOk(['run', '--rm', '--network', 'none', IMPORTED, '/bin/busybox', 'echo', 'ok']);
    expect(ran.stdout.toString()).toBe('ok\n');
  });

  it.skipIf(!hasSkopeo)('skopeo reads the same file as a docker-archive and as an oci-archive, and copies it', async () => {
    const file = join(ws.dir, 'skopeo.tar');
    await saveToFile(store, [IMPORTED], file);
    const ours = await store.resolve(IMPORTED);

    const asDocker = await skopeoJson<{ Layers: string[] }>('inspect', `docker-archive:${file}`);
    expect(asDocker.Layers).toHaveLength(1);
    const dockerConfig = await skopeoJson<{ rootfs: { diff_ids: string[] } }>('inspect', '--config', `docker-archive:${file}`);
    expect(dockerConfig.rootfs.diff_ids).toEqual(ours.config.rootfs.diff_ids);

    const asOci = await skopeoJson<{ Digest: string; Layers: string[] }>('inspect', `oci-archive:${file}`);
    expect(asOci.Digest).toBe(ours.manifestDigest);
    expect(asOci.Layers).toEqual(ours.manifest.layers.map((l) => l.digest));

    const copied = join(ws.dir, 'skopeo-copy');
    await runOk('skopeo', ['copy', `oci-archive:${file}`, `oci:${copied}:copied`]);
    const layout = await validateOciLayout(copied, { strict: false });
    expect(layout.problems).toEqual([]);
    expect(layout.refs.get('copied')).toBe(ours.manifestDigest);
    // --format oci output copies too, by its ref.name (the tag).
    const ociFile = join(ws.dir, 'skopeo-oci.tar');
    await saveToFile(store, [IMPORTED], ociFile, 'oci');
    await runOk('skopeo', ['copy', `oci-archive:${ociFile}:imported`, `oci:${copied}:again`]);
    expect((await validateOciLayout(copied, { strict: false })).refs.get('again')).toBe(ours.manifestDigest);
  });

  it.skipIf(!hasSkopeo)('skopeo reads the store root as an OCI layout, by familiar name', async () => {
    const ours = await store.resolve(IMPORTED);
    const inspected = await skopeoJson<{ Digest: string }>('inspect', `oci:${store.root}:${IMPORTED}`);
    expect(inspected.Digest).toBe(ours.manifestDigest);
    const config = await skopeoJson<{ rootfs: { diff_ids: string[] } }>('inspect', '--config', `oci:${store.root}:${IMPORTED}`);
    expect(config.rootfs.diff_ids).toEqual(ours.config.rootfs.diff_ids);
  });

  it.skipIf(!hasUmoci || !isRoot)('umoci unpacks --format oci output and the store root into the imported tree', async () => {
    const expected = await treeListing(rootfsDir);
    const file = join(ws.dir, 'umoci.tar');
    await saveToFile(store, [IMPORTED], file, 'oci');
    const layoutDir = join(ws.dir, 'umoci-layout');
    await mkdir(layoutDir);
    await runOk('tar', ['-xf', file, '-C', layoutDir]);
    expect((await validateOciLayout(layoutDir)).problems).toEqual([]);

    const fromArchive = join(ws.dir, 'umoci-bundle-archive');
    await runOk('umoci', ['unpack', '--image', `${layoutDir}:imported`, fromArchive]);
    expect(diffListings(await treeListing(join(fromArchive, 'rootfs')), expected)).toEqual([]);

    const fromRoot = join(ws.dir, 'umoci-bundle-root');
    await runOk('umoci', ['unpack', '--image', `${store.root}:${IMPORTED}`, fromRoot]);
    expect(diffListings(await treeListing(join(fromRoot, 'rootfs')), expected)).toEqual([]);
    const config = JSON.parse(await readFile(join(fromRoot, 'config.json'), 'utf8')) as { process: { args: string[]; env: string[] } };
    expect(config.process.args).toEqual(['sh']);
    expect(config.process.env).toContain('PATH=/bin');
  });
});

describe('docker save → strata → docker', () => {
  const BUILT = `${PREFIX}/layers:built`;
  const DOCKERFILE = [
    'FROM strata-test/busybox:latest',
    'RUN mkdir -p /app/data && echo one > /app/data/a && echo two > /app/data/b && echo keep > /app/keep && ln -s data/a /app/link',
    'RUN rm /app/data/b && echo modified >> /app/data/a && echo three > /app/data/c && chmod 600 /app/keep',
    'RUN rm -rf /app/data && mkdir /app/data && echo fresh > /app/data/new',
    'ENV GREETING=hello',
    'CMD ["sh", "-c", "cat /app/keep /app/data/new; ls /app/data; readlink /app/link; echo $GREETING"]',
  ].join('\n');
  const EXPECTED_OUTPUT = 'keep\nfresh\nnew\ndata/a\nhello\n';

  beforeAll(async () => {
    if (!hasDocker) return;
    await ensureBusyboxImage();
    const context = join(ws.dir, 'build-context');
    await mkdir(context, { recursive: true });
    await writeFile(join(context, 'Dockerfile'), DOCKERFILE);
    await dockerOk(['build', '-q', '-t', BUILT, context], { env: { DOCKER_BUILDKIT: '0' } });
  });

  it.skipIf(!hasDocker)('loads docker save output (old form), keeps every diffID on save, and Docker loads and runs the result', async () => {
    const inspect = async (ref: string) =>
      (JSON.parse((await dockerOk(['image', 'inspect', ref])).stdout.toString()) as [{ Id: string; RootFS: { Layers: string[] } }])[0];
    const original = await inspect(BUILT);
    expect(original.RootFS.Layers.length).toBeGreaterThanOrEqual(4);
    expect((await dockerOk(['run', '--rm', '--network', 'none', BUILT])).stdout.toString()).toBe(EXPECTED_OUTPUT);

    const saved = join(ws.dir, 'docker-saved.tar');
    await dockerOk(['save', '-o', saved, BUILT]);
    // 20.10 writes the old form: <v1 id>/layer.tar and <config hex>.json, no index.json.
    const listing = await runOk('tar', ['-tf', saved]);
    expect(listing).toMatch(/^[a-f0-9]{64}\/layer\.tar$/m);
    expect(listing).not.toMatch(/^index\.json$/m);

    const loaded = await loadFile(store, saved);
    expect(loaded).toEqual([expect.objectContaining({ id: original.Id, tags: [BUILT] })]);
    const ours = await store.resolve(BUILT);
    expect(ours.config.rootfs.diff_ids).toEqual(original.RootFS.Layers);
    expect((await store.fsck()).ok).toBe(true);

    const resaved = join(ws.dir, 'strata-resaved.tar');
    await saveToFile(store, [BUILT], resaved);
    await dockerOk(['rmi', BUILT]);
    expect((await docker(['image', 'inspect', BUILT])).code).not.toBe(0);
    await dockerOk(['load', '-i', resaved]);
    const reloaded = await inspect(BUILT);
    expect(reloaded.Id).toBe(original.Id);
    expect(reloaded.RootFS.Layers).toEqual(original.RootFS.Layers);
    expect((await dockerOk(['run', '--rm', '--network', 'none', BUILT])).stdout.toString()).toBe(EXPECTED_OUTPUT);

    // And strata loads its own re-save into a fresh store to the same image.
    const other = await openStore(join(ws.dir, 'resaved-store'));
    const again = await loadFile(other, resaved);
    expect(again.map((l) => [l.id, l.tags])).toEqual([[original.Id, [BUILT]]]);
    expect((await other.resolve(BUILT)).config.rootfs.diff_ids).toEqual(original.RootFS.Layers);
  });

  it.skipIf(!hasDocker)('loads a docker save of several images sharing layers, with every tag', async () => {
    const second = `${PREFIX}/layers:second`;
    const third = `${PREFIX}/other:third`;
    await dockerOk(['tag', BUILT, second]);
    const context = join(ws.dir, 'build-third');
    await mkdir(context, { recursive: true });
    await writeFile(join(context, 'Dockerfile'), `FROM ${BUILT}\nRUN echo third > /third\n`);
    await dockerOk(['build', '-q', '-t', third, context], { env: { DOCKER_BUILDKIT: '0' } });
    const saved = join(ws.dir, 'docker-multi.tar');
    await dockerOk(['save', '-o', saved, BUILT, second, third, 'strata-test/busybox:latest']);
    const other = await openStore(join(ws.dir, 'multi-store'));
    const loaded = await loadFile(other, saved);
    expect(loaded.flatMap((l) => l.tags).sort()).toEqual([third, BUILT, second, 'strata-test/busybox:latest'].sort());
    for (const ref of [BUILT, second, third, 'strata-test/busybox:latest']) {
      const theirs = (JSON.parse((await dockerOk(['image', 'inspect', ref])).stdout.toString()) as [{ Id: string; RootFS: { Layers: string[] } }])[0];
      const ours = await other.resolve(ref);
      expect(ours.id).toBe(theirs.Id);
      expect(ours.config.rootfs.diff_ids).toEqual(theirs.RootFS.Layers);
    }
    const report = await other.fsck();
    expect(report.faults).toEqual([]);
  });
});
