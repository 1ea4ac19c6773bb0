/**
 * `docker commit`: a new image made of the container's image plus one layer
 * holding what the container changed.
 *
 * The layer is derived from the upper dir alone (see changesetFromUpper), so
 * it is the same bytes whichever way the upper was changed, by a process in
 * the container or through {@link ContainerFs}: the tar writer is
 * deterministic. The config follows Docker's: the container's execution
 * config (the image's merged with the create options) with `changes`
 * applied; a history entry whose `created_by` is the container's Cmd joined by
 * spaces, with the author and message; no layer (and `empty_layer: true`)
 * when nothing changed. Like Docker, anything under the container's volume
 * mount points (and the image's declared volumes) is left out: that content
 * belongs to the volume, not to the container.
 */
import { StrataError } from '../content/errors.js';
import type { Lease } from '../content/lease.js';
import { applyChanges, writeImage } from '../image/config.js';
import type { ResolvedImage } from '../image/image-store.js';
import type { Compression } from '../image/mediatypes.js';
import { parseReference } from '../image/reference.js';
import type { Descriptor, ImageConfig } from '../image/types.js';
import { makeLayer } from '../layer/make.js';
import { changesetFromUpper } from '../snapshot/upperdiff.js';
import type { Changeset } from '../tar/changeset.js';
import { normalizeEntryPath } from '../tar/entry.js';
import { ContainerStateError, type Container } from './container-store.js';

/** DiffID of a layer with no entries (a tar of only its end marker): Docker's "empty layer". */
export const EMPTY_LAYER_DIFF_ID = 'sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef';

/** Pauses and resumes a running container's processes (supplied by the runtime). */
export interface Pauser {
  pause(): Promise<void>;
  resume(): Promise<void>;
}

/** Options of {@link commit}. */
export interface CommitOptions {
  /** Name for the new image (`repo:tag`); without it the image is dangling. */
  ref?: string;
  /** Dockerfile instructions applied to the config, as `docker commit --change`. */
  changes?: string[];
  /** History comment (`-m`). */
  message?: string;
  /** Author (`-a`), e.g. `Jane <jane@example.com>`. */
  author?: string;
  /**
   * Pause a running container while committing (default true, as Docker).
   * Pausing needs `pauser`; pass `pause: false` to commit a running container
   * as it is.
   */
  pause?: boolean;
  pauser?: Pauser;
  /** Compression of the new layer blob (default gzip). */
  compression?: Compression;
}

/**
 * Commits the container's changes as a new image (added to the image store,
 * tagged `ref` if given) and returns it. Holds the container's lock
 * throughout, so no strata process changes the upper dir meanwhile.
 */
export async function commit(container: Container, opts: CommitOptions = {}): Promise<ResolvedImage> {
  const refs = opts.ref !== undefined ? [parseReference(opts.ref)] : [];
  await container.refresh();
  const pause = opts.pause ?? true;
  if (container.isRunning && pause && !opts.pauser) {
    throw new ContainerStateError(
      `cannot commit running container ${container.id.slice(0, 12)} with pause: strata cannot freeze its processes by itself; pass the runtime's pauser, or pause: false to commit it as it is`,
    );
  }
  const store = container.store;
  const content = store.images.content;
  return container.withLock(() =>
    content.withLease(async (lease) => {
      const paused = container.isRunning && pause ? opts.pauser : undefined;
      await paused?.pause();
      let layer: Descriptor | undefined;
      let diffId: string | undefined;
      try {
        const changeset = excludeMountPoints(
          await changesetFromUpper(container.upperDir, { lowerDirs: await container.mountLowerDirs(), overlayXattrs: store.snapshotter.overlayXattrs }),
          mountTargets(container),
        );
        if (!isEmpty(changeset)) {
          const record = await makeLayer(content, { changeset }, {
            compression: opts.compression ?? 'gzip',
            lease,
            records: store.images.layers,
            ...(container.record.TopChainId !== null ? { parentChainId: container.record.TopChainId } : {}),
          });
          if (record.diffId !== EMPTY_LAYER_DIFF_ID) {
            layer = { mediaType: record.mediaType, digest: record.digest, size: record.size };
            diffId = record.diffId;
          }
        }
      } finally {
        await paused?.resume();
      }
      return writeCommittedImage(container, opts, lease, refs, layer, diffId);
    }),
  );
}

async function writeCommittedImage(
  container: Container,
  opts: CommitOptions,
  lease: Lease,
  refs: ReturnType<typeof parseReference>[],
  layer: Descriptor | undefined,
  diffId: string | undefined,
): Promise<ResolvedImage> {
  const { images } = container.store;
  const record = container.record;
  const parentManifest = await images.readManifest(record.ManifestDigest);
  const parentConfig = await images.readConfig(record.Image);
  // Claimed first: the parent's blobs are this image's too, and must not go between now and addImage.
  for (const blob of [parentManifest.config, ...parentManifest.layers]) {
    if (!(await images.content.claim(blob.digest, lease))) {
      throw new StrataError('IMAGE_INCOMPLETE', `cannot commit: blob ${blob.digest} of the container's image is missing from the content store`);
    }
  }

  const { Image: _image, Hostname: _hostname, ...exec } = record.Config;
  const created = new Date().toISOString();
  const base: ImageConfig = { ...structuredClone(parentConfig), config: structuredClone(exec) };
  const config = applyChanges(base, opts.changes ?? []);
  config.created = created;
  if (opts.author) config.author = opts.author;
  else delete config.author;
  config.container = record.Id;
  config.rootfs = { type: 'layers', diff_ids: [...parentConfig.rootfs.diff_ids, ...(diffId ? [diffId as `sha256:${string}`] : [])] };
  const entry: NonNullable<ImageConfig['history']>[number] = { created };
  if (opts.author) entry.author = opts.author;
  const createdBy = (record.Config.Cmd ?? []).join(' ');
  if (createdBy !== '') entry.created_by = createdBy;
  if (opts.message) entry.comment = opts.message;
  if (!layer) entry.empty_layer = true;
  config.history = [...(parentConfig.history ?? []), entry];

  const layers: Descriptor[] = parentManifest.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size }));
  if (layer) layers.push(layer);
  const written = await writeImage(images.content, { config, layers, lease });
  return images.addImage(written.manifest, refs);
}

function isEmpty(cs: Changeset): boolean {
  return cs.entries.length === 0 && cs.deletions.length === 0 && cs.opaqueDirs.length === 0;
}

/** Volume mount points of the container: its mounts' targets and the image's declared volumes (normalized, relative). */
function mountTargets(container: Container): string[] {
  const targets = new Set<string>();
  for (const raw of [...container.record.Mounts.map((m) => m.target), ...Object.keys(container.record.Config.Volumes ?? {})]) {
    const rel = normalizeEntryPathSafe(raw);
    if (rel !== undefined) targets.add(rel);
  }
  return [...targets];
}

function normalizeEntryPathSafe(path: string): string | undefined {
  try {
    return normalizeEntryPath(path);
  } catch {
    return undefined;
  }
}

/** Drops what lies strictly below a mount point; the mount point directory itself stays, as Docker keeps it. */
export function excludeMountPoints(cs: Changeset, targets: string[]): Changeset {
  if (targets.length === 0) return cs;
  const below = (path: string): boolean => targets.some((t) => path.startsWith(`${t}/`));
  const dropped = new Map(cs.entries.filter((e) => below(e.header.path)).map((e) => [e.header.path, e] as const));
  const entries: Changeset['entries'] = [];
  const promoted = new Map<string, string>();
  for (const entry of cs.entries) {
    if (below(entry.header.path)) continue;
    const target = entry.header.type === 'hardlink' ? entry.header.linkname! : undefined;
    const first = target !== undefined ? dropped.get(target) : undefined;
    if (target !== undefined && first) {
      const promotedTo = promoted.get(target);
      if (promotedTo !== undefined) {
        entries.push({ ...entry, header: { ...entry.header, linkname: promotedTo } });
        continue;
      }
      // The first link is under a mount point and goes; this one becomes the file itself.
      promoted.set(target, entry.header.path);
      const { linkname: _linkname, ...rest } = first.header;
      entries.push({ ...first, header: { ...rest, path: entry.header.path } });
      continue;
    }
    entries.push(entry);
  }
  return {
    entries,
    deletions: cs.deletions.filter((d) => !below(d)),
    opaqueDirs: cs.opaqueDirs.filter((d) => !below(d)),
  };
}
