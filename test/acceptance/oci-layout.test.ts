/**
 * Acceptance item 3: for an image whose layers delete files, make
 * directories opaque and change files into directories and back, the output
 * of `save --format oci` follows the image-layout spec to the letter (see
 * ../archive/oci-layout-validator.ts), skopeo copies from it, and umoci
 * unpacks it into the same tree Docker exports for a container of the image.
 *
 * The image is built by Docker's classic builder, saved by `docker save`
 * (20.10: the old form) and loaded into strata, so every whiteout in it is
 * one Docker itself wrote.
 *
 * What the tree comparison ignores, and why: modification times (a
 * container's files are not touched, but directory mtimes of the export and
 * of an unpack differ by construction); and paths Docker's init layer adds
 * to every container, which the image does not have: `/.dockerenv`,
 * `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`, `/etc/mtab` (a symlink
 * to /proc/mounts), and the mount points `/dev`, `/proc`, `/sys` with
 * everything under them (`/dev/console`, `/dev/pts`, `/dev/shm`).
 */
import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageStore } from '../../src/image/image-store.js';
import { docker, dockerAvailable, dockerOk, ensureBusyboxImage } from '../helpers/docker.js';
import { diffListings, loadFile, openStore, runOk, saveToFile, treeListing, workspace } from '../archive/helpers.js';
import { validateOciLayout } from '../archive/oci-layout-validator.js';

const hasDocker = dockerAvailable();
const hasTool = (name: string): boolean => spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
const canRun = hasDocker && hasTool('skopeo') && hasTool('umoci') && process.getuid?.() === 0;
const why = !hasDocker ? 'no test dockerd' : 'needs skopeo, umoci and root';

const IMAGE = `strata-acceptance-layout-${process.pid}/whiteouts:1`;
const LONG_DIR = `t/${'long-directory-name-'.repeat(6)}end`;

const DOCKERFILE = [
  'FROM strata-test/busybox:latest',
  // Layer 1: a bit of everything.
  [
    'RUN mkdir -p /t/d/sub /t/g/inner /t/keepdir /t/emptydir',
    'echo a > /t/d/a && echo b > /t/d/sub/b',
    'echo f > /t/f && echo inner > /t/g/inner/x',
    'echo mod > /t/mod && echo gone > /t/gone && echo meta > /t/meta && touch /t/empty',
    'ln /t/mod /t/hard && ln -s mod /t/sym && ln -s /nonexistent /t/dangling',
    'mkfifo /t/fifo',
    'echo suid > /t/suid && chmod 4755 /t/suid && echo sgid > /t/sgid && chmod 2711 /t/sgid',
    'mkdir /t/sticky && chmod 1777 /t/sticky',
    'echo owned > /t/owned && chown 65534:65534 /t/owned && chown 1:2 /t/keepdir',
    `mkdir -p /${LONG_DIR} && echo deep > /${LONG_DIR}/file-with-a-long-name-too`,
    "echo utf8 > '/t/ünïcødé name'",
  ].join(' && '),
  // Layer 2: deletions (whiteouts), an opaque directory, type changes, edits.
  [
    'RUN rm /t/gone',
    'rm -rf /t/d && mkdir /t/d && touch /t/d/new',
    'rm /t/f && mkdir /t/f && echo inside > /t/f/inside',
    'rm -rf /t/g && echo g > /t/g',
    'echo more >> /t/mod && chmod 600 /t/meta',
    'rm /t/sym && ln -s meta /t/sym',
    `rm -rf /${LONG_DIR}/file-with-a-long-name-too`,
  ].join(' && '),
  // Layer 3: delete a hardlinked name and a directory, change a dir back into a file.
  'RUN rm /t/hard && rm -rf /t/keepdir && rm -rf /t/f && echo file-again > /t/f && echo last > /t/last',
  'CMD ["sh"]',
].join('\n');

/** Paths Docker adds to every container (see the module comment). */
const DOCKER_ONLY = new Set(['.dockerenv', 'etc/hosts', 'etc/hostname', 'etc/resolv.conf', 'etc/mtab', 'dev', 'proc', 'sys']);
const ignoreDockerOnly = (path: string): boolean => DOCKER_ONLY.has(path);

let ws: { dir: string; cleanup: () => Promise<void> };
let store: ImageStore;

beforeAll(async () => {
  ws = await workspace('strata-acceptance-layout-');
  store = await openStore(join(ws.dir, 'store'));
  if (!canRun) return;
  await ensureBusyboxImage();
  const context = join(ws.dir, 'context');
  await mkdir(context);
  await writeFile(join(context, 'Dockerfile'), DOCKERFILE);
  await dockerOk(['build', '-q', '-t', IMAGE, context]);
  const saved = join(ws.dir, 'docker-save.tar');
  await dockerOk(['save', '-o', saved, IMAGE]);
  await loadFile(store, saved);
});

afterAll(async () => {
  if (hasDocker) await docker(['rmi', '-f', IMAGE]);
  await ws?.cleanup();
});

describe('save --format oci of an image with whiteouts, opaque directories and type changes', () => {
  it.skipIf(!canRun)(`follows the image layout spec, copies with skopeo, and unpacks with umoci to what docker export gives${canRun ? '' : ` [skipped: ${why}]`}`, async () => {
    const image = await store.resolve(IMAGE);
    expect(image.manifest.layers.length).toBeGreaterThanOrEqual(4);

    // The layers really contain what this test is about.
    const layerNames: string[] = [];
    for (const layer of image.manifest.layers.slice(1)) {
      layerNames.push(...(await runOk('tar', ['-tf', store.content.blobPath(layer.digest)])).split('\n'));
    }
    expect(layerNames).toContain('t/.wh.gone');
    expect(layerNames).toContain('t/d/.wh..wh..opq');
    expect(layerNames).toContain('t/.wh.hard');

    const archive = join(ws.dir, 'strata-oci.tar');
    await saveToFile(store, [IMAGE], archive, 'oci');
    const layout = join(ws.dir, 'layout');
    await mkdir(layout);
    await runOk('tar', ['-xf', archive, '-C', layout]);
    const validated = await validateOciLayout(layout);
    expect(validated.problems).toEqual([]);
    expect([...validated.refs]).toEqual([['1', image.manifestDigest]]);

    const copied = join(ws.dir, 'skopeo-copy');
    await runOk('skopeo', ['copy', `oci:${layout}:1`, `oci:${copied}:copied`]);
    expect((await validateOciLayout(copied, { strict: false })).problems).toEqual([]);
    await runOk('skopeo', ['copy', `oci-archive:${archive}:1`, `oci:${copied}:from-archive`]);

    const bundle = join(ws.dir, 'bundle');
    await runOk('umoci', ['unpack', '--image', `${layout}:1`, bundle]);

    const container = (await dockerOk(['create', IMAGE])).stdout.toString().trim();
    const exported = join(ws.dir, 'export.tar');
    try {
      await dockerOk(['export', '-o', exported, container]);
    } finally {
      await docker(['rm', '-f', container]);
    }
    const exportDir = join(ws.dir, 'export');
    await mkdir(exportDir);
    await runOk('tar', ['--numeric-owner', '-xpf', exported, '-C', exportDir]);

    const fromUmoci = await treeListing(join(bundle, 'rootfs'), ignoreDockerOnly);
    const fromDocker = await treeListing(exportDir, ignoreDockerOnly);
    expect(diffListings(fromUmoci, fromDocker)).toEqual([]);

    // Spot checks that the comparison compared the interesting paths.
    expect(fromUmoci.get('t/gone')).toBeUndefined();
    expect(fromUmoci.get('t/d/a')).toBeUndefined();
    expect(fromUmoci.get('t/d/new')).toMatch(/^file /);
    expect(fromUmoci.get('t/g')).toMatch(/^file /);
    expect(fromUmoci.get('t/f')).toMatch(/^file /);
    expect(fromUmoci.get('t/f/inside')).toBeUndefined();
    expect(fromUmoci.get('t/suid')).toMatch(/^file 4755 /);
    expect(fromUmoci.get('t/sticky')).toMatch(/^dir 1777 /);
    expect(fromUmoci.get('t/owned')).toMatch(/^file 0644 65534:65534 /);
    expect(fromUmoci.get('t/fifo')).toMatch(/^fifo /);
    expect(fromUmoci.get('t/sym')).toBe('symlink 0:0 -> meta');
    expect(fromUmoci.get('t/meta')).toMatch(/^file 0600 /);
    expect(fromUmoci.get('t/keepdir')).toBeUndefined();
    expect(fromUmoci.get('t/ünïcødé name')).toMatch(/^file /);
    expect(fromUmoci.get(LONG_DIR)).toMatch(/^dir /);
    expect(fromUmoci.get(`${LONG_DIR}/file-with-a-long-name-too`)).toBeUndefined();
  });
});
