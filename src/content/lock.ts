/**
 * Inter-process mutexes over a store root.
 *
 * A lock is a listening unix socket with a well-known name. Binding the name is
 * the acquisition (the kernel lets only one socket bind it); the kernel frees the
 * name the moment the holding process dies, even by SIGKILL, so a crashed holder
 * never leaves a lock behind and no one has to guess whether a lock file is stale.
 *
 * Waiting does not poll: a waiter connects to the holder's socket and sleeps until
 * the connection closes, which happens when the holder releases (it destroys every
 * connection) or dies (the kernel closes them), then tries to bind again.
 *
 * Platforms:
 * - Linux: abstract-namespace sockets (`\0strata-lock-…`), no file at all.
 * - Windows: named pipes (`\\?\pipe\strata-lock-…`), which also vanish with their
 *   owner.
 * - Elsewhere (macOS, BSD): a socket file in `ROOT/strata/locks`. A dead holder
 *   leaves the file behind; a waiter that finds the name bound but refusing
 *   connections deletes it and retries. Limitation: two waiters that both find
 *   the same stale file can race so that one deletes the socket the other has just
 *   bound, and both then believe they hold the lock. That needs a holder to have
 *   died and two contenders to arrive within microseconds of each other; on Linux
 *   it cannot happen.
 *
 * Locks are not re-entrant: acquiring a lock the same process already holds waits
 * for it like any other acquirer.
 *
 * Scope: abstract socket names are per network namespace. Processes sharing a
 * store directory from different network namespaces (say, one in a container
 * with its own network and the store bind-mounted) do not exclude each other;
 * all users of a store must share a network namespace.
 */
import { mkdirSync, realpathSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { mkdir, unlink } from 'node:fs/promises';
import { createServer, connect, type Socket } from 'node:net';
import { join } from 'node:path';

/** Where a named socket lives: an abstract name or pipe (`file: false`) or a socket file. */
export interface SocketAddress {
  path: string;
  file: boolean;
}

/**
 * The address of a strata socket of `kind` named by `key` (hex). `fileDir` is
 * where the socket file goes on platforms without self-cleaning names.
 * @internal shared by locks and leases.
 */
export function socketAddress(kind: 'lock' | 'lease', key: string, fileDir: string, platform = process.platform): SocketAddress {
  if (platform === 'linux') return { path: `\0strata-${kind}-${key}`, file: false };
  if (platform === 'win32') return { path: `\\\\?\\pipe\\strata-${kind}-${key}`, file: false };
  // Socket paths are limited to ~104 bytes on macOS; the key is kept short for that.
  return { path: join(fileDir, `${key}.sock`), file: true };
}

/** Options for {@link acquireLock}. */
export interface LockOptions {
  /** Gives up waiting (rejecting with the signal's reason) when aborted. */
  signal?: AbortSignal;
  /** @internal forces the socket-file fallback, so Linux tests can exercise it. */
  forceFileSocket?: boolean;
}

/** Releases a lock; calling it more than once is harmless. */
export type ReleaseLock = () => Promise<void>;

/**
 * Acquires the inter-process mutex `name` of the store at `root`, waiting as long
 * as another holder (in this or any other process) has it.
 *
 * The lock does not keep the process alive; a process that exits or dies while
 * holding it releases it. `root` is created if missing (its real path names the
 * lock, so two spellings of one directory share their locks).
 */
export async function acquireLock(root: string, name: string, options: LockOptions = {}): Promise<ReleaseLock> {
  const { signal } = options;
  signal?.throwIfAborted();
  // Synchronous: the lock is taken on every tag, and a pool round trip costs more than these.
  mkdirSync(root, { recursive: true });
  const realRoot = realpathSync(root);
  const key = createHash('sha256').update(`${realRoot}:${name}`).digest('hex').slice(0, 32);
  const fileDir = join(realRoot, 'strata', 'locks');
  const address = options.forceFileSocket ? { path: join(fileDir, `${key}.sock`), file: true } : socketAddress('lock', key, fileDir);
  if (address.file) await mkdir(fileDir, { recursive: true });

  for (;;) {
    signal?.throwIfAborted();
    const held = await tryListen(address.path);
    if (held) return held;
    const outcome = await waitForHolder(address.path, signal);
    if (outcome === 'aborted') signal!.throwIfAborted();
    if (outcome === 'refused') {
      // Abstract names: the holder let go between our bind and connect, so simply
      // retry. Socket files: the name stays bound after its holder dies; remove it.
      if (address.file) await unlink(address.path).catch(ignoreCode('ENOENT'));
      // Yield so that a bind-but-not-yet-listening holder gets to listen.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

/** Runs `fn` while holding the lock `name` of the store at `root`. */
export async function withLock<T>(root: string, name: string, fn: () => Promise<T>, options?: LockOptions): Promise<T> {
  const release = await acquireLock(root, name, options);
  try {
    return await fn();
  } finally {
    await release();
  }
}

/**
 * Binds and listens on `path`; resolves to the release function, or undefined if
 * someone else has the name.
 */
function tryListen(path: string): Promise<ReleaseLock | undefined> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    const connections = new Set<Socket>();
    let closing = false;
    server.on('connection', (socket) => {
      if (closing) return void socket.destroy();
      socket.unref();
      // A waiter that goes away resets its connection; that is not our error.
      socket.on('error', () => undefined);
      connections.add(socket);
      socket.on('close', () => connections.delete(socket));
    });
    const onListenError = (err: NodeJS.ErrnoException): void => {
      if (err.code === 'EADDRINUSE') resolve(undefined);
      else reject(err);
    };
    server.once('error', onListenError);
    // exclusive: in a cluster worker, a shared handle from the primary would
    // defeat the mutual exclusion.
    server.listen({ path, exclusive: true }, () => {
      server.off('error', onListenError);
      server.on('error', () => undefined);
      let released: Promise<void> | undefined;
      resolve(() => {
        released ??= new Promise<void>((done) => {
          closing = true;
          // Stop accepting first, so no waiter can connect after the sweep below
          // and be left hanging on a connection nobody closes.
          server.close(() => done());
          for (const socket of connections) socket.destroy();
        });
        return released;
      });
    });
  });
}

type WaitOutcome = 'released' | 'refused' | 'aborted';

/** Connects to the holder at `path` and waits for the connection to close. */
function waitForHolder(path: string, signal: AbortSignal | undefined): Promise<WaitOutcome> {
  // An abort that came while trying to listen has already fired its event.
  if (signal?.aborted) return Promise.resolve('aborted');
  return new Promise((resolve, reject) => {
    const socket: Socket = connect({ path });
    let settled = false;
    const settle = (outcome: WaitOutcome | Error): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      if (outcome instanceof Error) reject(outcome);
      else resolve(outcome);
    };
    const onAbort = (): void => settle('aborted');
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      switch (err.code) {
        case 'ECONNREFUSED':
        case 'ENOENT':
          return settle('refused');
        case 'ECONNRESET':
        case 'EPIPE':
          return settle('released');
        default:
          return settle(new Error(`waiting for lock socket failed: ${err.message}`, { cause: err }));
      }
    });
    socket.on('end', () => settle('released'));
    socket.on('close', () => settle('released'));
    // Nothing is ever sent; reading is only how the end of the connection is seen.
    socket.resume();
  });
}

/** A catch handler that swallows errors with the given errno code. */
function ignoreCode(code: string): (err: NodeJS.ErrnoException) => void {
  return (err) => {
    if (err.code !== code) throw err;
  };
}
