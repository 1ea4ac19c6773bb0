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
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';

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
  text: Promise<string | undefined>;
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

/** Starts listing directory `dir` (absolute, canonical) with find, in the background. */
export function startContextListing(dir: string): void {
  const { pending: listings, children } = registry();
  if (listings.has(dir)) return;
  let child: ChildProcess;
  try {
    child = spawn('find', [dir, '-mindepth', '1', '-printf', LISTING_FORMAT], { stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return;
  }
  const chunks: Buffer[] = [];
  let bytes = 0;
  const text = new Promise<string | undefined>((done) => {
    child.on('error', () => done(undefined));
    child.stdout!.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > MAX_LISTING_BYTES) {
        child.kill();
        return;
      }
      chunks.push(chunk);
    });
    child.on('close', (code) => done(code === 0 && bytes <= MAX_LISTING_BYTES ? Buffer.concat(chunks).toString('utf8') : undefined));
  });
  // Nobody may ever ask: the listing must not keep the process alive.
  child.unref();
  (child.stdout as unknown as { unref?: () => void }).unref?.();
  children.add(child);
  child.once('close', () => children.delete(child));
  listings.set(dir, { child, text });
}

/**
 * The listing of `dir` (canonical) if one was started: find's output, or
 * undefined when it failed. Each listing is handed out once.
 */
export function takeContextListing(dir: string): Promise<string | undefined> | undefined {
  const listings = registry().pending;
  const pending = listings.get(dir);
  if (pending === undefined) return undefined;
  listings.delete(dir);
  // Now someone waits for it.
  pending.child.ref();
  (pending.child.stdout as unknown as { ref?: () => void }).ref?.();
  return pending.text;
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
