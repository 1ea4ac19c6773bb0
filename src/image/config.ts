/**
 * The image model: creating, validating and changing image configs, and
 * writing an image (config blob + OCI manifest blob) into the content store.
 */
import { parseDigest, type Digest } from '../content/digest.js';
import { StrataError } from '../content/errors.js';
import type { ContentStore } from '../content/store.js';
import type { Lease } from '../content/lease.js';
import { expandWord as expandDockerfileWord, ShellExpansionError } from '../build/dockerfile/expand.js';
import { MediaType, compressionOfMediaType } from './mediatypes.js';
import type { ContainerConfig, Descriptor, HistoryEntry, ImageConfig, ImageManifest, Platform } from './types.js';

/** An image config that is not well formed, or a `--change` that cannot be applied. */
export class InvalidImageConfigError extends StrataError {
  constructor(message: string) {
    super('INVALID_IMAGE_CONFIG', message);
  }
}

/** A `--change` instruction Docker would refuse. */
export class InvalidChangeError extends StrataError {
  constructor(message: string) {
    super('INVALID_CHANGE', message);
  }
}

// ---------------------------------------------------------------- platforms

/**
 * Normalizes a platform the way containerd's `platforms.Normalize` does, so
 * `x86_64`, `aarch64`, `armhf` etc. compare equal to their Go names.
 */
export function normalizePlatform(platform: Platform): Platform {
  const os = platform.os.toLowerCase() === 'macos' ? 'darwin' : platform.os.toLowerCase();
  let architecture = platform.architecture.toLowerCase();
  let variant = platform.variant;
  switch (architecture) {
    case 'i386':
      architecture = '386';
      variant = undefined;
      break;
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      architecture = 'amd64';
      if (variant === 'v1') variant = undefined;
      break;
    case 'aarch64':
    case 'arm64':
      architecture = 'arm64';
      if (variant === '8' || variant === 'v8') variant = undefined;
      break;
    case 'armhf':
      architecture = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      architecture = 'arm';
      variant = 'v6';
      break;
    case 'arm':
      if (variant === undefined || variant === '' || variant === '7') variant = 'v7';
      else if (variant === '5' || variant === '6' || variant === '8') variant = `v${variant}`;
      break;
  }
  const out: Platform = { architecture, os };
  if (variant) out.variant = variant;
  if (platform['os.version']) out['os.version'] = platform['os.version'];
  return out;
}

/** Node's `process.arch` in Go's GOARCH vocabulary (what image configs use). */
function goArch(arch: string): { architecture: string; variant?: string } {
  switch (arch) {
    case 'x64':
      return { architecture: 'amd64' };
    case 'ia32':
      return { architecture: '386' };
    case 'arm64':
      return { architecture: 'arm64' };
    case 'arm': {
      const version = (process.config.variables as Record<string, unknown>).arm_version;
      return { architecture: 'arm', variant: `v${typeof version === 'string' || typeof version === 'number' ? version : '7'}` };
    }
    case 'ppc64':
      // Node reports little-endian POWER as ppc64 too; Go calls that ppc64le.
      return { architecture: (process.config.variables as Record<string, unknown>).node_byteorder === 'big' ? 'ppc64' : 'ppc64le' };
    case 'mipsel':
      return { architecture: 'mipsle' };
    default:
      // s390x, riscv64, loong64, mips … are spelled the same in both.
      return { architecture: arch };
  }
}

/** The platform of this machine, as image configs spell it (`linux/amd64`, `linux/arm/v7`). */
export function hostPlatform(): Platform {
  const { architecture, variant } = goArch(process.arch);
  // Containers are Linux images wherever strata runs.
  const platform: Platform = { architecture, os: 'linux' };
  if (variant) platform.variant = variant;
  return platform;
}

/** Whether an image of platform `candidate` is what a user on `wanted` asked for. */
export function platformMatches(candidate: Platform, wanted: Platform): boolean {
  const a = normalizePlatform(candidate);
  const b = normalizePlatform(wanted);
  if (a.os !== b.os || a.architecture !== b.architecture) return false;
  return b.variant === undefined || a.variant === undefined || a.variant === b.variant;
}

/** `linux/arm/v7` style string. */
export function formatPlatform(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');
}

/** Parses `linux/arm64`, `linux/arm/v7`, `arm64` (os defaults to linux). */
export function parsePlatform(text: string): Platform {
  const parts = text.split('/');
  if (parts.some((p) => p === '') || parts.length > 3) {
    throw new InvalidImageConfigError(`invalid platform ${JSON.stringify(text)}: expected os/arch[/variant]`);
  }
  const platform: Platform =
    parts.length === 1 ? { os: 'linux', architecture: parts[0]! } : { os: parts[0]!, architecture: parts[1]!, variant: parts[2] };
  if (platform.variant === undefined) delete platform.variant;
  return normalizePlatform(platform);
}

// ---------------------------------------------------------------- configs

/** Options of {@link newImageConfig}. */
export interface NewImageConfigOptions {
  /** Defaults to {@link hostPlatform}. */
  platform?: Platform;
  /** Overrides `platform.architecture` (the rest still defaults to the host). */
  architecture?: string;
  /** Overrides `platform.os`. */
  os?: string;
  /** Overrides `platform.variant`. */
  variant?: string;
  /** RFC 3339 creation time; defaults to now. */
  created?: string;
  author?: string;
  config?: ContainerConfig;
  diffIds?: Digest[];
  history?: HistoryEntry[];
}

/** A fresh image config for this machine's platform (or `options.platform`). */
export function newImageConfig(options: NewImageConfigOptions = {}): ImageConfig {
  const base = options.platform ?? hostPlatform();
  const overridden: Platform = {
    ...base,
    architecture: options.architecture ?? base.architecture,
    os: options.os ?? base.os,
  };
  // A different architecture does not keep the host's variant (arm64 is not "v7").
  if (options.variant !== undefined) overridden.variant = options.variant;
  else if (options.architecture !== undefined && options.architecture !== base.architecture) delete overridden.variant;
  const platform = normalizePlatform(overridden);
  const config: ImageConfig = {
    created: options.created ?? new Date().toISOString(),
    architecture: platform.architecture,
    os: platform.os,
    config: structuredClone(options.config ?? {}),
    rootfs: { type: 'layers', diff_ids: (options.diffIds ?? []).map((d) => parseDigest(d)) },
    history: structuredClone(options.history ?? []),
  };
  if (options.author !== undefined) config.author = options.author;
  if (platform.variant) config.variant = platform.variant;
  if (platform['os.version']) config['os.version'] = platform['os.version'];
  return config;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkStringArray(value: unknown, what: string, allowNull: boolean): void {
  if (value === undefined || (allowNull && value === null)) return;
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
    throw new InvalidImageConfigError(`image config: ${what} must be an array of strings`);
  }
}

function checkStringMap(value: unknown, what: string): void {
  if (value === undefined || value === null) return;
  if (!isPlainObject(value) || Object.values(value).some((v) => typeof v !== 'string')) {
    throw new InvalidImageConfigError(`image config: ${what} must be an object of strings`);
  }
}

function checkSetMap(value: unknown, what: string): void {
  if (value === undefined || value === null) return;
  if (!isPlainObject(value) || Object.values(value).some((v) => !isPlainObject(v))) {
    throw new InvalidImageConfigError(`image config: ${what} must be an object whose values are objects`);
  }
}

/**
 * Validates a parsed image config document (as read from a blob) and returns it
 * typed, unchanged: a stored config's bytes are its identity, so reading must
 * not rewrite it. Throws InvalidImageConfigError naming the first problem.
 */
export function parseImageConfig(raw: unknown): ImageConfig {
  if (!isPlainObject(raw)) throw new InvalidImageConfigError('image config: not a JSON object');
  for (const field of ['architecture', 'os'] as const) {
    if (typeof raw[field] !== 'string' || raw[field] === '') {
      throw new InvalidImageConfigError(`image config: missing required field "${field}"`);
    }
  }
  for (const field of ['created', 'author', 'variant', 'os.version'] as const) {
    if (raw[field] !== undefined && typeof raw[field] !== 'string') {
      throw new InvalidImageConfigError(`image config: "${field}" must be a string`);
    }
  }
  if (typeof raw.created === 'string' && Number.isNaN(Date.parse(raw.created))) {
    throw new InvalidImageConfigError(`image config: "created" is not an RFC 3339 time: ${JSON.stringify(raw.created)}`);
  }
  const rootfs = raw.rootfs;
  if (!isPlainObject(rootfs) || rootfs.type !== 'layers' || !Array.isArray(rootfs.diff_ids)) {
    throw new InvalidImageConfigError('image config: rootfs must be {"type":"layers","diff_ids":[…]}');
  }
  rootfs.diff_ids.forEach((d, i) => {
    try {
      parseDigest(d);
    } catch (err) {
      throw new InvalidImageConfigError(`image config: rootfs.diff_ids[${i}]: ${(err as Error).message}`);
    }
  });
  const exec = raw.config;
  if (exec !== undefined && exec !== null) {
    if (!isPlainObject(exec)) throw new InvalidImageConfigError('image config: "config" must be an object');
    checkStringArray(exec.Env, 'config.Env', true);
    checkStringArray(exec.Cmd, 'config.Cmd', true);
    checkStringArray(exec.Entrypoint, 'config.Entrypoint', true);
    checkStringArray(exec.OnBuild, 'config.OnBuild', true);
    checkStringArray(exec.Shell, 'config.Shell', true);
    checkStringMap(exec.Labels, 'config.Labels');
    checkSetMap(exec.ExposedPorts, 'config.ExposedPorts');
    checkSetMap(exec.Volumes, 'config.Volumes');
    for (const field of ['User', 'WorkingDir', 'StopSignal'] as const) {
      if (exec[field] !== undefined && exec[field] !== null && typeof exec[field] !== 'string') {
        throw new InvalidImageConfigError(`image config: config.${field} must be a string`);
      }
    }
  }
  if (raw.history !== undefined && raw.history !== null) {
    if (!Array.isArray(raw.history) || raw.history.some((h) => !isPlainObject(h))) {
      throw new InvalidImageConfigError('image config: history must be an array of objects');
    }
  }
  return raw as ImageConfig;
}

/**
 * Validates `raw` and returns a normalized copy for writing a new image:
 * platform names in Go's spelling (`x86_64` → `amd64`) and an execution
 * `config` object present. Use for configs strata creates (import, commit,
 * build), not for ones it reads.
 */
export function normalizeImageConfig(raw: unknown): ImageConfig {
  const config = structuredClone(parseImageConfig(raw));
  const platform = normalizePlatform({ architecture: config.architecture, os: config.os, variant: config.variant });
  config.architecture = platform.architecture;
  config.os = platform.os;
  if (platform.variant) config.variant = platform.variant;
  else delete config.variant;
  if (config.config === undefined || config.config === null) config.config = {};
  return config;
}

/** Number of history entries that describe a layer (not `empty_layer`). */
export function nonEmptyHistoryCount(config: ImageConfig): number {
  return (config.history ?? []).filter((h) => !h.empty_layer).length;
}

// ---------------------------------------------------------------- --change

const VALID_CHANGE_COMMANDS = new Set(['cmd', 'entrypoint', 'env', 'expose', 'healthcheck', 'label', 'onbuild', 'stopsignal', 'user', 'volume', 'workdir']);
const DEFAULT_SHELL = ['/bin/sh', '-c'];

/** Linux signal names Docker's `signal.ParseSignal` knows (without the SIG prefix). */
const SIGNALS = new Set([
  'ABRT', 'ALRM', 'BUS', 'CHLD', 'CLD', 'CONT', 'FPE', 'HUP', 'ILL', 'INT', 'IO', 'IOT', 'KILL', 'PIPE', 'POLL', 'PROF', 'PWR', 'QUIT',
  'SEGV', 'STKFLT', 'STOP', 'SYS', 'TERM', 'TRAP', 'TSTP', 'TTIN', 'TTOU', 'URG', 'USR1', 'USR2', 'VTALRM', 'WINCH', 'XCPU', 'XFSZ',
  'RTMIN', 'RTMAX',
  ...Array.from({ length: 15 }, (_, i) => `RTMIN+${i + 1}`),
  ...Array.from({ length: 14 }, (_, i) => `RTMAX-${14 - i}`),
]);

/**
 * Applies Dockerfile instructions to a copy of `config`, as `docker import
 * --change` / `docker commit --change` do. Accepted: CMD, ENTRYPOINT, ENV,
 * EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR (any
 * case). Each string may hold several instructions on separate lines;
 * backslash-newline continues a line. Like Docker: shell-form CMD/ENTRYPOINT
 * become `[…Shell, text]` (default `/bin/sh -c`); ENTRYPOINT clears an
 * inherited CMD unless a CMD was given earlier in the same changes; `$VAR`
 * references in ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME and WORKDIR are
 * expanded from the config's environment.
 *
 * @throws InvalidChangeError naming the offending instruction.
 */
export function applyChanges(config: ImageConfig, changes: string[]): ImageConfig {
  const out = structuredClone(config);
  const exec: ContainerConfig = (out.config ??= {});
  const state = { cmdSet: false };
  for (const line of splitInstructions(changes)) applyInstruction(exec, line, state);
  return out;
}

/** Joins continuation lines and drops blank lines and comments. */
function splitInstructions(changes: string[]): string[] {
  const lines: string[] = [];
  for (const change of changes) {
    let pending = '';
    for (const raw of change.split(/\r?\n/)) {
      if (pending === '' && /^\s*(#|$)/.test(raw)) continue;
      if (/\\\s*$/.test(raw)) {
        pending += raw.replace(/\\\s*$/, '');
        continue;
      }
      lines.push(pending + raw);
      pending = '';
    }
    if (pending.trim() !== '') lines.push(pending);
  }
  return lines;
}

function applyInstruction(exec: ContainerConfig, line: string, state: { cmdSet: boolean }): void {
  const match = /^\s*(\S+)\s*([\s\S]*)$/.exec(line)!;
  const keyword = match[1]!;
  const command = keyword.toLowerCase();
  const rest = match[2]!.trim();
  if (!VALID_CHANGE_COMMANDS.has(command)) throw new InvalidChangeError(`${command} is not a valid change command`);
  const upper = command.toUpperCase();
  const env = (): readonly string[] => exec.Env ?? [];

  switch (command) {
    case 'cmd': {
      exec.Cmd = commandLine(rest, upper, exec.Shell);
      state.cmdSet = true;
      return;
    }
    case 'entrypoint': {
      exec.Entrypoint = commandLine(rest, upper, exec.Shell);
      if (!state.cmdSet) exec.Cmd = null;
      return;
    }
    case 'env': {
      const before = env();
      const pairs = nameValuePairs(rest, upper).map(([k, v]) => [expandWord(k, before), expandWord(v, before)] as const);
      const list = [...(exec.Env ?? [])];
      for (const [key, value] of pairs) {
        if (key === '') throw new InvalidChangeError('ENV names can not be blank');
        const index = list.findIndex((e) => e.split('=')[0] === key);
        if (index === -1) list.push(`${key}=${value}`);
        else list[index] = `${key}=${value}`;
      }
      exec.Env = list;
      return;
    }
    case 'label': {
      const vars = env();
      const labels = { ...(exec.Labels ?? {}) };
      for (const [k, v] of nameValuePairs(rest, upper)) {
        const key = expandWord(k, vars);
        if (key === '') throw new InvalidChangeError('LABEL names can not be blank');
        labels[key] = expandWord(v, vars);
      }
      exec.Labels = labels;
      return;
    }
    case 'expose': {
      const words = expandWords(rest, env());
      if (words.length === 0) throw new InvalidChangeError('EXPOSE requires at least one argument');
      const ports = { ...(exec.ExposedPorts ?? {}) };
      for (const word of words) for (const port of parsePortSpec(word)) ports[port] = {};
      exec.ExposedPorts = ports;
      return;
    }
    case 'user': {
      const words = expandWords(rest, env());
      if (words.length !== 1) throw new InvalidChangeError('USER requires exactly one argument');
      exec.User = words[0]!;
      return;
    }
    case 'workdir': {
      const words = expandWords(rest, env());
      if (words.length !== 1) throw new InvalidChangeError('WORKDIR requires exactly one argument');
      exec.WorkingDir = normalizeWorkdir(exec.WorkingDir ?? '', words[0]!);
      return;
    }
    case 'volume': {
      const vars = env();
      const json = parseJsonArray(rest);
      const paths = json ? json.map((p) => expandWord(p, vars)) : expandWords(rest, vars);
      if (paths.length === 0) throw new InvalidChangeError('VOLUME requires at least one argument');
      const volumes = { ...(exec.Volumes ?? {}) };
      for (const path of paths) {
        if (path.trim() === '') throw new InvalidChangeError('VOLUME specified can not be an empty string');
        volumes[path] = {};
      }
      exec.Volumes = volumes;
      return;
    }
    case 'stopsignal': {
      const words = expandWords(rest, env());
      if (words.length !== 1) throw new InvalidChangeError('STOPSIGNAL requires exactly one argument');
      checkSignal(words[0]!);
      exec.StopSignal = words[0]!;
      return;
    }
    case 'onbuild': {
      const trigger = /^(\S+)/.exec(rest)?.[1]?.toUpperCase();
      if (trigger === undefined) throw new InvalidChangeError('ONBUILD requires at least one argument');
      if (trigger === 'ONBUILD') throw new InvalidChangeError('Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed');
      if (trigger === 'FROM' || trigger === 'MAINTAINER') throw new InvalidChangeError(`${trigger} isn't allowed as an ONBUILD trigger`);
      exec.OnBuild = [...(exec.OnBuild ?? []), rest];
      return;
    }
    case 'healthcheck': {
      exec.Healthcheck = parseHealthcheck(rest);
      return;
    }
  }
}

/** CMD/ENTRYPOINT argument: JSON array form (`[]` allowed, as in Docker), else shell form. */
function commandLine(rest: string, keyword: string, shell: string[] | undefined): string[] {
  const json = parseJsonArray(rest);
  if (json) return json;
  if (rest === '') throw new InvalidChangeError(`${keyword} requires at least one argument`);
  return [...(shell && shell.length > 0 ? shell : DEFAULT_SHELL), rest];
}

/** Docker's parseMaybeJSON: a `[`-prefixed string that parses as an array of strings. */
function parseJsonArray(rest: string): string[] | undefined {
  if (!rest.startsWith('[')) return undefined;
  try {
    const value: unknown = JSON.parse(rest);
    if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value as string[];
  } catch {
    // Not JSON: Docker falls back to the shell form.
  }
  return undefined;
}

/**
 * ENV/LABEL arguments: `k=v k2="v 2"`, or the legacy `KEY value with spaces`
 * form (one pair, value is the rest of the line). Quotes are kept here and
 * removed by expansion, as in Docker.
 */
function nameValuePairs(rest: string, keyword: string): [string, string][] {
  if (rest === '') throw new InvalidChangeError(`${keyword} requires at least one argument`);
  const words = splitRawWords(rest);
  if (!words[0]!.includes('=')) {
    const legacy = /^(\S+)\s+([\s\S]*)$/.exec(rest);
    if (!legacy) throw new InvalidChangeError(`${keyword} must have two arguments`);
    // Legacy form: the rest of the line is one word (spaces kept), still
    // subject to quote removal and expansion.
    return [[legacy[1]!, legacy[2]!.trim()]];
  }
  return words.map((word) => {
    const eq = word.indexOf('=');
    if (eq === -1) {
      throw new InvalidChangeError(`Syntax error - can't find = in ${JSON.stringify(word)}. Must be of the form: name=value`);
    }
    return [word.slice(0, eq), word.slice(eq + 1)];
  });
}

/** Splits on unquoted whitespace, keeping quotes and escapes in the words. */
function splitRawWords(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let quote: string | undefined;
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quote === undefined && /\s/.test(ch)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      continue;
    }
    inWord = true;
    word += ch;
    if (ch === '\\' && quote !== "'" && i + 1 < text.length) {
      word += text[++i];
    } else if (quote === undefined && (ch === '"' || ch === "'")) {
      quote = ch;
    } else if (ch === quote) {
      quote = undefined;
    }
  }
  if (quote !== undefined) throw new InvalidChangeError(`unexpected end of statement while looking for matching ${quote}`);
  if (inWord) words.push(word);
  return words;
}

/** Splits into words and processes each (quotes, escapes, `$VAR`). */
function expandWords(text: string, env: readonly string[]): string[] {
  return splitRawWords(text).map((w) => expandWord(w, env));
}

/**
 * One word through the Dockerfile lexer (quotes removed, escapes applied,
 * `$VAR` and `${VAR…}` forms substituted from the config's environment), as
 * Docker's commit/import dispatch processes instruction arguments.
 */
function expandWord(word: string, env: readonly string[]): string {
  try {
    return expandDockerfileWord(word, env);
  } catch (err) {
    if (err instanceof ShellExpansionError) throw new InvalidChangeError(err.message);
    throw err;
  }
}

/** `80`, `80/udp`, `8000-8002/tcp` → `["80/tcp", …]`, as nat.ParsePortSpecs does. */
function parsePortSpec(spec: string): string[] {
  const slash = spec.lastIndexOf('/');
  const portPart = slash === -1 ? spec : spec.slice(0, slash);
  const proto = slash === -1 ? 'tcp' : spec.slice(slash + 1).toLowerCase();
  if (!['tcp', 'udp', 'sctp'].includes(proto)) throw new InvalidChangeError(`invalid proto: ${proto}`);
  const range = /^(\d+)(?:-(\d+))?$/.exec(portPart);
  if (!range) throw new InvalidChangeError(`invalid containerPort: ${portPart}`);
  const start = Number(range[1]);
  const end = range[2] === undefined ? start : Number(range[2]);
  if (start > 65535 || end > 65535) throw new InvalidChangeError(`invalid containerPort: ${portPart}`);
  if (end < start) throw new InvalidChangeError(`invalid range specified for containerPort: ${portPart}`);
  const ports: string[] = [];
  for (let p = start; p <= end; p++) ports.push(`${p}/${proto}`);
  return ports;
}

function normalizeWorkdir(current: string, requested: string): string {
  const joined = requested.startsWith('/') ? requested : `/${current}/${requested}`;
  const parts: string[] = [];
  for (const part of joined.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return `/${parts.join('/')}`;
}

function checkSignal(signal: string): void {
  if (/^\d+$/.test(signal)) {
    const n = Number(signal);
    if (n >= 1 && n <= 64) return;
  } else if (SIGNALS.has(signal.toUpperCase().replace(/^SIG/, ''))) {
    return;
  }
  throw new InvalidChangeError(`Invalid signal: ${signal}`);
}

/** HEALTHCHECK [--interval=…] [--timeout=…] [--start-period=…] [--start-interval=…] [--retries=…] CMD …|NONE */
function parseHealthcheck(rest: string): NonNullable<ContainerConfig['Healthcheck']> {
  let text = rest;
  const flags = new Map<string, string>();
  for (;;) {
    const flag = /^--([a-z-]+)=(\S*)\s*/.exec(text);
    if (!flag) break;
    if (!['interval', 'timeout', 'start-period', 'start-interval', 'retries'].includes(flag[1]!)) {
      throw new InvalidChangeError(`Unknown flag: ${flag[1]}`);
    }
    flags.set(flag[1]!, flag[2]!);
    text = text.slice(flag[0].length);
  }
  const kind = /^(\S+)\s*([\s\S]*)$/.exec(text);
  if (!kind) throw new InvalidChangeError('HEALTHCHECK requires at least one argument');
  const type = kind[1]!.toUpperCase();
  if (type === 'NONE') {
    if (kind[2] !== '' || flags.size > 0) throw new InvalidChangeError('HEALTHCHECK NONE takes no arguments');
    return { Test: ['NONE'] };
  }
  if (type !== 'CMD') throw new InvalidChangeError(`Unknown type "${type}" in HEALTHCHECK (try CMD)`);
  const args = kind[2]!.trim();
  const json = parseJsonArray(args);
  let test: string[];
  if (json) test = ['CMD', ...json];
  else if (args !== '') test = ['CMD-SHELL', args];
  else throw new InvalidChangeError('Missing command after HEALTHCHECK CMD');
  const check: NonNullable<ContainerConfig['Healthcheck']> = { Test: test };
  const durations: [string, 'Interval' | 'Timeout' | 'StartPeriod' | 'StartInterval'][] = [
    ['interval', 'Interval'],
    ['timeout', 'Timeout'],
    ['start-period', 'StartPeriod'],
    ['start-interval', 'StartInterval'],
  ];
  for (const [flag, field] of durations) {
    const value = flags.get(flag);
    if (value === undefined) continue;
    const ns = parseGoDuration(value, flag);
    if (ns !== 0 && ns < 1_000_000) throw new InvalidChangeError(`Interval "--${flag}" cannot be less than 1ms`);
    if (ns !== 0) check[field] = ns;
  }
  const retries = flags.get('retries');
  if (retries !== undefined) {
    if (!/^-?\d+$/.test(retries)) throw new InvalidChangeError(`invalid --retries value: ${retries}`);
    const n = Number(retries);
    if (n < 0) throw new InvalidChangeError('--retries cannot be negative');
    if (n > 0) check.Retries = n;
  }
  return check;
}

/** Go's time.ParseDuration, in nanoseconds. */
function parseGoDuration(text: string, flag: string): number {
  const units: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, μs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
  if (text === '0') return 0;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;
  let total = 0;
  let pos = 0;
  while (pos < text.length) {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) throw new InvalidChangeError(`invalid --${flag} value: time: invalid duration ${JSON.stringify(text)}`);
    total += Number(m[1]) * units[m[2]!]!;
    pos = re.lastIndex;
  }
  if (text === '') throw new InvalidChangeError(`invalid --${flag} value: time: invalid duration ""`);
  return Math.round(total);
}

// ---------------------------------------------------------------- writing images

/** Options of {@link writeImage}. */
export interface WriteImageOptions {
  config: ImageConfig;
  /** One descriptor per entry of `config.rootfs.diff_ids`, in order; the blobs must be in the store. */
  layers: Descriptor[];
  /** Protects the new blobs from gc until the image is tagged or added. */
  lease?: Lease;
  /** Manifest annotations. */
  annotations?: Record<string, string>;
}

/** What {@link writeImage} stored. */
export interface WrittenImage {
  /** Descriptor of the OCI manifest, ready to be tagged or added to an index. */
  manifest: Descriptor;
  /** The config blob's digest: the image ID. */
  configDigest: Digest;
}

/**
 * Stores `config` and an OCI image manifest naming it and `layers`. Checks
 * first that the config is well formed, that there is one layer per diff_id,
 * that every layer descriptor has a layer media type and that each layer blob
 * is present with the declared size.
 */
export async function writeImage(store: ContentStore, options: WriteImageOptions): Promise<WrittenImage> {
  const config = parseImageConfig(options.config);
  const { layers, lease } = options;
  if (config.rootfs.diff_ids.length !== layers.length) {
    throw new InvalidImageConfigError(
      `image has ${layers.length} layer(s) but its config lists ${config.rootfs.diff_ids.length} diff_id(s)`,
    );
  }
  for (const [i, layer] of layers.entries()) {
    if (compressionOfMediaType(layer.mediaType) === undefined) {
      throw new InvalidImageConfigError(`layer ${i} (${layer.digest}) has media type ${layer.mediaType}, which is not a layer type`);
    }
    // Claiming first keeps a concurrent gc from deleting the layer before the manifest names it.
    if (lease) await store.claim(layer.digest, lease);
    const size = await store.size(layer.digest);
    if (size === undefined) throw new InvalidImageConfigError(`layer ${i} blob ${layer.digest} is not in the content store`);
    if (size !== layer.size) {
      throw new InvalidImageConfigError(`layer ${i} blob ${layer.digest} is ${size} bytes, but its descriptor says ${layer.size}`);
    }
  }
  const configBlob = await store.putJson(config, lease);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciConfig, digest: configBlob.digest, size: configBlob.size },
    layers: layers.map((l) => {
      const d: Descriptor = { mediaType: l.mediaType, digest: parseDigest(l.digest), size: l.size };
      if (l.annotations) d.annotations = { ...l.annotations };
      if (l.urls) d.urls = [...l.urls];
      return d;
    }),
  };
  if (options.annotations && Object.keys(options.annotations).length > 0) manifest.annotations = { ...options.annotations };
  const manifestBlob = await store.putJson(manifest, lease);
  const platform: Platform = { architecture: config.architecture, os: config.os };
  if (config.variant) platform.variant = config.variant;
  return {
    manifest: { mediaType: MediaType.OciManifest, digest: manifestBlob.digest, size: manifestBlob.size, platform },
    configDigest: configBlob.digest,
  };
}
