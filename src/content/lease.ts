/**
 * Leases: how an operation that is writing or reusing blobs it has not yet tagged
 * (an import, a load, a build) keeps a garbage collection in another process from
 * deleting them.
 *
 * A lease is a file `ROOT/strata/leases/<id>.lease` listing digests, one per line,
 * plus a liveness socket named after the id (see {@link socketAddress}). The
 * socket is what tells a collector whether the lease's holder is still running: a
 * connection to it succeeds exactly while the holder process is alive, even if
 * that process is too busy to run JavaScript, because the kernel accepts
 * connections into the listen backlog on its own. A holder killed by SIGKILL thus
 * leaves a lease file that the next sweep recognises as dead and deletes.
 *
 * Like locks, lease sockets live in the network namespace (see lock.ts): a
 * collector cannot see leases held from another network namespace and would
 * treat them as dead.
 *
 * Ordering that the collector relies on:
 * - creation listens on the socket before the file appears, and release deletes
 *   the file before closing the socket, so a lease file whose socket refuses
 *   connections really is abandoned;
 * - {@link Lease.add} resolves only after the digest is in the file, and callers
 *   add a digest before they look at whether the blob exists (see
 *   `ContentStore.sweep` for why that is enough).
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { readFile, readdir, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { isDigest, parseDigest, type Digest } from './digest.js';
import { StrataError } from './errors.js';
import { socketAddress, type SocketAddress } from './lock.js';

const LEASE_SUFFIX = '.lease';
const LEASE_ID_RE = /^[a-f0-9]{32}$/;

/** The directory of lease files of the store at `root`. */
export function leaseDir(root: string): string {
  return join(root, 'strata', 'leases');
}

function leaseSocket(root: string, id: string): SocketAddress {
  return socketAddress('lease', id, leaseDir(root));
}

/**
 * A set of blobs protected from garbage collection until {@link Lease.release}
 * (or until the holding process exits). Obtain one with `ContentStore.lease()`.
 */
export class Lease {
  /** Digests already in the lease file. */
  private readonly added = new Set<Digest>();
  private released: Promise<void> | undefined;

  private constructor(
    /** Random identifier; also names the lease file and socket. */
    readonly id: string,
    /** Path of the lease file. */
    readonly file: string,
    private readonly server: Server,
    private readonly connections: Set<Socket>,
  ) {}

  /** Creates a lease in the store at `root`. @internal use `ContentStore.lease()`. */
  static async create(root: string): Promise<Lease> {
    const dir = leaseDir(root);
    mkdirSync(dir, { recursive: true });
    const id = randomBytes(16).toString('hex');
    const { server, connections } = await listenLiveness(leaseSocket(root, id).path);
    const file = join(dir, `${id}${LEASE_SUFFIX}`);
    try {
      // For people reading the directory; the collector ignores comment lines.
      writeFileSync(file, `# strata lease pid=${process.pid} created=${new Date().toISOString()}\n`, { flag: 'wx', mode: 0o644 });
    } catch (err) {
      await closeServer(server, connections);
      throw err;
    }
    return new Lease(id, file, server, connections);
  }

  /** The digests added so far (by this process). */
  get digests(): ReadonlySet<Digest> {
    return new Set(this.added);
  }

  /** True once {@link release} has been called. */
  get isReleased(): boolean {
    return this.released !== undefined;
  }

  /**
   * Records `digest` in the lease. When the promise resolves, every other process
   * can see the entry. Adding the same digest again is cheap.
   */
  add(digest: string): Promise<void> {
    const valid = parseDigest(digest);
    if (this.released) {
      return Promise.reject(new StrataError('LEASE_RELEASED', `lease ${this.id} was released; cannot add ${valid}`));
    }
    if (!this.added.has(valid)) {
      // One append per digest, synchronous: the entry is in the file before
      // anything else runs (a pool round trip costs more than the write).
      try {
        appendFileSync(this.file, `${valid}\n`);
      } catch (err) {
        return Promise.reject(err as Error);
      }
      this.added.add(valid);
    }
    return Promise.resolve();
  }

  /**
   * Ends the lease: its blobs become collectable unless something else
   * references them. Idempotent.
   */
  release(): Promise<void> {
    this.released ??= (async () => {
      // File first, socket second: a lease file must never outlive a live socket
      // in a way that makes a live holder look dead (see module comment).
      await unlink(this.file).catch(ignoreENOENT);
      await closeServer(this.server, this.connections);
    })();
    return this.released;
  }
}

/** What {@link scanLeases} found. */
export interface LeaseScan {
  /** Every digest listed in a lease that was considered live. */
  protected: Set<Digest>;
  /** Ids of live leases. */
  live: string[];
  /** Ids of leases found dead (and deleted, when asked to). */
  dead: string[];
}

/**
 * Reads the lease files of the store at `root`.
 *
 * With `checkLiveness`, a lease whose socket refuses connections is dead: it is
 * deleted and its digests are not protected. Without it every lease file present
 * counts, which is the conservative choice for the collector's second look.
 */
export async function scanLeases(root: string, options: { checkLiveness: boolean }): Promise<LeaseScan> {
  const dir = leaseDir(root);
  const scan: LeaseScan = { protected: new Set(), live: [], dead: [] };
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return scan;
    throw err;
  }
  for (const name of names) {
    if (!name.endsWith(LEASE_SUFFIX)) continue;
    const id = name.slice(0, -LEASE_SUFFIX.length);
    if (!LEASE_ID_RE.test(id)) continue;
    const file = join(dir, name);
    if (options.checkLiveness && !(await isListening(leaseSocket(root, id)))) {
      await unlink(file).catch(ignoreENOENT);
      const address = leaseSocket(root, id);
      if (address.file) await unlink(address.path).catch(ignoreENOENT);
      scan.dead.push(id);
      continue;
    }
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      // Released while we looked: it protects nothing any more.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    scan.live.push(id);
    for (const line of text.split('\n')) {
      // A line being appended right now may be cut short; it is not a digest yet,
      // and the collector's second look will see it whole.
      if (isDigest(line)) scan.protected.add(line);
    }
  }
  return scan;
}

/**
 * Whether something listens at `address`. Errors other than "nobody there" count
 * as alive: wrongly keeping a lease only delays collection, wrongly dropping one
 * loses data.
 */
function isListening(address: SocketAddress): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ path: address.path });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      socket.destroy();
      resolve(err.code !== 'ECONNREFUSED' && err.code !== 'ENOENT');
    });
  });
}

async function listenLiveness(path: string): Promise<{ server: Server; connections: Set<Socket> }> {
  const server = createServer();
  // A lease must not keep its process alive; when the process goes, so does the lease.
  server.unref();
  const connections = new Set<Socket>();
  server.on('connection', (socket) => {
    socket.unref();
    socket.on('error', () => undefined);
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
    socket.resume();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ path, exclusive: true }, () => {
      server.off('error', reject);
      server.on('error', () => undefined);
      resolve();
    });
  });
  return { server, connections };
}

function closeServer(server: Server, connections: Set<Socket>): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    for (const socket of connections) socket.destroy();
  });
}

function ignoreENOENT(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err;
}
