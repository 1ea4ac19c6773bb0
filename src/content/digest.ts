/**
 * Digests: the only names the content store knows. Every digest that reaches a
 * file-system path goes through {@link parseDigest} first, so a crafted value such
 * as `sha256:../../etc/passwd` can never become a path.
 */
import { createHash, type Hash } from 'node:crypto';

/** A validated `sha256:<64 lowercase hex>` string. */
export type Digest = `sha256:${string}`;

const SHA256_RE = /^sha256:[a-f0-9]{64}$/;
const ANY_DIGEST_RE = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/** Error for malformed or unsupported digests. */
export class InvalidDigestError extends Error {
  constructor(value: unknown, why = 'not of the form sha256:<64 hex digits>') {
    super(`invalid digest ${JSON.stringify(String(value)).slice(0, 100)}: ${why}`);
    this.name = 'InvalidDigestError';
  }
}

/** True when `value` is a well-formed sha256 digest. */
export function isDigest(value: unknown): value is Digest {
  return typeof value === 'string' && SHA256_RE.test(value);
}

/**
 * Validates and returns `value` as a {@link Digest}. Well-formed digests of other
 * algorithms (sha512, ...) are refused with a message that says so, rather than
 * the generic one.
 */
export function parseDigest(value: unknown): Digest {
  if (isDigest(value)) return value;
  if (typeof value === 'string' && ANY_DIGEST_RE.test(value) && !value.startsWith('sha256:')) {
    throw new InvalidDigestError(value, `algorithm ${value.split(':')[0]} is not supported (only sha256)`);
  }
  throw new InvalidDigestError(value);
}

/** The 64-hex part of a digest (validated). */
export function digestHex(digest: string): string {
  return parseDigest(digest).slice('sha256:'.length);
}

/** Digest of a whole in-memory buffer (for small JSON documents only). */
export function sha256Of(data: Uint8Array | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** A running sha256 that also counts bytes. */
export class DigestCounter {
  private readonly hash: Hash = createHash('sha256');
  size = 0;
  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.size += chunk.length;
  }
  digest(): Digest {
    return `sha256:${this.hash.digest('hex')}`;
  }
}
