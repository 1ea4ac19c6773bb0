import { describe, expect, it } from 'vitest';
import {
  InvalidReferenceError,
  isValidReference,
  isValidTag,
  parseReference,
  parseReferenceOrId,
  parseRepositoryReference,
} from '../../src/image/reference.js';

const HEX = 'a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4';
const DIGEST = `sha256:${HEX}`;

/** input → [fully qualified, familiar, domain, path, tag, digest] */
const VALID: [string, string, string, string, string, string | undefined, string | undefined][] = [
  ['busybox', 'docker.io/library/busybox:latest', 'busybox:latest', 'docker.io', 'library/busybox', 'latest', undefined],
  ['busybox:1.36', 'docker.io/library/busybox:1.36', 'busybox:1.36', 'docker.io', 'library/busybox', '1.36', undefined],
  ['library/busybox', 'docker.io/library/busybox:latest', 'busybox:latest', 'docker.io', 'library/busybox', 'latest', undefined],
  ['docker.io/busybox', 'docker.io/library/busybox:latest', 'busybox:latest', 'docker.io', 'library/busybox', 'latest', undefined],
  ['index.docker.io/busybox', 'docker.io/library/busybox:latest', 'busybox:latest', 'docker.io', 'library/busybox', 'latest', undefined],
  ['index.docker.io/me/app:1', 'docker.io/me/app:1', 'me/app:1', 'docker.io', 'me/app', '1', undefined],
  ['docker.io/library/busybox:latest', 'docker.io/library/busybox:latest', 'busybox:latest', 'docker.io', 'library/busybox', 'latest', undefined],
  ['me/app', 'docker.io/me/app:latest', 'me/app:latest', 'docker.io', 'me/app', 'latest', undefined],
  ['me/app:v1.2', 'docker.io/me/app:v1.2', 'me/app:v1.2', 'docker.io', 'me/app', 'v1.2', undefined],
  ['localhost/app', 'localhost/app:latest', 'localhost/app:latest', 'localhost', 'app', 'latest', undefined],
  ['localhost:5000/app:1', 'localhost:5000/app:1', 'localhost:5000/app:1', 'localhost:5000', 'app', '1', undefined],
  ['localhost:5000/a/b/c', 'localhost:5000/a/b/c:latest', 'localhost:5000/a/b/c:latest', 'localhost:5000', 'a/b/c', 'latest', undefined],
  ['ghcr.io/owner/repo:tag', 'ghcr.io/owner/repo:tag', 'ghcr.io/owner/repo:tag', 'ghcr.io', 'owner/repo', 'tag', undefined],
  ['quay.io/coreos/etcd:v3.5.0', 'quay.io/coreos/etcd:v3.5.0', 'quay.io/coreos/etcd:v3.5.0', 'quay.io', 'coreos/etcd', 'v3.5.0', undefined],
  ['127.0.0.1:5000/x', '127.0.0.1:5000/x:latest', '127.0.0.1:5000/x:latest', '127.0.0.1:5000', 'x', 'latest', undefined],
  ['[::1]:5000/x:y', '[::1]:5000/x:y', '[::1]:5000/x:y', '[::1]:5000', 'x', 'y', undefined],
  ['example.com/app', 'example.com/app:latest', 'example.com/app:latest', 'example.com', 'app', 'latest', undefined],
  ['Example.COM/app', 'Example.COM/app:latest', 'Example.COM/app:latest', 'Example.COM', 'app', 'latest', undefined],
  // An upper-case first component cannot be a path, so Docker takes it as a registry.
  ['FOO/app', 'FOO/app:latest', 'FOO/app:latest', 'FOO', 'app', 'latest', undefined],
  ['a__b/c', 'docker.io/a__b/c:latest', 'a__b/c:latest', 'docker.io', 'a__b/c', 'latest', undefined],
  ['a-b---c/d', 'docker.io/a-b---c/d:latest', 'a-b---c/d:latest', 'docker.io', 'a-b---c/d', 'latest', undefined],
  ['a.b/c', 'a.b/c:latest', 'a.b/c:latest', 'a.b', 'c', 'latest', undefined],
  ['a_b.c-d', 'docker.io/library/a_b.c-d:latest', 'a_b.c-d:latest', 'docker.io', 'library/a_b.c-d', 'latest', undefined],
  [`busybox@${DIGEST}`, `docker.io/library/busybox@${DIGEST}`, `busybox@${DIGEST}`, 'docker.io', 'library/busybox', undefined, DIGEST],
  [`busybox:1.36@${DIGEST}`, `docker.io/library/busybox:1.36@${DIGEST}`, `busybox:1.36@${DIGEST}`, 'docker.io', 'library/busybox', '1.36', DIGEST],
  [`localhost:5000/x@${DIGEST}`, `localhost:5000/x@${DIGEST}`, `localhost:5000/x@${DIGEST}`, 'localhost:5000', 'x', undefined, DIGEST],
  // Nested official-looking names are not shortened.
  ['library/busybox/sub', 'docker.io/library/busybox/sub:latest', 'library/busybox/sub:latest', 'docker.io', 'library/busybox/sub', 'latest', undefined],
  ['library/library', 'docker.io/library/library:latest', 'library:latest', 'docker.io', 'library/library', 'latest', undefined],
  ['app:v1.0-rc_1', 'docker.io/library/app:v1.0-rc_1', 'app:v1.0-rc_1', 'docker.io', 'library/app', 'v1.0-rc_1', undefined],
  ['app:_x', 'docker.io/library/app:_x', 'app:_x', 'docker.io', 'library/app', '_x', undefined],
  ['app:Latest', 'docker.io/library/app:Latest', 'app:Latest', 'docker.io', 'library/app', 'Latest', undefined],
  ['a', 'docker.io/library/a:latest', 'a:latest', 'docker.io', 'library/a', 'latest', undefined],
  ['123/456', 'docker.io/123/456:latest', '123/456:latest', 'docker.io', '123/456', 'latest', undefined],
  [HEX.slice(0, 63), `docker.io/library/${HEX.slice(0, 63)}:latest`, `${HEX.slice(0, 63)}:latest`, 'docker.io', `library/${HEX.slice(0, 63)}`, 'latest', undefined],
  // Without a slash the colon is a tag separator, not a port.
  ['localhost:5000', 'docker.io/library/localhost:5000', 'localhost:5000', 'docker.io', 'library/localhost', '5000', undefined],
  [`app:${'t'.repeat(128)}`, `docker.io/library/app:${'t'.repeat(128)}`, `app:${'t'.repeat(128)}`, 'docker.io', 'library/app', 't'.repeat(128), undefined],
];

const INVALID: [string, string | RegExp][] = [
  ['', 'invalid reference format'],
  ['Foo', 'invalid reference format: repository name (library/Foo) must be lowercase'],
  ['me/App', 'invalid reference format: repository name (me/App) must be lowercase'],
  ['localhost:5000/App:1', 'invalid reference format: repository name (App) must be lowercase'],
  ['busybox:', 'invalid reference format'],
  [':tag', 'invalid reference format'],
  ['busybox@sha256:abc', 'invalid reference format'],
  [`busybox@sha256:${HEX.slice(0, 40)}`, 'invalid checksum digest length'],
  [`busybox@sha256:${HEX.toUpperCase()}`, 'invalid checksum digest format'],
  [`busybox@md5:${HEX.slice(0, 32)}`, 'unsupported digest algorithm'],
  [`busybox@sha512:${HEX}${HEX}`, /unsupported digest algorithm: sha512/],
  [HEX, `invalid repository name (${HEX}), cannot specify 64-byte hexadecimal strings`],
  ['a//b', 'invalid reference format'],
  ['a/', 'invalid reference format'],
  ['/a', 'invalid reference format'],
  ['-a', 'invalid reference format'],
  ['a-', 'invalid reference format'],
  ['a..b', 'invalid reference format'],
  ['a___b', 'invalid reference format'],
  [`app:${'t'.repeat(129)}`, 'invalid reference format'],
  ['app:.x', 'invalid reference format'],
  ['app:-x', 'invalid reference format'],
  ['a:b:c', 'invalid reference format'],
  ['a b', 'invalid reference format'],
  ['a@b', 'invalid reference format'],
  ['foo_bar:5000/x', 'invalid reference format'],
  ['localhost/', 'invalid reference format'],
  [`${'a'.repeat(250)}/b`, 'repository name must not be more than 255 characters'],
];

describe('parseReference', () => {
  it('has a table of at least 40 cases', () => {
    expect(VALID.length + INVALID.length).toBeGreaterThanOrEqual(40);
  });

  it.each(VALID)('parses %s', (input, full, familiar, domain, path, tag, digest) => {
    const ref = parseReference(input);
    expect(ref.toString()).toBe(full);
    expect(ref.familiar()).toBe(familiar);
    expect(ref.domain).toBe(domain);
    expect(ref.path).toBe(path);
    expect(ref.tag).toBe(tag);
    expect(ref.digest).toBe(digest);
    expect(ref.name).toBe(`${domain}/${path}`);
    // Normalization is idempotent in both directions.
    expect(parseReference(full).toString()).toBe(full);
    expect(parseReference(familiar).toString()).toBe(full);
  });

  it.each(INVALID)('refuses %j', (input, message) => {
    expect(() => parseReference(input)).toThrow(InvalidReferenceError);
    if (typeof message === 'string') expect(() => parseReference(input)).toThrow(new RegExp(`^${escape(message)}$`));
    else expect(() => parseReference(input)).toThrow(message);
    expect(isValidReference(input)).toBe(false);
  });

  it('accepts a 255-character name and nothing longer', () => {
    const path = 'a'.repeat(255 - 'docker.io/library/'.length);
    expect(parseReference(path).name).toHaveLength(255);
    expect(() => parseReference(`${path}a`)).toThrow('repository name must not be more than 255 characters');
  });

  it('errors carry a stable code and the input', () => {
    try {
      parseReference('Foo');
      expect.unreachable();
    } catch (err) {
      expect((err as InvalidReferenceError).code).toBe('INVALID_REFERENCE');
      expect((err as InvalidReferenceError).input).toBe('Foo');
    }
  });
});

describe('Reference', () => {
  it('derives tags, digests and repositories', () => {
    const ref = parseReference(`busybox:1.36@${DIGEST}`);
    expect(ref.withTag('edge').toString()).toBe('docker.io/library/busybox:edge');
    expect(ref.withDigest(DIGEST).familiar()).toBe(`busybox@${DIGEST}`);
    expect(ref.repository().toString()).toBe('docker.io/library/busybox');
    expect(ref.familiarName()).toBe('busybox');
    expect(ref.isTagged).toBe(false);
    expect(parseReference('busybox').isTagged).toBe(true);
    expect(() => ref.withTag('.bad')).toThrow('invalid tag format');
    expect(parseReference('busybox').equals(parseReference('docker.io/library/busybox:latest'))).toBe(true);
    expect(JSON.stringify({ ref: parseReference('me/app:1') })).toBe('{"ref":"docker.io/me/app:1"}');
  });

  it('parseRepositoryReference leaves a bare name untagged', () => {
    expect(parseRepositoryReference('busybox').toString()).toBe('docker.io/library/busybox');
    expect(parseRepositoryReference('busybox:1').toString()).toBe('docker.io/library/busybox:1');
  });

  it('isValidTag follows the tag grammar', () => {
    expect(isValidTag('latest')).toBe(true);
    expect(isValidTag('t'.repeat(128))).toBe(true);
    expect(isValidTag('t'.repeat(129))).toBe(false);
    expect(isValidTag('-x')).toBe(false);
  });
});

describe('parseReferenceOrId', () => {
  it('recognises full image IDs with and without the algorithm', () => {
    expect(parseReferenceOrId(HEX)).toEqual({ id: DIGEST });
    expect(parseReferenceOrId(DIGEST)).toEqual({ id: DIGEST });
  });

  it('treats everything else as a reference', () => {
    const parsed = parseReferenceOrId('abc123');
    expect('reference' in parsed && parsed.reference.toString()).toBe('docker.io/library/abc123:latest');
    expect(() => parseReferenceOrId('Bad')).toThrow(InvalidReferenceError);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
