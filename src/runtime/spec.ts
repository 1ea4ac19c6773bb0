/**
 * OCI runtime-spec `config.json` for one process in a prepared root
 * filesystem, shaped like the spec dockerd hands runc for an unprivileged
 * container (moby `oci/defaults.go` plus `daemon/oci_linux.go`): Docker's
 * default capabilities, mounts, masked and read-only /proc and /sys paths,
 * device allow-list, and namespaces.
 *
 * Not reproduced: the seccomp and AppArmor profiles (strata ships neither),
 * user-namespace remapping, and resource limits other than the open-files
 * rlimit.
 */
import { constants, existsSync, readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { posix } from 'node:path';
import { createInterface } from 'node:readline';
import { StrataError } from '../content/errors.js';
import { resolveInRoot } from './inroot.js';

/** `PATH` a process gets when the image sets none (moby `oci.DefaultPathEnv`). */
export const DEFAULT_PATH_ENV = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Hostname when the caller gives none; constant so RUN steps stay reproducible. */
export const DEFAULT_HOSTNAME = 'strata';

/** Docker's default capability set for unprivileged containers (moby `oci/caps`). */
export const DEFAULT_CAPABILITIES: readonly string[] = Object.freeze([
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
]);

/** Paths hidden from the container (Docker 28's list). */
export const DEFAULT_MASKED_PATHS: readonly string[] = Object.freeze([
  '/proc/asound',
  '/proc/acpi',
  '/proc/interrupts',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
]);

/** Paths made read-only in the container (Docker's list). */
export const DEFAULT_READONLY_PATHS: readonly string[] = Object.freeze([
  '/proc/bus',
  '/proc/fs',
  '/proc/irq',
  '/proc/sys',
  '/proc/sysrq-trigger',
]);

/** Docker's default `/dev/shm` size, 64 MiB. */
export const DEFAULT_SHM_SIZE = 64 * 1024 * 1024;

/** Open-files limit of a container process (what dockerd under systemd passes on). */
export const DEFAULT_NOFILE = 1048576;

let nofileCache: number | undefined;

/**
 * The open-files limit containers get: {@link DEFAULT_NOFILE}, unless this
 * process could not grant it. Raising a hard limit needs CAP_SYS_RESOURCE,
 * which root in a container or a restricted sandbox may lack; the runtime
 * would then fail with EPERM before the process starts, so the limit is
 * capped at this process's own hard limit instead.
 */
export function defaultNofile(): number {
  if (nofileCache !== undefined) return nofileCache;
  let limit = DEFAULT_NOFILE;
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
    const CAP_SYS_RESOURCE = 24n;
    const canRaise = capEff !== undefined && ((BigInt(`0x${capEff}`) >> CAP_SYS_RESOURCE) & 1n) === 1n;
    if (!canRaise) {
      const hard = /^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];
      if (hard !== undefined && hard !== 'unlimited' && Number(hard) < limit) limit = Number(hard);
    }
  } catch {
    // Not Linux, or no /proc: keep the default; the runtime reports any problem.
  }
  nofileCache = limit;
  return limit;
}

// ---------------------------------------------------------------------------
// The subset of the OCI runtime spec strata writes.

/** One entry of `mounts` in config.json. */
export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

/** A device node the runtime creates in the container's /dev. */
export interface OciDevice {
  path: string;
  type: 'c' | 'b' | 'u' | 'p';
  major: number;
  minor: number;
  fileMode: number;
  uid: number;
  gid: number;
}

/** One rule of the device cgroup. `major`/`minor` absent mean any (`*`). */
export interface OciDeviceRule {
  allow: boolean;
  type?: 'a' | 'c' | 'b';
  major?: number;
  minor?: number;
  access: string;
}

/** OCI `process.user`. */
export interface ProcessUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
}

/** config.json as strata writes it. */
export interface OciSpec {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: ProcessUser;
    args: string[];
    env: string[];
    cwd: string;
    capabilities: { bounding: string[]; effective: string[]; permitted: string[] };
    rlimits: { type: string; hard: number; soft: number }[];
    noNewPrivileges: boolean;
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: OciMount[];
  linux: {
    namespaces: { type: 'pid' | 'network' | 'ipc' | 'uts' | 'mount' | 'cgroup' | 'user'; path?: string }[];
    maskedPaths: string[];
    readonlyPaths: string[];
    devices: OciDevice[];
    resources: { devices: OciDeviceRule[] };
    cgroupsPath?: string;
  };
}

// ---------------------------------------------------------------------------
// Options

/**
 * How the container reaches the network. `none`: a network namespace of its
 * own with only a loopback interface. `host`: the host's network namespace.
 */
export type NetworkMode = 'none' | 'host';

/** Mount propagation of a bind mount. */
export type BindPropagation = 'private' | 'rprivate' | 'shared' | 'rshared' | 'slave' | 'rslave';

/** A host path bind-mounted into the container. */
export interface BindMount {
  /** Absolute host path. */
  source: string;
  /** Absolute path in the container. */
  destination: string;
  readOnly?: boolean;
  /** Bind submounts too (`rbind`, Docker's default) or only the top mount (`bind`). */
  recursive?: boolean;
  /** Defaults to `rprivate`, as in Docker. */
  propagation?: BindPropagation;
  /** More mount(8) options, appended as given (e.g. `nosuid`). */
  options?: string[];
}

/** A tmpfs mounted in the container. */
export interface TmpfsMount {
  destination: string;
  /** Bytes; the kernel default (half of RAM) when absent. */
  size?: number;
  /** Permission bits of the tmpfs root, e.g. `0o1777`. */
  mode?: number;
  readOnly?: boolean;
  /** Replaces the default `nosuid,nodev,noexec`. */
  options?: string[];
}

/** Inputs of {@link buildSpec}. */
export interface ProcessSpecOptions {
  /** argv of the process; `args[0]` is looked up on the container's `PATH` by the runtime. */
  args: string[];
  /** `KEY=value` entries (the image's Env, then the caller's). `KEY` alone unsets a default. */
  env?: string[];
  /** Absolute working directory in the container; `/` by default. */
  cwd?: string;
  /** From {@link resolveUser}; root (0:0) by default. */
  user?: ProcessUser;
  /** Container hostname, also exported as `HOSTNAME`; {@link DEFAULT_HOSTNAME} by default. */
  hostname?: string;
  /** Defaults to `none`. */
  network?: NetworkMode;
  /** Host path of the root filesystem (an absolute path; {@link runProcess} fills it in otherwise). */
  rootfs?: string;
  /** Mount the root filesystem read-only (`--read-only`). */
  readOnlyRootfs?: boolean;
  binds?: BindMount[];
  tmpfs?: TmpfsMount[];
  /** `/dev/shm` size in bytes; {@link DEFAULT_SHM_SIZE} by default. */
  shmSize?: number;
  /**
   * Own cgroup namespace. Defaults to what Docker does: private on a pure
   * cgroup v2 host, the host's on v1 and hybrid hosts.
   */
  cgroupNamespace?: boolean;
  /** Replaces {@link DEFAULT_CAPABILITIES} (full `CAP_` names). */
  capabilities?: string[];
  /** Open-files limit (soft and hard); {@link defaultNofile} by default. */
  nofile?: number;
  /** Sets the no_new_privs bit (`--security-opt no-new-privileges`). */
  noNewPrivileges?: boolean;
}

/** Spec options that cannot be honoured. */
export class InvalidSpecError extends StrataError {
  constructor(message: string) {
    super('INVALID_SPEC', message);
  }
}

// ---------------------------------------------------------------------------

const DEVICE_NODES: readonly [string, number, number][] = [
  ['/dev/null', 1, 3],
  ['/dev/zero', 1, 5],
  ['/dev/full', 1, 7],
  ['/dev/random', 1, 8],
  ['/dev/urandom', 1, 9],
  ['/dev/tty', 5, 0],
];

/**
 * The device cgroup: deny everything, then allow what an unprivileged Docker
 * container may use. mknod of any node is allowed (CAP_MKNOD is in the default
 * set; a node is useless without read/write permission). /dev/console and
 * /dev/pts/* are for terminals, /dev/ptmx for opening new ones; fuse stays
 * denied as in Docker.
 */
function deviceRules(): OciDeviceRule[] {
  const allow = (major: number, minor?: number): OciDeviceRule =>
    minor === undefined ? { allow: true, type: 'c', major, access: 'rwm' } : { allow: true, type: 'c', major, minor, access: 'rwm' };
  return [
    { allow: false, access: 'rwm' },
    // Docker's own list, in its order.
    allow(1, 5),
    allow(1, 3),
    allow(1, 9),
    allow(1, 8),
    allow(5, 0),
    allow(5, 1),
    { allow: false, type: 'c', major: 10, minor: 229, access: 'rwm' },
    // What runc appends for every container. The mknod wildcards must follow
    // the fuse rule: the cgroup v1 device controller cannot deny one device
    // out of a wildcard allowed before it.
    { allow: true, type: 'c', access: 'm' },
    { allow: true, type: 'b', access: 'm' },
    allow(1, 7),
    allow(5, 2),
    allow(136),
  ];
}

function defaultMounts(shmSize: number): OciMount[] {
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro', 'nosuid', 'noexec', 'nodev'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', `size=${shmSize}`] },
  ];
}

function checkContainerPath(what: string, path: string): string {
  if (!path.startsWith('/')) throw new InvalidSpecError(`${what} ${JSON.stringify(path)} must be an absolute path`);
  if (path.includes('\0')) throw new InvalidSpecError(`${what} must not contain a NUL byte`);
  return posix.normalize(path).replace(/(.)\/+$/, '$1');
}

/**
 * Merges environment lists the way Docker does (`ReplaceOrAppendEnvValues`): a
 * later `KEY=value` replaces an earlier one in place, new keys are appended,
 * and a bare `KEY` removes it.
 */
export function mergeEnv(base: string[], overrides: string[]): string[] {
  const out: (string | undefined)[] = [...base];
  const index = new Map<string, number>();
  out.forEach((entry, i) => index.set(envKey(entry!), i));
  for (const entry of overrides) {
    const key = envKey(entry);
    const at = index.get(key);
    if (!entry.includes('=')) {
      if (at !== undefined) out[at] = undefined;
      index.delete(key);
      continue;
    }
    if (at !== undefined) out[at] = entry;
    else index.set(key, out.push(entry) - 1);
  }
  return out.filter((entry): entry is string => entry !== undefined);
}

function envKey(entry: string): string {
  const eq = entry.indexOf('=');
  return eq < 0 ? entry : entry.slice(0, eq);
}

function checkId(what: string, id: number): number {
  if (!Number.isInteger(id) || id < 0 || id > 0x7fffffff) {
    throw new InvalidSpecError(`${what} ${id} is out of range: uids and gids must be in range 0-2147483647`);
  }
  return id;
}

function bindToMount(bind: BindMount): OciMount {
  if (!bind.source.startsWith('/')) throw new InvalidSpecError(`bind source ${JSON.stringify(bind.source)} must be an absolute host path`);
  const options = [
    bind.recursive === false ? 'bind' : 'rbind',
    bind.readOnly ? 'ro' : 'rw',
    bind.propagation ?? 'rprivate',
    ...(bind.options ?? []),
  ];
  return { destination: checkContainerPath('bind destination', bind.destination), type: 'bind', source: bind.source, options };
}

function tmpfsToMount(tmpfs: TmpfsMount): OciMount {
  const options = [...(tmpfs.options ?? ['nosuid', 'nodev', 'noexec'])];
  if (tmpfs.readOnly) options.push('ro');
  if (tmpfs.size !== undefined) {
    if (!Number.isSafeInteger(tmpfs.size) || tmpfs.size < 0) throw new InvalidSpecError(`tmpfs size ${tmpfs.size} is not a byte count`);
    options.push(`size=${tmpfs.size}`);
  }
  if (tmpfs.mode !== undefined) options.push(`mode=${(tmpfs.mode & 0o7777).toString(8)}`);
  return { destination: checkContainerPath('tmpfs destination', tmpfs.destination), type: 'tmpfs', source: 'tmpfs', options };
}

function isSameOrBelow(path: string, ancestor: string): boolean {
  return path === ancestor || (ancestor !== '/' && path.startsWith(ancestor + '/'));
}

function depth(path: string): number {
  return path === '/' ? 0 : path.split('/').length - 1;
}

/** Whether the host's /sys/fs/cgroup is the cgroup v2 unified hierarchy. */
function hostIsCgroupV2(): boolean {
  return existsSync('/sys/fs/cgroup/cgroup.controllers');
}

/**
 * Builds config.json for running `opts.args` the way Docker would run it in an
 * unprivileged container.
 *
 * Environment: `PATH` ({@link DEFAULT_PATH_ENV}) and `HOSTNAME` come first and
 * are replaced by entries of `opts.env` with the same key, as in dockerd.
 *
 * Mounts: Docker's defaults, minus any a caller mount replaces or covers (a
 * caller `/dev` mount drops the default `/dev/*` mounts), then the caller's
 * binds and tmpfs mounts, parents before children.
 *
 * @throws InvalidSpecError for empty args, relative paths, ids out of range,
 *   or an unknown network mode
 */
export function buildSpec(opts: ProcessSpecOptions): OciSpec {
  if (opts.args.length === 0) throw new InvalidSpecError('no command given: args must not be empty');
  const network = opts.network ?? 'none';
  if (network !== 'none' && network !== 'host') {
    throw new InvalidSpecError(`network mode "${String(network)}" is not supported (strata has no network bridge); use "none" or "host"`);
  }
  const cwd = opts.cwd === undefined || opts.cwd === '' ? '/' : opts.cwd;
  if (!cwd.startsWith('/')) {
    // Docker's wording for `docker run -w rel`.
    throw new InvalidSpecError(`the working directory '${cwd}' is invalid, it needs to be an absolute path`);
  }
  const hostname = opts.hostname ?? DEFAULT_HOSTNAME;
  if (hostname === '' || hostname.length > 64 || /[\s\0/]/.test(hostname)) {
    throw new InvalidSpecError(`invalid hostname ${JSON.stringify(hostname)}: 1 to 64 characters without whitespace or slashes`);
  }
  const user = opts.user ?? { uid: 0, gid: 0 };
  checkId('uid', user.uid);
  checkId('gid', user.gid);
  for (const gid of user.additionalGids ?? []) checkId('additional gid', gid);

  const env = mergeEnv([`PATH=${DEFAULT_PATH_ENV}`, `HOSTNAME=${hostname}`], opts.env ?? []);

  const callerMounts = [...(opts.binds ?? []).map(bindToMount), ...(opts.tmpfs ?? []).map(tmpfsToMount)];
  const covered = (destination: string) => callerMounts.some((mount) => isSameOrBelow(destination, mount.destination));
  const mounts = [
    ...defaultMounts(opts.shmSize ?? DEFAULT_SHM_SIZE).filter((mount) => !covered(mount.destination)),
    // Stable sort: same-depth mounts keep the caller's order.
    ...callerMounts.map((mount, i) => ({ mount, i })).sort((a, b) => depth(a.mount.destination) - depth(b.mount.destination) || a.i - b.i).map(({ mount }) => mount),
  ];

  const namespaces: OciSpec['linux']['namespaces'] = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (network !== 'host') namespaces.push({ type: 'network' });
  if (opts.cgroupNamespace ?? hostIsCgroupV2()) namespaces.push({ type: 'cgroup' });

  const capabilities = [...(opts.capabilities ?? DEFAULT_CAPABILITIES)];
  const nofile = opts.nofile ?? defaultNofile();
  if (!Number.isSafeInteger(nofile) || nofile < 1) throw new InvalidSpecError(`open-files limit ${nofile} is not a positive integer`);
  const additionalGids = [...new Set(user.additionalGids ?? [])];

  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: additionalGids.length > 0 ? { uid: user.uid, gid: user.gid, additionalGids } : { uid: user.uid, gid: user.gid },
      args: [...opts.args],
      env,
      cwd: posix.normalize(cwd),
      capabilities: { bounding: capabilities, effective: [...capabilities], permitted: [...capabilities] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: nofile, soft: nofile }],
      noNewPrivileges: opts.noNewPrivileges ?? false,
    },
    root: { path: opts.rootfs ?? '', readonly: opts.readOnlyRootfs ?? false },
    hostname,
    mounts,
    linux: {
      namespaces,
      maskedPaths: [...DEFAULT_MASKED_PATHS],
      readonlyPaths: [...DEFAULT_READONLY_PATHS],
      devices: DEVICE_NODES.map(([path, major, minor]) => ({ path, type: 'c', major, minor, fileMode: 0o666, uid: 0, gid: 0 })),
      resources: { devices: deviceRules() },
    },
  };
}

// ---------------------------------------------------------------------------
// Users

/** The identity a process runs as, resolved against the image's files. */
export interface ResolvedUser {
  uid: number;
  gid: number;
  /** Supplementary groups: the groups in /etc/group listing the user by name. */
  additionalGids: number[];
  /** Home directory from /etc/passwd, when the user has an entry. */
  home?: string;
}

/** A `USER`/`--user` value that names no user or group in the image. */
export class UserNotFoundError extends StrataError {
  constructor(message: string) {
    super('USER_NOT_FOUND', message);
  }
}

const MAX_ID = 0x7fffffff;

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

function parseNumericId(value: string): number | undefined {
  return /^[0-9]+$/.test(value) ? Number(value) : undefined;
}

/**
 * Streams the lines of a file inside the rootfs, or yields nothing when it is
 * missing. The last component is opened with O_NOFOLLOW so a symlink swapped in
 * after resolution is refused rather than followed out of the rootfs.
 */
async function* linesInRoot(rootfs: string, path: string): AsyncGenerator<string> {
  const hostPath = await resolveInRoot(rootfs, path);
  let handle;
  try {
    handle = await open(hostPath, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return;
    throw err;
  }
  if (!(await handle.stat()).isFile()) {
    await handle.close();
    return;
  }
  const stream = handle.createReadStream({ encoding: 'utf8' });
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  try {
    for await (const line of lines) yield line;
  } finally {
    lines.close();
    stream.destroy();
    await handle.close().catch(() => undefined);
  }
}

/**
 * Fields of a colon-separated database line. Blank lines and comments are
 * skipped; so are lines whose id fields are not numbers (runc would read them
 * as id 0, i.e. root, which is no way to treat a garbled entry).
 */
function* passwdEntries(line: string): Generator<PasswdEntry> {
  const trimmed = line.trim();
  if (trimmed === '' || trimmed.startsWith('#')) return;
  const fields = trimmed.split(':');
  const uid = parseNumericId(fields[2] ?? '');
  const gid = parseNumericId(fields[3] ?? '');
  if (uid === undefined || gid === undefined) return;
  yield { name: fields[0]!, uid, gid, home: fields[5] ?? '' };
}

function* groupEntries(line: string): Generator<GroupEntry> {
  const trimmed = line.trim();
  if (trimmed === '' || trimmed.startsWith('#')) return;
  const fields = trimmed.split(':');
  const gid = parseNumericId(fields[2] ?? '');
  if (gid === undefined) return;
  const members = (fields[3] ?? '').split(',').filter((member) => member !== '');
  yield { name: fields[0]!, gid, members };
}

function rangeError(): UserNotFoundError {
  return new UserNotFoundError('uids and gids must be in range 0-2147483647');
}

/**
 * Resolves a `USER` / `--user` value against the image's /etc/passwd and
 * /etc/group, with runc's rules (libcontainer `GetExecUser`), which Docker uses:
 *
 * - `''` is root, 0:0.
 * - `name` or `uid`: the first passwd entry with that name (or, for a number,
 *   that uid) gives uid, primary gid and home; supplementary groups are the
 *   groups listing the user's name. A number with no entry is used as is, with
 *   gid 0 and no supplementary groups.
 * - `user:group`: the group is looked up by name (or gid) in /etc/group and
 *   replaces the primary gid; no supplementary groups are added. A numeric group
 *   with no entry is used as is.
 *
 * The files are read without following symlinks out of `rootfs`.
 *
 * @throws UserNotFoundError with Docker's messages ("unable to find user foo:
 *   no matching entries in passwd file", "unable to find group bar: no matching
 *   entries in group file", "uids and gids must be in range 0-2147483647")
 */
export async function resolveUser(rootfs: string, user: string): Promise<ResolvedUser> {
  const colon = user.indexOf(':');
  const userArg = colon < 0 ? user : user.slice(0, colon);
  const groupArg = colon < 0 ? '' : user.slice(colon + 1);
  const uidArg = parseNumericId(userArg);
  const gidArg = parseNumericId(groupArg);

  let match: PasswdEntry | undefined;
  for await (const line of linesInRoot(rootfs, '/etc/passwd')) {
    for (const entry of passwdEntries(line)) {
      const hit = userArg === '' ? entry.uid === 0 : uidArg !== undefined ? entry.uid === uidArg : entry.name === userArg;
      if (hit && match === undefined) match = entry;
    }
    if (match !== undefined) break;
  }

  const result: ResolvedUser = { uid: 0, gid: 0, additionalGids: [] };
  if (match !== undefined) {
    result.uid = match.uid;
    result.gid = match.gid;
    if (match.home !== '') result.home = match.home;
  } else if (userArg !== '') {
    if (uidArg === undefined) throw new UserNotFoundError(`unable to find user ${userArg}: no matching entries in passwd file`);
    if (uidArg > MAX_ID) throw rangeError();
    result.uid = uidArg;
  }
  if (result.uid > MAX_ID || result.gid > MAX_ID) throw rangeError();

  if (groupArg !== '') {
    let group: GroupEntry | undefined;
    for await (const line of linesInRoot(rootfs, '/etc/group')) {
      for (const entry of groupEntries(line)) {
        const hit = gidArg !== undefined ? entry.gid === gidArg : entry.name === groupArg;
        if (hit && group === undefined) group = entry;
      }
      if (group !== undefined) break;
    }
    if (group !== undefined) result.gid = group.gid;
    else if (gidArg === undefined) throw new UserNotFoundError(`unable to find group ${groupArg}: no matching entries in group file`);
    else result.gid = gidArg;
    if (result.gid > MAX_ID) throw rangeError();
  } else if (match !== undefined) {
    const seen = new Set<number>();
    for await (const line of linesInRoot(rootfs, '/etc/group')) {
      for (const entry of groupEntries(line)) {
        if (entry.members.includes(match.name) && !seen.has(entry.gid)) {
          seen.add(entry.gid);
          result.additionalGids.push(entry.gid);
        }
      }
    }
  }
  return result;
}
