/**
 * Layer records, strata's counterpart of Docker's layerdb: one small JSON file
 * per ChainID tying the applied-stack identity to the layer's DiffID and to the
 * blob that holds it.
 *
 * ```
 * ROOT/strata/layers/<chainId hex>.json
 * ```
 *
 * File names are built only from validated digests, and records are replaced
 * atomically, so a reader sees the old record or the new one, never a torn one.
 */
import { readFileSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { digestHex, isDigest, type Digest } from '../content/digest.js';
import { StrataError } from '../content/errors.js';
import { compressionOfMediaType, type Compression } from '../image/mediatypes.js';
import { TEMP_PREFIX, fsyncDir, writeJsonAtomic } from '../util/atomic.js';
import { chainIdOf } from './chain.js';
import { readdirOrEmpty } from '../util/fs.js';

/** What strata knows about one layer as applied on top of its parent stack. */
export interface LayerRecord {
  /** Identity of the stack ending in this layer (see {@link chainIdOf}). */
  chainId: Digest;
  /** ChainID of the stack below, absent for a base layer. */
  parent?: Digest;
  /** sha256 of the uncompressed tar. */
  diffId: Digest;
  /** Digest of the stored (possibly compressed) blob. */
  digest: Digest;
  /** Size of the stored blob in bytes. */
  size: number;
  /** Media type of the stored blob (an OCI or Docker layer type). */
  mediaType: string;
  /** Compression of the stored blob; agrees with `mediaType`. */
  compression: Compression;
  /** Size of the uncompressed tar in bytes. */
  uncompressedSize: number;
  /** When the record was made (RFC 3339). */
  createdAt: string;
}

/** A record that is malformed or inconsistent (on disk or handed to {@link LayerRecords.put}). */
export class InvalidLayerRecordError extends StrataError {
  constructor(what: string, why: string) {
    super('INVALID_LAYER_RECORD', `invalid layer record ${what}: ${why}`);
  }
}

/** No layer is known by a digest that was expected to name one. */
export class LayerNotFoundError extends StrataError {
  constructor(readonly reference: string) {
    super('LAYER_NOT_FOUND', `no layer blob, DiffID or ChainID ${reference} in the store`);
  }
}

const RECORD_SUFFIX = '.json';
const RECORD_NAME_RE = /^[a-f0-9]{64}\.json$/;
/** Records are a few hundred bytes; anything much larger is not one. */
const MAX_RECORD_BYTES = 64 * 1024;
const COMPRESSIONS: readonly Compression[] = ['none', 'gzip', 'zstd'];
const KNOWN_FIELDS = new Set(['chainId', 'parent', 'diffId', 'digest', 'size', 'mediaType', 'compression', 'uncompressedSize', 'createdAt']);

/** The layer records of one store root. */
export class LayerRecords {
  /** Directory holding the record files. */
  readonly dir: string;

  /** `root` is the content store root (the OCI layout directory). */
  constructor(root: string) {
    this.dir = join(resolve(root), 'strata', 'layers');
  }

  /** Path of the record for `chainId` (validated, so never outside {@link dir}). */
  pathFor(chainId: string): string {
    return join(this.dir, `${digestHex(chainId)}${RECORD_SUFFIX}`);
  }

  /** The record for `chainId`, or undefined when there is none. Throws {@link InvalidLayerRecordError} for a damaged file. */
  async get(chainId: string): Promise<LayerRecord | undefined> {
    const path = this.pathFor(chainId);
    let text: string;
    try {
      text = await readRecordFile(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const record = parseRecordText(text, path);
    if (record.chainId !== chainId) throw new InvalidLayerRecordError(path, `holds ChainID ${record.chainId}, not ${chainId}`);
    return record;
  }

  /**
   * Validates `record` (digests, sizes, media type against compression, and
   * that `chainId` really is the ChainID of `parent` + `diffId`) and writes it
   * atomically, replacing any record for the same ChainID. Returns the stored
   * form (unknown fields dropped).
   */
  async put(record: LayerRecord): Promise<LayerRecord> {
    const valid = validateRecord(record, `for ${String((record as Partial<LayerRecord> | undefined)?.chainId)}`);
    await writeJsonAtomic(this.pathFor(valid.chainId), valid);
    return valid;
  }

  /** Every record, sorted by ChainID. Temp files are skipped; a damaged record throws. */
  async list(): Promise<LayerRecord[]> {
    const names = await readdirOrEmpty(this.dir);
    const records: LayerRecord[] = [];
    for (const name of names.sort()) {
      if (name.startsWith(TEMP_PREFIX) || !RECORD_NAME_RE.test(name)) continue;
      const path = join(this.dir, name);
      let text: string;
      try {
        text = await readRecordFile(path);
      } catch (err) {
        // Deleted between readdir and read: it is simply no longer listed.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      const record = parseRecordText(text, path);
      if (digestHex(record.chainId) + RECORD_SUFFIX !== name) {
        throw new InvalidLayerRecordError(path, `holds ChainID ${record.chainId}, which does not match its file name`);
      }
      records.push(record);
    }
    return records;
  }

  /** Removes the record for `chainId`; true when there was one. The blob is left to garbage collection. */
  async delete(chainId: string): Promise<boolean> {
    const path = this.pathFor(chainId);
    try {
      await unlink(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    await fsyncDir(this.dir);
    return true;
  }

  /**
   * A record whose layer has this DiffID (and, when given, whose blob has this
   * compression), or undefined. Several stacks can share one layer; the first
   * by ChainID order is returned, so the answer is stable.
   */
  async findByDiffId(diffId: string, compression?: Compression): Promise<LayerRecord | undefined> {
    const wanted = validDigest(diffId, 'DiffID');
    for (const record of await this.list()) {
      if (record.diffId === wanted && (compression === undefined || record.compression === compression)) return record;
    }
    return undefined;
  }

  /** A record whose stored blob is `digest`, or undefined (first by ChainID order). */
  async findByBlob(digest: string): Promise<LayerRecord | undefined> {
    const wanted = validDigest(digest, 'blob digest');
    for (const record of await this.list()) {
      if (record.digest === wanted) return record;
    }
    return undefined;
  }
}

function validDigest(value: string, what: string): Digest {
  if (!isDigest(value)) throw new InvalidLayerRecordError('query', `${what} ${JSON.stringify(String(value)).slice(0, 80)} is not a sha256 digest`);
  return value;
}

async function readRecordFile(path: string): Promise<string> {
  // A record is a few hundred bytes: read synchronously (a pool round trip costs more).
  const data = readFileSync(path);
  if (data.length > MAX_RECORD_BYTES) throw new InvalidLayerRecordError(path, `is ${data.length} bytes, more than a record can be`);
  return data.toString('utf8');
}

function parseRecordText(text: string, path: string): LayerRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new InvalidLayerRecordError(path, `is not JSON (${(err as Error).message})`);
  }
  return validateRecord(value, path);
}

/** Checks every field and returns a fresh object holding exactly the known ones. */
function validateRecord(value: unknown, what: string): LayerRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidLayerRecordError(what, 'is not an object');
  const r = value as Record<string, unknown>;
  for (const key of Object.keys(r)) {
    if (!KNOWN_FIELDS.has(key)) throw new InvalidLayerRecordError(what, `has unknown field ${JSON.stringify(key)}`);
  }
  const digestField = (name: string): Digest => {
    const v = r[name];
    if (!isDigest(v)) throw new InvalidLayerRecordError(what, `${name} ${JSON.stringify(v)?.slice(0, 80)} is not a sha256 digest`);
    return v;
  };
  const sizeField = (name: string): number => {
    const v = r[name];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new InvalidLayerRecordError(what, `${name} must be a non-negative integer`);
    return v;
  };
  const chainId = digestField('chainId');
  const diffId = digestField('diffId');
  const digest = digestField('digest');
  const parent = r.parent === undefined ? undefined : digestField('parent');
  const expectedChainId = chainIdOf(parent, diffId);
  if (chainId !== expectedChainId) {
    throw new InvalidLayerRecordError(what, `chainId ${chainId} is not the ChainID of ${parent ? `parent ${parent} + ` : ''}DiffID ${diffId} (${expectedChainId})`);
  }
  const size = sizeField('size');
  const uncompressedSize = sizeField('uncompressedSize');
  const compression = r.compression;
  if (typeof compression !== 'string' || !COMPRESSIONS.includes(compression as Compression)) {
    throw new InvalidLayerRecordError(what, `compression ${JSON.stringify(compression)} is not one of ${COMPRESSIONS.join(', ')}`);
  }
  const mediaType = r.mediaType;
  if (typeof mediaType !== 'string') throw new InvalidLayerRecordError(what, 'mediaType must be a string');
  const declared = compressionOfMediaType(mediaType);
  if (declared === undefined) throw new InvalidLayerRecordError(what, `mediaType ${JSON.stringify(mediaType)} is not a layer media type`);
  if (declared !== compression) throw new InvalidLayerRecordError(what, `mediaType ${mediaType} says ${declared}, compression says ${compression}`);
  if (compression === 'none' && (digest !== diffId || size !== uncompressedSize)) {
    throw new InvalidLayerRecordError(what, 'an uncompressed blob must have digest = diffId and size = uncompressedSize');
  }
  const createdAt = r.createdAt;
  if (typeof createdAt !== 'string' || Number.isNaN(Date.parse(createdAt))) throw new InvalidLayerRecordError(what, 'createdAt must be an RFC 3339 timestamp');
  return {
    chainId,
    ...(parent !== undefined ? { parent } : {}),
    diffId,
    digest,
    size,
    mediaType,
    compression: compression as Compression,
    uncompressedSize,
    createdAt,
  };
}
