/**
 * ChainIDs (image-spec config.md, "Layer ChainID"): the identity of a stack of
 * applied layers, as opposed to a DiffID, which names one layer's changeset.
 */
import { createHash } from 'node:crypto';
import { parseDigest, type Digest } from '../content/digest.js';

/**
 * The ChainID of each prefix of `diffIds` (bottom layer first):
 * `ChainID(L0) = DiffID(L0)` and
 * `ChainID(L0|…|Ln) = sha256(ChainID(L0|…|Ln-1) + " " + DiffID(Ln))`,
 * hashing the digest strings themselves (prefix included), not their bytes.
 * Every input is validated; an empty list gives an empty list.
 */
export function chainIds(diffIds: readonly string[]): Digest[] {
  const result: Digest[] = [];
  for (const raw of diffIds) {
    const diffId = parseDigest(raw);
    const parent = result[result.length - 1];
    result.push(parent === undefined ? diffId : chainIdOf(parent, diffId));
  }
  return result;
}

/** The ChainID of `diffId` applied on top of the stack `parentChainId` (or alone, when there is no parent). */
export function chainIdOf(parentChainId: string | undefined, diffId: string): Digest {
  const child = parseDigest(diffId);
  if (parentChainId === undefined) return child;
  const parent = parseDigest(parentChainId);
  return `sha256:${createHash('sha256').update(`${parent} ${child}`).digest('hex')}`;
}
