/**
 * save and load without Docker: round trips through both formats, what the
 * archives contain, the OCI layout validator (and that it catches what it
 * should), and the byte-for-byte determinism of save.
 */
import { createReadStream } from 'node:fs';
import { mkdir, readFile, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageStore } from '../../src/image/image-store.js';
import { isSpecRefName, saveImages } from '../../src/archive/save.js';
import { loadImages } from '../../src/archive/load.js';
import { craftImage, loadBuffer, loadFile, ociArchiveEntries, openStore, rawTar, runOk, saveItem, saveToFile, sha256, sha256File, workspace, type CraftedImage } from './helpers.js';
import { isValidRefName, validateOciLayout } from './oci-layout-validator.js';

let ws: { dir: string; cleanup: () => Promise<void> };
let store: ImageStore;
let base: CraftedImage;
let app: CraftedImage;

beforeAll(async () => {
  ws = await workspace('strata-saveload-');
  store = await openStore(join(ws.dir, 'store'));
  const baseLayer = { tar: rawTar([{ name: 'bin/', type: 'directory' }, { name: 'bin/tool', content: 'tool\n'.repeat(500), mode: 0o755 }]), gzip: true };
  base = craftImage([baseLayer], 'base');
  app = craftImage([baseLayer, { tar: rawTar([{ name: 'app/', type: 'directory' }, { name: 'app/main', content: 'main\n' }, { name: '.wh.old', content: '' }]) }], 'app');
  await loadBuffer(store, rawTar(ociArchiveEntries(base, 'example/base:1')));
  await loadBuffer(store, rawTar(ociArchiveEntries(app, 'example/app:2')));
  await store.tag('example/app:2', 'other.registry:5000/team/app:latest');
});
afterAll(async () => {
  await ws?.cleanup();
});

async function extract(archive: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await runOk('tar', ['-xf', archive, '-C', dir]);
}

describe('save', () => {
  it('writes the same bytes for the same images', async () => {
    const a = join(ws.dir, 'det-a.tar');
    const b = join(ws.dir, 'det-b.tar');
    await saveToFile(store, ['example/app:2', 'example/base:1'], a);
    await saveToFile(await openStore(store.root), ['example/app:2', 'example/base:1'], b);
    expect(await sha256File(a)).toBe(await sha256File(b));
  });

  it('docker format: an OCI layout plus manifest.json and repositories, blobs stored once', async () => {
    const file = join(ws.dir, 'docker.tar');
    await saveToFile(store, ['example/app:2', 'example/base:1', 'other.registry:5000/team/app:latest'], file);
    const dir = join(ws.dir, 'docker-x');
    await extract(file, dir);
    expect((await readdir(dir)).sort()).toEqual(['blobs', 'index.json', 'manifest.json', 'oci-layout', 'repositories']);
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { Config: string; RepoTags: string[]; Layers: string[] }[];
    expect(manifest).toHaveLength(2);
    const appEntry = manifest.find((m) => m.Config.endsWith(app.configDigest.slice(7)))!;
    expect(appEntry.RepoTags).toEqual(['example/app:2', 'other.registry:5000/team/app:latest']);
    expect(appEntry.Layers).toEqual(app.layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`));
    // The shared base layer is in the archive once.
    expect((await readdir(join(dir, 'blobs', 'sha256'))).sort()).toEqual([...new Set([...base.blobs.keys(), ...app.blobs.keys()])].map((d) => d.slice(7)).sort());
    const repositories = JSON.parse(await readFile(join(dir, 'repositories'), 'utf8')) as Record<string, Record<string, string>>;
    expect(repositories['example/app']).toEqual({ '2': app.layers.at(-1)!.digest.slice(7) });
    const layout = await validateOciLayout(dir);
    expect(layout.problems).toEqual([]);
  });

  it('oci format: a valid OCI layout with nothing else, named by tag', async () => {
    const file = join(ws.dir, 'oci.tar');
    await saveToFile(store, ['example/app:2', 'example/base:1'], file, 'oci');
    const dir = join(ws.dir, 'oci-x');
    await extract(file, dir);
    expect((await readdir(dir)).sort()).toEqual(['blobs', 'index.json', 'oci-layout']);
    const layout = await validateOciLayout(dir);
    expect(layout.problems).toEqual([]);
    expect(Object.fromEntries(layout.refs)).toEqual({ '2': app.manifestDigest, '1': base.manifestDigest });
  });

  it('leaves out ref.name where a Docker tag breaks the image spec grammar, keeping the containerd name', async () => {
    for (const tag of ['_private', 'v1..2', 'a__b', 'x-', 'rc.']) {
      expect(isSpecRefName(tag), tag).toBe(false);
      expect(isValidRefName(tag), tag).toBe(false);
    }
    for (const tag of ['1', 'latest', 'v1.2.3-rc.1', 'a--b', '1_0']) expect(isSpecRefName(tag), tag).toBe(true);
    await store.tag('example/base:1', 'example/odd:_private');
    await store.tag('example/base:1', 'example/odd:v1..2');
    const file = join(ws.dir, 'odd.tar');
    await saveToFile(store, ['example/odd:_private', 'example/odd:v1..2'], file, 'oci');
    const dir = join(ws.dir, 'odd-x');
    await extract(file, dir);
    expect((await validateOciLayout(dir)).problems).toEqual([]);
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: { annotations: Record<string, string> }[] };
    expect(index.manifests.map((m) => m.annotations)).toEqual([
      { 'io.containerd.image.name': 'docker.io/example/odd:_private' },
      { 'io.containerd.image.name': 'docker.io/example/odd:v1..2' },
    ]);
    const other = await openStore(join(ws.dir, 'odd-store'));
    const loaded = await loadFile(other, file);
    expect(loaded.flatMap((l) => l.tags).sort()).toEqual(['example/odd:_private', 'example/odd:v1..2']);
  });

  it('reports progress up to the total of the blob sizes', async () => {
    const item = await saveItem(store, 'example/app:2');
    const seen: [number, number][] = [];
    await pipeline(
      saveImages(store.content, [item], { onProgress: (done, total) => seen.push([done, total]) }),
      new Writable({ write: (_c, _e, cb) => cb() }),
    );
    const total = [...app.blobs.values()].reduce((sum, b) => sum + b.length, 0);
    expect(seen.at(-1)).toEqual([total, total]);
    expect(seen.every(([done], i) => i === 0 || done >= seen[i - 1]![0])).toBe(true);
  });

  it('refuses to save an image whose blob is missing, naming it', async () => {
    const other = await openStore(join(ws.dir, 'missing-store'));
    await loadBuffer(other, rawTar(ociArchiveEntries(app, 'example/app:2')));
    const item = await saveItem(other, 'example/app:2');
    await unlink(other.content.blobPath(app.layers[1]!.digest));
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    await expect(pipeline(saveImages(other.content, [item]), sink)).rejects.toThrow(app.layers[1]!.digest);
  });
});

describe('load', () => {
  for (const format of ['docker', 'oci'] as const) {
    it(`round-trips a ${format} archive into an empty store: same IDs, manifests, diffIDs and tags`, async () => {
      const file = join(ws.dir, `rt-${format}.tar`);
      await saveToFile(store, ['example/app:2', 'example/base:1', 'other.registry:5000/team/app:latest'], file, format);
      const other = await openStore(join(ws.dir, `rt-${format}`));
      const loaded = await loadFile(other, file);
      const byId = new Map(loaded.map((l) => [l.id, l]));
      expect(byId.get(app.configDigest)?.manifestDigest).toBe(app.manifestDigest);
      expect(byId.get(base.configDigest)?.manifestDigest).toBe(base.manifestDigest);
      for (const [ref, image] of [['example/app:2', app], ['other.registry:5000/team/app:latest', app], ['example/base:1', base]] as const) {
        const resolved = await other.resolve(ref);
        expect(resolved.id).toBe(image.configDigest);
        expect(resolved.manifestDigest).toBe(image.manifestDigest);
        expect(resolved.config.rootfs.diff_ids).toEqual(image.layers.map((l) => l.diffId));
      }
      const report = await other.fsck();
      expect(report.faults).toEqual([]);
      // Every layer got a record, so sizes and chains are known without decompressing.
      for (const layer of app.layers) expect(await other.layers.findByDiffId(layer.diffId)).toMatchObject({ digest: layer.digest });
    });
  }

  it('loads an OCI layout directory and an extracted docker archive', async () => {
    for (const format of ['docker', 'oci'] as const) {
      const file = join(ws.dir, `dir-${format}.tar`);
      await saveToFile(store, ['example/app:2'], file, format);
      const dir = join(ws.dir, `dir-${format}-x`);
      await extract(file, dir);
      const other = await openStore(join(ws.dir, `dir-${format}-store`));
      const loaded = await loadImages(other, { dir });
      expect(loaded.map((l) => [l.id, l.tags])).toEqual([[app.configDigest, ['example/app:2']]]);
      expect((await other.fsck()).ok).toBe(true);
    }
  });

  it('refuses a layout directory whose blobs lead outside it', async () => {
    const file = join(ws.dir, 'escape.tar');
    await saveToFile(store, ['example/app:2'], file, 'oci');
    const outside = join(ws.dir, 'outside');
    await extract(file, outside);
    const dir = join(ws.dir, 'escape-x');
    await mkdir(dir);
    for (const name of ['index.json', 'oci-layout']) await writeFile(join(dir, name), await readFile(join(outside, name)));
    await (await import('node:fs/promises')).symlink(join(outside, 'blobs'), join(dir, 'blobs'));
    const other = await openStore(join(ws.dir, 'escape-store'));
    await expect(loadImages(other, { dir })).rejects.toThrow(/blobs is not a directory \(a symlink\)/);
    await rm(join(dir, 'blobs'));
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    await (await import('node:fs/promises')).symlink(join(outside, 'blobs', 'sha256', app.manifestDigest.slice(7)), join(dir, 'blobs', 'sha256', app.manifestDigest.slice(7)));
    await expect(loadImages(other, { dir })).rejects.toThrow(/outside the archive/);
    expect((await other.list()).length).toBe(0);
  });

  it('loads from a file path, read in large chunks, to the same images as from a stream', async () => {
    const file = join(ws.dir, 'by-path.tar');
    await saveToFile(store, ['example/app:2', 'example/base:1'], file);
    const viaPath = await loadImages(await openStore(join(ws.dir, 'by-path-store')), { file });
    const viaStream = await loadFile(await openStore(join(ws.dir, 'by-stream-store')), file);
    expect(viaPath).toEqual(viaStream);
    expect(viaPath.map((l) => l.id).sort()).toEqual([app.configDigest, base.configDigest].sort());
  });

  it('reports progress in bytes read', async () => {
    const file = join(ws.dir, 'progress.tar');
    await saveToFile(store, ['example/app:2'], file);
    const other = await openStore(join(ws.dir, 'progress-store'));
    let last = 0;
    await loadImages(other, createReadStream(file), { onProgress: (bytes) => (last = bytes) });
    expect(last).toBe((await readFile(file)).length);
  });

  it('loading the same archive twice changes nothing the second time', async () => {
    const file = join(ws.dir, 'twice.tar');
    await saveToFile(store, ['example/app:2'], file);
    const other = await openStore(join(ws.dir, 'twice-store'));
    await loadFile(other, file);
    const blobs = (await readdir(other.content.blobsDir)).sort();
    const images = (await other.list()).map((i) => [i.id, i.repoTags]);
    await loadFile(other, file);
    expect((await readdir(other.content.blobsDir)).sort()).toEqual(blobs);
    expect((await other.list()).map((i) => [i.id, i.repoTags])).toEqual(images);
  });
});

describe('the OCI layout validator', () => {
  it('finds each kind of violation', async () => {
    const file = join(ws.dir, 'v.tar');
    await saveToFile(store, ['example/app:2'], file, 'oci');
    const fresh = async (name: string): Promise<string> => {
      const dir = join(ws.dir, `v-${name}`);
      await extract(file, dir);
      return dir;
    };
    const problemsAfter = async (name: string, change: (dir: string) => Promise<void>): Promise<string[]> => {
      const dir = await fresh(name);
      await change(dir);
      return (await validateOciLayout(dir)).problems;
    };
    const editIndex = (edit: (index: { manifests: Record<string, unknown>[] } & Record<string, unknown>) => void) => async (dir: string) => {
      const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
      edit(index);
      await writeFile(join(dir, 'index.json'), JSON.stringify(index));
    };
    expect(await problemsAfter('ok', async () => undefined)).toEqual([]);
    expect(await problemsAfter('layout', (dir) => writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.1.0"}'))).toEqual([
      'oci-layout: imageLayoutVersion is "1.1.0", expected "1.0.0"',
    ]);
    expect(await problemsAfter('extra', (dir) => writeFile(join(dir, 'blobs', 'sha256', 'f'.repeat(64)), 'x'))).toEqual([
      `blobs/sha256/${'f'.repeat(64)} is not referenced by any descriptor`,
    ]);
    expect((await problemsAfter('size', editIndex((i) => (i.manifests[0]!.size = 1)))).join()).toMatch(/descriptor says 1 bytes/);
    expect((await problemsAfter('refname', editIndex((i) => ((i.manifests[0]!.annotations as Record<string, string>)['org.opencontainers.image.ref.name'] = 'a..b')))).join()).toMatch(/ref\.name "a\.\.b"/);
    expect((await problemsAfter('mt', editIndex((i) => (i.mediaType = undefined)))).join()).toMatch(/mediaType is undefined/);
    expect((await problemsAfter('digest', editIndex((i) => (i.manifests[0]!.digest = 'sha256:ABC')))).join()).toMatch(/not 64 lowercase hex/);
    // A gzip layer relabelled as plain tar: new manifest, new digest, index updated; the validator sees the bytes.
    const relabelled = await problemsAfter('relabel', async (dir) => {
      const manifest = JSON.parse(app.manifestBytes.toString());
      manifest.layers[0].mediaType = 'application/vnd.oci.image.layer.v1.tar';
      const bytes = Buffer.from(JSON.stringify(manifest));
      const digest = sha256(bytes);
      await unlink(join(dir, 'blobs', 'sha256', app.manifestDigest.slice(7)));
      await writeFile(join(dir, 'blobs', 'sha256', digest.slice(7)), bytes);
      await editIndex((i) => Object.assign(i.manifests[0]!, { digest, size: bytes.length }))(dir);
    });
    expect(relabelled.join()).toMatch(/not one \(it is gzip\)/);
    const badDiff = await problemsAfter('diffid', async (dir) => {
      const layer = join(dir, 'blobs', 'sha256', app.layers[1]!.digest.slice(7));
      const bytes = await readFile(layer);
      await unlink(layer);
      bytes[600] ^= 1;
      await writeFile(join(dir, 'blobs', 'sha256', app.layers[1]!.digest.slice(7)), bytes);
    });
    expect(badDiff.join()).toMatch(/hashes to sha256:/);
  });
});
