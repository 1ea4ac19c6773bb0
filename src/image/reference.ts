/**
 * Image references, parsed and normalized the way Docker does it
 * (distribution/reference `ParseNormalizedNamed` + `TagNameOnly`): `busybox`
 * means `docker.io/library/busybox:latest`, a first component is a registry
 * only when it looks like one (has a `.` or a `:port`, or is `localhost`),
 * and error messages are Docker's own so users recognise them.
 */
import { parseDigest, type Digest } from '../content/digest.js';
import { StrataError } from '../content/errors.js';

/** Registry that unqualified names belong to. */
export const DEFAULT_DOMAIN = 'docker.io';
/** Old spelling of {@link DEFAULT_DOMAIN}, normalized away as Docker does. */
const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
/** Namespace of Docker Hub's official images (`busybox` → `library/busybox`). */
const OFFICIAL_REPO_PREFIX = 'library/';
/** Tag given to a bare name. */
export const DEFAULT_TAG = 'latest';
/** Longest `domain/path` Docker accepts. */
export const NAME_TOTAL_LENGTH_MAX = 255;

// The grammar of distribution/reference, piece by piece, so each part is
// checkable against its upstream definition.
const ALPHANUMERIC = '[a-z0-9]+';
const SEPARATOR = '(?:[._]|__|[-]+)';
const DOMAIN_NAME_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const OPTIONAL_PORT = '(?::[0-9]+)?';
const TAG = '[\\w][\\w.-]{0,127}';
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}';
const IPV6_ADDRESS = '\\[(?:[a-fA-F0-9:]+)\\]';
const DOMAIN_NAME = `${DOMAIN_NAME_COMPONENT}(?:\\.${DOMAIN_NAME_COMPONENT})*`;
const DOMAIN_AND_PORT = `(?:${DOMAIN_NAME}|${IPV6_ADDRESS})${OPTIONAL_PORT}`;
const PATH_COMPONENT = `${ALPHANUMERIC}(?:${SEPARATOR}${ALPHANUMERIC})*`;
const REMOTE_NAME = `${PATH_COMPONENT}(?:/${PATH_COMPONENT})*`;
const NAME = `(?:${DOMAIN_AND_PORT}/)?${REMOTE_NAME}`;

const REFERENCE_RE = new RegExp(`^(${NAME})(?::(${TAG}))?(?:@(${DIGEST}))?$`);
const ANCHORED_NAME_RE = new RegExp(`^(?:(${DOMAIN_AND_PORT})/)?(${REMOTE_NAME})$`);
const ANCHORED_TAG_RE = new RegExp(`^${TAG}$`);
const ANCHORED_IDENTIFIER_RE = /^[a-f0-9]{64}$/;
const DIGEST_LENGTHS: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

/** A reference string that does not follow Docker's reference grammar. */
export class InvalidReferenceError extends StrataError {
  constructor(
    message: string,
    /** The text that was being parsed. */
    readonly input: string,
  ) {
    super('INVALID_REFERENCE', message);
  }
}

/**
 * A parsed, normalized image reference. Immutable; `withTag` and friends
 * return new references.
 */
export class Reference {
  /** @internal use {@link parseReference}. */
  constructor(
    /** Registry host (and port), e.g. `docker.io`, `localhost:5000`. */
    readonly domain: string,
    /** Repository path inside the registry, e.g. `library/busybox`. */
    readonly path: string,
    /** Tag, when the reference has one. */
    readonly tag?: string,
    /** Manifest digest, when the reference pins one. */
    readonly digest?: Digest,
  ) {}

  /** Fully qualified repository name: `docker.io/library/busybox`. */
  get name(): string {
    return `${this.domain}/${this.path}`;
  }

  /** Repository name as Docker displays it: `busybox`, `me/app`, `localhost:5000/x`. */
  familiarName(): string {
    if (this.domain !== DEFAULT_DOMAIN) return this.name;
    if (this.path.startsWith(OFFICIAL_REPO_PREFIX)) {
      const rest = this.path.slice(OFFICIAL_REPO_PREFIX.length);
      // Only single-level official names are shortened, as Docker does.
      if (!rest.includes('/')) return rest;
    }
    return this.path;
  }

  /** Fully qualified form: `docker.io/library/busybox:latest[@sha256:…]`. */
  toString(): string {
    return this.name + suffix(this.tag, this.digest);
  }

  /** Short form Docker prints: `busybox:latest`, `busybox@sha256:…`. */
  familiar(): string {
    return this.familiarName() + suffix(this.tag, this.digest);
  }

  /** The same repository with `tag` and no digest. */
  withTag(tag: string): Reference {
    if (!ANCHORED_TAG_RE.test(tag)) throw new InvalidReferenceError('invalid tag format', tag);
    return new Reference(this.domain, this.path, tag, undefined);
  }

  /** The same repository pinned to `digest`, without a tag. */
  withDigest(digest: Digest): Reference {
    return new Reference(this.domain, this.path, undefined, parseDigest(digest));
  }

  /** The bare repository (no tag, no digest). */
  repository(): Reference {
    return new Reference(this.domain, this.path);
  }

  /** True when the reference names a tag and no digest (something `tag` can create). */
  get isTagged(): boolean {
    return this.tag !== undefined && this.digest === undefined;
  }

  /** Structural equality of the fully qualified forms. */
  equals(other: Reference): boolean {
    return this.toString() === other.toString();
  }

  toJSON(): string {
    return this.toString();
  }
}

function suffix(tag: string | undefined, digest: string | undefined): string {
  return (tag !== undefined ? `:${tag}` : '') + (digest !== undefined ? `@${digest}` : '');
}

/** Splits off the registry the way Docker's `splitDockerDomain` does. */
function splitDockerDomain(s: string): { domain: string; remainder: string } {
  const slash = s.indexOf('/');
  let domain: string;
  let remainder: string;
  const first = slash === -1 ? '' : s.slice(0, slash);
  if (slash === -1 || (!/[.:]/.test(first) && first !== 'localhost' && first.toLowerCase() === first)) {
    domain = DEFAULT_DOMAIN;
    remainder = s;
  } else {
    domain = first;
    remainder = s.slice(slash + 1);
  }
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !remainder.includes('/')) remainder = OFFICIAL_REPO_PREFIX + remainder;
  return { domain, remainder };
}

/** go-digest's validation, with its messages; then narrowed to what strata stores (sha256). */
function validateReferenceDigest(value: string, input: string): Digest {
  const colon = value.indexOf(':');
  const algorithm = value.slice(0, colon);
  const encoded = value.slice(colon + 1);
  const expected = DIGEST_LENGTHS[algorithm];
  if (expected === undefined) throw new InvalidReferenceError('unsupported digest algorithm', input);
  if (encoded.length !== expected) throw new InvalidReferenceError('invalid checksum digest length', input);
  if (!/^[a-f0-9]+$/.test(encoded)) throw new InvalidReferenceError('invalid checksum digest format', input);
  if (algorithm !== 'sha256') {
    throw new InvalidReferenceError(`unsupported digest algorithm: ${algorithm} (strata stores sha256 content only)`, input);
  }
  return parseDigest(value);
}

/**
 * Parses what a user typed as an image reference and normalizes it like
 * `docker pull` would: adds `docker.io`, `library/` and, when neither a tag
 * nor a digest is given, the `latest` tag.
 *
 * @throws InvalidReferenceError with Docker's message for malformed input.
 */
export function parseReference(s: string): Reference {
  return parseNormalized(s, true);
}

/**
 * Like {@link parseReference} but leaves a bare name without a tag
 * (`busybox` → `docker.io/library/busybox`), for places that accept a whole
 * repository (e.g. `images busybox`).
 */
export function parseRepositoryReference(s: string): Reference {
  return parseNormalized(s, false);
}

function parseNormalized(s: string, defaultTag: boolean): Reference {
  if (typeof s !== 'string') throw new InvalidReferenceError('invalid reference format', String(s));
  if (ANCHORED_IDENTIFIER_RE.test(s)) {
    throw new InvalidReferenceError(`invalid repository name (${s}), cannot specify 64-byte hexadecimal strings`, s);
  }
  const { domain, remainder } = splitDockerDomain(s);
  const tagSep = remainder.indexOf(':');
  const remoteName = tagSep === -1 ? remainder : remainder.slice(0, tagSep);
  if (remoteName.toLowerCase() !== remoteName) {
    throw new InvalidReferenceError(`invalid reference format: repository name (${remoteName}) must be lowercase`, s);
  }
  const full = `${domain}/${remainder}`;
  const match = REFERENCE_RE.exec(full);
  if (!match) {
    if (REFERENCE_RE.test(full.toLowerCase())) {
      throw new InvalidReferenceError('invalid reference format: repository name must be lowercase', s);
    }
    throw new InvalidReferenceError('invalid reference format', s);
  }
  const [, name, tag, digestText] = match as unknown as [string, string, string | undefined, string | undefined];
  if (name.length > NAME_TOTAL_LENGTH_MAX) {
    throw new InvalidReferenceError(`repository name must not be more than ${NAME_TOTAL_LENGTH_MAX} characters`, s);
  }
  const digest = digestText === undefined ? undefined : validateReferenceDigest(digestText, s);
  const nameMatch = ANCHORED_NAME_RE.exec(name);
  // splitDockerDomain always supplied a domain, so the split cannot fail here.
  const refDomain = nameMatch?.[1] ?? domain;
  const refPath = nameMatch?.[2] ?? name.slice(domain.length + 1);
  const finalTag = tag ?? (digest === undefined && defaultTag ? DEFAULT_TAG : undefined);
  return new Reference(refDomain, refPath, finalTag, digest);
}

/** True when `s` parses as a reference (see {@link parseReference}). */
export function isValidReference(s: string): boolean {
  try {
    parseReference(s);
    return true;
  } catch {
    return false;
  }
}

/** True when `tag` is a valid tag (`[\w][\w.-]{0,127}`). */
export function isValidTag(tag: string): boolean {
  return ANCHORED_TAG_RE.test(tag);
}

/**
 * Parses a string that is either a full image ID (`sha256:<64 hex>` or bare
 * 64 hex, as Docker's `ParseAnyReference` accepts) or a reference.
 */
export function parseReferenceOrId(s: string): { id: Digest } | { reference: Reference } {
  if (ANCHORED_IDENTIFIER_RE.test(s)) return { id: `sha256:${s}` };
  if (/^sha256:[a-f0-9]{64}$/.test(s)) return { id: s as Digest };
  return { reference: parseReference(s) };
}
