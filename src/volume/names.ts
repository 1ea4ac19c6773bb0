/**
 * Volume names, as Docker's `local` volume driver accepts them.
 *
 * A volume name becomes a directory name under `ROOT/strata/volumes/`, so the
 * rules are what keeps a name from escaping that directory: the first character
 * alphanumeric, the rest alphanumerics, `_`, `.` or `-`, at least two characters
 * (moby volume/local/local.go `validateName`). Error texts are Docker's, so a
 * user who pastes them into a search engine finds the Docker answers.
 */
import { randomBytes } from 'node:crypto';
import { StrataError } from '../content/errors.js';

/** The character classes Docker quotes in its invalid-name message. */
export const RESTRICTED_NAME_CHARS = '[a-zA-Z0-9][a-zA-Z0-9_.-]';

/** Docker's `volumeNameRegex`. */
export const VOLUME_NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

/**
 * Label Docker (23+) puts on volumes created without a name; `volume prune`
 * without `all` removes only volumes carrying it.
 */
export const ANONYMOUS_VOLUME_LABEL = 'com.docker.volume.anonymous';

/**
 * Longest name accepted. Docker has no explicit limit and fails later in mkdir
 * with ENAMETOOLONG; checking up front gives a message that names the cause.
 */
export const MAX_VOLUME_NAME_BYTES = 255;

/** A volume name the local driver refuses. `message` is Docker's `create NAME: ...` text. */
export class InvalidVolumeNameError extends StrataError {
  constructor(
    readonly volumeName: string,
    readonly reason: string,
  ) {
    super('INVALID_VOLUME_NAME', `create ${volumeName}: ${reason}`);
  }
}

/**
 * Why `name` is not a valid volume name, in Docker's words, or undefined if it
 * is valid. Lengths are counted in UTF-8 bytes, as Go's `len` does.
 */
export function volumeNameProblem(name: string): string | undefined {
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes === 1) return 'volume name is too short, names should be at least two alphanumeric characters';
  if (!VOLUME_NAME_PATTERN.test(name)) {
    return (
      `${goQuote(name)} includes invalid characters for a local volume name, only ${goQuote(RESTRICTED_NAME_CHARS)} are allowed.` +
      ' If you intended to pass a host directory, use absolute path'
    );
  }
  if (bytes > MAX_VOLUME_NAME_BYTES) {
    return `volume name is too long (${bytes} bytes), names must be at most ${MAX_VOLUME_NAME_BYTES} bytes`;
  }
  return undefined;
}

/** True when `name` is a valid volume name. */
export function isValidVolumeName(name: string): boolean {
  return volumeNameProblem(name) === undefined;
}

/** Throws {@link InvalidVolumeNameError} unless `name` is a valid volume name. */
export function validateVolumeName(name: string): void {
  const problem = volumeNameProblem(name);
  if (problem !== undefined) throw new InvalidVolumeNameError(name, problem);
}

/**
 * A fresh name for an anonymous volume: 64 random hex digits, like Docker's
 * `stringid.GenerateRandomID`. As there, a name whose 12-character short form is
 * all digits is rejected and redrawn, so the short form never reads as a number.
 */
export function generateAnonymousVolumeName(): string {
  for (;;) {
    const name = randomBytes(32).toString('hex');
    if (!/^[0-9]{12}/.test(name)) return name;
  }
}

/**
 * Go's `strconv.Quote`, which Docker's `%q` uses, for the characters that can
 * reach an error message. JSON.stringify differs for control characters
 * (`\u0000` versus Go's `\x00`), which matters when a message is compared.
 * @internal exported for mountspec.ts.
 */
export function goQuote(value: string): string {
  let out = '"';
  for (const ch of value) {
    const code = ch.codePointAt(0)!;
    switch (ch) {
      case '"':
        out += '\\"';
        continue;
      case '\\':
        out += '\\\\';
        continue;
      case '\x07':
        out += '\\a';
        continue;
      case '\b':
        out += '\\b';
        continue;
      case '\f':
        out += '\\f';
        continue;
      case '\n':
        out += '\\n';
        continue;
      case '\r':
        out += '\\r';
        continue;
      case '\t':
        out += '\\t';
        continue;
      case '\v':
        out += '\\v';
        continue;
    }
    if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else if ((code >= 0x80 && code < 0xa0) || code === 0x2028 || code === 0x2029 || code === 0xfeff) {
      out += `\\u${code.toString(16).padStart(4, '0')}`;
    } else out += ch;
  }
  return out + '"';
}
