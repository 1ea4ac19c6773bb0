/**
 * The public library API end to end, through the package entry point
 * (src/index.ts): import a directory, tag, save, load into a second root,
 * flatten, export layers, rmi + gc.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ImageNotFoundError,
  MediaType,
  Strata,
  StrataError,
  chainIds,
  makeLayer,
  newImageConfig,
  parseReference,
  sha256Of,
  tarFromTree,
  writeImage,
  type Digest,
} from '../src/index.js';
import { readTar } from '../src/tar/read.js';

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'strata-api-'));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A fresh directory under the test's workspace. */
async function dir(name: string): Promise<string> {
  const path = join(work, name);
  await mkdir(path, { recursive: true });
  return path;
}

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks);
}

/** Entries of a tar as `path → content` (directories and links as markers). */
async function listing(tar: Buffer): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const entry of readTar(Readable.from([tar]))) {
    const { header } = entry;
    if (header.type === 'file') out[header.path] = (await collect(entry.body)).toString();
    else {
      entry.body.resume();
      out[header.path] = header.type === 'symlink' ? `-> ${header.linkname}` : `<${header.type}>`;
    }
  }
  return out;
}

/** A small root filesystem. */
async function makeTree(name: string): Promise<string> {
  const root = await dir(name);
  await mkdir(join(root, 'etc'));
  await mkdir(join(root, 'bin'));
  await writeFile(join(root, 'etc', 'hostname'), 'strata\n');
  await writeFile(join(root, 'bin', 'hello'), '#!/bin/sh\necho hello\n');
  await chmod(join(root, 'bin', 'hello'), 0o755);
  await symlink('hello', join(root, 'bin', 'hi'));
  return root;
}

describe('Strata', () => {
  it('imports a directory, tags, saves and loads into a second root with the same IDs and DiffIDs', async () => {
    const strata = await Strata.open({ root: await dir('root-a') });
    const imported = await strata.import(await makeTree('tree-a'), { ref: 'example/app:1.0', changes: ['CMD ["/bin/hello"]'] });
    expect(imported.id).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(imported.tag).toBe('example/app:1.0');

    await strata.tag('example/app:1.0', 'example/app:latest');
    const inspect = await strata.inspect('example/app');
    expect(inspect.Id).toBe(imported.id);
    expect(inspect.RepoTags).toEqual(expect.arrayContaining(['example/app:1.0', 'example/app:latest']));
    expect(inspect.Config.Cmd).toEqual(['/bin/hello']);
    expect(inspect.RootFS.Layers).toEqual([imported.diffId]);

    const archive = join(work, 'app.tar');
    await strata.saveToFile(['example/app:1.0', 'example/app'], archive);

    const other = await Strata.open({ root: await dir('root-b') });
    const loaded = await other.load({ file: archive });
    expect(loaded).toEqual([{ id: imported.id, manifestDigest: imported.manifestDigest, tags: ['example/app:1.0', 'example/app:latest'] }]);
    const again = await other.inspect('example/app:1.0');
    expect(again.Id).toBe(imported.id);
    expect(again.RootFS.Layers).toEqual([imported.diffId]);
    expect((await other.fsck()).ok).toBe(true);

    // The same image through a stream, and as an OCI archive.
    const third = await Strata.open({ root: await dir('root-c') });
    expect(await third.load(strata.save(['example/app:1.0'], { format: 'oci' }))).toEqual([
      { id: imported.id, manifestDigest: imported.manifestDigest, tags: ['example/app:1.0'] },
    ]);
  });

  it('saves an image given by ID without names, a bare name as its latest tag, and one image once', async () => {
    const strata = await Strata.open({ root: await dir('root-save') });
    const { id } = await strata.import(await makeTree('tree-save'), { ref: 'one/img:latest' });
    await strata.tag(id, 'one/img:other');

    const byId = await strata.saveItems([id.slice(7, 19)]);
    expect(byId).toHaveLength(1);
    expect(byId[0]!.id).toBe(id);
    expect(byId[0]!.refs).toEqual([]);

    const merged = await strata.saveItems(['one/img', 'one/img:latest', id, 'one/img:other']);
    expect(merged).toHaveLength(1);
    expect(merged[0]!.refs.map((r) => r.familiar())).toEqual(['one/img:latest', 'one/img:other']);

    const loaded = await (await Strata.open({ root: await dir('root-save-2') })).load(strata.save([id]));
    expect(loaded).toEqual([{ id, manifestDigest: expect.stringMatching(/^sha256:/), tags: [] }]);
  });

  it('writes nothing when a ref to save does not resolve', async () => {
    const strata = await Strata.open({ root: await dir('root-missing') });
    const target = join(work, 'never.tar');
    await expect(strata.saveToFile(['no/such:image'], target)).rejects.toBeInstanceOf(ImageNotFoundError);
    expect(existsSync(target)).toBe(false);
    expect((await readdir(work)).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
    await expect(collect(strata.save(['no/such:image']))).rejects.toThrow('No such image: no/such:image');
  });

  it('exports a layer by blob digest, DiffID or ChainID, plain or gzip', async () => {
    const strata = await Strata.open({ root: await dir('root-export') });
    const { id, diffId } = await strata.import(await makeTree('tree-export'), { ref: 'exp/layer:1' });
    const image = await strata.images.resolve(id);
    const blob = image.manifest.layers[0]!.digest;

    for (const ref of [blob, diffId, chainIds([diffId])[0]!]) {
      const plain = await collect(strata.exportLayer(ref));
      expect(sha256Of(plain)).toBe(diffId);
      const gzipped = await collect(strata.exportLayer(ref, { compression: 'gzip' }));
      expect(sha256Of(gzipped)).toBe(blob);
      expect(sha256Of(gunzipSync(gzipped))).toBe(diffId);
    }
    expect(Object.keys(await listing(await collect(strata.exportLayer(diffId)))).sort()).toEqual(['bin', 'bin/hello', 'bin/hi', 'etc', 'etc/hostname']);
    await expect(collect(strata.exportLayer(`sha256:${'0'.repeat(64)}`))).rejects.toThrow(/no layer blob, DiffID or ChainID/);
  });

  it('flattens a multi-layer image into one tar without whiteouts', async () => {
    const strata = await Strata.open({ root: await dir('root-flatten') });
    const lease = await strata.content.lease();
    try {
      const base = await makeLayer(strata.content, { dir: await makeTree('tree-flatten') }, { lease, records: strata.images.layers });
      const top = await makeLayer(
        strata.content,
        {
          changeset: {
            entries: [{ header: { path: 'etc/motd', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 3 }, content: () => Buffer.from('hi\n') }],
            deletions: ['bin/hi'],
            opaqueDirs: [],
          },
        },
        { lease, records: strata.images.layers, parentChainId: base.chainId },
      );
      const config = newImageConfig({ diffIds: [base.diffId, top.diffId], history: [{ created_by: 'base' }, { created_by: 'top' }] });
      const layers = [base, top].map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size }));
      const written = await writeImage(strata.content, { config, layers, lease });
      await strata.images.addImage(written.manifest, [parseReference('flat/img:1')]);
    } finally {
      await lease.release();
    }

    const tar = await collect(strata.flatten('flat/img:1'));
    expect(await listing(tar)).toEqual({
      bin: '<directory>',
      'bin/hello': '#!/bin/sh\necho hello\n',
      etc: '<directory>',
      'etc/hostname': 'strata\n',
      'etc/motd': 'hi\n',
    });
    // The scratch tree is gone once the stream has ended.
    expect(await readdir(join(strata.root, 'strata', 'scratch'))).toEqual([]);

    const history = await strata.history('flat/img:1', { noTrunc: true });
    expect(history.map((row) => row.createdBy)).toEqual(['top', 'base']);
    expect(history[0]!.image).toBe((await strata.images.resolve('flat/img:1')).id);
    await expect(collect(strata.flatten('flat/none'))).rejects.toBeInstanceOf(ImageNotFoundError);
  });

  it('removes images with rmi and frees their blobs at once', async () => {
    const strata = await Strata.open({ root: await dir('root-rmi') });
    const keep = await strata.import(await makeTree('tree-keep'), { ref: 'keep/me:1' });
    const treeGone = await makeTree('tree-gone');
    await writeFile(join(treeGone, 'etc', 'unique'), 'only in the removed image\n');
    const gone = await strata.import(treeGone, { ref: 'remove/me:1' });
    const goneImage = await strata.images.resolve(gone.id);
    const goneBlobs = [goneImage.manifestDigest, gone.id, ...goneImage.manifest.layers.map((l) => l.digest)] as Digest[];
    for (const blob of goneBlobs) expect(await strata.content.has(blob)).toBe(true);

    const result = await strata.rmi(['remove/me:1', 'not/there:1']);
    expect(result.items[0]).toMatchObject({ ref: 'remove/me:1', untagged: ['remove/me:1'], deleted: [gone.id] });
    expect(result.items[1]!.error).toBeInstanceOf(ImageNotFoundError);
    expect(result.items[1]!.error).toBeInstanceOf(StrataError);
    expect(result.gc!.removed).toEqual(expect.arrayContaining(goneBlobs));
    expect(result.gc!.bytes).toBeGreaterThan(0);
    for (const blob of goneBlobs) expect(await strata.content.has(blob)).toBe(false);

    expect((await strata.inspect('keep/me:1')).Id).toBe(keep.id);
    expect((await strata.list()).map((i) => i.id)).toEqual([keep.id]);
    expect((await strata.gc()).removed).toEqual([]);
    expect((await strata.fsck()).ok).toBe(true);
  });

  it('imports a tar stream and refuses URLs with a clear error', async () => {
    const strata = await Strata.open({ root: await dir('root-stream') });
    const layerTar = await collect(tarFromTree(await makeTree('tree-src')));
    const result = await strata.import({ stream: Readable.from([layerTar]), label: '-' }, { ref: 'from/stream:1', message: 'piped' });
    // A tarball keeps its bytes: the DiffID is the tar's own hash.
    expect(result.diffId).toBe(sha256Of(layerTar));
    expect((await strata.inspect('from/stream:1')).Comment).toBe('piped');
    await expect(strata.import('https://example.com/rootfs.tar')).rejects.toThrow(/importing from a URL is not supported/);
  });

  it('opens the default root from the environment', async () => {
    const previous = process.env.STRATA_ROOT;
    process.env.STRATA_ROOT = join(work, 'root-env');
    try {
      const strata = await Strata.open();
      expect(strata.root).toBe(join(work, 'root-env'));
      expect(JSON.parse(await readFile(join(strata.root, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
      expect(JSON.parse(await readFile(join(strata.root, 'index.json'), 'utf8'))).toMatchObject({ mediaType: MediaType.OciIndex, manifests: [] });
    } finally {
      if (previous === undefined) delete process.env.STRATA_ROOT;
      else process.env.STRATA_ROOT = previous;
    }
  });
});
