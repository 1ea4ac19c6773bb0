/**
 * Output formatting that matches what the docker CLI prints, so strata's
 * `images`, `ps`, `inspect` ... read the same as docker's: tabwriter-aligned
 * tables, 4-space indented JSON, go-units sizes and durations.
 */

/** Where formatted output goes; `process.stdout` or any writable stream. */
export interface TextSink {
  write(chunk: string): unknown;
}

/** Options for {@link formatTable}, mirroring Go's `tabwriter.NewWriter` parameters. */
export interface TableOptions {
  /** Minimum width of a padded column, padding included (docker: 10). */
  minWidth?: number;
  /** Spaces added to the widest cell of a column (docker: 3). */
  padding?: number;
}

// docker/cli's formatter uses tabwriter.NewWriter(out, 10, 1, 3, ' ', 0).
const DOCKER_MIN_WIDTH = 10;
const DOCKER_PADDING = 3;

/** Width of a cell as tabwriter counts it: Unicode code points, not UTF-16 units. */
function cellWidth(text: string): number {
  let width = 0;
  for (const _ of text) width++;
  return width;
}

// A tab or line break inside a cell would be read by tabwriter as a cell or row
// boundary and shear the table; flatten them so one value stays one cell.
function sanitizeCell(text: string): string {
  return text.replace(/[\t\r\n\v\f]/g, ' ');
}

/**
 * Formats rows into columns the way docker's tabwriter does: every cell except
 * the last of its row is padded to its column width, where a column's width is
 * `max(minWidth, widest cell + padding)`; the last cell of a row is never
 * padded, so lines carry no trailing spaces.
 *
 * Rows may have different lengths; as in Go's tabwriter, a column is aligned
 * over each run of consecutive rows that have a cell after it.
 *
 * @param header - column titles (the first line), e.g. `['REPOSITORY', 'TAG', 'IMAGE ID']`;
 *   pass an empty array for a table without a header line
 * @param rows - one array of cell strings per line
 * @returns the table text, every line terminated by `\n`; empty string when there are no lines
 */
export function formatTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  options: TableOptions = {},
): string {
  const minWidth = options.minWidth ?? DOCKER_MIN_WIDTH;
  const padding = options.padding ?? DOCKER_PADDING;
  const lines = (header.length > 0 ? [header, ...rows] : rows).map((row) => row.map(sanitizeCell));
  const widths: number[] = [];
  const out: string[] = [];

  const writeLines = (from: number, to: number): void => {
    for (let i = from; i < to; i++) {
      const line = lines[i]!;
      let text = '';
      line.forEach((cell, j) => {
        text += cell;
        if (j < widths.length) text += ' '.repeat(Math.max(0, widths[j]! - cellWidth(cell)));
      });
      out.push(`${text}\n`);
    }
  };

  // Recursive column-block layout, as in Go's text/tabwriter: column `widths.length`
  // is aligned across each maximal run of lines that have a cell after it.
  const layout = (line0: number, line1: number): void => {
    const column = widths.length;
    let start = line0;
    for (let i = line0; i < line1; i++) {
      if (column >= lines[i]!.length - 1) continue;
      writeLines(start, i);
      start = i;
      let width = minWidth;
      for (; i < line1 && column < lines[i]!.length - 1; i++) {
        width = Math.max(width, cellWidth(lines[i]![column]!) + padding);
      }
      widths.push(width);
      layout(start, i);
      widths.pop();
      // Line i ended the block because it has no cell here, so skipping it is safe.
      start = i;
    }
    writeLines(start, line1);
  };

  layout(0, lines.length);
  return out.join('');
}

/** Writes {@link formatTable}'s output to `sink` (default stdout). */
export function printTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  sink: TextSink = process.stdout,
  options?: TableOptions,
): void {
  const text = formatTable(header, rows, options);
  if (text !== '') sink.write(text);
}

/**
 * JSON the way `docker inspect` prints it: 4-space indentation, trailing newline.
 * (Docker additionally escapes `<`, `>` and `&` as `\u003c`... because Go's encoder
 * does; strata prints them literally, which any JSON reader treats identically.)
 *
 * @throws TypeError when `value` cannot be serialised (cycles, BigInt)
 */
export function formatJson(value: unknown): string {
  const text = JSON.stringify(value, null, 4);
  if (text === undefined) throw new TypeError(`cannot format ${typeof value} as JSON`);
  return `${text}\n`;
}

/** Writes {@link formatJson}'s output to `sink` (default stdout). */
export function printJson(value: unknown, sink: TextSink = process.stdout): void {
  sink.write(formatJson(value));
}

/** A decimal digit string `d` with decimal point position `dp`: value = 0.d × 10^dp. */
interface DecimalDigits {
  digits: string;
  dp: number;
}

const float64View = new DataView(new ArrayBuffer(8));

/** The exact decimal expansion of a positive finite double (every double is a finite decimal). */
function exactDecimal(x: number): DecimalDigits {
  float64View.setFloat64(0, x);
  const bits = float64View.getBigUint64(0);
  const biasedExponent = Number((bits >> 52n) & 0x7ffn);
  let mantissa = bits & ((1n << 52n) - 1n);
  let exponent2: number;
  if (biasedExponent === 0) {
    exponent2 = -1074;
  } else {
    mantissa |= 1n << 52n;
    exponent2 = biasedExponent - 1075;
  }
  let digits: string;
  let dp: number;
  if (exponent2 >= 0) {
    digits = (mantissa << BigInt(exponent2)).toString();
    dp = digits.length;
  } else {
    // m × 2^-k = m × 5^k × 10^-k
    digits = (mantissa * 5n ** BigInt(-exponent2)).toString();
    dp = digits.length + exponent2;
  }
  return { digits: digits.replace(/0+$/, ''), dp };
}

/** Rounds to `precision` significant digits, ties to even (as Go's strconv does on exact halves). */
function roundDigits(value: DecimalDigits, precision: number): DecimalDigits {
  const { digits } = value;
  if (digits.length <= precision) return value;
  const next = digits.charCodeAt(precision) - 48;
  const exactHalf = next === 5 && digits.length === precision + 1;
  const roundUp = exactHalf ? precision > 0 && (digits.charCodeAt(precision - 1) - 48) % 2 === 1 : next >= 5;
  let kept = digits.slice(0, precision);
  let dp = value.dp;
  if (roundUp) {
    let i = kept.length - 1;
    while (i >= 0 && kept[i] === '9') i--;
    if (i < 0) {
      kept = '1';
      dp += 1;
    } else {
      kept = kept.slice(0, i) + String.fromCharCode(kept.charCodeAt(i) + 1);
    }
  }
  return { digits: kept.replace(/0+$/, ''), dp };
}

function formatExponent(d: DecimalDigits, fractionDigits: number): string {
  const { digits } = d;
  let text = digits.length > 0 ? digits[0]! : '0';
  if (fractionDigits > 0) {
    text += `.${digits.slice(1, fractionDigits + 1).padEnd(fractionDigits, '0')}`;
  }
  const exp = digits.length === 0 ? 0 : d.dp - 1;
  const magnitude = String(Math.abs(exp)).padStart(2, '0');
  return `${text}e${exp < 0 ? '-' : '+'}${magnitude}`;
}

function formatFixed(d: DecimalDigits, fractionDigits: number): string {
  const { digits, dp } = d;
  let text = dp > 0 ? digits.slice(0, dp).padEnd(dp, '0') : '0';
  if (fractionDigits > 0) {
    text += '.';
    for (let i = 1; i <= fractionDigits; i++) {
      const j = dp + i - 1;
      text += j >= 0 && j < digits.length ? digits[j] : '0';
    }
  }
  return text;
}

/**
 * Go's `fmt.Sprintf("%.*g", precision, x)`: `precision` significant digits,
 * trailing zeros dropped, exponent form (`1e+03`) when the exponent is < -4 or
 * >= precision. Exposed because docker's human sizes depend on its exact
 * rounding (ties to even on exact binary halves, e.g. 1.125 → "1.12").
 *
 * @param precision - significant digits, >= 1 (0 is treated as 1, like Go)
 */
export function formatGoG(x: number, precision: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return '+Inf';
  if (x === -Infinity) return '-Inf';
  if (!Number.isInteger(precision) || precision < 0) {
    throw new RangeError(`precision must be a non-negative integer, got ${precision}`);
  }
  const prec = precision === 0 ? 1 : precision;
  const negative = x < 0 || Object.is(x, -0);
  const magnitude = Math.abs(x);
  const d = magnitude === 0 ? { digits: '', dp: 0 } : roundDigits(exactDecimal(magnitude), prec);
  const nd = d.digits.length;
  let exponentThreshold = prec;
  if (exponentThreshold > nd && nd >= d.dp) exponentThreshold = nd;
  const exp = d.dp - 1;
  let text: string;
  if (exp < -4 || exp >= exponentThreshold) {
    text = formatExponent(d, Math.min(prec, nd) - 1);
  } else {
    const significant = prec > d.dp ? nd : prec;
    text = formatFixed(d, Math.max(significant - d.dp, 0));
  }
  return negative ? `-${text}` : text;
}

const DECIMAL_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'] as const;

/**
 * A size the way docker prints it (go-units `HumanSizeWithPrecision`): decimal
 * SI units (1kB = 1000 bytes), `precision` significant digits, no space:
 * `"0B"`, `"999B"`, `"1.23MB"`, `"4.19GB"`.
 *
 * @param bytes - size in bytes (a number; sizes above 2^53 lose precision, as in Go's float64)
 * @param precision - significant digits; docker's `images`/`ps` use 3 (the default),
 *   go-units' plain `HumanSize` uses 4
 */
export function humanSize(bytes: number | bigint, precision = 3): string {
  let size = Number(bytes);
  let unit = 0;
  while (size >= 1000 && unit < DECIMAL_UNITS.length - 1) {
    size /= 1000;
    unit++;
  }
  return `${formatGoG(size, precision)}${DECIMAL_UNITS[unit]}`;
}

/**
 * A duration the way docker prints ages (go-units `HumanDuration`):
 * "Less than a second", "1 second", "45 seconds", "About a minute",
 * "35 minutes", "About an hour", "36 hours", "13 days", "6 weeks",
 * "23 months", "3 years". Hours round to nearest; other units truncate.
 *
 * @param milliseconds - the duration; negative durations read as "Less than a second"
 */
export function humanDuration(milliseconds: number): string {
  const seconds = Math.trunc(milliseconds / 1000);
  if (!(seconds >= 1)) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.trunc(milliseconds / 60_000);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const exactHours = milliseconds / 3_600_000;
  const hours = Math.trunc(exactHours + 0.5);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.trunc(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.trunc(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24 / 30)} months`;
  return `${Math.trunc(Math.trunc(exactHours) / 24 / 365)} years`;
}

/**
 * Docker's CREATED column: `humanDuration(now - time) + " ago"`, e.g.
 * "About an hour ago", "2 days ago".
 *
 * @param time - a Date, epoch milliseconds, or an RFC 3339 string (as in image configs)
 * @param now - the reference time in epoch milliseconds (default: `Date.now()`)
 * @throws RangeError when `time` is not a valid time
 */
export function humanTimeAgo(time: Date | number | string, now: number = Date.now()): string {
  const ms = time instanceof Date ? time.getTime() : typeof time === 'string' ? Date.parse(time) : time;
  if (!Number.isFinite(ms)) throw new RangeError(`invalid time: ${String(time)}`);
  return `${humanDuration(now - ms)} ago`;
}

/**
 * Docker's short ID (stringid.TruncateID): the algorithm prefix dropped, the
 * first 12 characters kept. `sha256:4b825dc6...` → `4b825dc642cb`.
 */
export function truncateId(id: string): string {
  const colon = id.indexOf(':');
  const hex = colon >= 0 ? id.slice(colon + 1) : id;
  return hex.slice(0, 12);
}
