/**
 * Instruction `--flags`: splitting them off the line (buildkit
 * `extractBuilderFlags`), checking them against what each instruction accepts
 * (buildkit `BFlags`, with its messages), and the structured RUN flags
 * (`--mount`, `--network`, `--security`).
 */
import type { FlagValue, RunMount, RunMountType, RunNetwork, RunSecurity } from './instructions.js';
import { goParseBool, goParseUint, GoParseError, isGoSpace } from './gocompat.js';

/**
 * Splits leading `--flag` words off an instruction's arguments. Quotes and
 * backslashes inside a flag word are processed (always `\`, whatever the escape
 * directive says, as in Docker); a bare `--` ends the flags.
 */
export function extractBuilderFlags(line: string): { rest: string; flags: string[] } {
  const words: string[] = [];
  const chars = Array.from(line);
  let offset = 0; // UTF-16 offset of chars[pos]
  const offsets: number[] = [];
  for (const ch of chars) {
    offsets.push(offset);
    offset += ch.length;
  }
  offsets.push(offset);

  type Phase = 'spaces' | 'word' | 'quote';
  let phase: Phase = 'spaces';
  let word = '';
  let quote = '';
  let blankOK = false;

  for (let pos = 0; pos <= chars.length; pos++) {
    const ch = pos < chars.length ? chars[pos]! : '';
    if (phase === 'spaces') {
      if (pos === chars.length) break;
      if (isGoSpace(ch)) continue;
      if (ch !== '-' || pos + 1 === chars.length || chars[pos + 1] !== '-') {
        return { rest: line.slice(offsets[pos]), flags: words };
      }
      phase = 'word';
    }
    if (pos === chars.length) {
      if (word !== '--' && (blankOK || word.length > 0)) words.push(word);
      break;
    }
    if (phase === 'word') {
      if (isGoSpace(ch)) {
        phase = 'spaces';
        if (word === '--') return { rest: line.slice(offsets[pos]), flags: words };
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
        continue;
      }
      if (ch === '\\') {
        if (pos + 1 === chars.length) continue;
        pos++;
        word += chars[pos];
        continue;
      }
      word += ch;
      continue;
    }
    // phase === 'quote'
    if (ch === quote) {
      phase = 'word';
      continue;
    }
    if (ch === '\\') {
      if (pos + 1 === chars.length) {
        phase = 'word';
        continue;
      }
      pos++;
      word += chars[pos];
      continue;
    }
    word += ch;
  }
  return { rest: '', flags: words };
}

/** How a flag takes values. */
export type FlagType = 'bool' | 'string' | 'strings';

/** Parsed flags: raw values by name and which names were given. */
export interface ParsedFlags {
  values: Record<string, FlagValue>;
  strings: Record<string, string>;
  lists: Record<string, string[]>;
  bools: Record<string, boolean>;
  used: string[];
}

/** Error from {@link parseFlags}; the message is Docker's. */
export class FlagError extends Error {}

/**
 * Checks flag words against the flags an instruction accepts, the way
 * buildkit's BFlags.Parse does (messages included).
 */
export function parseFlags(words: readonly string[], spec: Readonly<Record<string, FlagType>>): ParsedFlags {
  const result: ParsedFlags = { values: {}, strings: {}, lists: {}, bools: {}, used: [] };
  for (const raw of words) {
    if (!raw.startsWith('--')) throw new FlagError(`Arg should start with -- : ${raw}`);
    if (raw === '--') break;
    let name = raw.slice(2);
    let value = '';
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const type = Object.prototype.hasOwnProperty.call(spec, name) ? spec[name] : undefined;
    if (type === undefined) throw new FlagError(`Unknown flag: ${name}`);
    if (result.used.includes(name) && type !== 'strings') throw new FlagError(`Duplicate flag specified: ${name}`);
    if (!result.used.includes(name)) result.used.push(name);
    switch (type) {
      case 'bool': {
        if (eq >= 0 && value === '') throw new FlagError(`Missing a value on flag: ${name}`);
        const lower = value.toLowerCase();
        if (lower === '' || lower === 'true') {
          result.bools[name] = true;
          result.values[name] = true;
        } else if (lower === 'false') {
          result.bools[name] = false;
          delete result.values[name];
        } else {
          throw new FlagError(`Expecting boolean value for flag ${name}, not: ${value}`);
        }
        break;
      }
      case 'string':
        if (eq < 0) throw new FlagError(`Missing a value on flag: ${name}`);
        result.strings[name] = value;
        result.values[name] = value;
        break;
      case 'strings':
        if (eq < 0) throw new FlagError(`Missing a value on flag: ${name}`);
        (result.lists[name] ??= []).push(value);
        result.values[name] = result.lists[name]!;
        break;
    }
  }
  return result;
}

/**
 * Go's `encoding/csv` reading one record (comma separated, `"` quoting with
 * `""` escapes, strict about bare quotes), as buildkit parses `--mount`.
 */
export function parseCsvRecord(text: string): string[] {
  if (text === '') throw new FlagError('failed to parse csv mounts: EOF');
  const line = text.split('\n')[0]!.replace(/\r$/, '');
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    if (line[i] === '"') {
      let field = '';
      i++;
      for (;;) {
        const q = line.indexOf('"', i);
        if (q < 0) {
          throw new FlagError(`failed to parse csv mounts: parse error on line 1, column ${line.length + 1}: extraneous or missing " in quoted-field`);
        }
        field += line.slice(i, q);
        i = q + 1;
        if (line[i] === '"') {
          field += '"';
          i++;
          continue;
        }
        if (i === line.length || line[i] === ',') break;
        throw new FlagError(`failed to parse csv mounts: parse error on line 1, column ${i + 1}: extraneous or missing " in quoted-field`);
      }
      fields.push(field);
    } else {
      const comma = line.indexOf(',', i);
      const field = comma < 0 ? line.slice(i) : line.slice(i, comma);
      const bare = field.indexOf('"');
      if (bare >= 0) {
        throw new FlagError(`failed to parse csv mounts: parse error on line 1, column ${i + bare + 1}: bare " in non-quoted-field`);
      }
      fields.push(field);
      i = comma < 0 ? line.length : comma;
    }
    if (i >= line.length) break;
    i++; // the comma
    if (i === line.length) {
      fields.push('');
      break;
    }
  }
  return fields;
}

const MOUNT_TYPES: readonly RunMountType[] = ['bind', 'cache', 'tmpfs', 'secret', 'ssh'];
const MOUNT_KEYS = [
  'type', 'from', 'source', 'target', 'readonly', 'id', 'sharing', 'required', 'mode', 'uid', 'gid',
  'size', 'env', 'src', 'dst', 'destination', 'ro', 'rw', 'readwrite',
];

/** Parses a tmpfs `size=` value: bytes with an optional k/m/g (binary) suffix, as docker-units RAMInBytes. */
function parseSize(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgGtTpP]?)[iI]?[bB]?$/.exec(value);
  if (!m) throw new FlagError(`invalid value for size: ${value}`);
  const mult: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };
  return Math.floor(Number(m[1]) * mult[m[2]!.toLowerCase()]!);
}

/**
 * Parses one `RUN --mount` value. With `expand`, every value is substituted
 * first (dispatch time). Without it (parse time) values containing `$` are
 * kept verbatim and only checked later, as Docker defers them; `from` may
 * never use variables.
 */
export function parseRunMount(spec: string, expand?: (word: string) => string): RunMount {
  const fields = parseCsvRecord(spec);
  const mount: RunMount = { type: 'bind', readOnly: true, required: false };
  let roAuto = true;
  let requiredBare = false;
  let requiredValue: boolean | undefined;
  // Some value held a variable: type-dependent checks wait for expandInstruction.
  let deferred = false;
  const num = (key: string, value: string, base: number): number => {
    try {
      return Number(goParseUint(value, base, 32));
    } catch (err) {
      if (err instanceof GoParseError) throw new FlagError(`invalid value ${value} for ${key}`);
      throw err;
    }
  };
  const bool = (key: string, value: string): boolean => {
    try {
      return goParseBool(value);
    } catch (err) {
      if (err instanceof GoParseError) throw new FlagError(`invalid value for ${key}: ${value}`);
      throw err;
    }
  };
  for (const field of fields) {
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    if (eq < 0) {
      switch (key) {
        case 'readonly':
        case 'ro':
          mount.readOnly = true;
          roAuto = false;
          continue;
        case 'readwrite':
        case 'rw':
          mount.readOnly = false;
          roAuto = false;
          continue;
        case 'required':
          requiredBare = true;
          continue;
      }
      throw new FlagError(`invalid field '${field}' must be a key=value pair`);
    }
    let value = field.slice(eq + 1);
    if (expand) {
      value = expand(value);
    } else if (key === 'from') {
      if (/\$./su.test(value)) throw new FlagError(`'${key}' doesn't support variable expansion, define alias stage instead`);
    } else if (value.includes('$')) {
      // Deferred to dispatch time, when the variables are known.
      if (!MOUNT_KEYS.includes(key)) throw new FlagError(`unexpected key '${key}' in '${field}'`);
      deferred = true;
      assignText(mount, key, value);
      continue;
    }
    if (assignText(mount, key, value)) continue;
    switch (key) {
      case 'type': {
        const type = value.toLowerCase() as RunMountType;
        if (!MOUNT_TYPES.includes(type)) throw new FlagError(`unsupported mount type "${value}"`);
        mount.type = type;
        break;
      }
      case 'from':
        mount.from = value;
        break;
      case 'readonly':
      case 'ro':
        mount.readOnly = bool(key, value);
        roAuto = false;
        break;
      case 'readwrite':
      case 'rw':
        mount.readOnly = !bool(key, value);
        roAuto = false;
        break;
      case 'required':
        requiredValue = bool(key, value);
        break;
      case 'sharing': {
        const sharing = value.toLowerCase();
        if (sharing !== 'shared' && sharing !== 'private' && sharing !== 'locked') {
          throw new FlagError(`unsupported sharing value "${value}"`);
        }
        mount.sharing = sharing;
        break;
      }
      case 'mode':
        mount.mode = num(key, value, 8);
        break;
      case 'uid':
        mount.uid = num(key, value, 10);
        break;
      case 'gid':
        mount.gid = num(key, value, 10);
        break;
      case 'size':
        mount.size = parseSize(value);
        break;
      default:
        throw new FlagError(`unexpected key '${key}' in '${field}'`);
    }
  }
  const secretLike = mount.type === 'secret' || mount.type === 'ssh';
  if (requiredBare || requiredValue !== undefined) {
    if (!secretLike && !deferred) throw new FlagError(`unexpected key 'required' for mount type '${mount.type}'`);
    mount.required = requiredValue ?? true;
  }
  const fileInfoAllowed = secretLike || mount.type === 'cache';
  if (!deferred) {
    if (mount.mode !== undefined && !fileInfoAllowed) throw new FlagError(`mode not allowed for "${mount.type}" type mounts`);
    if (mount.uid !== undefined && !fileInfoAllowed) throw new FlagError(`uid not allowed for "${mount.type}" type mounts`);
    if (mount.gid !== undefined && !fileInfoAllowed) throw new FlagError(`gid not allowed for "${mount.type}" type mounts`);
    if (mount.size !== undefined && mount.type !== 'tmpfs') throw new FlagError(`size not allowed for "${mount.type}" type mounts`);
    if (mount.env !== undefined && mount.type !== 'secret') throw new FlagError(`env not allowed for "${mount.type}" type mounts`);
    if (mount.sharing !== undefined && mount.type !== 'cache') throw new FlagError(`invalid cache sharing set for ${mount.type} mount`);
    if (mount.type === 'secret') {
      if (mount.from !== undefined) throw new FlagError('secret mount should not have a from');
      if (mount.source === undefined && mount.target === undefined && mount.id === undefined && mount.env === undefined) {
        throw new FlagError('invalid secret mount. one of source, target required');
      }
      if (mount.source !== undefined && mount.id !== undefined) throw new FlagError("both source and id can't be set");
    }
  }
  if (roAuto) mount.readOnly = !(mount.type === 'cache' || mount.type === 'tmpfs');
  return mount;
}

/**
 * Sets a mount field that is plain text (source, target, id, env), which is
 * also all that can be set before a value with variables is expanded (type,
 * sharing, mode, uid, gid, size, ro/rw and required are only known then).
 * Returns whether `key` was one of them.
 */
function assignText(mount: RunMount, key: string, value: string): boolean {
  switch (key) {
    case 'source':
    case 'src':
      mount.source = value;
      return true;
    case 'target':
    case 'dst':
    case 'destination':
      mount.target = value;
      return true;
    case 'id':
      mount.id = value;
      return true;
    case 'env':
      mount.env = value;
      return true;
    default:
      return false;
  }
}

/** Checks `RUN --network`. */
export function parseRunNetwork(value: string): RunNetwork {
  if (value === 'default' || value === 'none' || value === 'host') return value;
  throw new FlagError(`network mode "${value}" not supported`);
}

/** Checks `RUN --security`. */
export function parseRunSecurity(value: string): RunSecurity {
  if (value === 'sandbox' || value === 'insecure') return value;
  throw new FlagError(`security "${value}" is not valid`);
}
