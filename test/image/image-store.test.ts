import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AmbiguousImageError,
  ImageConflictError,
  ImageNotFoundError,
  IncompleteImageError,
  NoMatchingPlatformError,
  LAST_TAG_TIME_ANNOTATION,
  type ImageStore,
} from '../../src/image/image-store.js';
import { newImageConfig, writeImage, hostPlatform } from '../../src/image/config.js';
import { parseReference } from '../../src/image/reference.js';
import { MediaType } from '../../src/image/mediatypes.js';
import { Annotation, type ImageIndex } from '../../src/image/types.js';
import { addImage, makeImage, putLayer, tempStore } from './helpers.js';

const execFileAsync = promisify(execFile);
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function open(): Promise<{ store: ImageStore; root: string }> {
  const made = await tempStore();
  cleanups.push(made.cleanup);
  return made;
}

async function indexOf(root: string): Promise<ImageIndex> {
  return JSON.parse(await readFile(join(root, 'index.json'), 'utf8')) as ImageIndex;
}

describe('names and resolution', () => {
  it('resolves a tag in every spelling, the full ID and ID prefixes', async () => {
    const { store } = await open();
    const { resolved, configDigest, manifest } = await addImage(store, ['busybox:latest'], { seed: 'a' });
    expect(resolved).toMatchObject({ id: configDigest, manifestDigest: manifest.digest, repoTags: ['busybox:latest'], repoDigests: [] });
    const hex = configDigest.slice(7);
    for (const input of ['busybox', 'busybox:latest', 'library/busybox', 'docker.io/library/busybox:latest', configDigest, hex, hex.slice(0, 12), hex.slice(0, 1), `sha256:${hex.slice(0, 5)}`]) {
      const found = await store.resolve(input);
      expect(found.id, input).toBe(configDigest);
      expect(found.config.rootfs.diff_ids).toHaveLength(1);
      expect(found.manifest.layers).toHaveLength(1);
    }
  });

  it('names what it cannot find the way Docker does', async () => {
    const { store } = await open();
    await addImage(store, ['busybox:latest']);
    await expect(store.resolve('busybox:1.0')).rejects.toThrow(new ImageNotFoundError('busybox:1.0'));
    await expect(store.resolve('nothere')).rejects.toThrow('No such image: nothere:latest');
    await expect(store.resolve(`sha256:${'f'.repeat(64)}`)).rejects.toThrow(ImageNotFoundError);
    await expect(store.resolve('Bad')).rejects.toThrow('must be lowercase');
  });

  it('refuses an ambiguous ID prefix and names the candidates', async () => {
    const { store } = await open();
    const byFirst = new Map<string, string>();
    let shared: string | undefined;
    for (let i = 0; shared === undefined; i++) {
      const { configDigest } = await addImage(store, [`img${i}:latest`], { seed: `s${i}` });
      const first = configDigest.slice(7, 8);
      if (byFirst.has(first)) shared = first;
      byFirst.set(first, configDigest);
    }
    const err = await store.resolve(shared).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AmbiguousImageError);
    expect((err as AmbiguousImageError).candidates).toHaveLength(2);
    expect((err as Error).message).toMatch(/is ambiguous: it matches 2 images/);
  });

  it('tag moves a name; the image it leaves becomes dangling but stays', async () => {
    const { store, root } = await open();
    const first = await addImage(store, ['app:1'], { seed: 'first' });
    const second = await addImage(store, [], { seed: 'second' });
    const tagged = await store.tag(second.configDigest.slice(7, 19), 'app:1');
    expect(tagged.id).toBe(second.configDigest);
    expect(tagged.repoTags).toEqual(['app:1']);
    expect((await store.resolve('app:1')).id).toBe(second.configDigest);
    const old = await store.resolve(first.configDigest);
    expect(old.repoTags).toEqual([]);
    const index = await indexOf(root);
    expect(index.manifests).toHaveLength(2);
    expect(index.manifests.find((e) => e.digest === first.manifest.digest)?.annotations).toBeUndefined();
    const named = index.manifests.find((e) => e.digest === second.manifest.digest)!;
    expect(named.annotations).toMatchObject({
      [Annotation.ContainerdImageName]: 'docker.io/library/app:1',
      [Annotation.RefName]: 'app:1',
    });
    expect(Date.parse(named.annotations![LAST_TAG_TIME_ANNOTATION]!)).not.toBeNaN();
  });

  it('tag adds names by reference, keeps one entry per name, refuses digest targets', async () => {
    const { store, root } = await open();
    const { configDigest } = await addImage(store, ['busybox'], { seed: 'a' });
    await store.tag('busybox', 'localhost:5000/tools/busybox:1.36');
    await store.tag('busybox', 'localhost:5000/tools/busybox:1.36');
    const resolved = await store.resolve('localhost:5000/tools/busybox:1.36');
    expect(resolved.id).toBe(configDigest);
    expect(resolved.repoTags).toEqual(['busybox:latest', 'localhost:5000/tools/busybox:1.36']);
    expect((await indexOf(root)).manifests).toHaveLength(2);
    await expect(store.tag('busybox', `busybox@sha256:${'a'.repeat(64)}`)).rejects.toThrow('refusing to create a tag with a digest reference');
    await expect(store.tag('nothere', 'x:1')).rejects.toThrow(ImageNotFoundError);
  });

  it('untag removes one name and keeps the image dangling', async () => {
    const { store, root } = await open();
    const { configDigest } = await addImage(store, ['a:1', 'b:2']);
    expect(await store.untag('a:1')).toBe(configDigest);
    expect((await store.resolve(configDigest)).repoTags).toEqual(['b:2']);
    await store.untag('b:2');
    const index = await indexOf(root);
    expect(index.manifests).toHaveLength(1);
    expect(index.manifests[0]!.annotations).toBeUndefined();
    expect((await store.list())[0]).toMatchObject({ id: configDigest, repoTags: [], repoDigests: [] });
    await expect(store.untag('b:2')).rejects.toThrow(ImageNotFoundError);
  });

  it('addImage records digest references and checks them', async () => {
    const { store } = await open();
    const made = await makeImage(store, { seed: 'd' });
    const byDigest = parseReference(`registry.example.com/team/app@${made.manifest.digest}`);
    const resolved = await store.addImage(made.manifest, [parseReference('registry.example.com/team/app:v1'), byDigest]);
    expect(resolved.repoTags).toEqual(['registry.example.com/team/app:v1']);
    expect(resolved.repoDigests).toEqual([`registry.example.com/team/app@${made.manifest.digest}`]);
    expect((await store.resolve(`registry.example.com/team/app@${made.manifest.digest}`)).id).toBe(made.configDigest);
    const other = await makeImage(store, { seed: 'e' });
    await expect(store.addImage(other.manifest, [byDigest])).rejects.toThrow(/names manifest/);
  });

  it('addImage refuses an image with a missing blob and leaves index.json alone', async () => {
    const { store, root } = await open();
    const layer = await putLayer(store, { f: 'x' });
    const missing = { ...layer.descriptor, digest: `sha256:${'0'.repeat(64)}` as const };
    const config = newImageConfig({ diffIds: [layer.diffId, layer.diffId] });
    // writeImage refuses too, so build the manifest by hand.
    const configBlob = await store.content.putJson(config);
    const manifest = await store.content.putJson({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, ...configBlob },
      layers: [layer.descriptor, missing],
    });
    const before = await readFile(join(root, 'index.json'), 'utf8');
    await expect(store.addImage({ mediaType: MediaType.OciManifest, ...manifest }, [parseReference('broken:1')])).rejects.toThrow(IncompleteImageError);
    await expect(store.addImage({ mediaType: MediaType.OciManifest, ...manifest }, [])).rejects.toThrow(`layer blob ${missing.digest} is not in the content store`);
    expect(await readFile(join(root, 'index.json'), 'utf8')).toBe(before);
  });

  it('list: one summary per image, newest first, with uncompressed sizes', async () => {
    const { store } = await open();
    const old = await addImage(store, ['old:1'], { seed: 'o', created: '2020-01-01T00:00:00Z', layers: [{ a: 'a'.repeat(3000) }, { b: 'b' }] });
    const fresh = await addImage(store, ['new:1', 'new:2'], { seed: 'n', created: '2024-01-01T00:00:00Z' });
    await addImage(store, [], { seed: 'dangling', created: '2022-01-01T00:00:00Z' });
    const list = await store.list();
    expect(list.map((s) => s.repoTags)).toEqual([['new:1', 'new:2'], [], ['old:1']]);
    expect(list[2]!.size).toBe(old.layers.reduce((sum, l) => sum + l.uncompressedSize, 0));
    expect(list[0]).toMatchObject({ id: fresh.configDigest, manifestDigest: fresh.manifest.digest, created: '2024-01-01T00:00:00Z', labels: { seed: 'n' }, platform: { os: 'linux' } });
  });

  it('computes sizes by decompressing layers that have no record', async () => {
    const { store, root } = await open();
    const { layers } = await addImage(store, ['x:1'], { layers: [{ big: 'z'.repeat(10_000) }] });
    await rm(join(root, 'strata', 'layers'), { recursive: true });
    const reopened = await (await import('../../src/image/image-store.js')).ImageStore.open(root);
    expect((await reopened.list())[0]!.size).toBe(layers[0]!.uncompressedSize);
  });
});

describe('remove (rmi)', () => {
  it('by tag: untags while other names remain, deletes with the last', async () => {
    const { store, root } = await open();
    const { configDigest } = await addImage(store, ['a:1', 'b:1']);
    expect(await store.remove('a:1')).toEqual({ untagged: ['a:1'], deleted: [] });
    expect(await store.remove('b:1')).toEqual({ untagged: ['b:1'], deleted: [configDigest] });
    expect((await indexOf(root)).manifests).toEqual([]);
    await expect(store.resolve(configDigest)).rejects.toThrow(ImageNotFoundError);
  });

  it('by ID: needs force when named in several repositories', async () => {
    const { store } = await open();
    const { configDigest } = await addImage(store, ['a:1', 'b:1']);
    const id = configDigest.slice(7, 19);
    await expect(store.remove(id)).rejects.toThrow(`conflict: unable to delete ${id} (must be forced) - image is referenced in multiple repositories`);
    expect(await store.remove(id, { force: true })).toEqual({ untagged: ['a:1', 'b:1'], deleted: [configDigest] });
  });

  it('by ID: an image with one tag (plus digests of that repository) goes at once', async () => {
    const { store } = await open();
    const made = await makeImage(store);
    await store.addImage(made.manifest, [parseReference('a:1'), parseReference(`a@${made.manifest.digest}`)]);
    expect(await store.remove(made.configDigest)).toEqual({ untagged: ['a:1', `a@${made.manifest.digest}`], deleted: [made.configDigest] });
  });

  it('removing the last tag of a repository drops its digest references too', async () => {
    const { store } = await open();
    const made = await makeImage(store);
    await store.addImage(made.manifest, [parseReference('a:1'), parseReference(`a@${made.manifest.digest}`), parseReference('b:1')]);
    expect(await store.remove('a:1')).toEqual({ untagged: ['a:1', `a@${made.manifest.digest}`], deleted: [] });
    expect((await store.resolve('b:1')).repoDigests).toEqual([]);
  });

  it('dangling images are removed by ID', async () => {
    const { store, root } = await open();
    const { configDigest } = await addImage(store, []);
    expect(await store.remove(configDigest.slice(7, 11))).toEqual({ untagged: [], deleted: [configDigest] });
    expect((await indexOf(root)).manifests).toEqual([]);
  });

  it('respects containers using the image', async () => {
    const { store } = await open();
    const { configDigest } = await addImage(store, ['app:1']);
    const id = configDigest.slice(7, 19);
    const stopped = async () => ({ containerId: 'c0ffee00c0ffee00', running: false });
    const running = async () => ({ containerId: 'c0ffee00c0ffee00', running: true });
    await expect(store.remove('app:1', { isInUse: stopped })).rejects.toThrow(
      `conflict: unable to remove repository reference "app:1" (must force) - container c0ffee00c0ff is using its referenced image ${id}`,
    );
    await expect(store.remove(id, { isInUse: stopped })).rejects.toThrow(`unable to delete ${id} (must be forced) - image is being used by stopped container c0ffee00c0ff`);
    await expect(store.remove(id, { isInUse: running, force: true })).rejects.toThrow(`unable to delete ${id} (cannot be forced) - image is being used by running container`);
    await expect(store.remove('app:1', { isInUse: async () => true })).rejects.toThrow(ImageConflictError);
    // A second name can go even while a container uses the image.
    await store.tag('app:1', 'app:2');
    expect(await store.remove('app:2', { isInUse: stopped })).toEqual({ untagged: ['app:2'], deleted: [] });
    expect(await store.remove('app:1', { isInUse: stopped, force: true })).toEqual({ untagged: ['app:1'], deleted: [configDigest] });
  });
});

describe('prune', () => {
  it('deletes dangling images, or with all every unused image', async () => {
    const { store } = await open();
    const tagged = await addImage(store, ['keep:1'], { seed: 'k' });
    const dangling = await addImage(store, [], { seed: 'd' });
    const used = await addImage(store, ['used:1'], { seed: 'u' });
    expect(await store.prune()).toEqual({ untagged: [], deleted: [dangling.configDigest] });
    const isInUse = async (id: string) => id === used.configDigest;
    expect(await store.prune({ all: true, isInUse })).toEqual({ untagged: ['keep:1'], deleted: [tagged.configDigest] });
    expect((await store.list()).map((s) => s.id)).toEqual([used.configDigest]);
  });
});

describe('multi-platform images', () => {
  async function multiPlatform(store: ImageStore, withArm = true) {
    const host = hostPlatform();
    const other = host.architecture === 'arm64' ? { os: 'linux', architecture: 's390x' } : { os: 'linux', architecture: 'arm64' };
    const layer = await putLayer(store, { f: 'same' });
    const mk = async (platform: typeof host) =>
      writeImage(store.content, { config: newImageConfig({ platform, diffIds: [layer.diffId], created: '2024-01-01T00:00:00Z' }), layers: [layer.descriptor] });
    const hostImage = await mk(host);
    const otherImage = await mk(other);
    if (!withArm) await store.content.delete(otherImage.manifest.digest);
    const index = await store.content.putJson({
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [
        { ...otherImage.manifest, platform: other },
        { ...hostImage.manifest, platform: host },
      ],
    });
    return { index: { mediaType: MediaType.OciIndex, ...index }, hostImage, otherImage, other };
  }

  it('resolves the host platform by default and others on request', async () => {
    const { store } = await open();
    const { index, hostImage, otherImage, other } = await multiPlatform(store);
    await store.addImage(index, [parseReference('multi:1')]);
    const resolved = await store.resolve('multi:1');
    expect(resolved.id).toBe(hostImage.configDigest);
    expect(resolved.manifestDigest).toBe(hostImage.manifest.digest);
    expect(resolved.target.digest).toBe(index.digest);
    expect((await store.resolve('multi:1', { platform: other })).id).toBe(otherImage.configDigest);
    await expect(store.resolve('multi:1', { platform: { os: 'linux', architecture: 'mips64' } })).rejects.toThrow(NoMatchingPlatformError);
    await expect(store.resolve('multi:1', { platform: { os: 'linux', architecture: 'mips64' } })).rejects.toThrow('no matching manifest for linux/mips64 in the manifest list entries');
  });

  it('accepts an index with only some platforms present', async () => {
    const { store } = await open();
    const { index, hostImage } = await multiPlatform(store, false);
    const resolved = await store.addImage(index, [parseReference('partial:1')]);
    expect(resolved.id).toBe(hostImage.configDigest);
  });
});

const hasSkopeo = existsSync('/usr/bin/skopeo');
const hasUmoci = existsSync('/usr/bin/umoci');

describe('the root is an OCI layout other tools read', () => {
  it.skipIf(!hasSkopeo)('skopeo finds images by the familiar name users type (needs skopeo)', async () => {
    const { store, root } = await open();
    const a = await addImage(store, ['busybox:latest', 'localhost:5000/team/app:1.0'], { seed: 'a' });
    const b = await addImage(store, ['myapp:1.0'], { seed: 'b' });
    await addImage(store, [], { seed: 'dangling' });
    for (const [name, digest] of [['busybox:latest', a.manifest.digest], ['localhost:5000/team/app:1.0', a.manifest.digest], ['myapp:1.0', b.manifest.digest]] as const) {
      const { stdout } = await execFileAsync('skopeo', ['inspect', `oci:${root}:${name}`]);
      const info = JSON.parse(stdout) as { Digest: string; Layers: string[] };
      expect(info.Digest, name).toBe(digest);
    }
    // Copying out by name gives back the very same manifest.
    const out = await mkdtemp(join(tmpdir(), 'strata-skopeo-'));
    cleanups.push(() => rm(out, { recursive: true, force: true }));
    await execFileAsync('skopeo', ['copy', `oci:${root}:myapp:1.0`, `oci:${out}:copy`]);
    expect((await indexOf(out)).manifests[0]!.digest).toBe(b.manifest.digest);
  });

  it.skipIf(!hasUmoci)('umoci lists the names and unpacks by name (needs umoci)', async () => {
    const { store, root } = await open();
    await addImage(store, ['busybox:latest'], { seed: 'a', layers: [{ 'etc/hello': 'hi\n' }] });
    await addImage(store, ['myapp:1.0'], { seed: 'b' });
    await addImage(store, [], { seed: 'dangling' });
    const { stdout } = await execFileAsync('umoci', ['ls', '--layout', root]);
    expect(stdout.trim().split('\n').sort()).toEqual(['busybox:latest', 'myapp:1.0']);
    const bundle = join(await mkdtemp(join(tmpdir(), 'strata-umoci-')), 'bundle');
    cleanups.push(() => rm(join(bundle, '..'), { recursive: true, force: true }));
    await execFileAsync('umoci', ['unpack', '--rootless', '--image', `${root}:busybox:latest`, bundle]);
    expect(await readFile(join(bundle, 'rootfs', 'etc', 'hello'), 'utf8')).toBe('hi\n');
  });

  it('reads entries other tools wrote with only ref.name', async () => {
    const { store, root } = await open();
    const made = await makeImage(store);
    const index = await indexOf(root);
    index.manifests.push({ ...made.manifest, annotations: { [Annotation.RefName]: 'quay.io/x/y:2' } });
    index.manifests.push({ ...made.manifest, annotations: { [Annotation.RefName]: 'latest' } });
    await writeFile(join(root, 'index.json'), JSON.stringify(index));
    const resolved = await store.resolve('quay.io/x/y:2');
    expect(resolved.id).toBe(made.configDigest);
    // A bare tag as ref.name (skopeo's `oci:DIR:latest`) names no repository.
    expect(resolved.repoTags).toEqual(['quay.io/x/y:2']);
    await expect(store.resolve('latest')).rejects.toThrow(ImageNotFoundError);
  });
});
