/**
 * `import`: a one-layer image from a root filesystem, like `docker import`.
 *
 * From a directory the layer is made deterministically from the tree. From a
 * tarball (plain, gzip or zstd; a file or a stream) the uncompressed bytes are
 * kept as they are, as Docker does, so the diffID is the sha256 of the tar you
 * gave; every entry is vetted on the way through and an unsafe one fails the
 * import before any tag changes.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { PassThrough, Readable } from 'node:stream';
import type { Digest } from '../content/digest.js';
import type { ImageStore } from '../image/image-store.js';
import { sniffCompression, type Compression } from '../image/mediatypes.js';
import type { ImageConfig } from '../image/types.js';
import { applyChanges, newImageConfig, writeImage } from '../image/config.js';
import { parseReference } from '../image/reference.js';
import { createDecompressor } from '../layer/compress.js';
import { makeLayer } from '../layer/make.js';
import { LayerProbe, teeInto } from './probe.js';
import { ArchiveError } from './load.js';

export interface ImportOptions {
  /** Reference to tag the image with. */
  ref?: string;
  /** Dockerfile instructions applied to the config (`-c 'CMD ["sh"]'`). */
  changes?: string[];
  /** History comment; defaults to "Imported from <source>". */
  message?: string;
  /** Layer compression (gzip by default). */
  compression?: Compression;
  /** Clamp mtimes and set `created` (reproducible imports). */
  sourceDateEpoch?: number;
  /** Platform fields for the config; default the host's. */
  platform?: { os?: string; architecture?: string; variant?: string };
}

export interface ImportResult {
  id: Digest;
  manifestDigest: Digest;
  diffId: Digest;
  tag?: string;
}

/** What to import: a directory, a tar file, or a tar stream (`label` names it in history, "-" for stdin). */
export type ImportSource = { dir: string } | { file: string } | { stream: NodeJS.ReadableStream; label?: string };

/** Reads the first bytes of a stream without losing them; returns them and a stream of everything. */
async function peek(stream: NodeJS.ReadableStream, bytes: number): Promise<{ head: Buffer; all: Readable }> {
  const iterator = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const chunks: Buffer[] = [];
  let size = 0;
  let done = false;
  while (size < bytes) {
    const next = await iterator.next();
    if (next.done) {
      done = true;
      break;
    }
    chunks.push(next.value);
    size += next.value.length;
  }
  const head = Buffer.concat(chunks);
  async function* rest(): AsyncGenerator<Buffer> {
    yield head;
    if (done) return;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  }
  return { head, all: Readable.from(rest(), { objectMode: false }) };
}

/** Imports a root filesystem as a one-layer image. */
export async function importImage(images: ImageStore, source: ImportSource, options: ImportOptions = {}): Promise<ImportResult> {
  const store = images.content;
  const ref = options.ref ? parseReference(options.ref) : undefined;
  const lease = await store.lease();
  try {
    let label: string;
    let layer;
    if ('dir' in source) {
      const info = await stat(source.dir);
      if (!info.isDirectory()) throw new ArchiveError(`${source.dir} is not a directory`);
      label = source.dir;
      layer = await makeLayer(store, { dir: source.dir }, {
        compression: options.compression ?? 'gzip',
        sourceDateEpoch: options.sourceDateEpoch,
        lease,
        records: images.layers,
      });
    } else {
      label = 'file' in source ? source.file : source.label ?? '-';
      const raw = 'file' in source ? createReadStream(source.file) : source.stream;
      const { head, all } = await peek(raw, 512);
      const inputCompression = sniffCompression(head);
      const plain = inputCompression === 'none' ? all : all.pipe(createDecompressor(inputCompression));
      // makeLayer computes the diffID; the probe only classifies and vets, so it need not hash too.
      const probe = new LayerProbe(label, { hashUncompressed: false });
      const layerInput = new PassThrough({ highWaterMark: 1 << 20 });
      const feeding = teeInto(plain as AsyncIterable<Buffer>, [probe, layerInput]);
      const making = makeLayer(store, { tar: layerInput }, {
        compression: options.compression ?? 'gzip',
        lease,
        records: images.layers,
      });
      const [, made] = await Promise.all([feeding, making]);
      const found = await probe.result();
      if (found.kind !== 'layer') throw new ArchiveError(`${label} is not a tar archive`);
      if (found.lintError) throw new ArchiveError(`${label}: ${found.lintError.message}`);
      layer = made;
    }

    const created = options.sourceDateEpoch !== undefined
      ? new Date(options.sourceDateEpoch * 1000).toISOString()
      : new Date().toISOString();
    let config: ImageConfig = newImageConfig({ created, ...(options.platform ?? {}) });
    config.rootfs = { type: 'layers', diff_ids: [layer.diffId] };
    // Docker puts the message both in the history entry and in the config's top-level comment.
    const comment = options.message || `Imported from ${label}`;
    config.comment = comment;
    config.history = [{ created, comment }];
    if (options.changes && options.changes.length > 0) config = applyChanges(config, options.changes);

    const written = await writeImage(store, {
      config,
      layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }],
      lease,
    });
    await images.addImage(written.manifest, ref ? [ref] : []);
    return {
      id: written.configDigest,
      manifestDigest: written.manifest.digest,
      diffId: layer.diffId,
      ...(ref ? { tag: ref.familiar() } : {}),
    };
  } finally {
    await lease.release();
  }
}
