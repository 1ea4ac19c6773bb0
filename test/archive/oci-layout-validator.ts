/**
 * A strict checker of OCI image layouts (image-spec v1.1 image-layout.md,
 * descriptor.md, manifest.md, image-index.md, config.md, layer.md) for tests.
 *
 * {@link validateOciLayout} returns every violation it finds as a sentence
 * (empty when the layout is valid), so a failing test shows them all at once.
 * Beyond the spec's MUSTs it holds a layout written by `save` to what the
 * tests ask of it: index.json carries a mediaType, and the blobs directory
 * holds nothing that no descriptor reaches.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { spawn } from 'node:child_process';

const INDEX_TYPE = 'application/vnd.oci.image.index.v1+json';
const MANIFEST_TYPE = 'application/vnd.oci.image.manifest.v1+json';
const CONFIG_TYPE = 'application/vnd.oci.image.config.v1+json';
const LAYER_TYPES: Record<string, 'none' | 'gzip' | 'zstd'> = {
  'application/vnd.oci.image.layer.v1.tar': 'none',
  'application/vnd.oci.image.layer.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd': 'zstd',
  'application/vnd.oci.image.layer.nondistributable.v1.tar': 'none',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd': 'zstd',
};

/** RFC 6838 media type (type "/" subtype, restricted-name characters), as descriptor.md requires. */
const MEDIA_TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;
/** descriptor.md: digest ::= algorithm ":" encoded. */
const DIGEST_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const SHA256_RE = /^sha256:[a-f0-9]{64}$/;
/**
 * annotations.md, org.opencontainers.image.ref.name:
 *   ref       ::= component ("/" component)*
 *   component ::= alphanum (separator alphanum)*
 *   alphanum  ::= [A-Za-z0-9]+
 *   separator ::= [-._:@+] | "--"
 */
const REF_NAME_RE = /^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:\/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$/;
const REF_NAME = 'org.opencontainers.image.ref.name';

/** Whether `name` satisfies the ref.name grammar of the image spec. */
export function isValidRefName(name: string): boolean {
  return REF_NAME_RE.test(name);
}

interface Descriptor {
  mediaType?: unknown;
  digest?: unknown;
  size?: unknown;
  annotations?: unknown;
  urls?: unknown;
  platform?: unknown;
}

/** What a valid layout holds, for tests that go on to compare it with something. */
export interface LayoutSummary {
  problems: string[];
  /** ref.name → manifest digest (the first entry with that name). */
  refs: Map<string, string>;
  manifests: string[];
}

/** Options of {@link validateOciLayout}. */
export interface ValidateOptions {
  /**
   * Require the SHOULDs save always meets: index.json and manifests carry
   * their mediaType (default true). Other tools' layouts may leave them out
   * (skopeo 1.9 writes index.json without one).
   */
  strict?: boolean;
}

/** Validates the layout in `dir`; see the module comment. */
export async function validateOciLayout(dir: string, options: ValidateOptions = {}): Promise<LayoutSummary> {
  const strict = options.strict ?? true;
  const problems: string[] = [];
  const problem = (text: string): void => void problems.push(text);
  const refs = new Map<string, string>();
  const manifests: string[] = [];
  const referenced = new Set<string>();

  // oci-layout
  const layoutText = await readFile(join(dir, 'oci-layout'), 'utf8').catch(() => undefined);
  if (layoutText === undefined) problem('oci-layout is missing');
  else {
    const layout = parseJson(layoutText, 'oci-layout', problem) as { imageLayoutVersion?: unknown } | undefined;
    if (layout !== undefined) {
      if (typeof layout !== 'object' || layout === null || Array.isArray(layout)) problem('oci-layout is not a JSON object');
      else if (layout.imageLayoutVersion !== '1.0.0') problem(`oci-layout: imageLayoutVersion is ${JSON.stringify(layout.imageLayoutVersion)}, expected "1.0.0"`);
    }
  }

  const checkDescriptor = (desc: Descriptor, where: string): desc is { mediaType: string; digest: string; size: number } => {
    let ok = true;
    if (typeof desc !== 'object' || desc === null) {
      problem(`${where}: descriptor is not an object`);
      return false;
    }
    if (typeof desc.mediaType !== 'string' || !MEDIA_TYPE_RE.test(desc.mediaType)) {
      problem(`${where}: mediaType ${JSON.stringify(desc.mediaType)} is not an RFC 6838 media type`);
      ok = false;
    }
    if (typeof desc.digest !== 'string' || !DIGEST_RE.test(desc.digest)) {
      problem(`${where}: digest ${JSON.stringify(desc.digest)} does not follow the digest grammar`);
      ok = false;
    } else if (desc.digest.startsWith('sha256:') && !SHA256_RE.test(desc.digest)) {
      problem(`${where}: sha256 digest ${desc.digest} is not 64 lowercase hex digits`);
      ok = false;
    }
    if (typeof desc.size !== 'number' || !Number.isSafeInteger(desc.size) || desc.size < 0) {
      problem(`${where}: size ${JSON.stringify(desc.size)} is not a non-negative integer`);
      ok = false;
    }
    if (desc.annotations !== undefined) {
      if (typeof desc.annotations !== 'object' || desc.annotations === null || Array.isArray(desc.annotations)) {
        problem(`${where}: annotations is not a string map`);
      } else {
        for (const [key, value] of Object.entries(desc.annotations)) {
          if (typeof value !== 'string') problem(`${where}: annotation ${key} is not a string`);
        }
      }
    }
    return ok;
  };

  /** Checks that the blob exists with the descriptor's size and digest; returns its path. */
  const checkBlob = async (desc: { digest: string; size: number }, where: string): Promise<string | undefined> => {
    const [algorithm, encoded] = desc.digest.split(':') as [string, string];
    const path = join(dir, 'blobs', algorithm, encoded);
    referenced.add(`${algorithm}/${encoded}`);
    const info = await lstat(path).catch(() => undefined);
    if (!info) {
      problem(`${where}: blob ${desc.digest} is missing`);
      return undefined;
    }
    if (!info.isFile()) {
      problem(`${where}: blobs/${algorithm}/${encoded} is not a regular file`);
      return undefined;
    }
    if (info.size !== desc.size) problem(`${where}: descriptor says ${desc.size} bytes, blob ${desc.digest} has ${info.size}`);
    if (algorithm !== 'sha256') {
      problem(`${where}: cannot verify ${algorithm} digests`);
      return path;
    }
    const actual = await hashFile(path);
    if (actual !== encoded) problem(`${where}: blob ${desc.digest} hashes to sha256:${actual}`);
    return path;
  };

  const readDocument = async (desc: { digest: string; size: number }, where: string): Promise<Record<string, unknown> | undefined> => {
    const path = await checkBlob(desc, where);
    if (!path) return undefined;
    const doc = parseJson(await readFile(path, 'utf8'), `${where} (${desc.digest})`, problem);
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
      if (doc !== undefined) problem(`${where}: ${desc.digest} is not a JSON object`);
      return undefined;
    }
    return doc as Record<string, unknown>;
  };

  const checkManifest = async (desc: { mediaType: string; digest: string; size: number }, where: string): Promise<void> => {
    const doc = await readDocument(desc, where);
    if (!doc) return;
    manifests.push(desc.digest);
    if (doc.schemaVersion !== 2) problem(`${where}: schemaVersion is ${JSON.stringify(doc.schemaVersion)}, expected 2`);
    if (doc.mediaType !== undefined && doc.mediaType !== desc.mediaType) {
      problem(`${where}: manifest says mediaType ${JSON.stringify(doc.mediaType)}, its descriptor ${desc.mediaType}`);
    }
    if (doc.mediaType === undefined && strict) problem(`${where}: manifest has no mediaType (image-spec: SHOULD be set; save always sets it)`);
    const config = doc.config as Descriptor;
    const layers = doc.layers as Descriptor[];
    if (!checkDescriptor(config, `${where} config`)) return;
    if (config.mediaType !== CONFIG_TYPE) problem(`${where}: config mediaType is ${config.mediaType}, expected ${CONFIG_TYPE}`);
    if (!Array.isArray(layers)) {
      problem(`${where}: layers is not an array`);
      return;
    }
    const configDoc = await readDocument(config, `${where} config`);
    const rootfs = configDoc?.rootfs as { type?: unknown; diff_ids?: unknown } | undefined;
    if (configDoc) {
      if (typeof configDoc.architecture !== 'string' || typeof configDoc.os !== 'string') problem(`${where} config: architecture and os must be strings`);
      if (rootfs?.type !== 'layers') problem(`${where} config: rootfs.type is ${JSON.stringify(rootfs?.type)}, expected "layers"`);
      if (!Array.isArray(rootfs?.diff_ids)) problem(`${where} config: rootfs.diff_ids is not an array`);
    }
    const diffIds = Array.isArray(rootfs?.diff_ids) ? (rootfs!.diff_ids as unknown[]) : undefined;
    if (diffIds && diffIds.length !== layers.length) problem(`${where}: ${layers.length} layers but the config lists ${diffIds.length} diff_ids`);
    for (const [i, layer] of layers.entries()) {
      const label = `${where} layers[${i}]`;
      if (!checkDescriptor(layer, label)) continue;
      const compression = LAYER_TYPES[layer.mediaType];
      if (compression === undefined) {
        problem(`${label}: ${layer.mediaType} is not an OCI layer media type`);
        continue;
      }
      const path = await checkBlob(layer, label);
      if (!path) continue;
      const head = Buffer.alloc(512);
      const handle = await (await import('node:fs/promises')).open(path, 'r');
      const { bytesRead } = await handle.read(head, 0, 512, 0);
      await handle.close();
      const magic = head.subarray(0, bytesRead);
      const isGzip = magic[0] === 0x1f && magic[1] === 0x8b;
      const isZstd = magic.readUInt32LE(0) === 0xfd2fb528;
      const isTar = bytesRead === 512 && (magic.subarray(257, 262).toString('latin1') === 'ustar' || magic.every((b) => b === 0));
      if (compression === 'gzip' && !isGzip) problem(`${label}: media type says gzip but the blob does not start with the gzip magic`);
      if (compression === 'zstd' && !isZstd) problem(`${label}: media type says zstd but the blob does not start with the zstd magic`);
      if (compression === 'none' && !isTar) problem(`${label}: media type says an uncompressed tar but the blob is not one${isGzip ? ' (it is gzip)' : isZstd ? ' (it is zstd)' : ''}`);
      const expected = diffIds?.[i];
      if (typeof expected === 'string') {
        const actual = await diffIdOf(path, compression).catch((err: Error) => {
          problem(`${label}: cannot decompress: ${err.message}`);
          return undefined;
        });
        if (actual !== undefined && actual !== expected) problem(`${label}: uncompressed layer hashes to ${actual}, config diff_ids[${i}] says ${expected}`);
      }
    }
  };

  const checkIndex = async (index: Record<string, unknown>, where: string, depth: number): Promise<void> => {
    if (index.schemaVersion !== 2) problem(`${where}: schemaVersion is ${JSON.stringify(index.schemaVersion)}, expected 2`);
    if (index.mediaType !== INDEX_TYPE && (strict || index.mediaType !== undefined)) problem(`${where}: mediaType is ${JSON.stringify(index.mediaType)}, expected ${INDEX_TYPE}`);
    if (!Array.isArray(index.manifests)) {
      problem(`${where}: manifests is not an array`);
      return;
    }
    for (const [i, desc] of (index.manifests as Descriptor[]).entries()) {
      const label = `${where} manifests[${i}]`;
      if (!checkDescriptor(desc, label)) continue;
      const refName = ((desc as Descriptor).annotations as Record<string, unknown> | undefined)?.[REF_NAME];
      if (refName !== undefined) {
        if (typeof refName !== 'string' || !REF_NAME_RE.test(refName)) problem(`${label}: ref.name ${JSON.stringify(refName)} does not follow the ref.name grammar`);
        // Not required to be unique: Docker 25 writes the bare tag, so a:1 and b:1 share "1".
        else if (depth === 0 && !refs.has(refName)) refs.set(refName, desc.digest);
      }
      if (desc.mediaType === MANIFEST_TYPE) await checkManifest(desc, label);
      else if (desc.mediaType === INDEX_TYPE) {
        if (depth > 4) problem(`${label}: indexes nested too deeply`);
        else {
          const nested = await readDocument(desc, label);
          if (nested) await checkIndex(nested, label, depth + 1);
        }
      } else {
        problem(`${label}: mediaType ${desc.mediaType} is neither an OCI manifest nor an OCI index`);
        await checkBlob(desc, label);
      }
    }
  };

  const indexText = await readFile(join(dir, 'index.json'), 'utf8').catch(() => undefined);
  if (indexText === undefined) problem('index.json is missing');
  else {
    const index = parseJson(indexText, 'index.json', problem);
    if (typeof index !== 'object' || index === null || Array.isArray(index)) {
      if (index !== undefined) problem('index.json is not a JSON object');
    } else await checkIndex(index as Record<string, unknown>, 'index.json', 0);
  }

  // blobs/: only algorithm directories of files, every one reached by a descriptor.
  const blobsDir = join(dir, 'blobs');
  const algorithms = await readdir(blobsDir).catch(() => undefined);
  if (algorithms === undefined) problem('blobs/ is missing');
  for (const algorithm of algorithms ?? []) {
    const info = await lstat(join(blobsDir, algorithm));
    if (!info.isDirectory()) {
      problem(`blobs/${algorithm} is not a directory`);
      continue;
    }
    for (const name of await readdir(join(blobsDir, algorithm))) {
      if (!referenced.has(`${algorithm}/${name}`)) problem(`blobs/${algorithm}/${name} is not referenced by any descriptor`);
    }
  }
  return { problems, refs, manifests };
}

function parseJson(text: string, what: string, problem: (text: string) => void): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    problem(`${what} is not valid JSON: ${(err as Error).message}`);
    return undefined;
  }
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** sha256 of the uncompressed layer (zstd through the zstd CLI, which the tests' hosts have). */
async function diffIdOf(path: string, compression: 'none' | 'gzip' | 'zstd'): Promise<string> {
  const hash = createHash('sha256');
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      done();
    },
  });
  if (compression === 'none') await pipeline(createReadStream(path), sink);
  else if (compression === 'gzip') await pipeline(createReadStream(path), createGunzip(), sink);
  else {
    const child = spawn('zstd', ['-dc', path], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<number>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code) => resolve(code ?? -1));
    });
    await pipeline(child.stdout, sink);
    if ((await exited) !== 0) throw new Error('zstd -d failed');
  }
  return `sha256:${hash.digest('hex')}`;
}
