/**
 * `strata build`: a Dockerfile and a context in, an image out, layer for
 * layer what Docker's classic builder makes from the same input: a diff
 * layer for each step that changes the file system, an `empty_layer` history
 * entry for each that only changes the config.
 *
 * How a build goes:
 * 1. Everything that can be refused is refused before any step runs: the
 *    Dockerfile (with its line), the target, the tags, unsupported features,
 *    and RUN on a host that cannot run containers.
 * 2. The stages the target needs are built in dependency order. Each step
 *    gets a cache key (see cache.ts); a hit reuses the config and layer of an
 *    earlier build, a miss runs the step: metadata steps change the config,
 *    COPY/ADD/WORKDIR compute a changeset from the merged view of the
 *    snapshots below (no mount), RUN runs in an overlay mount.
 * 3. The target's config and layers become an image (config + OCI manifest),
 *    tagged as asked. Blobs are written under a lease released at the end,
 *    so a failed build leaves only unreferenced blobs, which gc removes.
 *
 * Output follows the classic builder (`Step 2/5 : COPY . /app`,
 * ` ---> Using cache`, ` ---> 1a2b3c4d5e6f`, `Successfully built …`).
 */
import { existsSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { basename, isAbsolute, join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { parseDigest, sha256Of, type Digest } from '../content/digest.js';
import { StrataError } from '../content/errors.js';
import type { Lease } from '../content/lease.js';
import type { ContentStore } from '../content/store.js';
import { formatPlatform, hostPlatform, newImageConfig, parsePlatform, platformMatches, writeImage } from '../image/config.js';
import type { ImageStore, ResolvedImage } from '../image/image-store.js';
import { MediaType, type Compression } from '../image/mediatypes.js';
import { parseReference, type Reference } from '../image/reference.js';
import type { ContainerConfig, Descriptor, HistoryEntry, ImageConfig, Platform } from '../image/types.js';
import { chainIds } from '../layer/chain.js';
import { makeLayer, recordForBlob } from '../layer/make.js';
import { checkRuntimeUsable, findRuntime, RuntimeUnavailableError, type RuntimeInfo } from '../runtime/detect.js';
import { overlaySupported } from '../runtime/overlay.js';
import { DEFAULT_PATH_ENV } from '../runtime/spec.js';
import { MergedView, indexChangeset, type LayerIndex, type ViewLayer } from '../snapshot/merged.js';
import { Snapshotter } from '../snapshot/snapshotter.js';
import type { Changeset } from '../tar/changeset.js';
import { compareNames } from '../tar/entry.js';
import { BuildCache, buildCacheDir, cacheKey, type CachedLayer } from './cache.js';
import { BuildContext } from './context.js';
import { copyChangeset, isEmptyChangeset, parseChmod, resolveChown, workdirChangeset, type CopyItem } from './copy.js';
import {
  BuildArgs,
  createdBy,
  DEFAULT_SHELL,
  DockerfileError,
  EXPANDING_INSTRUCTIONS,
  expandInstruction,
  normalizeWorkdir,
  parseDockerfile,
  parseOnbuildTrigger,
  planBuild,
  resolveCommandLine,
  resolveFromReference,
  resolveRunCommand,
  type AddInstruction,
  type BuildPlan,
  type CopyInstruction,
  type DockerfileAst,
  type Instruction,
  type RunInstruction,
  type StageArgs,
} from './dockerfile/index.js';
import { cleanStaleDirs, cleanStaleRunDirs, runStep } from './run.js';
import { contextItems, heredocItems, isGitSource, isUrl, urlItem, viewItems } from './sources.js';

/** What the engine needs from a store (a `Strata` instance has all three). */
export interface BuildDeps {
  content: ContentStore;
  images: ImageStore;
  /** The store root. */
  root: string;
}

/** Options of {@link build}. */
export interface BuildOptions {
  /** The build context directory. */
  contextDir: string;
  /** The Dockerfile: absolute, or relative to the context (default `Dockerfile` in the context). */
  dockerfile?: string;
  /** Names to give the image (`name`, `name:tag`, `registry/name:tag`). */
  tags?: string[];
  /**
   * `--build-arg` values. An `undefined` value is `--build-arg NAME` with no
   * value in the environment: it counts as given but sets nothing.
   */
  buildArgs?: Record<string, string | undefined>;
  /** Build this stage (by name) instead of the last one. */
  target?: string;
  /** Do not reuse cached steps (results are still cached for next time). */
  noCache?: boolean;
  /**
   * SOURCE_DATE_EPOCH (seconds): every history entry and the config are
   * dated then, and layer mtimes are clamped to it, so two builds of the same
   * input give the same image. Defaults to the `SOURCE_DATE_EPOCH`
   * environment variable when set.
   */
  sourceDateEpoch?: number;
  /**
   * How new layers are stored. Default `none`: like Docker's local image store,
   * layers stay uncompressed until something distributes them, which keeps
   * gzip (the largest cost of a COPY-heavy build) off the build's critical path.
   * `gzip` makes distribution-ready blobs at build time. A cached step reuses
   * its layer as it was stored.
   */
  compression?: Compression;
  /** OCI runtime for RUN: a name on PATH or a path (default runc, then crun). */
  runtime?: string;
  /** Network of RUN steps (default `none`; `RUN --network=host` asks for it per step). */
  network?: 'none' | 'host';
  /** Where progress goes, classic-builder style. Nothing is written without it. */
  output?: NodeJS.WritableStream;
  /** Write only the image ID (`sha256:…`) to `output`, at the end. */
  quiet?: boolean;
  /** Target platform (`linux/amd64`); only this host's platform can RUN. */
  platform?: string;
  /** Aborting stops the build between steps and kills a running RUN. */
  signal?: AbortSignal;
}

/** One step of a build, as {@link BuildResult.steps} reports it. */
export interface BuildStepResult {
  /** The instruction as written (`COPY . /app`); ONBUILD triggers as stored in the base image. */
  instruction: string;
  /** True when the step's result was reused (a cache hit, or a FROM). */
  cached: boolean;
  /** DiffID of the layer the step added, if it added one. */
  layer?: Digest;
}

/** What {@link build} made. */
export interface BuildResult {
  /** The image ID: the config digest. */
  id: Digest;
  manifestDigest: Digest;
  /** The names given, in familiar form (`app:latest`). */
  tags: string[];
  steps: BuildStepResult[];
}

/** A build that failed; `message` is Docker's wording where Docker has one. */
export class BuildError extends StrataError {
  /** 1-based step number (`Step N/M`), when a step failed. */
  step?: number;
  /** The failing instruction as written. */
  instruction?: string;
  /** Its line in the Dockerfile. */
  line?: number;

  constructor(message: string, where?: { step?: number; instruction?: string; line?: number }, options?: { cause?: unknown }) {
    super('BUILD_FAILED', message, options);
    if (where?.step !== undefined) this.step = where.step;
    if (where?.instruction !== undefined) this.instruction = where.instruction;
    if (where?.line !== undefined) this.line = where.line;
  }
}

/** A layer of the image being built. */
interface LayerRef {
  chainId: Digest;
  diffId: Digest;
  descriptor: Descriptor;
}

/** The state of a stage between two steps. */
interface StageState {
  config: ImageConfig;
  layers: LayerRef[];
  /** Cache key of this state. */
  key: string;
  args: StageArgs;
  /** CMD was set in this stage (ENTRYPOINT then keeps it). */
  cmdSet: boolean;
  maintainer?: string;
  /** Set while the state is still exactly a base image (nothing changed yet). */
  baseImage?: ResolvedImage;
}

const CONTAINER_CONFIG_FIELDS = [
  'User',
  'ExposedPorts',
  'Env',
  'Entrypoint',
  'Cmd',
  'Volumes',
  'WorkingDir',
  'Labels',
  'StopSignal',
  'ArgsEscaped',
  'Healthcheck',
  'OnBuild',
  'Shell',
] as const;

const SIGNALS = new Set([
  'ABRT', 'ALRM', 'BUS', 'CHLD', 'CLD', 'CONT', 'FPE', 'HUP', 'ILL', 'INT', 'IO', 'IOT', 'KILL', 'PIPE', 'POLL', 'PROF', 'PWR',
  'QUIT', 'SEGV', 'STKFLT', 'STOP', 'SYS', 'TERM', 'TRAP', 'TSTP', 'TTIN', 'TTOU', 'URG', 'USR1', 'USR2', 'VTALRM', 'WINCH',
  'XCPU', 'XFSZ', 'UNUSED',
]);

/** The execution config of a base image, keeping only the fields an image config defines. */
function cleanContainerConfig(config: ContainerConfig | undefined): ContainerConfig {
  const out: Record<string, unknown> = {};
  if (config === undefined || config === null) return {};
  for (const field of CONTAINER_CONFIG_FIELDS) {
    const value = (config as Record<string, unknown>)[field];
    if (value === undefined || value === null || value === '') continue;
    if (Array.isArray(value) && value.length === 0 && field !== 'Cmd' && field !== 'Entrypoint') continue;
    if (typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 0 && field !== 'Healthcheck') continue;
    out[field] = structuredClone(value);
  }
  return out as ContainerConfig;
}

/** The image config of a base image as the first state of a stage. */
function baseConfig(config: ImageConfig): ImageConfig {
  const out: ImageConfig = {
    architecture: config.architecture,
    os: config.os,
    config: cleanContainerConfig(config.config),
    rootfs: { type: 'layers', diff_ids: [...config.rootfs.diff_ids] },
    history: structuredClone(config.history ?? []),
  };
  if (config.created !== undefined) out.created = config.created;
  if (config.variant !== undefined) out.variant = config.variant;
  if (config['os.version'] !== undefined) out['os.version'] = config['os.version'];
  return out;
}

/** Orders map fields by key, as Go's encoding/json writes Docker's configs. */
function sortMaps(config: ContainerConfig): void {
  for (const field of ['Labels', 'ExposedPorts', 'Volumes'] as const) {
    const value = config[field] as Record<string, unknown> | undefined;
    if (value === undefined || value === null) continue;
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort(compareNames)) sorted[key] = value[key];
    (config as Record<string, unknown>)[field] = sorted;
  }
}

function shortId(config: ImageConfig): string {
  return sha256Of(JSON.stringify(config)).slice('sha256:'.length, 'sha256:'.length + 12);
}

function envKey(entry: string): string {
  const eq = entry.indexOf('=');
  return eq < 0 ? entry : entry.slice(0, eq);
}

function isoTime(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

/** Docker's EXPOSE parsing (nat.ParsePortSpecs): `80`, `80/udp`, `8000-8002/tcp`. */
function exposedPorts(spec: string): string[] {
  const m = /^(\d+)(?:-(\d+))?(?:\/([A-Za-z]*))?$/.exec(spec);
  if (!m) {
    if (spec.includes(':')) throw new StrataError('INVALID_PORT', `EXPOSE does not publish ports (no host ip or port): ${spec}`);
    throw new StrataError('INVALID_PORT', `Invalid containerPort: ${spec.split('/')[0]}`);
  }
  const proto = (m[3] === undefined || m[3] === '' ? 'tcp' : m[3]).toLowerCase();
  if (!['tcp', 'udp', 'sctp'].includes(proto)) throw new StrataError('INVALID_PORT', `Invalid proto: ${m[3]}`);
  const start = Number(m[1]);
  const end = m[2] === undefined ? start : Number(m[2]);
  if (start > 65535 || end > 65535) throw new StrataError('INVALID_PORT', `Invalid containerPort: ${spec.split('/')[0]}`);
  if (end < start) throw new StrataError('INVALID_PORT', `Invalid range specified for the Port: ${spec.split('/')[0]}`);
  const out: string[] = [];
  for (let p = start; p <= end; p++) out.push(`${p}/${proto}`);
  return out;
}

function checkSignal(signal: string): void {
  if (/^[0-9]+$/.test(signal)) {
    if (Number(signal) === 0 || Number(signal) > 64) throw new StrataError('INVALID_SIGNAL', `Invalid signal: ${signal}`);
    return;
  }
  const name = signal.toUpperCase().replace(/^SIG/, '');
  if (SIGNALS.has(name) || /^RTM(IN|AX)([+-]\d+)?$/.test(name)) return;
  throw new StrataError('INVALID_SIGNAL', `Invalid signal: ${signal}`);
}

/** Parses SOURCE_DATE_EPOCH. */
function parseEpoch(value: number | string | undefined, where: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = typeof value === 'number' ? value : /^[0-9]+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 0) throw new BuildError(`invalid ${where} ${JSON.stringify(String(value))}: expected a non-negative whole number of seconds`);
  return n;
}

/** Writes progress lines, or nothing. */
class Progress {
  constructor(
    private readonly out: NodeJS.WritableStream | undefined,
    readonly quiet: boolean,
  ) {}

  line(text: string): void {
    if (this.out !== undefined && !this.quiet) this.out.write(`${text}\n`);
  }

  /** Where RUN output goes: the output stream, or nowhere when quiet. */
  stream(): NodeJS.WritableStream {
    if (this.out !== undefined && !this.quiet) return this.out;
    return new Writable({ write: (_chunk, _enc, cb) => cb() });
  }

  final(text: string): void {
    if (this.out !== undefined) this.out.write(`${text}\n`);
  }
}

interface StepLocation {
  number?: number;
  instruction: Instruction;
}

/** One build. */
class Builder {
  private readonly progress: Progress;
  private readonly cache: BuildCache;
  private readonly snapshotter: Snapshotter;
  private readonly views = new Map<string, MergedView>();
  /** Layers this build made from COPY/ADD/WORKDIR changesets, known entry by entry, by ChainID. */
  private readonly layerIndexes = new Map<string, LayerIndex>();
  private readonly stageStates = new Map<number, StageState>();
  private readonly steps: BuildStepResult[] = [];
  private readonly epoch: number | undefined;
  private runtime: RuntimeInfo | undefined;
  private runtimeProblem: Error | undefined;
  private stepNumber = 0;
  private totalSteps = 0;
  private context!: BuildContext;
  private ast!: DockerfileAst;
  private plan!: BuildPlan;
  private buildArgs!: BuildArgs;
  private filename = 'Dockerfile';
  private lease!: Lease;
  private tempDir!: string;
  private targetPlatform: Platform | undefined;

  constructor(
    private readonly deps: BuildDeps,
    private readonly opts: BuildOptions,
  ) {
    this.progress = new Progress(opts.output, opts.quiet ?? false);
    this.cache = new BuildCache(deps.root);
    this.snapshotter = new Snapshotter(deps.root, deps.content, deps.images.layers);
    this.epoch = parseEpoch(opts.sourceDateEpoch ?? process.env.SOURCE_DATE_EPOCH, opts.sourceDateEpoch !== undefined ? 'sourceDateEpoch' : 'SOURCE_DATE_EPOCH');
  }

  private now(): string {
    return this.epoch !== undefined ? isoTime(this.epoch) : new Date().toISOString();
  }

  /** mtime of copied files: SOURCE_DATE_EPOCH, else 0, never the context's. */
  private get copyMtime(): number {
    return this.epoch ?? 0;
  }

  private fail(message: string, where: StepLocation | undefined, cause?: unknown): BuildError {
    return new BuildError(
      message,
      where === undefined
        ? undefined
        : { ...(where.number !== undefined ? { step: where.number } : {}), instruction: where.instruction.original, line: where.instruction.line },
      cause === undefined ? undefined : { cause },
    );
  }

  async run(): Promise<BuildResult> {
    const contextDir = resolve(this.opts.contextDir);
    const dockerfilePath =
      this.opts.dockerfile === undefined ? join(contextDir, 'Dockerfile') : isAbsolute(this.opts.dockerfile) ? this.opts.dockerfile : join(contextDir, this.opts.dockerfile);
    this.filename = basename(dockerfilePath);
    let text: string;
    try {
      text = readFileSync(dockerfilePath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new BuildError(`Cannot locate specified Dockerfile: ${this.opts.dockerfile ?? 'Dockerfile'}`);
      }
      throw err;
    }
    this.ast = parseDockerfile(text, { filename: this.filename });
    const buildArgs = this.opts.buildArgs ?? {};
    if (this.opts.platform !== undefined) this.targetPlatform = parsePlatform(this.opts.platform);
    const planOpts = { buildArgs, filename: this.filename, ...(this.opts.target !== undefined ? { target: this.opts.target } : {}) };
    this.plan = planBuild(this.ast, planOpts);
    this.buildArgs = new BuildArgs({ buildArgs, escapeChar: this.ast.escapeChar, filename: this.filename });
    for (const meta of this.ast.metaArgs) this.buildArgs.addMetaArgs(meta);
    const refs = this.parseTags();
    this.preflight();
    await this.checkRuntime();

    this.context = await BuildContext.open({ contextDir, dockerfile: dockerfilePath, cacheDir: buildCacheDir(this.deps.root) });
    for (const warning of this.ast.warnings) this.progress.line(`[WARNING]: ${warning.message} (line ${warning.line})`);
    for (const note of this.ast.directiveNotes) this.progress.line(`[WARNING]: ${note}`);

    this.totalSteps = this.plan.order.reduce((n, index) => n + 1 + this.ast.stages[index]!.instructions.length, 0);
    const tempBase = join(buildCacheDir(this.deps.root), 'tmp');
    await cleanStaleDirs(tempBase);
    if (this.runtime !== undefined) await cleanStaleRunDirs(this.deps.root);
    this.tempDir = join(tempBase, `${process.pid}-${randomBytes(6).toString('hex')}`);
    this.lease = await this.deps.content.lease();
    try {
      for (const index of this.plan.order) {
        this.opts.signal?.throwIfAborted();
        this.stageStates.set(index, await this.buildStage(index));
      }
      const final = this.stageStates.get(this.plan.target)!;
      const warning = this.buildArgs.unusedBuildArgsWarning();
      if (warning !== undefined) this.progress.line(warning);
      return await this.writeResult(final, refs);
    } finally {
      await this.context.save().catch(() => undefined);
      if (existsSync(this.tempDir)) await rm(this.tempDir, { recursive: true, force: true }).catch(() => undefined);
      await this.lease.release().catch(() => undefined);
    }
  }

  private parseTags(): Reference[] {
    const refs: Reference[] = [];
    for (const tag of this.opts.tags ?? []) {
      let ref: Reference;
      try {
        ref = parseReference(tag);
      } catch (err) {
        throw new BuildError(`invalid argument "${tag}" for "-t, --tag" flag: ${(err as Error).message}`, undefined, { cause: err });
      }
      if (ref.digest !== undefined) throw new BuildError(`invalid argument "${tag}" for "-t, --tag" flag: a tag cannot contain a digest`);
      refs.push(ref.tag === undefined ? ref.withTag('latest') : ref);
    }
    return refs;
  }

  /** Refuses what strata cannot build, before anything runs. */
  private preflight(): void {
    for (const index of this.plan.order) {
      for (const instruction of this.ast.stages[index]!.instructions) this.checkSupported(instruction);
    }
  }

  private checkSupported(instruction: Instruction): void {
    const refuse = (what: string): never => {
      throw new DockerfileError(`${what} is not supported by strata`, instruction.line, { endLine: instruction.endLine, filename: this.filename });
    };
    switch (instruction.kind) {
      case 'RUN':
        if (instruction.mounts !== undefined && instruction.mounts.length > 0) refuse('RUN --mount');
        if (instruction.security === 'insecure') refuse('RUN --security=insecure');
        break;
      case 'COPY':
        if (instruction.parents) refuse('COPY --parents');
        if (instruction.exclude !== undefined) refuse('COPY --exclude');
        break;
      case 'ADD':
        if (instruction.exclude !== undefined) refuse('ADD --exclude');
        if (instruction.keepGitDir) refuse('ADD --keep-git-dir (git sources)');
        for (const source of instruction.sources) if (isGitSource(source)) refuse(`ADD of a git repository (${source})`);
        break;
      default:
        // ONBUILD triggers are only stored here; they are checked where they run.
        break;
    }
  }

  /** The first RUN of the stages to build, with its step number. */
  private needsRun(): StepLocation | undefined {
    let number = 0;
    for (const index of this.plan.order) {
      number++;
      for (const instruction of this.ast.stages[index]!.instructions) {
        number++;
        if (instruction.kind === 'RUN') return { number, instruction };
      }
    }
    return undefined;
  }

  /** RUN needs root, a runtime and overlayfs: checked once, before the first step. */
  private async checkRuntime(): Promise<void> {
    const firstRun = this.needsRun();
    if (firstRun === undefined) return;
    try {
      await this.ensureRuntime();
    } catch (err) {
      throw this.fail((err as Error).message, firstRun, err);
    }
  }

  private async ensureRuntime(): Promise<RuntimeInfo> {
    if (this.runtime !== undefined) return this.runtime;
    if (this.runtimeProblem !== undefined) throw this.runtimeProblem;
    try {
      const runtime = await findRuntime(this.opts.runtime, { purpose: 'build' });
      await checkRuntimeUsable({ purpose: 'build' });
      if (!(await overlaySupported())) {
        throw new RuntimeUnavailableError('cannot run RUN steps: the overlay file system is not available (load the overlay kernel module)');
      }
      this.runtime = runtime;
      return runtime;
    } catch (err) {
      this.runtimeProblem = err as Error;
      throw err;
    }
  }

  // ------------------------------------------------------------ stages

  private async buildStage(index: number): Promise<StageState> {
    const resolved = this.plan.stages[index]!;
    const stage = resolved.stage;
    const fromStep = { number: ++this.stepNumber, instruction: stage.from as Instruction };
    this.progress.line(`Step ${fromStep.number}/${this.totalSteps} : ${stage.from.original}`);
    let state: StageState;
    try {
      state = await this.fromState(index);
    } catch (err) {
      throw this.wrap(err, fromStep);
    }
    this.steps.push({ instruction: stage.from.original, cached: true });
    if (state.baseImage !== undefined) this.progress.line(` ---> ${state.baseImage.id.slice(7, 19)}`);
    else if (resolved.base.kind === 'stage') this.progress.line(` ---> ${shortId(state.config)}`);

    // Docker adds the default PATH to a stage's config when the base has none
    // (dispatchState.setDefaultPath); a FROM-only build still gives the base itself.
    const env = state.config.config?.Env ?? [];
    if (!env.some((e) => envKey(e) === 'PATH')) {
      const config = structuredClone(state.config);
      config.config = { ...(config.config ?? {}), Env: [...env, `PATH=${DEFAULT_PATH_ENV}`] };
      state = { ...state, config };
    }

    const triggers = state.config.config?.OnBuild ?? [];
    if (triggers.length > 0) {
      const config = structuredClone(state.config);
      delete config.config!.OnBuild;
      state = { ...state, config, key: cacheKey(state.key, { clearOnBuild: true }) };
      delete state.baseImage;
      this.progress.line(`# Executing ${triggers.length} build trigger${triggers.length === 1 ? '' : 's'}`);
      for (const trigger of triggers) {
        let parsed: Instruction;
        try {
          parsed = parseOnbuildTrigger(trigger, { line: stage.from.line, filename: this.filename });
          this.checkSupported(parsed);
        } catch (err) {
          throw this.wrap(err, fromStep);
        }
        state = await this.step(state, { ...parsed, original: trigger }, fromStep.number);
      }
    }

    for (const instruction of stage.instructions) {
      this.opts.signal?.throwIfAborted();
      const number = ++this.stepNumber;
      this.progress.line(`Step ${number}/${this.totalSteps} : ${instruction.original}`);
      state = await this.step(state, instruction, number);
    }
    return state;
  }

  private async fromState(index: number): Promise<StageState> {
    const resolved = this.plan.stages[index]!;
    const args = this.buildArgs.newStage();
    const platformText = resolved.platform;
    const wanted = platformText !== undefined && platformText !== '' ? parsePlatform(platformText) : this.targetPlatform;
    const rootKey = cacheKey('', { epoch: this.epoch ?? null });
    switch (resolved.base.kind) {
      case 'scratch': {
        const platform = wanted ?? hostPlatform();
        const config = newImageConfig({ platform, created: this.now() });
        delete config.created;
        return { config, layers: [], key: cacheKey(rootKey, { from: 'scratch', platform: formatPlatform(platform) }), args, cmdSet: false };
      }
      case 'stage': {
        const base = this.stageStates.get(resolved.base.index);
        if (base === undefined) throw new BuildError(`stage ${resolved.base.index} was not built`);
        if (wanted !== undefined && !platformMatches({ architecture: base.config.architecture, os: base.config.os, ...(base.config.variant ? { variant: base.config.variant } : {}) }, wanted)) {
          throw new BuildError(`stage ${resolved.base.index} is built for ${base.config.os}/${base.config.architecture}, not ${formatPlatform(wanted)}`);
        }
        return { config: structuredClone(base.config), layers: [...base.layers], key: cacheKey(base.key, { from: 'stage' }), args, cmdSet: false };
      }
      case 'image': {
        const image = await this.resolveImage(resolved.base.ref, wanted);
        const layers = await this.imageLayers(image);
        return {
          config: baseConfig(image.config),
          layers,
          key: cacheKey(rootKey, { from: image.id }),
          args,
          cmdSet: false,
          baseImage: image,
        };
      }
    }
  }

  private async resolveImage(ref: string, platform: Platform | undefined): Promise<ResolvedImage> {
    let image: ResolvedImage;
    try {
      image = await this.deps.images.resolve(ref, platform ? { platform } : {});
    } catch (err) {
      if ((err as StrataError).code === 'IMAGE_NOT_FOUND') {
        throw new BuildError(`pull access denied for ${ref}: the image is not in the store and strata does not pull (load it with \`strata load\` or build it first)`, undefined, { cause: err });
      }
      throw err;
    }
    const actual: Platform = { architecture: image.config.architecture, os: image.config.os, ...(image.config.variant ? { variant: image.config.variant } : {}) };
    if (platform !== undefined && !platformMatches(actual, platform)) {
      throw new BuildError(`image ${ref} is for ${formatPlatform(actual)}, not the requested platform ${formatPlatform(platform)}`);
    }
    return image;
  }

  /** The layers of a stored image, with layer records made for any that lack one. */
  private async imageLayers(image: ResolvedImage): Promise<LayerRef[]> {
    const diffIds = image.config.rootfs.diff_ids;
    if (diffIds.length !== image.manifest.layers.length) {
      throw new BuildError(`image ${image.id} has ${image.manifest.layers.length} layers but ${diffIds.length} diff_ids`);
    }
    const chains = chainIds(diffIds);
    const out: LayerRef[] = [];
    for (const [i, layer] of image.manifest.layers.entries()) {
      const chainId = chains[i]!;
      if ((await this.deps.images.layers.get(chainId)) === undefined) {
        await recordForBlob(this.deps.content, parseDigest(layer.digest), layer.mediaType, i === 0 ? undefined : chains[i - 1]);
      }
      out.push({ chainId, diffId: parseDigest(diffIds[i]!), descriptor: { mediaType: layer.mediaType, digest: parseDigest(layer.digest), size: layer.size } });
    }
    return out;
  }

  /**
   * The merged view of `state`'s layers. `onDisk` is for a view whose files
   * are read (COPY --from): every layer unpacked, none indexed.
   */
  private async viewOf(state: StageState, onDisk = false): Promise<MergedView> {
    const top = state.layers.at(-1)?.chainId;
    if (top === undefined) return new MergedView([]);
    const key = onDisk ? `disk:${top}` : top;
    let view = this.views.get(key);
    if (view === undefined) {
      // Layers this build just made are looked at from memory: COPY only needs names and metadata, not an unpack.
      const layers: ViewLayer[] = [];
      let below: string | undefined;
      for (let i = state.layers.length - 1; i >= 0; i--) {
        const chainId = state.layers[i]!.chainId;
        const index = onDisk ? undefined : this.layerIndexes.get(chainId);
        if (index === undefined) {
          below = chainId;
          break;
        }
        layers.push(index);
      }
      if (below !== undefined) layers.push(...(await this.snapshotter.lowerDirs(below, this.opts.signal ? { signal: this.opts.signal } : {})));
      view = new MergedView(layers);
      this.views.set(key, view);
    }
    return view;
  }

  // ------------------------------------------------------------ steps

  private wrap(err: unknown, where: StepLocation): Error {
    if (err instanceof BuildError) {
      if (err.step === undefined && where.number !== undefined) err.step = where.number;
      if (err.instruction === undefined) err.instruction = where.instruction.original;
      if (err.line === undefined) err.line = where.instruction.line;
      return err;
    }
    if (err instanceof DockerfileError) return err;
    if ((err as Error)?.name === 'AbortError') return err as Error;
    return this.fail((err as Error).message ?? String(err), where, err);
  }

  private async step(state: StageState, instruction: Instruction, number: number): Promise<StageState> {
    const where: StepLocation = { number, instruction };
    try {
      return await this.dispatch(state, instruction, where);
    } catch (err) {
      throw this.wrap(err, where);
    }
  }

  /** A step's result, cached or computed. */
  private async cached(
    state: StageState,
    instruction: Instruction,
    keyParts: unknown,
    compute: () => Promise<{ config: ImageConfig; layer: CachedLayer | null }>,
    show: { runningIn: boolean },
  ): Promise<StageState> {
    const key = cacheKey(state.key, keyParts);
    if (!this.opts.noCache) {
      const entry = await this.cache.get(key);
      if (entry !== undefined && (await this.usable(entry.layer))) {
        this.progress.line(' ---> Using cache');
        this.progress.line(` ---> ${shortId(entry.config)}`);
        return this.advance(state, instruction, entry.config, entry.layer, key, true);
      }
    }
    const containerId = key.slice(0, 12);
    if (show.runningIn) this.progress.line(` ---> Running in ${containerId}`);
    const result = await compute();
    await this.cache.put(key, result.config, result.layer);
    if (show.runningIn) this.progress.line(`Removing intermediate container ${containerId}`);
    this.progress.line(` ---> ${shortId(result.config)}`);
    return this.advance(state, instruction, result.config, result.layer, key, false);
  }

  /** Whether a cached layer can still be used (its blob is in the store, now under this build's lease). */
  private async usable(layer: CachedLayer | null): Promise<boolean> {
    if (layer === null) return true;
    if (!(await this.deps.content.claim(layer.digest, this.lease))) return false;
    return (await this.deps.images.layers.get(layer.chainId)) !== undefined;
  }

  private advance(state: StageState, instruction: Instruction, config: ImageConfig, layer: CachedLayer | null, key: string, cached: boolean): StageState {
    const next: StageState = { ...state, config, key, layers: state.layers };
    delete next.baseImage;
    if (layer !== null) {
      next.layers = [...state.layers, { chainId: layer.chainId, diffId: layer.diffId, descriptor: { mediaType: layer.mediaType, digest: layer.digest, size: layer.size } }];
    }
    const step: BuildStepResult = { instruction: instruction.original, cached };
    if (layer !== null) step.layer = layer.diffId;
    this.steps.push(step);
    return next;
  }

  /** The config after a step: history entry added, dated, layer appended. */
  private commit(state: StageState, change: (c: ContainerConfig) => void, history: { createdBy: string; layerDiffId?: Digest; maintainer?: string }): ImageConfig {
    const config = structuredClone(state.config);
    config.config ??= {};
    change(config.config);
    sortMaps(config.config);
    const created = this.now();
    config.created = created;
    const entry: HistoryEntry = { created };
    const author = history.maintainer ?? state.maintainer;
    if (author !== undefined) {
      entry.author = author;
      config.author = author;
    }
    entry.created_by = history.createdBy;
    if (history.layerDiffId === undefined) entry.empty_layer = true;
    else config.rootfs.diff_ids = [...config.rootfs.diff_ids, history.layerDiffId];
    config.history = [...(config.history ?? []), entry];
    return config;
  }

  private shellOf(state: StageState): readonly string[] {
    return state.config.config?.Shell ?? DEFAULT_SHELL;
  }

  private envOf(state: StageState): string[] {
    return state.config.config?.Env ?? [];
  }

  private async dispatch(state: StageState, raw: Instruction, where: StepLocation): Promise<StageState> {
    const env = this.envOf(state);
    const shell = this.shellOf(state);
    if (raw.kind === 'ARG') {
      const defs = state.args.declare(raw, env);
      const expanded = { ...raw, args: defs };
      const createdByText = createdBy(expanded, { shell });
      return this.cached(state, raw, { ARG: createdByText }, async () => ({ config: this.commit(state, () => undefined, { createdBy: createdByText }), layer: null }), {
        runningIn: true,
      });
    }
    const instruction = EXPANDING_INSTRUCTIONS.has(raw.kind)
      ? expandInstruction(raw, state.args.lookup(env), this.ast.escapeChar, { filename: this.filename })
      : raw;
    const metadata = (change: (c: ContainerConfig) => void, extra: Partial<Pick<StageState, 'cmdSet' | 'maintainer'>> = {}): Promise<StageState> => {
      const nextState = { ...state, ...extra };
      const text = createdBy(instruction, { shell: instruction.kind === 'SHELL' ? instruction.command : shell });
      return this.cached(nextState, raw, { meta: text, cmdSet: nextState.cmdSet }, async () => ({ config: this.commit(nextState, change, { createdBy: text }), layer: null }), {
        runningIn: true,
      });
    };
    switch (instruction.kind) {
      case 'FROM':
        throw new BuildError('FROM inside a stage');
      case 'ENV':
        return metadata((c) => {
          const list = [...(c.Env ?? [])];
          for (const [key, value] of instruction.pairs) {
            const entry = `${key}=${value}`;
            const at = list.findIndex((e) => envKey(e) === key);
            if (at >= 0) list[at] = entry;
            else list.push(entry);
          }
          c.Env = list;
        });
      case 'LABEL':
        return metadata((c) => {
          const labels = { ...(c.Labels ?? {}) };
          for (const [key, value] of instruction.pairs) labels[key] = value;
          c.Labels = labels;
        });
      case 'EXPOSE': {
        const ports = instruction.ports.flatMap(exposedPorts);
        return metadata((c) => {
          const exposed = { ...(c.ExposedPorts ?? {}) };
          for (const port of ports) exposed[port] = {};
          c.ExposedPorts = exposed;
        });
      }
      case 'VOLUME':
        for (const path of instruction.paths) if (path.trim() === '') throw new BuildError('VOLUME specified can not be an empty string');
        return metadata((c) => {
          const volumes = { ...(c.Volumes ?? {}) };
          for (const path of instruction.paths) volumes[path] = {};
          c.Volumes = volumes;
        });
      case 'USER':
        return metadata((c) => {
          c.User = instruction.user;
        });
      case 'STOPSIGNAL':
        checkSignal(instruction.signal);
        return metadata((c) => {
          c.StopSignal = instruction.signal;
        });
      case 'HEALTHCHECK':
        return metadata((c) => {
          const h: NonNullable<ContainerConfig['Healthcheck']> = { Test: instruction.none ? ['NONE'] : [...instruction.test] };
          if (!instruction.none) {
            if (instruction.interval !== undefined) h.Interval = instruction.interval;
            if (instruction.timeout !== undefined) h.Timeout = instruction.timeout;
            if (instruction.startPeriod !== undefined) h.StartPeriod = instruction.startPeriod;
            if (instruction.startInterval !== undefined) h.StartInterval = instruction.startInterval;
            if (instruction.retries !== undefined) h.Retries = instruction.retries;
          }
          // Docker's daemon fills what is unset from the previous healthcheck
          // when it creates the step's container (daemon merge()), NONE included.
          const previous = c.Healthcheck;
          if (previous !== undefined && previous !== null) {
            for (const field of ['Interval', 'Timeout', 'StartPeriod', 'StartInterval', 'Retries'] as const) {
              if (h[field] === undefined && previous[field] !== undefined && previous[field] !== 0) h[field] = previous[field];
            }
          }
          c.Healthcheck = h;
        });
      case 'ONBUILD':
        return metadata((c) => {
          c.OnBuild = [...(c.OnBuild ?? []), instruction.trigger];
        });
      case 'SHELL':
        return metadata((c) => {
          c.Shell = [...instruction.command];
        });
      case 'ENTRYPOINT': {
        const cmdSet = state.cmdSet;
        return metadata((c) => {
          c.Entrypoint = resolveCommandLine(instruction, shell);
          // Docker: an ENTRYPOINT drops a CMD inherited from the base image.
          if (!cmdSet) delete c.Cmd;
        });
      }
      case 'CMD':
        return metadata(
          (c) => {
            c.Cmd = resolveCommandLine(instruction, shell);
          },
          { cmdSet: true },
        );
      case 'MAINTAINER':
        return metadata(
          () => undefined,
          { maintainer: instruction.name },
        );
      case 'WORKDIR':
        return this.workdir(state, instruction);
      case 'RUN':
        return this.runInstruction(state, instruction, where);
      case 'COPY':
      case 'ADD':
        return this.copyInstruction(state, instruction);
    }
  }

  // ------------------------------------------------------------ file system steps

  /**
   * Stores a changeset as a layer on top of `state` (null for an empty one).
   * With `indexed`, later steps of this build see the layer through an
   * in-memory index of the changeset rather than its unpacked snapshot.
   */
  private async layerFrom(state: StageState, changeset: Changeset, indexed = false): Promise<CachedLayer | null> {
    if (isEmptyChangeset(changeset)) return null;
    const parent = state.layers.at(-1)?.chainId;
    const record = await makeLayer(
      this.deps.content,
      { changeset },
      {
        compression: this.opts.compression ?? 'none',
        lease: this.lease,
        records: this.deps.images.layers,
        ...(parent !== undefined ? { parentChainId: parent } : {}),
        ...(this.epoch !== undefined ? { sourceDateEpoch: this.epoch } : {}),
      },
    );
    if (indexed && !this.layerIndexes.has(record.chainId)) {
      const chainId = record.chainId;
      const index = indexChangeset(changeset, () => this.snapshotter.ensure(chainId), this.epoch !== undefined ? { sourceDateEpoch: this.epoch } : {});
      if (index !== undefined) this.layerIndexes.set(chainId, index);
    }
    return { chainId: record.chainId, diffId: record.diffId, digest: record.digest, size: record.size, mediaType: record.mediaType };
  }

  private async workdir(state: StageState, instruction: Extract<Instruction, { kind: 'WORKDIR' }>): Promise<StageState> {
    const current = state.config.config?.WorkingDir ?? '';
    const path = normalizeWorkdir(current, instruction.path);
    const text = createdBy(instruction, { shell: this.shellOf(state), workingDir: current });
    return this.cached(
      state,
      instruction,
      { WORKDIR: path, text },
      async () => {
        const view = await this.viewOf(state);
        const layer = await this.layerFrom(state, await workdirChangeset(view, path, this.copyMtime), true);
        const config = this.commit(
          state,
          (c) => {
            c.WorkingDir = path;
          },
          { createdBy: text, ...(layer ? { layerDiffId: layer.diffId } : {}) },
        );
        return { config, layer };
      },
      { runningIn: true },
    );
  }

  private async runInstruction(state: StageState, instruction: RunInstruction, where: StepLocation): Promise<StageState> {
    const shell = this.shellOf(state);
    const env = this.envOf(state);
    const { args, files } = resolveRunCommand(instruction, shell);
    const text = createdBy(instruction, { shell, buildArgs: state.args.historyArgs(env) });
    const runEnv = [...env, ...state.args.runEnv(env)];
    const network = instruction.network === 'host' || instruction.network === 'none' ? instruction.network : (this.opts.network ?? 'none');
    if (args.length === 0) throw new BuildError('RUN needs a command');
    return this.cached(
      state,
      instruction,
      { RUN: text, args, files, env: runEnv, network },
      async () => {
        let runtime: RuntimeInfo;
        try {
          runtime = await this.ensureRuntime();
        } catch (err) {
          throw this.fail((err as Error).message, where, err);
        }
        const host = hostPlatform();
        const imagePlatform: Platform = { architecture: state.config.architecture, os: state.config.os, ...(state.config.variant ? { variant: state.config.variant } : {}) };
        if (!platformMatches(imagePlatform, host)) {
          throw new BuildError(`cannot RUN in a ${formatPlatform(imagePlatform)} image on a ${formatPlatform(host)} host`);
        }
        const top = state.layers.at(-1)?.chainId;
        const lowerDirs = top === undefined ? [] : await this.snapshotter.lowerDirs(top);
        const c = state.config.config ?? {};
        const result = await runStep({
          root: this.deps.root,
          runtime,
          lowerDirs,
          args,
          files,
          env: runEnv,
          ...(c.User !== undefined ? { user: c.User } : {}),
          ...(c.WorkingDir !== undefined ? { workingDir: c.WorkingDir } : {}),
          network,
          hostname: cacheKey(state.key, 'hostname').slice(0, 12),
          volumes: Object.keys(c.Volumes ?? {}),
          stdout: this.progress.stream(),
          stderr: this.progress.stream(),
          ...(this.opts.signal ? { signal: this.opts.signal } : {}),
        });
        try {
          if (result.exitCode !== 0 || result.changeset === undefined) {
            throw new BuildError(`The command '${args.join(' ')}' returned a non-zero code: ${result.exitCode}`);
          }
          const layer = await this.layerFrom(state, result.changeset);
          const config = this.commit(state, () => undefined, { createdBy: text, ...(layer ? { layerDiffId: layer.diffId } : {}) });
          return { config, layer };
        } finally {
          await result.cleanup();
        }
      },
      { runningIn: true },
    );
  }

  /** The merged view a `COPY --from` reads. */
  private async fromView(instruction: CopyInstruction): Promise<MergedView> {
    const source = resolveFromReference(this.ast, instruction.from!, instruction, this.filename);
    switch (source.kind) {
      case 'scratch':
        return new MergedView([]);
      case 'stage': {
        const stage = this.stageStates.get(source.index);
        if (stage === undefined) throw new BuildError(`stage ${instruction.from} is not built before it is used`);
        return this.viewOf(stage, true);
      }
      case 'image': {
        const image = await this.resolveImage(source.ref, undefined);
        const layers = await this.imageLayers(image);
        const top = layers.at(-1)?.chainId;
        return new MergedView(top === undefined ? [] : await this.snapshotter.lowerDirs(top));
      }
    }
  }

  private async copyInstruction(state: StageState, instruction: CopyInstruction | AddInstruction): Promise<StageState> {
    const cmd = instruction.kind;
    const isAdd = instruction.kind === 'ADD';
    const chmod = instruction.chmod !== undefined ? parseChmod(instruction.chmod) : undefined;
    // Created only by what needs it (a download, an archive to unpack), each
    // with mkdir -p: a cached step touches no directory.
    const stepTemp = join(this.tempDir, randomBytes(6).toString('hex'));
    try {
      // Sources and their hashes first: they are part of the cache key.
      const hashes: string[] = [];
      const producers: (() => Promise<CopyItem[]>)[] = [];
      const from = instruction.kind === 'COPY' ? instruction.from : undefined;
      if (from !== undefined) {
        const view = await this.fromView(instruction as CopyInstruction);
        const found = await viewItems(view, instruction.sources, cmd);
        hashes.push(...found.hashes);
        producers.push(async () => found.items);
      } else {
        const pending: string[] = [];
        const flushContext = async (): Promise<void> => {
          if (pending.length === 0) return;
          const sources = await this.context.resolveSources(pending.splice(0), cmd, { allowEmpty: true });
          hashes.push(...sources.map((s) => s.hash));
          producers.push(() => contextItems(this.context, sources, isAdd && instruction.unpack !== false));
        };
        for (const source of instruction.sources) {
          if (isUrl(source)) {
            if (!isAdd) throw new BuildError('source can\'t be a URL for COPY');
            await flushContext();
            const downloaded = await urlItem(source, {
              tempDir: stepTemp,
              ...(instruction.checksum !== undefined ? { checksum: instruction.checksum } : {}),
              ...(instruction.unpack === true ? { unpack: true } : {}),
              ...(this.opts.signal ? { signal: this.opts.signal } : {}),
            });
            hashes.push(downloaded.hash);
            producers.push(async () => [downloaded.item]);
          } else {
            pending.push(source);
          }
        }
        await flushContext();
      }
      if (instruction.heredocs.length > 0) {
        const inline = heredocItems(instruction.heredocs);
        hashes.push(...inline.hashes);
        producers.push(async () => inline.items);
      }
      if (hashes.length === 0) throw new BuildError(`${cmd} failed: no source files were specified`);
      if (hashes.length > 1 && !instruction.dest.endsWith('/')) {
        throw new BuildError(`When using ${cmd} with more than one source file, the destination must be a directory and end with a /`);
      }
      const text = createdBy(instruction, { shell: this.shellOf(state), sourceHashes: hashes });
      const keyParts = {
        [cmd]: text,
        hashes,
        dest: instruction.dest,
        chown: instruction.chown ?? null,
        chmod: chmod ?? null,
        link: instruction.link,
        unpack: isAdd ? ((instruction as AddInstruction).unpack ?? null) : null,
      };
      return await this.cached(
        state,
        instruction,
        keyParts,
        async () => {
          const view = await this.viewOf(state);
          const owner = instruction.chown !== undefined ? await resolveChown(view, instruction.chown) : undefined;
          const items: CopyItem[] = [];
          for (const produce of producers) items.push(...(await produce()));
          const changeset = await copyChangeset(items, {
            view,
            dest: instruction.dest,
            ...(state.config.config?.WorkingDir !== undefined ? { workingDir: state.config.config.WorkingDir } : {}),
            ...(owner !== undefined ? { owner } : {}),
            preserveOwnership: from !== undefined,
            ...(chmod !== undefined ? { chmod } : {}),
            link: instruction.link,
            mtime: this.copyMtime,
            tempDir: stepTemp,
          });
          const layer = await this.layerFrom(state, changeset, true);
          const config = this.commit(state, () => undefined, { createdBy: text, ...(layer ? { layerDiffId: layer.diffId } : {}) });
          return { config, layer };
        },
        { runningIn: false },
      );
    } finally {
      if (existsSync(stepTemp)) await rm(stepTemp, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  // ------------------------------------------------------------ result

  private async writeResult(final: StageState, refs: Reference[]): Promise<BuildResult> {
    let manifest: Descriptor;
    let id: Digest;
    if (final.baseImage !== undefined) {
      // Nothing changed the base: like Docker, the result is the base image itself.
      const size = await this.deps.content.size(final.baseImage.manifestDigest);
      if (size === undefined) throw new BuildError(`manifest ${final.baseImage.manifestDigest} of the base image is missing from the store`);
      manifest = { mediaType: final.baseImage.manifest.mediaType ?? MediaType.OciManifest, digest: final.baseImage.manifestDigest, size };
      id = final.baseImage.id;
    } else if (final.layers.length === 0 && (final.config.history ?? []).length === 0) {
      throw new BuildError('No image was generated. Is your Dockerfile empty?');
    } else {
      const config = structuredClone(final.config);
      if (config.created === undefined) config.created = this.now();
      const written = await writeImage(this.deps.content, { config, layers: final.layers.map((l) => l.descriptor), lease: this.lease });
      manifest = written.manifest;
      id = written.configDigest;
    }
    const added = await this.deps.images.addImage(manifest, refs);
    this.progress.line(`Successfully built ${id.slice(7, 19)}`);
    const tags = refs.map((r) => r.familiar());
    for (const tag of tags) this.progress.line(`Successfully tagged ${tag}`);
    if (this.progress.quiet) this.progress.final(id);
    return { id, manifestDigest: added.manifestDigest, tags, steps: this.steps };
  }
}

/**
 * Builds an image from a Dockerfile and a context, like `docker build` with
 * the classic builder (see the module comment for what is and is not done).
 *
 * @throws DockerfileError for a Dockerfile Docker would refuse (with its line),
 *   before anything runs
 * @throws BuildError for a step that fails (`step`, `instruction`, `line` say
 *   which), with Docker's message: `The command '/bin/sh -c false' returned a
 *   non-zero code: 1`, `COPY failed: file not found in build context or
 *   excluded by .dockerignore: stat x: file does not exist`, ...; and, before
 *   anything runs, when a Dockerfile with RUN meets a host that cannot run
 *   containers (the runtime's one-line reason)
 */
export async function build(deps: BuildDeps, opts: BuildOptions): Promise<BuildResult> {
  return new Builder(deps, opts).run();
}
