import { spawnSync } from 'node:child_process';
import { chmod, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import type { FsckFault } from '../../src/image/fsck.js';
import type { ImageStore } from '../../src/image/image-store.js';
import { MediaType } from '../../src/image/mediatypes.js';
import { newImageConfig } from '../../src/image/config.js';
import { parseReference } from '../../src/image/reference.js';
import { Annotation, type ImageIndex } from '../../src/image/types.js';
import { addImage, tarOf, tempStore } from './helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function open() {
  const made = await tempStore();
  cleanups.push(made.cleanup);
  return made;
}

/** Flips one byte of a stored blob in place. */
async function flipByte(store: ImageStore, digest: string, at: (size: number) => number): Promise<void> {
  const path = store.content.blobPath(digest);
  await chmod(path, 0o644);
  const data = await readFile(path);
  data[at(data.length)] ^= 0x01;
  await writeFile(path, data);
}

function errors(faults: FsckFault[]): FsckFault[] {
  return faults.filter((f) => f.severity === 'error');
}

describe('fsck', () => {
  it('passes a healthy store and counts what it checked', async () => {
    const { store } = await open();
    await addImage(store, ['a:1'], { layers: [{ a: 'a' }, { b: 'b' }] });
    await addImage(store, [], { seed: 'dangling' });
    const report = await store.fsck();
    expect(report.faults).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.checked).toMatchObject({ blobs: 7, manifests: 2, configs: 2, layerRecords: 3, diffIds: 3 });
  });

  it('names a blob with a flipped byte (layer, config)', async () => {
    const { store } = await open();
    const image = await addImage(store, ['a:1'], { layers: [{ a: 'a'.repeat(2000) }] });
    const layer = image.layers[0]!.descriptor.digest;
    await flipByte(store, layer, (size) => Math.floor(size / 2));
    await flipByte(store, image.configDigest, () => 5);
    for (const quick of [false, true]) {
      const report = await store.fsck({ quick });
      expect(report.ok).toBe(false);
      const corrupt = report.faults.filter((f) => f.kind === 'corrupt-blob').map((f) => f.object).sort();
      expect(corrupt).toEqual([layer, image.configDigest].sort());
      for (const fault of report.faults.filter((f) => f.kind === 'corrupt-blob')) expect(fault.message).toContain(fault.object);
    }
  });

  it('names a missing blob', async () => {
    const { store } = await open();
    const image = await addImage(store, ['a:1']);
    const layer = image.layers[0]!.descriptor.digest;
    await unlink(store.content.blobPath(layer));
    const report = await store.fsck();
    expect(report.ok).toBe(false);
    expect(errors(report.faults)).toEqual([expect.objectContaining({ kind: 'missing-blob', object: layer, message: 'layer 0 of a:1 is missing' })]);
    // The layer record now points at nothing: a warning, gc tidies it.
    expect(report.faults).toContainEqual(expect.objectContaining({ kind: 'record-missing-blob', severity: 'warning' }));
  });

  it('reports bad manifests, wrong sizes and layer-count mismatches', async () => {
    const { store, root } = await open();
    const good = await addImage(store, ['good:1']);
    const notManifest = await store.content.putJson({ hello: 'world' });
    const notJson = await store.content.putBytes('not json at all');
    const config = newImageConfig({ diffIds: [] });
    const configBlob = await store.content.putJson(config);
    const miscounted = await store.content.putJson({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, ...configBlob },
      layers: [good.layers[0]!.descriptor],
    });
    const index = JSON.parse(await readFile(join(root, 'index.json'), 'utf8')) as ImageIndex;
    index.manifests.push(
      { mediaType: MediaType.OciManifest, ...notManifest, annotations: { [Annotation.ContainerdImageName]: 'docker.io/library/bad:1' } },
      { mediaType: MediaType.OciManifest, ...notJson },
      { mediaType: MediaType.OciManifest, ...miscounted },
      { mediaType: MediaType.OciManifest, digest: good.manifest.digest, size: good.manifest.size + 1 },
    );
    await writeFile(join(root, 'index.json'), JSON.stringify(index));
    const report = await store.fsck();
    expect(report.ok).toBe(false);
    const found = errors(report.faults).map((f) => [f.kind, f.object]);
    expect(found).toContainEqual(['bad-manifest', notManifest.digest]);
    expect(found).toContainEqual(['bad-manifest', notJson.digest]);
    expect(found).toContainEqual(['layer-count-mismatch', miscounted.digest]);
    expect(found).toContainEqual(['size-mismatch', good.manifest.digest]);
  });

  it('recomputes DiffIDs unless quick', async () => {
    const { store } = await open();
    const tar = tarOf({ real: 'content' });
    const blob = await store.content.putBytes(gzipSync(tar));
    const wrongDiffId = `sha256:${'1'.repeat(64)}` as const;
    const config = await store.content.putJson(newImageConfig({ diffIds: [wrongDiffId] }));
    const manifest = await store.content.putJson({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, ...config },
      layers: [{ mediaType: MediaType.OciLayerGzip, ...blob }],
    });
    await store.addImage({ mediaType: MediaType.OciManifest, ...manifest }, [parseReference('liar:1')]);

    const quick = await store.fsck({ quick: true });
    expect(quick.ok).toBe(true);
    const full = await store.fsck();
    expect(full.ok).toBe(false);
    expect(full.faults).toEqual([expect.objectContaining({ kind: 'diffid-mismatch', object: blob.digest })]);
    expect(full.faults[0]!.message).toContain(wrongDiffId);
  });

  it('checks layer records against their blobs', async () => {
    const { store } = await open();
    const image = await addImage(store, ['a:1']);
    const record = (await store.layers.list())[0]!;
    // A record that lies about the uncompressed size (put() cannot know).
    await store.layers.put({ ...record, uncompressedSize: record.uncompressedSize + 1 });
    const report = await store.fsck();
    expect(errors(report.faults)).toEqual([expect.objectContaining({ kind: 'bad-record', object: record.chainId })]);
    // A damaged record file is named, and does not stop the others being checked.
    await writeFile(store.layers.pathFor(record.chainId), '{"nope":');
    const damaged = await store.fsck();
    expect(damaged.faults).toContainEqual(expect.objectContaining({ kind: 'bad-record', object: record.chainId }));
    expect(image.layers).toHaveLength(1);
  });

  it('warns about temp files of dead processes, a broken layout marker is an error', async () => {
    const { store, root } = await open();
    await addImage(store, ['a:1']);
    const pid = spawnSync(process.execPath, ['-e', '0']).pid!;
    const stray = join(root, `.tmp-index.json-${pid}-00ff00ff00ff`);
    await writeFile(stray, '{');
    await writeFile(join(store.content.blobsDir, 'README'), 'not a blob');
    const report = await store.fsck({ quick: true });
    expect(report.ok).toBe(true);
    expect(report.faults).toContainEqual(expect.objectContaining({ kind: 'stray-temp', severity: 'warning', object: stray }));
    expect(report.faults).toContainEqual(expect.objectContaining({ kind: 'unknown-file', severity: 'warning', object: join(store.content.blobsDir, 'README') }));

    await writeFile(join(root, 'oci-layout'), '{"imageLayoutVersion":"banana"}');
    const broken = await store.fsck({ quick: true });
    expect(broken.ok).toBe(false);
    expect(errors(broken.faults)).toEqual([expect.objectContaining({ kind: 'bad-layout', object: join(root, 'oci-layout') })]);
  });

  it('reports an unreadable index.json', async () => {
    const { store, root } = await open();
    await writeFile(join(root, 'index.json'), '{"schemaVersion":2,"manifests":[');
    const report = await store.fsck({ quick: true });
    expect(errors(report.faults)).toEqual([expect.objectContaining({ kind: 'bad-index', object: join(root, 'index.json') })]);
  });
});
