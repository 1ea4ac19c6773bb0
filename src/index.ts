/**
 * strata: Docker's storage layer as a library. Start with {@link Strata}
 * (one store root, Docker's operations on its images, containers and
 * volumes: `build`, `import`, `save`, `load`, `run`, `diff`, `commit`, …);
 * the functions below are the building blocks it is made of, for callers who
 * need one step on its own: making a layer from a tree, applying layers to a
 * directory, writing or reading archives, building from a Dockerfile.
 *
 * Every deliberate error extends {@link StrataError} and carries a stable
 * `code` to branch on.
 *
 * @packageDocumentation
 */

// ---------------------------------------------------------------- facade

/** The facade over one store root, and its option and result types. */
export { Strata, writeStreamToFile } from './strata.js';
export type {
  ContainerRef,
  StrataOpenOptions,
  StrataSaveOptions,
  StrataExportLayerOptions,
  FlattenImageOptions,
  LoadInput,
  RmiOptions,
  RmiItem,
  RmiResult,
} from './strata.js';

// ---------------------------------------------------------------- content

/** Digests: the validated `sha256:<hex>` type, its parser and hashing helpers. */
export { parseDigest, isDigest, sha256Of, DigestCounter, InvalidDigestError } from './content/digest.js';
export type { Digest } from './content/digest.js';
/** The content-addressed blob store (an OCI image layout on disk). */
export { ContentStore, BlobWriter } from './content/store.js';
export type { BlobInfo, ExpectedContent, WriterOptions, ReadOptions } from './content/store.js';
/** Leases keep freshly written blobs alive until an image references them. */
export { Lease } from './content/lease.js';
/** Errors of the content store, and the base class of every strata error. */
export { StrataError, BlobNotFoundError, BlobCorruptError, DigestMismatchError, SizeMismatchError, BlobTooLargeError } from './content/errors.js';

// ---------------------------------------------------------------- images

/** The OCI image model as plain data, with the spec's field names. */
export type { Descriptor, ImageManifest, ImageIndex, ImageConfig, ContainerConfig, HistoryEntry, Platform } from './image/types.js';
/** Annotation keys strata reads and writes on index entries. */
export { Annotation } from './image/types.js';
/** Media types (OCI and Docker) and layer compression. */
export { MediaType, layerMediaType, compressionOfMediaType } from './image/mediatypes.js';
export type { Compression } from './image/mediatypes.js';
/** Docker's image reference grammar: `busybox` → `docker.io/library/busybox:latest`. */
export { parseReference, Reference, InvalidReferenceError } from './image/reference.js';
/** The image store: names in index.json, resolution, rmi, gc, fsck. */
export {
  ImageStore,
  ImageNotFoundError,
  AmbiguousImageError,
  ImageConflictError,
  IncompleteImageError,
  InvalidManifestError,
  NoMatchingPlatformError,
} from './image/image-store.js';
export type { ResolvedImage, ImageSummary, RemoveResult, ResolveOptions } from './image/image-store.js';
/** Image configs: new ones, `--change` instructions, and storing an image's config and manifest. */
export { newImageConfig, applyChanges, writeImage, InvalidImageConfigError, InvalidChangeError } from './image/config.js';
export type { WriteImageOptions, WrittenImage } from './image/config.js';
/** Docker-shaped views of images: `inspect` documents and `history` rows. */
export type { ImageInspect, HistoryRow } from './image/views.js';
/** Garbage collection results, and roots other subsystems keep alive. */
export { registerGcRoots, GcMarkError } from './image/gc.js';
export type { GcResult, GcRootsProvider } from './image/gc.js';
/** Consistency check results. */
export type { FsckReport, FsckFault, FsckOptions } from './image/fsck.js';

// ---------------------------------------------------------------- layers

/** Making a layer (directory, changeset or tar → stored blob + DiffID + record). */
export { makeLayer, InvalidLayerSourceError } from './layer/make.js';
export type { LayerSource, MakeLayerOptions } from './layer/make.js';
/** Streaming one stored layer in a chosen compression. */
export { exportLayer, LayerDiffIdMismatchError } from './layer/export.js';
export type { ExportLayerOptions } from './layer/export.js';
/** What strata records per layer, and the error for an unknown one. */
export { LayerRecords, LayerNotFoundError } from './layer/record.js';
export type { LayerRecord } from './layer/record.js';
/** ChainIDs of a layer stack. */
export { chainIds, chainIdOf } from './layer/chain.js';

// ---------------------------------------------------------------- tar

/** Deterministic tarballs of a directory tree or of a changeset (with whiteouts). */
export { tarFromTree } from './tar/write.js';
export type { TreeTarOptions } from './tar/write.js';
export { tarFromChangeset } from './tar/changeset.js';
export type { Changeset, ChangesetEntry } from './tar/changeset.js';
export type { EntryHeader, EntryType } from './tar/entry.js';
/** Applying layers to a directory, safely (whiteouts honoured, nothing written outside it). */
export { applyLayer, applyLayers, LayerSecurityError } from './tar/extract.js';
export type { ApplyOptions, ApplyStats } from './tar/extract.js';
/** The merged filesystem of a layer stack as one plain tar. */
export { flattenLayers } from './tar/flatten.js';
export type { FlattenOptions } from './tar/flatten.js';

// ---------------------------------------------------------------- archives

/** `docker save`: images as a Docker 25 / OCI archive stream. */
export { saveImages } from './archive/save.js';
export type { SaveItem, SaveFormat, SaveOptions } from './archive/save.js';
/** `docker load`: docker-save archives (old and new), OCI archives and layouts. */
export { loadImages, ArchiveError } from './archive/load.js';
export type { LoadedImage, LoadOptions } from './archive/load.js';
/** `docker import`: a one-layer image from a directory or a tarball. */
export { importImage } from './archive/import.js';
export type { ImportOptions, ImportResult, ImportSource } from './archive/import.js';

// ---------------------------------------------------------------- builds

/**
 * `docker build` with the classic builder's results: {@link build} is what
 * {@link Strata.build} runs, over any `{ content, images, root }`. Parse
 * failures are {@link DockerfileError}s (with the line); a failed step is a
 * {@link BuildError} (with the step, instruction and line).
 */
export { build, BuildError } from './build/engine.js';
export type { BuildDeps, BuildOptions, BuildResult, BuildStepResult } from './build/engine.js';
export { DockerfileError } from './build/dockerfile/errors.js';

// ---------------------------------------------------------------- containers

/**
 * Containers: a record and a copy-on-write upper dir over the image's shared
 * snapshots. {@link Container} is what the facade's container methods return
 * (ID, name, record as last read, directories); {@link ContainerStore} is the
 * store behind {@link Strata.containers}.
 */
export {
  Container,
  ContainerStore,
  ContainerNotFoundError,
  AmbiguousContainerError,
  ContainerNameConflictError,
  ContainerStateError,
  ContainerCorruptError,
} from './container/container-store.js';
export type { ContainerRecord, ContainerState, ContainerStatus, ContainerRunConfig, ListContainersOptions } from './container/container-store.js';
/** Names Docker accepts for containers. */
export { InvalidContainerNameError } from './container/names.js';
/** Options and results of create, start, run and remove. */
export type {
  ContainerCreateOptions,
  StartOptions,
  StartResult,
  RunContainerOptions,
  RunContainerResult,
  RemoveContainerOptions,
  ContainerHostConfig,
} from './container/run.js';
/** The network a container gets: `none` (loopback only) or `host`. */
export type { NetworkMode } from './runtime/spec.js';
/** The host cannot run containers or RUN steps (no root, cgroups, overlayfs or runtime); the message says which. */
export { RuntimeUnavailableError } from './runtime/detect.js';
/** The runtime could not start the process; `exitCode` is docker run's (127 not found, 126 not executable, 125 otherwise). */
export { ContainerRuntimeError } from './runtime/run.js';
/** How a container's mounts appear in its record (`docker inspect`'s `Mounts`, and the parsed spec). */
export type { ContainerMount, MountPoint } from './container/mounts.js';
/** An image `VOLUME` (or `-v /path`) over a file of the image. */
export { VolumeOverFileError } from './container/mounts.js';
/** `docker diff` lines; {@link formatChanges} prints them as docker does. */
export { formatChanges } from './container/diff.js';
export type { Change, ChangeKind } from './container/diff.js';
/** `docker commit` options; a {@link Pauser} freezes a running container meanwhile (the facade supplies the runtime's). */
export type { CommitOptions, Pauser } from './container/commit.js';
/** `docker export` options. */
export type { ExportOptions as ContainerExportOptions } from './container/export.js';
/** `docker cp` in and out of a container. */
export { CopyError } from './container/cp.js';
export type { CopyFromOptions, CopyToOptions, CopySource, PauseOptions, ContainerPathStat } from './container/cp.js';
/**
 * The copy-on-write file-system API of one container (see
 * {@link Strata.containerFs}): fs/promises-like calls on container paths,
 * writing in overlayfs format.
 */
export { ContainerFs, ContainerPathError } from './container/fs.js';
export type {
  ContainerFsDirs,
  CreateOptions as ContainerFsCreateOptions,
  WriteFileOptions,
  WriteStreamOptions,
  MkdirOptions,
  RmOptions,
  SpecialFileOptions,
} from './container/fs.js';

// ---------------------------------------------------------------- volumes

/**
 * Volumes: named directories that outlive containers, `docker volume`'s
 * operations plus export and import of their content as a tar. Use
 * {@link Strata.volumes}, which knows which containers use a volume; a
 * VolumeStore opened on its own does not.
 */
export {
  VolumeStore,
  VolumeNotFoundError,
  VolumeInUseError,
  VolumeDriverError,
  VolumeOptionError,
  VolumeCorruptError,
  VolumeRemoveError,
  InvalidFilterError,
  LOCAL_DRIVER,
} from './volume/volume-store.js';
export type {
  VolumeInfo,
  VolumeInspect,
  VolumeStoreOptions,
  UsageProvider,
  CreateVolumeOptions,
  ListVolumesOptions,
  RemoveVolumesOptions,
  PruneVolumesOptions,
  PruneReport,
  ExportVolumeOptions,
} from './volume/volume-store.js';
/** Names Docker accepts for volumes. */
export { InvalidVolumeNameError } from './volume/names.js';
/**
 * `-v` and `--mount` as the docker CLI parses them, into the
 * {@link MountSpec}s that {@link ContainerCreateOptions.mounts} takes.
 */
export { parseVolumeFlag, parseMountFlag, MountSpecError } from './volume/mountspec.js';
export type { MountSpec, MountType, Propagation, BindRecursion, ParseMountOptions } from './volume/mountspec.js';

// ---------------------------------------------------------------- where things live

/** The default store root, and resolution of a `--root` flag. */
export { defaultRoot, resolveRoot, InvalidRootError } from './util/root.js';
