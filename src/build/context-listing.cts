/**
 * A listing of a build context made by GNU `find` in another process, so
 * that the walk a cached rebuild needs (an lstat of every path) runs on
 * another core while the CLI is still loading.
 *
 * In Node every lstat costs a few microseconds of JavaScript on top of the
 * system call, and a walk of a 4k-file context is most of a cached build;
 * `find` does the same walk in native code. The `strata` launcher starts it
 * for `strata build` before it loads the CLI ({@link prefetchForBuild}); the
 * build context takes the result when it needs a source's fingerprint
 * ({@link takeContextListing}) and otherwise walks the context itself. The
 * two sides meet through a process-wide registry (this module is loaded
 * once by the launcher and once inside the bundled CLI).
 *
 * A listing is only ever an optimisation: no GNU find, a find that fails
 * (say, on an unreadable directory), a guess of the context directory that
 * turns out wrong, or a listing nobody takes, and the build walks the
 * context as before. A listing not taken is killed at exit.
 *
 * CommonJS because the launcher, which cannot load the ESM modules cheaply,
 * requires it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fstatSync, openSync, readSync, realpathSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * What find prints per path: the path (relative to the context), then type,
 * permission bits (octal), size, mtime, ctime (seconds, with fraction),
 * inode and link count. Both fields end with NUL, which no path contains.
 */
export const LISTING_FORMAT = '%P\\0%y %m %s %T@ %C@ %i %n\\0';
/** A listing larger than this is abandoned (and the context walked in-process). */
const MAX_LISTING_BYTES = 64 * 1024 * 1024;
/** Options of `strata build` that take a value (for finding its context argument). */
const BUILD_OPTIONS_WITH_VALUES = new Set([
  '-f', '--file', '-t', '--tag', '--build-arg', '--target', '--iidfile',
  '--source-date-epoch', '--runtime', '--network', '--compression', '--platform',
]);

interface Pending {
  child: ChildProcess;
  /** The file find writes to, open until the listing is read (or the process ends). */
  output: number;
  /** Whether find has listed the whole directory: false once it failed. */
  finished: Promise<boolean>;
}

const REGISTRY = Symbol.for('strata.contextListings');

interface Registry {
  /** Listings not yet taken, by directory. */
  pending: Map<string, Pending>;
  /** Every find started, so that none outlives the process. */
  children: Set<ChildProcess>;
}

function registry(): Registry {
  const holder = globalThis as { [REGISTRY]?: Registry };
  if (holder[REGISTRY] === undefined) {
    const created: Registry = { pending: new Map(), children: new Set() };
    process.once('exit', () => {
      for (const child of created.children) if (child.exitCode === null && child.signalCode === null) child.kill();
    });
    holder[REGISTRY] = created;
  }
  return holder[REGISTRY];
}

/**
 * A new file in the temp directory, already unlinked, open for reading and
 * writing; undefined when none can be made. find writes its listing there
 * rather than into a pipe: a pipe holds 64 KiB, so find would stop and wait
 * for the CLI to read while the CLI is still busy loading, and the listing
 * would take no less time than the walk it replaces.
 */
function unnamedTempFile(): number | undefined {
  const path = join(tmpdir(), `strata-listing-${process.pid}-${Math.random().toString(36).slice(2)}`);
  let fd: number;
  try {
    // Exclusive create, so nothing planted at that name is written through.
    fd = openSync(path, 'wx+', 0o600);
  } catch {
    return undefined;
  }
  try {
    unlinkSync(path);
    return fd;
  } catch {
    closeSync(fd);
    return undefined;
  }
}

/** The whole of file `fd`, or undefined when it is larger than a listing may be; closes `fd`. */
function readListing(fd: number): Buffer | undefined {
  try {
    const size = fstatSync(fd).size;
    if (size > MAX_LISTING_BYTES) return undefined;
    const bytes = Buffer.allocUnsafe(size);
    let done = 0;
    while (done < size) {
      const read = readSync(fd, bytes, done, size - done, done);
      if (read === 0) return undefined;
      done += read;
    }
    return bytes;
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** Starts listing directory `dir` (absolute, canonical) with find, in the background. */
export function startContextListing(dir: string): void {
  const { pending: listings, children } = registry();
  if (listings.has(dir)) return;
  const output = unnamedTempFile();
  if (output === undefined) return;
  let child: ChildProcess;
  try {
    child = spawn('find', [dir, '-mindepth', '1', '-printf', LISTING_FORMAT], { stdio: ['ignore', output, 'ignore'] });
  } catch {
    closeSync(output);
    return;
  }
  const finished = new Promise<boolean>((done) => {
    let settled = false;
    // 'exit' may or may not follow 'error'.
    const finish = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      if (!ok) closeSync(output);
      done(ok);
    };
    child.on('error', () => finish(false));
    // find's writes are all in the file once it has exited.
    child.on('exit', (code) => finish(code === 0));
  });
  // Nobody may ever ask: the listing must not keep the process alive.
  child.unref();
  children.add(child);
  child.once('exit', () => children.delete(child));
  listings.set(dir, { child, output, finished });
}

/**
 * The listing of `dir` (canonical) if one was started: find's output, or
 * undefined when it failed. Each listing is handed out once.
 */
export function takeContextListing(dir: string): Promise<Buffer | undefined> | undefined {
  const listings = registry().pending;
  const pending = listings.get(dir);
  if (pending === undefined) return undefined;
  listings.delete(dir);
  // Now someone waits for it.
  pending.child.ref();
  // Read only now: a build that takes no listing reads none.
  return pending.finished.then((ok) => (ok ? readListing(pending.output) : undefined));
}

/**
 * For `strata build ... CONTEXT`: starts listing CONTEXT. `args` are the
 * command-line arguments after the node script. A wrong guess only costs a
 * find on the other core.
 */
export function prefetchForBuild(args: readonly string[]): void {
  let i = 0;
  // Global options: --root takes a value.
  for (; i < args.length && args[i]!.startsWith('-'); i++) if (args[i] === '--root') i++;
  if (args[i] !== 'build' || process.platform !== 'linux') return;
  let context: string | undefined;
  for (i++; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      context = args[i + 1];
      break;
    }
    if (BUILD_OPTIONS_WITH_VALUES.has(arg)) i++;
    else if (!arg.startsWith('-') || arg === '-') {
      if (context !== undefined) return;
      context = arg;
    }
  }
  if (context === undefined || context === '-') return;
  try {
    startContextListing(realpathSync(resolve(context)));
  } catch {
    // Not a directory we can see: the build will say so.
  }
}
