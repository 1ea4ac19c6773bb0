import { spawnSync } from 'node:child_process';
import { chmod, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GcMarkError, registerGcRoots } from '../../src/image/gc.js';
import type { Digest } from '../../src/content/digest.js';
import { addImage, makeImage, putLayer, tempStore } from './helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function open() {
  const made = await tempStore();
  cleanups.push(made.cleanup);
  return made;
}

async function blobs(store: Awaited<ReturnType<typeof open>>['store']): Promise<Set<Digest>> {
  const all = new Set<Digest>();
  for await (const d of store.content.list()) all.add(d);
  return all;
}

/** The pid of a process that has certainly exited. */
function deadPid(): number {
  return spawnSync(process.execPath, ['-e', '0']).pid!;
}

describe('gc', () => {
  it('removes unreferenced blobs and their layer records, keeps everything reachable', async () => {
    const { store } = await open();
    const shared = { 'bin/sh': 'shell\n' };
    const kept = await addImage(store, ['kept:1'], { layers: [shared, { 'app/kept': 'k' }], seed: 'kept' });
    const dangling = await addImage(store, [], { seed: 'dangling' });
    const doomed = await addImage(store, ['doomed:1'], { layers: [shared, { 'app/doomed': 'd' }], seed: 'doomed' });
    const orphanLayer = await putLayer(store, { orphan: 'o' });
    const orphanBlob = await store.content.putBytes('nobody points at me');
    await store.remove('doomed:1');

    const result = await store.gc();

    const doomedOnly = [doomed.manifest.digest, doomed.configDigest, doomed.layers[1]!.descriptor.digest];
    expect(new Set(result.removed)).toEqual(new Set([...doomedOnly, orphanLayer.descriptor.digest, orphanBlob.digest]));
    expect(result.bytes).toBeGreaterThan(0);
    expect(result.records).toBe(2);

    const left = await blobs(store);
    for (const image of [kept, dangling]) {
      expect(left).toContain(image.manifest.digest);
      expect(left).toContain(image.configDigest);
      for (const layer of image.layers) expect(left).toContain(layer.descriptor.digest);
    }
    // The layer the removed image shared with a kept one stays, and so does its record.
    expect(left).toContain(doomed.layers[0]!.descriptor.digest);
    const records = await store.layers.list();
    expect(records.map((r) => r.digest).sort()).toEqual([...kept.layers, ...dangling.layers].map((l) => l.descriptor.digest).sort());
    expect((await store.resolve('kept:1')).id).toBe(kept.configDigest);
    expect((await store.fsck()).ok).toBe(true);

    // Nothing left to collect.
    expect((await store.gc()).removed).toEqual([]);
  });

  it('keeps blobs named by registered roots, following manifests', async () => {
    const { store } = await open();
    const image = await makeImage(store, { seed: 'rooted' });
    const loose = await store.content.putBytes('cache entry');
    const unregister = registerGcRoots(async function* (root) {
      if (root !== store.root) return;
      yield image.manifest.digest;
      yield loose.digest;
    });
    try {
      expect((await store.gc()).removed).toEqual([]);
    } finally {
      unregister();
    }
    expect(new Set((await store.gc()).removed)).toEqual(new Set([image.manifest.digest, image.configDigest, image.layers[0]!.descriptor.digest, loose.digest]));
  });

  it('keeps leased blobs', async () => {
    const { store } = await open();
    await store.content.withLease(async (lease) => {
      const blob = await store.content.putBytes('in flight', lease);
      expect((await store.gc()).removed).not.toContain(blob.digest);
      expect(await store.content.has(blob.digest)).toBe(true);
    });
  });

  it('removes temp files of dead processes only', async () => {
    const { store, root } = await open();
    const dead = join(root, `.tmp-index.json-${deadPid()}-0123456789ab`);
    const alive = join(root, `.tmp-index.json-${process.pid}-0123456789ab`);
    await writeFile(dead, '{');
    await writeFile(alive, '{');
    const result = await store.gc();
    expect(result.temp).toContain(dead);
    const names = await readdir(root);
    expect(names).not.toContain(dead.slice(root.length + 1));
    expect(names).toContain(alive.slice(root.length + 1));
  });

  it('sweeps nothing when a reachable manifest cannot be read', async () => {
    const { store } = await open();
    const image = await addImage(store, ['x:1']);
    const orphan = await store.content.putBytes('orphan');
    const path = store.content.blobPath(image.manifest.digest);
    await chmod(path, 0o644);
    await writeFile(path, '{"schemaVersion":2,"broken"');
    await expect(store.gc()).rejects.toThrow(GcMarkError);
    await expect(store.gc()).rejects.toThrow(image.manifest.digest);
    expect(await store.content.has(orphan.digest)).toBe(true);
  });
});
