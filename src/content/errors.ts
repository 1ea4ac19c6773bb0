/**
 * Errors of the content store. Every error strata raises on purpose extends
 * {@link StrataError}, whose `code` is stable and meant for programs (the CLI maps
 * codes to exit statuses; callers branch on `code` rather than on message text).
 */
import { isDigest, type Digest } from './digest.js';

/** Base of all deliberate strata errors. */
export class StrataError extends Error {
  /** Stable machine-readable identifier, e.g. `BLOB_NOT_FOUND`. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    // Subclasses get their own name without repeating it in every constructor.
    this.name = new.target.name;
  }
}

/** A blob that should be in the store is not. */
export class BlobNotFoundError extends StrataError {
  constructor(
    readonly digest: Digest,
    options?: { cause?: unknown },
  ) {
    super('BLOB_NOT_FOUND', `blob ${digest} not found in the content store`, options);
  }
}

/**
 * A stored blob whose bytes do not match its name. `detail` is either the digest
 * the bytes actually hash to, or a sentence describing what else is wrong.
 */
export class BlobCorruptError extends StrataError {
  /** What the bytes hash to, when that is what is wrong. */
  readonly actualDigest: Digest | undefined;

  constructor(
    readonly digest: Digest,
    detail: Digest | string,
  ) {
    super('BLOB_CORRUPT', `blob ${digest} is corrupt: ${isDigest(detail) ? `content hashes to ${detail}` : detail}`);
    this.actualDigest = isDigest(detail) ? detail : undefined;
  }
}

/** Ingested content does not hash to the digest the caller said it would. */
export class DigestMismatchError extends StrataError {
  constructor(
    readonly expected: Digest,
    readonly actual: Digest,
  ) {
    super('DIGEST_MISMATCH', `content hashes to ${actual}, expected ${expected}`);
  }
}

/**
 * Ingested content is not as long as the caller said it would be. `actual` is a
 * lower bound (`actualAtLeast`) when writing stopped as soon as the content
 * overran the expected size.
 */
export class SizeMismatchError extends StrataError {
  constructor(
    readonly expected: number,
    readonly actual: number,
    readonly actualAtLeast = false,
    readonly digest?: Digest,
  ) {
    const what = digest ? `content for ${digest}` : 'content';
    const got = actualAtLeast ? `more than ${expected} bytes` : `${actual} bytes`;
    super('SIZE_MISMATCH', `${what} is ${got}, expected ${expected} bytes`);
  }
}

/** A blob is larger than a caller is prepared to hold in memory. */
export class BlobTooLargeError extends StrataError {
  constructor(
    readonly digest: Digest,
    readonly size: number,
    readonly limit: number,
  ) {
    super('BLOB_TOO_LARGE', `blob ${digest} is ${size} bytes, more than the ${limit} bytes allowed in memory; stream it instead`);
  }
}
