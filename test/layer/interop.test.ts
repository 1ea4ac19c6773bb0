/**
 * Go's gzip reader (through skopeo and umoci) must accept strata's parallel
 * gzip: a layer made by makeLayer is wrapped in a minimal OCI image and read
 * back by those tools.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MediaType } from '../../src/image/mediatypes.js';
import { makeLayer } from '../../src/layer/make.js';
import type { LayerRecord } from '../../src/layer/record.js';
import { hashFile, makeTree, sandbox, type Sandbox } from './helpers.js';

const hasTool = (tool: string): boolean => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;

let box: Sandbox;
beforeEach(async () => {
  box = await sandbox();
});
afterEach(async () => {
  await box.cleanup();
});

/** Tags a one-layer image in the store's own OCI layout (test fixture: index.json is normally the image store's). */
async function tagImage(layer: LayerRecord): Promise<void> {
  const config = await box.store.putJson({
    architecture: 'amd64',
    os: 'linux',
    rootfs: { type: 'layers', diff_ids: [layer.diffId] },
    config: {},
  });
  const manifest = await box.store.putJson({
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciConfig, digest: config.digest, size: config.size },
    layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }],
  });
  const index = {
    schemaVersion: 2,
    manifests: [{ mediaType: MediaType.OciManifest, digest: manifest.digest, size: manifest.size, annotations: { 'org.opencontainers.image.ref.name': 'test' } }],
  };
  await writeFile(join(box.store.root, 'index.json'), JSON.stringify(index));
}

async function bigTree(root: string): Promise<void> {
  await makeTree(root);
  // Several parallel-gzip blocks, mixing compressible and incompressible content.
  const noise = Buffer.alloc(1536 * 1024);
  for (let i = 0; i < noise.length; i++) noise[i] = (i * 2654435761) >>> 24;
  await writeFile(join(root, 'noise.bin'), noise);
  await writeFile(join(root, 'text.txt'), 'the quick brown fox\n'.repeat(200_000));
}

describe('Go tools read strata layers', () => {
  it.skipIf(!hasTool('skopeo'))('skopeo decompresses the layer to exactly its DiffID', async () => {
    const tree = join(box.dir, 'tree');
    await bigTree(tree);
    const layer = await makeLayer(box.store, { dir: tree });
    await tagImage(layer);
    const out = join(box.dir, 'out');
    // A dir: destination honours --dest-decompress (an oci: one keeps the blob as is).
    execFileSync('skopeo', ['copy', '--quiet', '--dest-decompress', `oci:${box.store.root}:test`, `dir:${out}`], { stdio: 'pipe' });
    const hex = layer.diffId.slice('sha256:'.length);
    expect(await readdir(out)).toContain(hex);
    expect(await hashFile(join(out, hex))).toBe(layer.diffId);
  });

  it.skipIf(!hasTool('umoci'))('umoci unpacks the layer with the same file contents', async () => {
    const tree = join(box.dir, 'tree');
    await bigTree(tree);
    const layer = await makeLayer(box.store, { dir: tree });
    await tagImage(layer);
    const bundle = join(box.dir, 'bundle');
    execFileSync('umoci', ['unpack', '--image', `${box.store.root}:test`, bundle], { stdio: 'pipe' });
    for (const file of ['text.txt', 'noise.bin', 'etc/hosts', 'bin/tool']) {
      expect((await readFile(join(bundle, 'rootfs', file))).equals(await readFile(join(tree, file)))).toBe(true);
    }
  });
});

