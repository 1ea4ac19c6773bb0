/**
 * Helpers for image-store tests: temp stores, tiny real images (gzip layers
 * with layer records), and transpiled copies of the image store for child
 * processes (which cannot load TypeScript).
 */
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import ts from 'typescript';
import { ImageStore } from '../../src/image/image-store.js';
import { newImageConfig, writeImage } from '../../src/image/config.js';
import { chainIds } from '../../src/layer/chain.js';
import { MediaType } from '../../src/image/mediatypes.js';
import type { Descriptor, HistoryEntry, ImageConfig } from '../../src/image/types.js';
import type { Digest } from '../../src/content/digest.js';

const SRC = resolve(import.meta.dirname, '..', '..', 'src');

/** A fresh store in a temp directory. */
export async function tempStore(): Promise<{ store: ImageStore; root: string; cleanup: () => Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), 'strata-image-'));
  const store = await ImageStore.open(root);
  return { store, root, cleanup: () => rm(root, { recursive: true, force: true }) };
}

/** A ustar archive of regular files (name → content), built by hand: deterministic and tiny. */
export function tarOf(files: Record<string, string>): Buffer {
  const blocks: Buffer[] = [];
  for (const [name, content] of Object.entries(files)) {
    const data = Buffer.from(content);
    const header = Buffer.alloc(512);
    header.write(name, 0, 100, 'utf8');
    header.write('0000644\0', 100);
    header.write('0000000\0', 108);
    header.write('0000000\0', 116);
    header.write(data.length.toString(8).padStart(11, '0') + '\0', 124);
    header.write('00000000000\0', 136);
    header.write('        ', 148);
    header.write('0', 156);
    header.write('ustar\0', 257);
    header.write('00', 263);
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    blocks.push(header, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

function sha256(data: Buffer): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** A stored gzip layer with its record. */
export interface StoredLayer {
  descriptor: Descriptor;
  diffId: Digest;
  uncompressedSize: number;
}

/** Stores `files` as a gzip layer and records it (on top of `parentDiffIds`). */
export async function putLayer(store: ImageStore, files: Record<string, string>, parentDiffIds: Digest[] = []): Promise<StoredLayer> {
  const tar = tarOf(files);
  const gz = gzipSync(tar);
  const blob = await store.content.putBytes(gz);
  const diffId = sha256(tar);
  const chain = chainIds([...parentDiffIds, diffId]);
  const chainId = chain.at(-1)!;
  const parent = chain.length > 1 ? chain.at(-2) : undefined;
  await store.layers.put({
    chainId,
    ...(parent ? { parent } : {}),
    diffId,
    digest: blob.digest,
    size: blob.size,
    mediaType: MediaType.OciLayerGzip,
    compression: 'gzip',
    uncompressedSize: tar.length,
    createdAt: new Date().toISOString(),
  });
  return { descriptor: { mediaType: MediaType.OciLayerGzip, digest: blob.digest, size: blob.size }, diffId, uncompressedSize: tar.length };
}

/** Options of {@link makeImage}. */
export interface MakeImageOptions {
  /** Files of each layer, bottom first (default: one layer with a file named after `seed`). */
  layers?: Record<string, string>[];
  /** Makes otherwise identical images different. */
  seed?: string;
  created?: string;
  history?: HistoryEntry[];
  config?: ImageConfig['config'];
}

/** Writes a complete image (layers, config, manifest); not yet in index.json. */
export async function makeImage(store: ImageStore, options: MakeImageOptions = {}) {
  const seed = options.seed ?? 'x';
  const layerFiles = options.layers ?? [{ [`file-${seed}`]: `content ${seed}\n` }];
  const layers: StoredLayer[] = [];
  for (const files of layerFiles) layers.push(await putLayer(store, files, layers.map((l) => l.diffId)));
  const config = newImageConfig({
    created: options.created ?? '2024-01-02T03:04:05Z',
    diffIds: layers.map((l) => l.diffId),
    config: options.config ?? { Env: ['PATH=/bin'], Cmd: ['sh'], Labels: { seed } },
    history: options.history ?? layers.map((_, i) => ({ created: options.created ?? '2024-01-02T03:04:05Z', created_by: `layer ${i} ${seed}` })),
  });
  const written = await writeImage(store.content, { config, layers: layers.map((l) => l.descriptor) });
  return { ...written, config, layers };
}

/** makeImage + addImage with `refs`. */
export async function addImage(store: ImageStore, refs: string[], options: MakeImageOptions = {}) {
  const { parseReference } = await import('../../src/image/reference.js');
  const made = await makeImage(store, options);
  const resolved = await store.addImage(made.manifest, refs.map((r) => parseReference(r)));
  return { ...made, resolved };
}

/** Relative `.js` imports of a module, as source paths. */
function importsOf(source: string, from: string): string[] {
  const out: string[] = [];
  for (const match of source.matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)\.js['"]/g)) {
    out.push(resolve(dirname(from), `${match[1]}.ts`));
  }
  return out;
}

/**
 * Transpiles `entry` (a path under src/) and everything it imports into
 * `outDir`, preserving the layout; returns the path of the entry's .js.
 */
export async function transpileForChild(entry: string, outDir: string): Promise<string> {
  await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, 'package.json'), '{"type":"module"}\n');
  const seen = new Set<string>();
  const queue = [resolve(SRC, entry)];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const source = await readFile(file, 'utf8');
    queue.push(...importsOf(source, file));
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      fileName: file,
    });
    const target = join(outDir, file.slice(SRC.length + 1).replace(/\.ts$/, '.js'));
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, outputText);
  }
  return join(outDir, entry.replace(/\.ts$/, '.js'));
}
