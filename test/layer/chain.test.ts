import { describe, expect, it } from 'vitest';
import { InvalidDigestError } from '../../src/content/digest.js';
import { chainIdOf, chainIds } from '../../src/layer/chain.js';

// DiffIDs are sha256("a"), sha256("b"), sha256("c"); the ChainIDs were computed
// independently with `printf '%s %s' "$parent" "$diff" | sha256sum`.
const A = 'sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb';
const B = 'sha256:3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d';
const C = 'sha256:2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6';
const AB = 'sha256:51c0c8ace48498d6f5fee6b0592cc06f2da0f3cbe09c5a34a97dce85c3889676';
const ABC = 'sha256:2fce7f8ce91bcf0a1428b36e1024639fdbd9469eea762dba98aa749631885106';

describe('chainIds', () => {
  it('follows the image-spec recursion', () => {
    expect(chainIds([A, B, C])).toEqual([A, AB, ABC]);
  });

  it('gives the DiffID itself for a single layer and nothing for no layers', () => {
    expect(chainIds([C])).toEqual([C]);
    expect(chainIds([])).toEqual([]);
  });

  it('depends on order and on what lies below (ChainID(C) differs from ChainID(A|B|C))', () => {
    expect(chainIds([B, A])[1]).not.toBe(AB);
    expect(chainIds([A, B, C])[2]).not.toBe(C);
  });

  it('agrees with chainIdOf step by step', () => {
    expect(chainIdOf(undefined, A)).toBe(A);
    expect(chainIdOf(A, B)).toBe(AB);
    expect(chainIdOf(AB, C)).toBe(ABC);
  });

  it('refuses malformed digests', () => {
    expect(() => chainIds([A, 'sha256:../../etc/passwd'])).toThrow(InvalidDigestError);
    expect(() => chainIdOf('sha512:abcd', A)).toThrow(/sha512 is not supported/);
  });
});
