/**
 * What `inspect`, `history` and `images` show, shaped and formatted the way
 * the Docker CLI shows it (Docker 25: field set of `docker image inspect`,
 * go-units sizes and durations, the CLI's 45-column `CREATED BY`, its
 * tabwriter table layout).
 */
import type { Digest } from '../content/digest.js';
import type { ContainerConfig, ImageConfig, ImageManifest } from './types.js';
import type { ImageStore, ImageSummary, ResolvedImage } from './image-store.js';
import { parseReference } from './reference.js';

/** `docker image inspect` of one image. */
export interface ImageInspect {
  Id: Digest;
  RepoTags: string[];
  RepoDigests: string[];
  Parent: string;
  Comment: string;
  Created: string;
  DockerVersion: string;
  Author: string;
  Config: InspectConfig;
  Architecture: string;
  Variant?: string;
  Os: string;
  OsVersion?: string;
  Size: number;
  GraphDriver: { Data: Record<string, string>; Name: string };
  RootFS: { Type: string; Layers: string[] };
  Metadata: { LastTagTime: string };
}

/** Docker's `container.Config` as it appears in inspect output (nulls and all). */
export interface InspectConfig {
  Hostname: string;
  Domainname: string;
  User: string;
  AttachStdin: boolean;
  AttachStdout: boolean;
  AttachStderr: boolean;
  ExposedPorts?: Record<string, Record<string, never>>;
  Tty: boolean;
  OpenStdin: boolean;
  StdinOnce: boolean;
  Env: string[] | null;
  Cmd: string[] | null;
  Healthcheck?: ContainerConfig['Healthcheck'];
  ArgsEscaped?: boolean;
  Image: string;
  Volumes: Record<string, Record<string, never>> | null;
  WorkingDir: string;
  Entrypoint: string[] | null;
  OnBuild: string[] | null;
  Labels: Record<string, string> | null;
  StopSignal?: string;
  StopTimeout?: number;
  Shell?: string[];
}

/** Go's zero time, which Docker prints for a never-tagged image's LastTagTime. */
const GO_ZERO_TIME = '0001-01-01T00:00:00Z';

/** The `Config` block of inspect output for an image's execution config. */
export function inspectConfig(config: ContainerConfig | undefined | null): InspectConfig {
  const c = (config ?? {}) as ContainerConfig & Record<string, unknown>;
  const out: InspectConfig = {
    Hostname: '',
    Domainname: '',
    User: c.User ?? '',
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    Tty: false,
    OpenStdin: false,
    StdinOnce: false,
    Env: c.Env ?? null,
    Cmd: c.Cmd ?? null,
    Image: typeof c.Image === 'string' ? c.Image : '',
    Volumes: c.Volumes ?? null,
    WorkingDir: c.WorkingDir ?? '',
    Entrypoint: c.Entrypoint ?? null,
    OnBuild: c.OnBuild ?? null,
    Labels: c.Labels ?? null,
  };
  // Fields Docker omits when empty, inserted in Docker's field order.
  const ordered: InspectConfig = {} as InspectConfig;
  for (const key of Object.keys(out) as (keyof InspectConfig)[]) {
    if (key === 'Tty' && c.ExposedPorts && Object.keys(c.ExposedPorts).length > 0) ordered.ExposedPorts = c.ExposedPorts;
    if (key === 'Image') {
      if (c.Healthcheck) ordered.Healthcheck = c.Healthcheck;
      if (c.ArgsEscaped) ordered.ArgsEscaped = true;
    }
    (ordered as unknown as Record<string, unknown>)[key] = out[key];
  }
  if (c.StopSignal) ordered.StopSignal = c.StopSignal;
  if (typeof c.StopTimeout === 'number') ordered.StopTimeout = c.StopTimeout;
  if (c.Shell && c.Shell.length > 0) ordered.Shell = c.Shell;
  return ordered;
}

/** RFC 3339 with Go's RFC3339Nano trimming (no trailing fractional zeros). */
export function formatCreated(created: string | undefined): string {
  if (!created) return '';
  const match = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|z|[+-]\d\d:\d\d)$/.exec(created);
  if (!match) return created;
  const fraction = (match[2] ?? '').slice(0, 9).replace(/0+$/, '');
  return `${match[1]}${fraction ? `.${fraction}` : ''}${match[3] === 'z' ? 'Z' : match[3]}`;
}

/** `docker image inspect` for a resolved image. */
export async function inspectImage(store: ImageStore, resolved: ResolvedImage): Promise<ImageInspect> {
  const { config } = resolved;
  const extra = config as Record<string, unknown>;
  const inspect: ImageInspect = {
    Id: resolved.id,
    RepoTags: [...resolved.repoTags],
    RepoDigests: [...resolved.repoDigests],
    Parent: '',
    Comment: typeof extra.comment === 'string' ? extra.comment : '',
    Created: formatCreated(config.created),
    DockerVersion: typeof extra.docker_version === 'string' ? extra.docker_version : '',
    Author: config.author ?? '',
    Config: inspectConfig(config.config),
    Architecture: config.architecture,
    Os: config.os,
    Size: await store.imageSize(resolved.manifest, config),
    GraphDriver: { Data: {}, Name: 'strata' },
    RootFS: { Type: 'layers', Layers: [...config.rootfs.diff_ids] },
    Metadata: { LastTagTime: resolved.lastTagTime ?? GO_ZERO_TIME },
  };
  // Variant and OsVersion go where Docker puts them, and only when set.
  const ordered: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(inspect)) {
    ordered[key] = value;
    if (key === 'Architecture' && config.variant) ordered.Variant = config.variant;
    if (key === 'Os' && config['os.version']) ordered.OsVersion = config['os.version'];
  }
  return ordered as unknown as ImageInspect;
}

// ---------------------------------------------------------------- go-units

const DECIMAL_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'];

/** go-units `HumanSizeWithPrecision(size, 3)`: `4.26MB`, `0B`, `1.12kB`. */
export function humanSize(bytes: number, precision = 3): string {
  let size = bytes;
  let unit = 0;
  while (size >= 1000 && unit < DECIMAL_UNITS.length - 1) {
    size /= 1000;
    unit++;
  }
  return `${formatGoG(size, precision)}${DECIMAL_UNITS[unit]}`;
}

/**
 * Go's `strconv.FormatFloat(x, 'g', precision, 64)`: rounds the exact binary
 * value half-to-even (JavaScript's toPrecision rounds ties up), drops
 * trailing zeros, switches to `1e+03` form as Go does.
 */
export function formatGoG(x: number, precision: number): string {
  if (x === 0) return '0';
  if (!Number.isFinite(x)) return String(x);
  const negative = x < 0;
  const { digits, pointAt } = exactDecimal(Math.abs(x));
  const rounded = roundHalfEven(digits, pointAt, precision);
  const d = rounded.digits.replace(/0+$/, '') || '0';
  const dp = rounded.pointAt;
  let eprec = precision;
  if (eprec > d.length && d.length >= dp) eprec = d.length;
  const exp = dp - 1;
  let text: string;
  if (exp < -4 || exp >= eprec) {
    const mantissa = d.length > 1 ? `${d[0]}.${d.slice(1)}` : d;
    text = `${mantissa}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  } else if (dp <= 0) {
    text = `0.${'0'.repeat(-dp)}${d}`;
  } else if (dp >= d.length) {
    text = d + '0'.repeat(dp - d.length);
  } else {
    text = `${d.slice(0, dp)}.${d.slice(dp)}`;
  }
  return negative ? `-${text}` : text;
}

/** The exact decimal digits of a positive finite double; value = 0.DIGITS × 10^pointAt. */
function exactDecimal(x: number): { digits: string; pointAt: number } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const hi = view.getUint32(0);
  const lo = view.getUint32(4);
  const biased = (hi >>> 20) & 0x7ff;
  let mantissa = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let exponent: number;
  if (biased === 0) {
    exponent = -1074;
  } else {
    mantissa |= 1n << 52n;
    exponent = biased - 1075;
  }
  let digits: string;
  let fractionDigits: number;
  if (exponent >= 0) {
    digits = (mantissa << BigInt(exponent)).toString();
    fractionDigits = 0;
  } else {
    digits = (mantissa * 5n ** BigInt(-exponent)).toString();
    fractionDigits = -exponent;
  }
  const pointAt = digits.length - fractionDigits;
  const stripped = digits.replace(/^0+/, '');
  return { digits: stripped, pointAt: pointAt - (digits.length - stripped.length) };
}

function roundHalfEven(digits: string, pointAt: number, precision: number): { digits: string; pointAt: number } {
  if (digits.length <= precision) return { digits, pointAt };
  const kept = digits.slice(0, precision);
  const rest = digits.slice(precision);
  const first = rest.charCodeAt(0) - 48;
  const beyondHalf = first > 5 || (first === 5 && /[1-9]/.test(rest.slice(1)));
  const exactlyHalf = first === 5 && !/[1-9]/.test(rest.slice(1));
  const lastKept = kept.charCodeAt(kept.length - 1) - 48;
  const up = beyondHalf || (exactlyHalf && lastKept % 2 === 1);
  if (!up) return { digits: kept, pointAt };
  const incremented = (BigInt(kept) + 1n).toString();
  if (incremented.length > kept.length) return { digits: incremented.slice(0, precision), pointAt: pointAt + 1 };
  return { digits: incremented, pointAt };
}

/** go-units `HumanDuration`: "Less than a second", "About a minute", "2 hours", "3 weeks"… */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.trunc(ms / 60_000);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.trunc(ms / 3_600_000 + 0.5);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.trunc(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.trunc(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24 / 30)} months`;
  return `${Math.trunc(ms / 3_600_000 / 24 / 365)} years`;
}

/** "2 hours ago" relative to `now`, or "" for times Docker does not show (before 2000, missing). */
export function createdSince(created: string | undefined, now: Date = new Date()): string {
  if (!created) return '';
  const time = Date.parse(created);
  if (Number.isNaN(time) || time <= Date.UTC(2000, 0, 1)) return '';
  return `${humanDuration(now.getTime() - time)} ago`;
}

/** Docker's `TruncateID`: strips `sha256:` and keeps 12 characters. */
export function truncateId(id: string): string {
  const hex = id.includes(':') ? id.slice(id.indexOf(':') + 1) : id;
  return hex.length > 12 ? hex.slice(0, 12) : hex;
}

/** Terminal columns a character takes (East Asian wide and fullwidth take two). */
function charWidth(codePoint: number): number {
  const wide =
    (codePoint >= 0x1100 && codePoint <= 0x115f) ||
    (codePoint >= 0x2e80 && codePoint <= 0x303e) ||
    (codePoint >= 0x3041 && codePoint <= 0x33ff) ||
    (codePoint >= 0x3400 && codePoint <= 0x4dbf) ||
    (codePoint >= 0x4e00 && codePoint <= 0x9fff) ||
    (codePoint >= 0xa000 && codePoint <= 0xa4cf) ||
    (codePoint >= 0xac00 && codePoint <= 0xd7a3) ||
    (codePoint >= 0xf900 && codePoint <= 0xfaff) ||
    (codePoint >= 0xfe30 && codePoint <= 0xfe4f) ||
    (codePoint >= 0xff00 && codePoint <= 0xff60) ||
    (codePoint >= 0xffe0 && codePoint <= 0xffe6) ||
    (codePoint >= 0x1f300 && codePoint <= 0x1f64f) ||
    (codePoint >= 0x1f900 && codePoint <= 0x1f9ff) ||
    (codePoint >= 0x20000 && codePoint <= 0x3fffd);
  return wide ? 2 : 1;
}

/** The Docker CLI's `Ellipsis`: fit `s` in `maxWidth` columns, ending in "…" when cut. */
export function ellipsis(s: string, maxWidth: number): string {
  if (maxWidth <= 0) return '';
  const chars = [...s];
  if (maxWidth === 1) return chars[0] ?? '';
  const widths = chars.map((c) => charWidth(c.codePointAt(0)!));
  const total = widths.reduce((a, b) => a + b, 0);
  if (total <= maxWidth) return s;
  let used = 0;
  let out = '';
  for (const [i, c] of chars.entries()) {
    if (used + widths[i]! > maxWidth - 1) break;
    out += c;
    used += widths[i]!;
  }
  return `${out}…`;
}

// ---------------------------------------------------------------- history

/** One row of `docker history`, formatted, with the values it came from. */
export interface HistoryRow {
  /** IMAGE: the image ID on the top row, `<missing>` below (strata keeps no parent chain). */
  image: string;
  /** CREATED: "2 hours ago" (or RFC 3339 when not human). */
  created: string;
  /** CREATED BY, truncated to 45 columns unless noTrunc. */
  createdBy: string;
  /** SIZE: "4.26MB" (or bytes when not human). */
  size: string;
  comment: string;
  raw: { id: string; created?: string; createdBy: string; size: number; comment: string; emptyLayer: boolean };
}

/** Options of {@link historyRows}. */
export interface HistoryOptions {
  /** `--no-trunc`: full IDs and commands. */
  noTrunc?: boolean;
  /** `--human` (default true). */
  human?: boolean;
  /** Uncompressed size of each layer, in manifest order (see `ImageStore.layerSizesOf`); default: the blob sizes. */
  layerSizes?: number[];
  /** Image ID for the top row; default: the manifest's config digest. */
  imageId?: string;
  /** Reference time for "… ago" (tests). */
  now?: Date;
}

/**
 * `docker history`: newest step first, one row per history entry, sizes of
 * non-empty steps taken from the layers in order.
 *
 * @throws Error when the history names more layers than the image has, as Docker does.
 */
export function historyRows(config: ImageConfig, manifest: ImageManifest, options: HistoryOptions = {}): HistoryRow[] {
  const human = options.human ?? true;
  const trunc = !options.noTrunc;
  const sizes = options.layerSizes ?? manifest.layers.map((l) => l.size);
  const rows: HistoryRow[] = [];
  let layer = 0;
  for (const entry of config.history ?? []) {
    let size = 0;
    const emptyLayer = entry.empty_layer === true;
    if (!emptyLayer) {
      if (layer >= config.rootfs.diff_ids.length) throw new Error('too many non-empty layers in History section');
      size = sizes[layer] ?? 0;
      layer++;
    }
    const raw: HistoryRow['raw'] = { id: '<missing>', createdBy: entry.created_by ?? '', size, comment: entry.comment ?? '', emptyLayer };
    if (entry.created) raw.created = entry.created;
    rows.unshift({ image: '', created: '', createdBy: '', size: '', comment: '', raw });
  }
  if (rows.length > 0) rows[0]!.raw.id = options.imageId ?? manifest.config.digest;
  for (const row of rows) {
    const { raw } = row;
    row.image = trunc ? truncateId(raw.id) : raw.id;
    row.created = human ? createdSince(raw.created, options.now) : rfc3339Seconds(raw.created);
    const createdBy = raw.createdBy.replace(/\t/g, ' ');
    row.createdBy = trunc ? ellipsis(createdBy, 45) : createdBy;
    row.size = human ? humanSize(raw.size) : String(raw.size);
    row.comment = raw.comment;
  }
  return rows;
}

function rfc3339Seconds(created: string | undefined): string {
  const time = created ? Date.parse(created) : NaN;
  const date = new Date(Number.isNaN(time) ? Date.UTC(1970, 0, 1) : time);
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Column headers of {@link historyRows} as Docker prints them. */
export const HISTORY_HEADERS = ['IMAGE', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT'] as const;

// ---------------------------------------------------------------- images

/** One row of `docker images`. */
export interface ImagesRow {
  repository: string;
  tag: string;
  /** Only meaningful with the `digests` option. */
  digest: string;
  imageId: string;
  created: string;
  size: string;
}

/** Options of {@link imagesRows}. */
export interface ImagesOptions {
  noTrunc?: boolean;
  /** `--digests`: a DIGEST column, one row per tag and digest. */
  digests?: boolean;
  now?: Date;
}

/**
 * `docker images`: one row per repository tag; `<none>` for dangling images
 * and for repositories named only by digest. Order follows `list` (newest
 * first).
 */
export function imagesRows(list: ImageSummary[], options: ImagesOptions = {}): ImagesRow[] {
  const rows: ImagesRow[] = [];
  for (const image of list) {
    const base = {
      imageId: options.noTrunc ? image.id : truncateId(image.id),
      created: createdSince(image.created, options.now) || 'N/A',
      size: humanSize(image.size),
    };
    if (image.repoTags.length === 0 && image.repoDigests.length === 0) {
      rows.push({ repository: '<none>', tag: '<none>', digest: '<none>', ...base });
      continue;
    }
    const tagsByRepo = new Map<string, string[]>();
    const digestsByRepo = new Map<string, string[]>();
    for (const text of image.repoTags) {
      const ref = tryParse(text);
      if (ref?.tag !== undefined) push(tagsByRepo, ref.familiarName(), ref.tag);
    }
    for (const text of image.repoDigests) {
      const ref = tryParse(text);
      if (ref?.digest !== undefined) push(digestsByRepo, ref.familiarName(), ref.digest);
    }
    for (const [repository, tags] of tagsByRepo) {
      const digests = options.digests ? (digestsByRepo.get(repository) ?? []) : [];
      digestsByRepo.delete(repository);
      for (const tag of tags) {
        if (digests.length === 0) rows.push({ repository, tag, digest: '<none>', ...base });
        for (const digest of digests) rows.push({ repository, tag, digest, ...base });
      }
    }
    for (const [repository, digests] of digestsByRepo) {
      if (options.digests) for (const digest of digests) rows.push({ repository, tag: '<none>', digest, ...base });
      else rows.push({ repository, tag: '<none>', digest: '', ...base });
    }
  }
  return rows;
}

function tryParse(text: string): ReturnType<typeof parseReference> | undefined {
  try {
    return parseReference(text);
  } catch {
    return undefined;
  }
}

function push(map: Map<string, string[]>, key: string, value: string): void {
  const list = map.get(key) ?? [];
  list.push(value);
  map.set(key, list);
}

/** Column headers of {@link imagesRows} as Docker prints them. */
export function imagesHeaders(options: ImagesOptions = {}): string[] {
  return options.digests ? ['REPOSITORY', 'TAG', 'DIGEST', 'IMAGE ID', 'CREATED', 'SIZE'] : ['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE'];
}

/** The cells of an images row in header order. */
export function imagesCells(row: ImagesRow, options: ImagesOptions = {}): string[] {
  return options.digests
    ? [row.repository, row.tag, row.digest, row.imageId, row.created, row.size]
    : [row.repository, row.tag, row.imageId, row.created, row.size];
}

/**
 * Lays out a table as the Docker CLI's tabwriter does (minimum width 10,
 * padding 3, spaces): every column but the last is padded to the widest
 * cell plus 3; the last is left as is.
 */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const lines = [headers, ...rows];
  const columns = headers.length;
  const widths: number[] = [];
  for (let c = 0; c < columns - 1; c++) {
    let width = 10;
    for (const line of lines) width = Math.max(width, [...(line[c] ?? '')].length + 3);
    widths.push(width);
  }
  return lines
    .map((line) => {
      let text = '';
      for (let c = 0; c < columns; c++) {
        const cell = line[c] ?? '';
        text += c < columns - 1 ? cell + ' '.repeat(widths[c]! - [...cell].length) : cell;
      }
      return `${text}\n`;
    })
    .join('');
}
