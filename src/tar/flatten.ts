/**
 * Flattening: the merged root file system of a stack of layers as one plain
 * tar, as `docker export` writes it (no whiteouts, no opaque markers).
 *
 * The layers are applied with {@link applyLayers} into a private directory
 * under `scratchDir`, which is then streamed with {@link tarFromTree} and
 * removed, whether the stream ends, fails or is destroyed. This needs disk
 * space for the merged tree but keeps memory flat, and reuses the one
 * implementation of layer semantics rather than a second one. Owners in the
 * output are the layers' own only when running as root (or with
 * `preserveOwners` where chown is permitted); otherwise they are the current
 * user's, since the tree on disk cannot hold them.
 *
 * @module
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { TEMP_PREFIX } from '../util/atomic.js';
import { applyLayers, type ApplyOptions } from './extract.js';
import { tarFromTree } from './write.js';

/** Options of {@link flattenLayers}. */
export interface FlattenOptions extends Omit<ApplyOptions, 'signal' | 'xattrs'> {
  /** Directory under which the merged tree is built (and removed afterwards). */
  scratchDir: string;
  /** Clamp mtimes in the output to this (seconds), for reproducible exports. */
  sourceDateEpoch?: number;
  /** Carry extended attributes from the layers into the output (default true). */
  xattrs?: boolean;
}

/**
 * One tar of the tree that results from applying `layers` (bottom first). Each
 * layer factory is called when its turn comes. Errors (an unsafe layer, a
 * truncated one) surface as an error on the returned stream.
 */
export function flattenLayers(
  layers: Array<() => Promise<NodeJS.ReadableStream> | NodeJS.ReadableStream>,
  opts: FlattenOptions,
): Readable {
  const abort = new AbortController();
  const keepXattrs = opts.xattrs ?? true;
  let workDir: Promise<string> | undefined;
  let task: Promise<void> | undefined;
  let tar: Readable | undefined;
  let cleanup: Promise<void> | undefined;

  // Waits for the build to settle first: removing the tree while a layer is still being written into it would race.
  const cleanUp = (): Promise<void> =>
    (cleanup ??= (async () => {
      await task?.catch(() => undefined);
      const dir = await workDir?.catch(() => undefined);
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    })());

  async function build(): Promise<void> {
    await mkdir(opts.scratchDir, { recursive: true });
    workDir = mkdtemp(join(opts.scratchDir, `${TEMP_PREFIX}flatten-`));
    const rootfs = join(await workDir, 'rootfs');
    await mkdir(rootfs, { mode: 0o755 });
    const { scratchDir: _scratchDir, sourceDateEpoch: _epoch, xattrs: _xattrs, ...applyOpts } = opts;
    await applyLayers(rootfs, layers, { ...applyOpts, xattrs: keepXattrs ? 'apply' : 'skip', signal: abort.signal });
    abort.signal.throwIfAborted();
    tar = tarFromTree(rootfs, { sourceDateEpoch: opts.sourceDateEpoch, xattrs: keepXattrs });
    tar.on('data', (chunk: Buffer) => {
      if (!output.push(chunk)) tar!.pause();
    });
    tar.once('end', () => {
      cleanUp().then(
        () => output.push(null),
        (err: unknown) => output.destroy(err as Error),
      );
    });
    tar.once('error', (err) => output.destroy(err));
  }

  const output = new Readable({
    read() {
      if (task === undefined) {
        task = build();
        task.catch((err: unknown) => output.destroy(err as Error));
      } else {
        tar?.resume();
      }
    },
    destroy(err, callback) {
      abort.abort(err ?? new Error('flatten output was destroyed'));
      tar?.destroy();
      cleanUp().then(
        () => callback(err),
        (cleanupErr: unknown) => callback(err ?? (cleanupErr as Error)),
      );
    },
  });
  return output;
}
