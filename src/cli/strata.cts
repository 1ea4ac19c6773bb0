/**
 * The `strata` command (package.json `bin`): starts the CLI quickly.
 *
 * A short command such as a fully cached `strata build` would otherwise
 * spend a good part of its time loading and compiling strata's modules. So
 * `npm run build` also bundles the CLI into one CommonJS file
 * (`strata-bundle.cjs`, by `scripts/bundle-cli.mjs`), and this launcher
 * compiles that file with a V8 code cache kept per user under
 * `$XDG_CACHE_HOME/strata/code-cache` (default `~/.cache`): what Node 22's
 * `module.enableCompileCache()` does, for Node 20. V8 checks a cache against
 * the source and its own version and flags and refuses one that does not
 * fit, which then only costs a compile; the cache is rewritten when that
 * happens. One cache per command, since each holds the code its command ran.
 *
 * Without the bundle (a plain `tsc` build) this imports `main.js` instead.
 * `STRATA_NO_CODE_CACHE=1` turns the cache off. The cache directory is used
 * only when it belongs to the current user and only they can write to it.
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { Script } from 'node:vm';

interface CliModule {
  runCli(): Promise<void>;
}

type ModuleWrapper = (exports: object, require: NodeJS.Require, module: { exports: object }, filename: string, dirname: string) => void;

const BUNDLE = join(__dirname, 'strata-bundle.cjs');

/** The command word of `args` (global options skipped), for naming its cache. */
function commandOf(args: readonly string[]): string {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--root') {
      i++;
      continue;
    }
    if (arg.startsWith('-')) continue;
    return /^[a-z][a-z-]{0,31}$/.test(arg) ? arg : 'other';
  }
  return 'none';
}

/** The cache directory, created if need be; undefined when it cannot be used safely. */
function cacheDir(): string | undefined {
  if (process.env.STRATA_NO_CODE_CACHE === '1') return undefined;
  const xdg = process.env.XDG_CACHE_HOME;
  const base = xdg !== undefined && isAbsolute(xdg) ? xdg : join(homedir(), '.cache');
  const dir = join(base, 'strata', 'code-cache');
  try {
    // Make the cache directory, not a home directory that is not there.
    if (!existsSync(dirname(base))) return undefined;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const stats = lstatSync(dir);
    // Cached code runs as this user: nobody else may be able to put it there.
    if (!stats.isDirectory() || stats.uid !== process.getuid?.() || (stats.mode & 0o022) !== 0) return undefined;
    return dir;
  } catch {
    return undefined;
  }
}

function readOrUndefined(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch {
    return undefined;
  }
}

/** 32-bit FNV-1a of `text`, in hex: names this installation's caches apart from others'. */
function fnv1a(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return hash.toString(16).padStart(8, '0');
}

/**
 * Writes `data` as `name` (temp file, rename), dropping this installation's
 * caches for an older bundle or node (starting with `owner` but not with
 * `name`'s prefix) and older ones of the same command; failures only lose the cache.
 */
function writeCache(dir: string, owner: string, prefix: string, suffix: string, data: Buffer): void {
  const name = prefix + suffix;
  const path = join(dir, name);
  try {
    for (const old of readdirSync(dir)) {
      if (old !== name && old.startsWith(owner) && (!old.startsWith(prefix) || old.endsWith(suffix))) unlinkSync(join(dir, old));
    }
    const temp = `${path}.${process.pid}.tmp`;
    writeFileSync(temp, data, { mode: 0o600 });
    renameSync(temp, path);
  } catch {
    // A cache that cannot be written is only a slower next start.
  }
}

/**
 * A cache file is this, then (float64, little-endian) how many milliseconds
 * the run that wrote it had lasted when it wrote it, then V8's data.
 */
const CACHE_MAGIC = Buffer.from('strata\0\x01', 'latin1');
const CACHE_HEADER_BYTES = CACHE_MAGIC.length + 8;
/**
 * When a run still going writes its cache (ms after start; see loadBundle):
 * late enough for a short command to have finished, early enough that no
 * bytecode has been dropped yet. Tests set STRATA_CODE_CACHE_EARLY_MS.
 */
const EARLY_WRITE_MS = Number(process.env.STRATA_CODE_CACHE_EARLY_MS) > 0 ? Number(process.env.STRATA_CODE_CACHE_EARLY_MS) : 250;

interface CodeCache {
  data: Buffer;
  /** How long the run that wrote it had lasted when it wrote it (ms): EARLY_WRITE_MS for an early write. */
  writerRanMs: number;
}

/** The cache at `path`; undefined when there is none or it is not one. */
function readCache(path: string): CodeCache | undefined {
  const file = readOrUndefined(path);
  if (file === undefined || file.length <= CACHE_HEADER_BYTES || !file.subarray(0, CACHE_MAGIC.length).equals(CACHE_MAGIC)) return undefined;
  return { data: file.subarray(CACHE_HEADER_BYTES), writerRanMs: file.readDoubleLE(CACHE_MAGIC.length) };
}

function cacheFile(data: Buffer, ranMs: number): Buffer {
  const header = Buffer.alloc(CACHE_HEADER_BYTES);
  CACHE_MAGIC.copy(header);
  header.writeDoubleLE(ranMs, CACHE_MAGIC.length);
  return Buffer.concat([header, data]);
}

function loadBundle(source: string): CliModule {
  const bundle = statSync(BUNDLE);
  const dir = cacheDir();
  const suffix = `-${commandOf(process.argv.slice(2))}.bin`;
  // Any change to the bundle or to node gives a new name; V8 checks the rest.
  // Several installations can share the cache directory: each has its own names.
  const owner = `${fnv1a(BUNDLE)}-`;
  const prefix = `${owner}${process.version}-${process.arch}-${bundle.size}-${Math.trunc(bundle.mtimeMs)}`;
  const cache = dir === undefined ? undefined : readCache(join(dir, prefix + suffix));
  const cachedData = cache?.data;
  // The same wrapper node puts around a CommonJS module, on the first line so line numbers stay.
  const script = new Script(`(function (exports, require, module, __filename, __dirname) { ${source.replace(/^#!.*/, '')}\n})`, {
    filename: BUNDLE,
    ...(cachedData !== undefined ? { cachedData } : {}),
  });
  if (dir !== undefined) {
    // The cache holds every function compiled so far, but not those whose
    // bytecode V8 has dropped: in a long run garbage collections discard the
    // code of functions not run for a while (bytecode flushing), the bundle's
    // start-up code first. A cache written at the end of a cold build made
    // the next cached build spend 20 ms rather than 5 ms starting. So a run
    // still going after EARLY_WRITE_MS writes the cache then; a short run
    // writes it at exit, with all it compiled, and also replaces a cache
    // written early (its writer ran at least EARLY_WRITE_MS), which lacks what
    // was compiled after. (Turning flushing off would change V8's flags, and
    // then Node's own cache of its built-in modules no longer fits them.)
    const stale = cache === undefined || script.cachedDataRejected === true;
    const write = (ranMs: number): void => writeCache(dir, owner, prefix, suffix, cacheFile(script.createCachedData(), ranMs));
    let written = false;
    if (stale) {
      setTimeout(() => {
        written = true;
        write(EARLY_WRITE_MS);
      }, EARLY_WRITE_MS - performance.now()).unref();
    }
    process.once('exit', () => {
      const ranMs = performance.now();
      if (!written && (stale || (ranMs < EARLY_WRITE_MS && cache.writerRanMs >= EARLY_WRITE_MS))) write(ranMs);
    });
  }
  const wrapper = script.runInThisContext() as ModuleWrapper;
  const module = { exports: {} };
  wrapper.call(module.exports, module.exports, createRequire(BUNDLE), module, BUNDLE, dirname(BUNDLE));
  return module.exports as CliModule;
}

// `strata build`: list the context on another core while the CLI loads
// (an optimisation only: a launcher without the module runs without it).
try {
  (require('../build/context-listing.cjs') as typeof import('../build/context-listing.cjs')).prefetchForBuild(process.argv.slice(2));
} catch {
  // No listing: the build walks the context itself.
}
const bundleSource = readOrUndefined(BUNDLE)?.toString('utf8');
if (bundleSource !== undefined) {
  void loadBundle(bundleSource).runCli();
} else {
  void import('./main.js').then((cli: CliModule) => cli.runCli());
}
