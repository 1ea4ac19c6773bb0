/**
 * `-v` / `--volume` and `--mount` specifications, parsed the way `docker run`
 * parses them, with Docker's error messages.
 *
 * In Docker a mount flag passes two parsers: the CLI's (docker/cli
 * `compose/loader.ParseVolume` for `-v`, `opts.MountOpt.Set` for `--mount`) and
 * then the daemon's (moby `volume/mounts/linux_parser.go`). Each rejects
 * different things with different wording, and users see whichever fires first,
 * so both stages are reproduced here in order. The reference is docker CLI 28
 * with moby 28:
 *
 * - `-v ./rel:/x` and `-v .:/x`: the CLI resolves host paths starting with `./`
 *   (or exactly `.`) against the current directory (CLI 23+). Other relative
 *   sources (`../x`, `~/x`, `rel/x`) are not host paths to Docker: they are
 *   volume names, and fail the volume-name check.
 * - `--mount src=./rel` and `src=.` are resolved the same way.
 * - A `-v` bind whose host path is missing is created at container start
 *   ({@link MountSpec.createHostPath}); a `--mount` bind must exist
 *   (`bind source path does not exist: /x`).
 * - A bare `-v /path` is an anonymous volume; Docker lets a bind or `--mount` at
 *   the same destination silently take its place ({@link validateMounts}).
 *
 * Differences from Docker, all deliberate: only the `local` volume driver
 * exists, so another `volume-driver` is refused when the volume is created (by
 * the volume store, with Docker's "plugin not found" text); `type=image` mounts
 * are refused; hexadecimal float sizes (`tmpfs-size=0x1p20`), which Go's
 * ParseFloat happens to accept, are refused.
 */
import { statSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { resolve as resolvePath } from 'node:path';
import { StrataError } from '../content/errors.js';
import { goQuote, volumeNameProblem } from './names.js';

/** Kinds of mount strata can set up. */
export type MountType = 'volume' | 'bind' | 'tmpfs';

/** Mount propagation modes (Linux `mount --make-*`). */
export type Propagation = 'private' | 'rprivate' | 'shared' | 'rshared' | 'slave' | 'rslave';

/**
 * Recursion of a bind mount (`--mount bind-recursive=`): `enabled` binds
 * submounts too and makes them read-only along with the mount; `disabled` binds
 * the top mount only; `writable` binds submounts but leaves them writable under a
 * read-only bind; `readonly` insists on recursively read-only.
 */
export type BindRecursion = 'enabled' | 'disabled' | 'writable' | 'readonly';

/** One parsed mount, Docker's `MountPoint` reduced to what strata needs. */
export interface MountSpec {
  type: MountType;
  /** Volume name or absolute host path (cleaned); undefined for an anonymous volume and for tmpfs. */
  source?: string;
  /** Absolute path in the container, cleaned (`/a/b/` becomes `/a/b`). */
  target: string;
  readOnly: boolean;
  /** Do not copy the image's content at `target` into a new empty volume. */
  noCopy: boolean;
  /** Binds only; `rprivate` when not given, Docker's default. */
  propagation?: Propagation;
  /** Labels for the volume if this mount creates it (`volume-label`). */
  labels?: Record<string, string>;
  /** tmpfs only; absent fields mean the kernel default. */
  tmpfs?: { size?: number; mode?: number };
  /** A missing bind source is created at start (`-v`) rather than an error (`--mount`). */
  createHostPath: boolean;
  /** The flag value as given. */
  raw: string;
  /** Which flag produced the spec: `volume` for `-v`/`--volume`, `mount` for `--mount`. */
  syntax: 'volume' | 'mount';
  /** The target exactly as written (Docker reports `--mount` duplicates with it). */
  targetAsGiven: string;
  /** Binds only. */
  bindRecursive?: BindRecursion;
  /** SELinux relabel request (`-v ...:z` shared, `:Z` private). */
  selinuxRelabel?: 'z' | 'Z';
  /** Docker Desktop's `consistency` hint; parsed and otherwise ignored, as on Linux Docker. */
  consistency?: string;
  /** `volume-driver`; only `local` is available. */
  volumeDriver?: string;
  /** `volume-opt` driver options for creating the volume. */
  volumeOptions?: Record<string, string>;
  /** `volume-subpath`: mount this relative path of the volume instead of its root. */
  subpath?: string;
  /** Things Docker's CLI warns about (deprecated options) while accepting them. */
  warnings?: string[];
}

/** Options for {@link parseVolumeFlag} and {@link parseMountFlag}. */
export interface ParseMountOptions {
  /** Directory that `./relative` host paths are resolved against; default `process.cwd()`. */
  cwd?: string;
  /**
   * Check at parse time that a `--mount type=bind` source exists, as the Docker
   * daemon does at container create. Default true.
   */
  checkBindSource?: boolean;
}

/** A mount specification Docker would refuse; the message is Docker's. */
export class MountSpecError extends StrataError {
  constructor(message: string, code = 'INVALID_MOUNT_SPEC', options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

const PROPAGATIONS: ReadonlySet<string> = new Set(['private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave']);
const RW_MODES: ReadonlySet<string> = new Set(['rw', 'ro']);
const LABEL_MODES: ReadonlySet<string> = new Set(['z', 'Z']);
const COPY_MODES: ReadonlySet<string> = new Set(['nocopy']);
const CONSISTENCY_MODES: ReadonlySet<string> = new Set(['consistent', 'cached', 'delegated']);
const TARGET_IS_ROOT = "invalid specification: destination can't be '/'";
const DEFAULT_PROPAGATION: Propagation = 'rprivate';

// ---------------------------------------------------------------------------
// The Docker API's mount.Mount, as both parsers fill it in.

interface DockerMount {
  type: string;
  source: string;
  target: string;
  readOnly: boolean;
  consistency?: string;
  bindOptions?: {
    propagation?: string;
    nonRecursive?: boolean;
    readOnlyNonRecursive?: boolean;
    readOnlyForceRecursive?: boolean;
  };
  volumeOptions?: {
    noCopy?: boolean;
    labels?: Record<string, string>;
    driver?: string;
    driverOptions?: Record<string, string>;
    subpath?: string;
  };
  tmpfsOptions?: { sizeBytes?: number; mode?: number };
}

// ---------------------------------------------------------------------------
// -v / --volume

/**
 * Parses a `-v` / `--volume` value: `NAME:/path[:opts]`, `/host:/path[:opts]`,
 * `./host:/path[:opts]` or `/path` (anonymous volume). Options are a comma list
 * of at most one each of `ro`/`rw`, `z`/`Z`, `nocopy`, a propagation mode
 * (`shared`, `rslave`, ...) and a consistency hint.
 *
 * @throws MountSpecError with Docker's message, e.g.
 *   `invalid volume specification: 'a:b:c:d'`
 */
export function parseVolumeFlag(raw: string, options: ParseMountOptions = {}): MountSpec {
  // Stage 1, the CLI: compose's ParseVolume, then ./relative host paths made absolute.
  const cli = composeParseVolume(raw);
  let toDaemon = raw;
  if (cli.source !== '' && cli.isFilePath) {
    const colon = raw.indexOf(':');
    if (colon >= 0) {
      let hostPart = raw.slice(0, colon);
      if (hostPart.startsWith('./') || hostPart === '.') hostPart = resolvePath(options.cwd ?? process.cwd(), hostPart);
      toDaemon = hostPart + raw.slice(colon);
    }
  }
  // Stage 2, the daemon.
  const { mount, mode } = daemonParseMountRaw(toDaemon);
  const spec = toMountSpec(mount, raw, 'volume');
  spec.createHostPath = spec.type === 'bind';
  const label = mode.split(',').find((o) => LABEL_MODES.has(o));
  if (label) spec.selinuxRelabel = label as 'z' | 'Z';
  checkVolumeName(spec);
  return spec;
}

interface ComposeVolume {
  source: string;
  target: string;
  isFilePath: boolean;
}

/** docker/cli compose/loader ParseVolume: the CLI-side check of a `-v` value. */
function composeParseVolume(spec: string): ComposeVolume {
  const volume: ComposeVolume = { source: '', target: '', isFilePath: false };
  const bytes = Buffer.byteLength(spec, 'utf8');
  if (bytes === 0) throw new MountSpecError('invalid empty volume spec');
  if (bytes <= 2) {
    volume.target = spec;
    return volume;
  }
  let buffer: string[] = [];
  // Go appends rune 0 as the end marker, so an embedded NUL also ends a section.
  for (const char of [...spec, '\0']) {
    if (isWindowsDrive(buffer, char)) {
      buffer.push(char);
    } else if (char === ':' || char === '\0') {
      const problem = populateField(char, buffer.join(''), volume);
      if (problem) throw new MountSpecError(`invalid spec: ${spec}: ${problem}`);
      buffer = [];
    } else {
      buffer.push(char);
    }
  }
  volume.isFilePath = volume.source !== '' && composeIsFilePath(volume.source);
  return volume;
}

function isWindowsDrive(buffer: string[], char: string): boolean {
  return char === ':' && buffer.length === 1 && /^\p{L}$/u.test(buffer[0]!);
}

function populateField(char: string, text: string, volume: ComposeVolume): string | undefined {
  if (text === '') return 'empty section between colons';
  if (volume.source === '' && char === '\0') {
    volume.target = text;
    return undefined;
  }
  if (volume.source === '') {
    volume.source = text;
    return undefined;
  }
  if (volume.target === '') {
    volume.target = text;
    return undefined;
  }
  if (char === ':') return 'too many colons';
  // The options section: the CLI ignores what it does not know; the daemon checks.
  return undefined;
}

function composeIsFilePath(source: string): boolean {
  if (source[0] === '.' || source[0] === '/' || source[0] === '~') return true;
  const runes = [...source];
  if (runes.length === 1) return false;
  if (source.startsWith('\\\\')) return true;
  // Go looks at the byte after the first rune; only ':' matters and it is ASCII.
  const byteAfterFirst = Buffer.from(source, 'utf8')[Buffer.byteLength(runes[0]!, 'utf8')];
  return byteAfterFirst === 0x3a && isWindowsDrive([runes[0]!], ':');
}

/** moby linuxParser.ParseMountRaw. */
function daemonParseMountRaw(raw: string): { mount: DockerMount; mode: string } {
  const invalidSpec = (): MountSpecError => new MountSpecError(errInvalidSpec(raw));
  const arr = splitN(raw, ':', 4);
  if (arr[0] === '') throw invalidSpec();
  let source = '';
  let target: string;
  let mode = '';
  switch (arr.length) {
    case 1:
      target = arr[0]!;
      break;
    case 2:
      // A destination plus a mode is not a volume (`/foo:rw`).
      if (validMountMode(arr[1]!)) throw invalidSpec();
      source = arr[0]!;
      target = arr[1]!;
      break;
    case 3:
      source = arr[0]!;
      target = arr[1]!;
      mode = arr[2]!;
      break;
    default:
      throw invalidSpec();
  }
  if (!validMountMode(mode)) throw new MountSpecError(`invalid mode: ${mode}`);

  const options = mode.split(',');
  const mount: DockerMount = {
    type: source.startsWith('/') ? 'bind' : 'volume',
    source,
    target,
    readOnly: options.includes('ro'),
  };
  if (options.some((o) => COPY_MODES.has(o))) mount.volumeOptions = { noCopy: true };
  const propagation = options.find((o) => PROPAGATIONS.has(o));
  if (propagation) mount.bindOptions = { propagation };
  const consistency = options.find((o) => CONSISTENCY_MODES.has(o));
  if (consistency) mount.consistency = consistency;
  try {
    validateMountConfig(mount, false);
  } catch (err) {
    if (err instanceof MountSpecError) throw new MountSpecError(`${errInvalidSpec(raw)}: ${err.message}`);
    throw err;
  }
  return { mount, mode };
}

function errInvalidSpec(raw: string): string {
  return `invalid volume specification: '${raw}'`;
}

/** moby linuxValidMountMode: at most one option of each kind, all known. */
function validMountMode(mode: string): boolean {
  if (mode === '') return true;
  const counts = { rw: 0, label: 0, propagation: 0, copy: 0, consistency: 0 };
  for (const o of mode.split(',')) {
    if (RW_MODES.has(o)) counts.rw++;
    else if (LABEL_MODES.has(o)) counts.label++;
    else if (PROPAGATIONS.has(o)) counts.propagation++;
    else if (COPY_MODES.has(o)) counts.copy++;
    else if (CONSISTENCY_MODES.has(o)) counts.consistency++;
    else return false;
  }
  return Object.values(counts).every((n) => n <= 1);
}

// ---------------------------------------------------------------------------
// --mount

/**
 * Parses a `--mount` value: comma-separated (CSV-quoted) `key=value` fields:
 * `type=volume|bind|tmpfs`, `source|src`, `target|destination|dst`,
 * `readonly|ro[=bool]`, `consistency`, `bind-propagation`, `bind-recursive`,
 * `bind-nonrecursive[=bool]` (deprecated), `volume-subpath`,
 * `volume-nocopy[=bool]`, `volume-label=K=V`, `volume-driver`, `volume-opt=K=V`,
 * `tmpfs-size` (with units, `64m`), `tmpfs-mode` (octal).
 *
 * @throws MountSpecError with Docker's message, e.g. `target is required` or
 *   `invalid mount config for type "bind": bind source path does not exist: /x`
 */
export function parseMountFlag(raw: string, options: ParseMountOptions = {}): MountSpec {
  const warnings: string[] = [];
  const mount = cliParseMount(raw, options.cwd ?? process.cwd(), warnings);
  validateMountConfig(mount, options.checkBindSource ?? true);
  if (mount.type === 'image') {
    throw new MountSpecError(`invalid mount config for type "image": image mounts are not supported by strata`, 'UNSUPPORTED_MOUNT');
  }
  const spec = toMountSpec(mount, raw, 'mount');
  if (warnings.length > 0) spec.warnings = warnings;
  checkVolumeName(spec);
  return spec;
}

/** docker/cli opts.MountOpt.Set. */
function cliParseMount(value: string, cwd: string, warnings: string[]): DockerMount {
  const fields = goCsvReadRecord(value);
  const mount: DockerMount = { type: 'volume', source: '', target: '', readOnly: false };
  const volumeOptions = (): NonNullable<DockerMount['volumeOptions']> => (mount.volumeOptions ??= {});
  const bindOptions = (): NonNullable<DockerMount['bindOptions']> => (mount.bindOptions ??= {});
  const tmpfsOptions = (): NonNullable<DockerMount['tmpfsOptions']> => (mount.tmpfsOptions ??= {});
  const setOnMap = (map: Record<string, string>, kv: string): void => {
    const eq = kv.indexOf('=');
    const k = eq < 0 ? kv : kv.slice(0, eq);
    if (k !== '') map[k] = eq < 0 ? '' : kv.slice(eq + 1);
  };
  const parseBool = (key: string, val: string, message = `invalid value for ${key}: ${val}`): boolean => {
    const b = goParseBool(val);
    if (b === undefined) throw new MountSpecError(message);
    return b;
  };

  for (const field of fields) {
    const eq = field.indexOf('=');
    // Docker lower-cases keys (a TODO there says it should not); values keep their case.
    const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    const val = eq < 0 ? '' : field.slice(eq + 1);
    if (eq < 0) {
      switch (key) {
        case 'readonly':
        case 'ro':
          mount.readOnly = true;
          continue;
        case 'volume-nocopy':
          volumeOptions().noCopy = true;
          continue;
        case 'bind-nonrecursive':
          bindOptions().nonRecursive = true;
          continue;
        default:
          throw new MountSpecError(`invalid field '${field}' must be a key=value pair`);
      }
    }
    switch (key) {
      case 'type':
        mount.type = val.toLowerCase();
        break;
      case 'source':
      case 'src':
        mount.source = val.startsWith('./') || val === '.' ? resolvePath(cwd, val) : val;
        break;
      case 'target':
      case 'dst':
      case 'destination':
        mount.target = val;
        break;
      case 'readonly':
      case 'ro':
        mount.readOnly = parseBool(key, val);
        break;
      case 'consistency':
        mount.consistency = val.toLowerCase();
        break;
      case 'bind-propagation':
        bindOptions().propagation = val.toLowerCase();
        break;
      case 'bind-nonrecursive':
        bindOptions().nonRecursive = parseBool(key, val);
        warnings.push('bind-nonrecursive is deprecated, use bind-recursive=disabled instead');
        break;
      case 'bind-recursive':
        switch (val) {
          case 'enabled':
            break;
          case 'disabled':
            bindOptions().nonRecursive = true;
            break;
          case 'writable':
            bindOptions().readOnlyNonRecursive = true;
            break;
          case 'readonly':
            bindOptions().readOnlyForceRecursive = true;
            break;
          default:
            throw new MountSpecError(`invalid value for ${key}: ${val} (must be "enabled", "disabled", "writable", or "readonly")`);
        }
        break;
      case 'volume-subpath':
        volumeOptions().subpath = val;
        break;
      case 'volume-nocopy':
        volumeOptions().noCopy = parseBool(key, val, `invalid value for volume-nocopy: ${val}`);
        break;
      case 'volume-label':
        setOnMap((volumeOptions().labels ??= {}), val);
        break;
      case 'volume-driver':
        volumeOptions().driver = val;
        break;
      case 'volume-opt':
        setOnMap((volumeOptions().driverOptions ??= {}), val);
        break;
      case 'tmpfs-size': {
        const size = goRamInBytes(val);
        if (size === undefined) throw new MountSpecError(`invalid value for ${key}: ${val}`);
        tmpfsOptions().sizeBytes = size;
        break;
      }
      case 'tmpfs-mode': {
        if (!/^[0-7]+$/.test(val) || Number.parseInt(val, 8) > 0xffffffff) {
          throw new MountSpecError(`invalid value for ${key}: ${val}`);
        }
        tmpfsOptions().mode = Number.parseInt(val, 8);
        break;
      }
      default:
        throw new MountSpecError(`unexpected key '${key}' in '${field}'`);
    }
  }

  if (mount.type === '') throw new MountSpecError('type is required');
  if (mount.target === '') throw new MountSpecError('target is required');
  if (mount.volumeOptions && mount.type !== 'volume') {
    throw new MountSpecError(`cannot mix 'volume-*' options with mount type '${mount.type}'`);
  }
  if (mount.bindOptions && mount.type !== 'bind') {
    throw new MountSpecError(`cannot mix 'bind-*' options with mount type '${mount.type}'`);
  }
  if (mount.tmpfsOptions && mount.type !== 'tmpfs') {
    throw new MountSpecError(`cannot mix 'tmpfs-*' options with mount type '${mount.type}'`);
  }
  if (mount.bindOptions?.readOnlyNonRecursive && !mount.readOnly) {
    throw new MountSpecError("option 'bind-recursive=writable' requires 'readonly' to be specified in conjunction");
  }
  if (mount.bindOptions?.readOnlyForceRecursive) {
    if (!mount.readOnly) {
      throw new MountSpecError("option 'bind-recursive=readonly' requires 'readonly' to be specified in conjunction");
    }
    if (mount.bindOptions.propagation !== 'rprivate') {
      throw new MountSpecError("option 'bind-recursive=readonly' requires 'bind-propagation=rprivate' to be specified in conjunction");
    }
  }
  return mount;
}

// ---------------------------------------------------------------------------
// The daemon's validation, shared by both flags.

/** moby linuxParser.validateMountConfigImpl. */
function validateMountConfig(mount: DockerMount, checkBindSource: boolean): void {
  const fail = (message: string): MountSpecError => new MountSpecError(`invalid mount config for type ${goQuote(mount.type)}: ${message}`);
  if (mount.target === '') throw fail('field Target must not be empty');
  const target = mount.target.replaceAll('\\', '/');
  if (goCleanPath(target) === '/') throw fail(TARGET_IS_ROOT);
  if (!target.startsWith('/')) throw fail(notAbsolute(target));

  switch (mount.type) {
    case 'bind': {
      if (mount.source === '') throw fail('field Source must not be empty');
      const propagation = mount.bindOptions?.propagation;
      if (propagation && !PROPAGATIONS.has(propagation)) throw fail(`invalid propagation mode: ${propagation}`);
      if (mount.volumeOptions) throw fail('field VolumeOptions must not be specified');
      const source = mount.source.replaceAll('\\', '/');
      if (!source.startsWith('/')) throw fail(notAbsolute(source));
      if (checkBindSource) {
        let exists: boolean;
        try {
          statSync(mount.source);
          exists = true;
        } catch (err) {
          // Only ENOENT is "does not exist" to Go's os.IsNotExist; ENOTDIR and the rest are reported.
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
            throw fail(goStatError(mount.source, err as NodeJS.ErrnoException));
          }
          exists = false;
        }
        if (!exists) throw fail(`bind source path does not exist: ${mount.source}`);
      }
      break;
    }
    case 'volume': {
      if (mount.bindOptions) throw fail('field BindOptions must not be specified');
      const anonymous = mount.source === '';
      const subpath = mount.volumeOptions?.subpath;
      if (subpath) {
        if (anonymous) throw fail('must not set Subpath when using anonymous volumes');
        if (!goIsLocal(subpath)) throw fail('subpath must be a relative path within the volume');
      }
      if (mount.readOnly && anonymous) throw fail('must not set ReadOnly mode when using anonymous volumes');
      break;
    }
    case 'tmpfs':
      if (mount.bindOptions) throw fail('field BindOptions must not be specified');
      if (mount.source !== '') throw fail('field Source must not be specified');
      break;
    case 'image':
      if (mount.bindOptions) throw fail('field BindOptions must not be specified');
      if (mount.source === '') throw fail('field Source must not be empty');
      break;
    default:
      throw fail('mount type unknown');
  }
}

function notAbsolute(path: string): string {
  return `invalid mount path: '${path}' mount path must be absolute`;
}

/** Go's `*PathError` text for a failed stat: `stat /x: permission denied`. */
function goStatError(path: string, err: NodeJS.ErrnoException): string {
  // Node: "EACCES: permission denied, stat '/x'"; the middle part is strerror.
  const match = /^[A-Z0-9]+: (.*), stat /.exec(err.message);
  return `stat ${path}: ${match ? match[1] : err.message}`;
}

/** A validated Docker mount, as the MountSpec strata passes around. */
function toMountSpec(mount: DockerMount, raw: string, syntax: 'volume' | 'mount'): MountSpec {
  const spec: MountSpec = {
    type: mount.type as MountType,
    target: goCleanPath(mount.target),
    readOnly: mount.readOnly,
    noCopy: mount.volumeOptions?.noCopy === true,
    createHostPath: false,
    raw,
    syntax,
    targetAsGiven: mount.target,
  };
  if (mount.consistency) spec.consistency = mount.consistency;
  switch (mount.type) {
    case 'volume': {
      if (mount.source !== '') spec.source = mount.source;
      const vo = mount.volumeOptions;
      if (vo?.labels && Object.keys(vo.labels).length > 0) spec.labels = { ...vo.labels };
      if (vo?.driver) spec.volumeDriver = vo.driver;
      if (vo?.driverOptions && Object.keys(vo.driverOptions).length > 0) spec.volumeOptions = { ...vo.driverOptions };
      if (vo?.subpath) spec.subpath = vo.subpath;
      break;
    }
    case 'bind': {
      spec.source = goCleanPath(mount.source);
      const bo = mount.bindOptions;
      spec.propagation = (bo?.propagation || DEFAULT_PROPAGATION) as Propagation;
      spec.bindRecursive = bo?.nonRecursive
        ? 'disabled'
        : bo?.readOnlyNonRecursive
          ? 'writable'
          : bo?.readOnlyForceRecursive
            ? 'readonly'
            : 'enabled';
      break;
    }
    case 'tmpfs': {
      const to = mount.tmpfsOptions;
      // Zero means "not set" in Docker's API; the kernel default applies.
      if (to && (to.sizeBytes || to.mode)) {
        spec.tmpfs = {};
        if (to.sizeBytes) spec.tmpfs.size = to.sizeBytes;
        if (to.mode) spec.tmpfs.mode = to.mode;
      }
      break;
    }
  }
  return spec;
}

/** A named volume must pass the local driver's name check when it is created. */
function checkVolumeName(spec: MountSpec): void {
  if (spec.type !== 'volume' || spec.source === undefined) return;
  const problem = volumeNameProblem(spec.source);
  if (problem !== undefined) throw new MountSpecError(`create ${spec.source}: ${problem}`, 'INVALID_VOLUME_NAME');
}

// ---------------------------------------------------------------------------
// A container's whole set of mounts.

/**
 * Checks a container's mounts together, as the daemon does at container create,
 * and returns the ones that take effect, in the given order.
 *
 * - Two `-v` values that are the same string count once (the CLI keeps them in a
 *   set).
 * - Two binds or `--mount`s at one destination:
 *   `Duplicate mount point: /x` (for a `--mount`, the target as written).
 * - An anonymous `-v /x` is dropped when another mount already covers `/x`.
 *
 * @throws MountSpecError (code `DUPLICATE_MOUNT_POINT`)
 */
export function validateMounts(specs: readonly MountSpec[]): MountSpec[] {
  const seenVolumeFlags = new Set<string>();
  const unique = specs.filter((spec) => {
    if (spec.syntax !== 'volume') return true;
    if (seenVolumeFlags.has(spec.raw)) return false;
    seenVolumeFlags.add(spec.raw);
    return true;
  });
  const isAnonymousFlag = (spec: MountSpec): boolean => spec.syntax === 'volume' && spec.type === 'volume' && spec.source === undefined;

  const taken = new Set<string>();
  const duplicate = (dest: string): MountSpecError => new MountSpecError(`Duplicate mount point: ${dest}`, 'DUPLICATE_MOUNT_POINT');
  // The daemon reads binds (-v with a source) first, then --mount, then anonymous -v.
  for (const spec of unique) {
    if (spec.syntax === 'volume' && !isAnonymousFlag(spec)) {
      if (taken.has(spec.target)) throw duplicate(spec.target);
      taken.add(spec.target);
    }
  }
  for (const spec of unique) {
    if (spec.syntax === 'mount') {
      if (taken.has(spec.target)) throw duplicate(spec.targetAsGiven);
      taken.add(spec.target);
    }
  }
  const effective = new Set<MountSpec>();
  for (const spec of unique) {
    if (!isAnonymousFlag(spec)) {
      effective.add(spec);
    } else if (!taken.has(spec.target)) {
      taken.add(spec.target);
      effective.add(spec);
    }
  }
  return unique.filter((spec) => effective.has(spec));
}

/**
 * Makes sure a bind mount's host path is there before it is mounted: creates it
 * (mode 0755, with parents) for a `-v` bind, as Docker does at container start;
 * refuses for a `--mount` bind. Other mount types are left alone.
 */
export async function ensureBindSource(spec: MountSpec): Promise<void> {
  if (spec.type !== 'bind' || spec.source === undefined) return;
  try {
    await stat(spec.source);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw err;
  }
  if (!spec.createHostPath) {
    throw new MountSpecError(`invalid mount config for type "bind": bind source path does not exist: ${spec.source}`);
  }
  try {
    await mkdir(spec.source, { recursive: true, mode: 0o755 });
  } catch (err) {
    throw new MountSpecError(`error while creating mount source path '${spec.source}': ${(err as Error).message}`, 'INVALID_MOUNT_SPEC', {
      cause: err,
    });
  }
}

// ---------------------------------------------------------------------------
// Go standard-library behaviour the messages depend on.

/** strings.SplitN. */
function splitN(s: string, sep: string, n: number): string[] {
  const out: string[] = [];
  let rest = s;
  while (out.length < n - 1) {
    const i = rest.indexOf(sep);
    if (i < 0) break;
    out.push(rest.slice(0, i));
    rest = rest.slice(i + sep.length);
  }
  out.push(rest);
  return out;
}

/** path.Clean (lexical; `/a/./b/../c/` is `/a/c`, `` is `.`). */
export function goCleanPath(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(part);
  }
  const joined = out.join('/');
  if (rooted) return '/' + joined;
  return joined === '' ? '.' : joined;
}

/** filepath.IsLocal on Unix. */
function goIsLocal(p: string): boolean {
  if (p === '' || p.startsWith('/')) return false;
  const cleaned = goCleanPath(p);
  return cleaned !== '..' && !cleaned.startsWith('../');
}

/** strconv.ParseBool. */
function goParseBool(value: string): boolean | undefined {
  switch (value) {
    case '1':
    case 't':
    case 'T':
    case 'true':
    case 'TRUE':
    case 'True':
      return true;
    case '0':
    case 'f':
    case 'F':
    case 'false':
    case 'FALSE':
    case 'False':
      return false;
    default:
      return undefined;
  }
}

const BINARY_UNITS: Record<string, number> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

/** go-units RAMInBytes: `64m`, `1.5g`, `512KiB`, `100 MB`, plain bytes. Undefined when invalid. */
function goRamInBytes(sizeStr: string): number | undefined {
  let sep = -1;
  for (let i = sizeStr.length - 1; i >= 0; i--) {
    if ('0123456789. '.includes(sizeStr[i]!)) {
      sep = i;
      break;
    }
  }
  if (sep === -1) return undefined;
  const num = sizeStr[sep] === ' ' ? sizeStr.slice(0, sep) : sizeStr.slice(0, sep + 1);
  let sfx = sizeStr.slice(sep + 1);
  if (!/^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/.test(num)) return undefined;
  let size = Number(num);
  if (!(size >= 0)) return undefined;
  if (sfx.length > 0) {
    if (sfx.length > 3) return undefined;
    sfx = sfx.toLowerCase();
    if (sfx[0] === 'b') {
      if (sfx.length > 1) return undefined;
    } else {
      const multiplier = BINARY_UNITS[sfx[0]!];
      if (multiplier === undefined) return undefined;
      if (sfx.length === 2 && sfx[1] !== 'b') return undefined;
      if (sfx.length === 3 && sfx.slice(1) !== 'ib') return undefined;
      size *= multiplier;
    }
  }
  const bytes = Math.trunc(size);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/**
 * encoding/csv `Reader.Read` with default settings: the first record of `value`.
 * Errors carry Go's text (`parse error on line 1, column 14: extraneous or
 * missing " in quoted-field`); columns are 1-based byte offsets, as in Go.
 */
function goCsvReadRecord(value: string): string[] {
  const data = Buffer.from(value, 'utf8');
  const QUOTE = 0x22;
  const COMMA = 0x2c;
  const NL = 0x0a;
  let offset = 0;
  let numLine = 0;
  const readLine = (): { line: Buffer; eof: boolean } => {
    if (offset >= data.length) {
      numLine++;
      return { line: Buffer.alloc(0), eof: true };
    }
    const nl = data.indexOf(NL, offset);
    let line: Buffer;
    if (nl < 0) {
      line = data.subarray(offset);
      offset = data.length;
      // Go drops a trailing \r before EOF.
      if (line[line.length - 1] === 0x0d) line = line.subarray(0, -1);
    } else {
      line = data.subarray(offset, nl + 1);
      offset = nl + 1;
    }
    numLine++;
    if (line.length >= 2 && line[line.length - 2] === 0x0d && line[line.length - 1] === NL) {
      line = Buffer.concat([line.subarray(0, -2), Buffer.from([NL])]);
    }
    return { line, eof: false };
  };
  const lengthNL = (b: Buffer): number => (b.length > 0 && b[b.length - 1] === NL ? 1 : 0);
  const parseError = (startLine: number, line: number, column: number, what: string): MountSpecError =>
    new MountSpecError(
      startLine !== line
        ? `record on line ${startLine}; parse error on line ${line}, column ${column}: ${what}`
        : `parse error on line ${line}, column ${column}: ${what}`,
    );
  const ERR_BARE_QUOTE = 'bare " in non-quoted-field';
  const ERR_QUOTE = 'extraneous or missing " in quoted-field';

  // Skip empty lines; nothing left is Go's io.EOF, which Docker prints as "EOF".
  let line: Buffer;
  let eof: boolean;
  for (;;) {
    ({ line, eof } = readLine());
    if (!eof && line.length === lengthNL(line)) continue;
    break;
  }
  if (eof) throw new MountSpecError('EOF');

  const fields: string[] = [];
  const recLine = numLine;
  let posLine = numLine;
  let posCol = 1;
  parseField: for (;;) {
    if (line.length === 0 || line[0] !== QUOTE) {
      const i = line.indexOf(COMMA);
      const field = i >= 0 ? line.subarray(0, i) : line.subarray(0, line.length - lengthNL(line));
      const j = field.indexOf(QUOTE);
      if (j >= 0) throw parseError(recLine, numLine, posCol + j, ERR_BARE_QUOTE);
      fields.push(field.toString('utf8'));
      if (i >= 0) {
        line = line.subarray(i + 1);
        posCol += i + 1;
        continue parseField;
      }
      break parseField;
    }
    const chunks: Buffer[] = [];
    line = line.subarray(1);
    posCol += 1;
    for (;;) {
      const i = line.indexOf(QUOTE);
      if (i >= 0) {
        chunks.push(line.subarray(0, i));
        line = line.subarray(i + 1);
        posCol += i + 1;
        if (line[0] === QUOTE) {
          chunks.push(Buffer.from('"'));
          line = line.subarray(1);
          posCol += 1;
        } else if (line[0] === COMMA) {
          line = line.subarray(1);
          posCol += 1;
          fields.push(Buffer.concat(chunks).toString('utf8'));
          continue parseField;
        } else if (lengthNL(line) === line.length) {
          fields.push(Buffer.concat(chunks).toString('utf8'));
          break parseField;
        } else {
          throw parseError(recLine, numLine, posCol - 1, ERR_QUOTE);
        }
      } else if (line.length > 0) {
        // A quoted field may span lines.
        chunks.push(line);
        posCol += line.length;
        ({ line } = readLine());
        if (line.length > 0) {
          posLine++;
          posCol = 1;
        }
      } else {
        // Input ended inside quotes (Go forgets the EOF before it gets here, so this is always an error).
        throw parseError(recLine, posLine, posCol, ERR_QUOTE);
      }
    }
  }
  return fields;
}
