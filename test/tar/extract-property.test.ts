/**
 * Property: for random stacks of random layers, applyLayers produces exactly
 * the tree that a direct, in-memory model of OCI layer semantics predicts.
 *
 * Layers are drawn as random entry lists over a small name space (so paths
 * collide often: replacements, whiteouts of real paths, opaque directories
 * with same-layer children). Entries the applier is specified to refuse (by
 * the linter, or at write time, e.g. a parent that is a lower symlink) are
 * dropped while building each layer, so every generated stack applies cleanly.
 */
import { mkdtemp, rm, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyLayers } from '../../src/tar/extract.js';
import { LayerLinter, type LintInput } from '../../src/tar/validate.js';
import { craftTar, streamOf, type CraftEntry } from '../../testdata/crafted/craft.js';
import { snapshotTree } from '../../testdata/crafted/tree.js';

const isRoot = process.geteuid?.() === 0;

type Spec =
  | { op: 'file'; path: string; content: string; mode: number; mtime: number }
  | { op: 'dir'; path: string; mode: number }
  | { op: 'symlink'; path: string; target: string; mtime: number }
  | { op: 'hardlink'; path: string; target: string }
  | { op: 'whiteout'; path: string }
  | { op: 'opaque'; path: string };

type ModelNode =
  | { type: 'file'; content: string; mode: number; mtime: number }
  | { type: 'directory'; mode: number }
  | { type: 'symlink'; linkname: string; mtime: number };

const pathArb = fc.array(fc.constantFrom('a', 'b', 'c'), { minLength: 1, maxLength: 3 }).map((s) => s.join('/'));
const fileModes = isRoot ? [0o644, 0o600, 0o755, 0o4755, 0o2755, 0o444] : [0o644, 0o600, 0o755, 0o444];
// Without root, a directory without owner write would stop later layers from writing into it.
const dirModes = isRoot ? [0o755, 0o700, 0o1777, 0o2775, 0o555] : [0o755, 0o700, 0o1777];
const mtimeArb = fc.integer({ min: 0, max: 2_000_000_000 });

const specArb: fc.Arbitrary<Spec> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('file' as const), path: pathArb, content: fc.string({ maxLength: 6 }), mode: fc.constantFrom(...fileModes), mtime: mtimeArb }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('dir' as const), path: pathArb, mode: fc.constantFrom(...dirModes) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('symlink' as const), path: pathArb, target: fc.constantFrom('a', '../x', '/etc/passwd', 'b/c'), mtime: mtimeArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('hardlink' as const), path: pathArb, target: pathArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('whiteout' as const), path: pathArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('opaque' as const), path: fc.oneof(pathArb, fc.constant('')) }) },
);
const stackArb = fc.array(fc.array(specArb, { maxLength: 8 }), { minLength: 1, maxLength: 4 });

function parentOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash === -1 ? '' : path.slice(0, slash);
}

function baseOf(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

function ancestors(path: string): string[] {
  const parts = path.split('/');
  return parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('/'));
}

function toCraft(spec: Spec): CraftEntry {
  switch (spec.op) {
    case 'file':
      return { name: spec.path, content: spec.content, mode: spec.mode, mtime: spec.mtime };
    case 'dir':
      return { name: spec.path, type: 'directory', mode: spec.mode };
    case 'symlink':
      return { name: spec.path, type: 'symlink', linkname: spec.target, mtime: spec.mtime };
    case 'hardlink':
      return { name: spec.path, type: 'link', linkname: spec.target };
    case 'whiteout':
      return { name: parentOf(spec.path) === '' ? `.wh.${spec.path}` : `${parentOf(spec.path)}/.wh.${baseOf(spec.path)}` };
    case 'opaque':
      return { name: spec.path === '' ? '.wh..wh..opq' : `${spec.path}/.wh..wh..opq` };
  }
}

function toLint(entry: CraftEntry): LintInput {
  return { rawName: entry.name, type: entry.type ?? 'file', linkname: entry.linkname };
}

/** The in-memory model of a merged tree plus the per-layer bookkeeping the semantics need. */
class Model {
  readonly nodes = new Map<string, ModelNode>();

  /** Ancestors of `path` (and `path` itself with `self`): 'ok', 'absent' (some missing or a non-directory) or 'refuse' (a symlink). */
  private walk(path: string, self: boolean, create: boolean): 'ok' | 'absent' | 'refuse' {
    const dirs = ancestors(path);
    if (self) dirs.push(path);
    for (const dir of dirs) {
      const node = this.nodes.get(dir);
      if (node === undefined) return create ? 'ok' : 'absent';
      if (node.type === 'symlink') return 'refuse';
      if (node.type !== 'directory') return create ? 'refuse' : 'absent';
    }
    return 'ok';
  }

  private createParents(path: string, self: boolean, touched: Set<string>): void {
    const dirs = ancestors(path);
    if (self) dirs.push(path);
    for (const dir of dirs) {
      touched.add(dir);
      if (!this.nodes.has(dir)) this.nodes.set(dir, { type: 'directory', mode: 0o755 });
    }
  }

  private remove(path: string): void {
    for (const key of [...this.nodes.keys()]) if (key === path || key.startsWith(`${path}/`)) this.nodes.delete(key);
  }

  private prune(dir: string, touched: Set<string>): void {
    for (const key of [...this.nodes.keys()]) {
      if (parentOf(key) !== dir || (dir === '' && key.includes('/'))) continue;
      if (!this.nodes.has(key)) continue;
      if (!touched.has(key)) this.remove(key);
      else if (this.nodes.get(key)!.type === 'directory') this.prune(key, touched);
    }
  }

  /** Applies `spec` if the applier would accept it; returns false (changing nothing) if it would refuse it. */
  apply(spec: Spec, touched: Set<string>): boolean {
    switch (spec.op) {
      case 'whiteout': {
        const found = this.walk(spec.path, false, false);
        if (found === 'refuse') return false;
        if (found === 'ok') this.remove(spec.path);
        return true;
      }
      case 'opaque': {
        if (spec.path !== '') {
          if (this.walk(spec.path, true, true) !== 'ok') return false;
          this.createParents(spec.path, true, touched);
        }
        this.prune(spec.path, touched);
        return true;
      }
      default:
        break;
    }
    if (this.walk(spec.path, false, true) !== 'ok') return false;
    let linked: ModelNode | undefined;
    if (spec.op === 'hardlink') {
      if (this.walk(spec.target, false, false) !== 'ok') return false;
      linked = this.nodes.get(spec.target);
      if (linked?.type !== 'file') return false;
    }
    this.createParents(spec.path, false, touched);
    touched.add(spec.path);
    const existing = this.nodes.get(spec.path);
    switch (spec.op) {
      case 'file':
        this.remove(spec.path);
        this.nodes.set(spec.path, { type: 'file', content: spec.content, mode: spec.mode, mtime: spec.mtime });
        break;
      case 'dir':
        if (existing?.type === 'directory') existing.mode = spec.mode;
        else {
          this.remove(spec.path);
          this.nodes.set(spec.path, { type: 'directory', mode: spec.mode });
        }
        break;
      case 'symlink':
        this.remove(spec.path);
        this.nodes.set(spec.path, { type: 'symlink', linkname: spec.target, mtime: spec.mtime });
        break;
      case 'hardlink':
        this.remove(spec.path);
        this.nodes.set(spec.path, { ...linked! });
        break;
    }
    return true;
  }

  /** Builds one layer from `specs`, dropping what would be refused, and applies it to the model. */
  layer(specs: Spec[]): CraftEntry[] {
    const kept: CraftEntry[] = [];
    const touched = new Set<string>();
    for (const spec of specs) {
      const entry = toCraft(spec);
      try {
        // Replayed from scratch so the linter's state reflects exactly the kept entries.
        const linter = new LayerLinter();
        for (const previous of [...kept, entry]) linter.check(toLint(previous));
      } catch {
        continue;
      }
      if (this.apply(spec, touched)) kept.push(entry);
    }
    return kept;
  }

  expected(): Record<string, unknown> {
    return Object.fromEntries([...this.nodes.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }
}

describe('applyLayers matches the OCI layer model', () => {
  it('for random stacks of random layers', async () => {
    const work = await mkdtemp(join(tmpdir(), 'strata-prop-'));
    let run = 0;
    try {
      await fc.assert(
        fc.asyncProperty(stackArb, async (stack) => {
          const root = join(work, `r${run++}`);
          await mkdir(root);
          try {
            const model = new Model();
            const tars: Buffer[] = [];
            for (const specs of stack) tars.push(await craftTar(model.layer(specs)));
            await applyLayers(
              root,
              tars.map((bytes) => () => streamOf(bytes)),
            );
            const actual: Record<string, unknown> = {};
            for (const [path, node] of Object.entries(await snapshotTree(root))) {
              if (node.type === 'file') actual[path] = { type: 'file', content: node.content, mode: node.mode, mtime: node.mtime };
              else if (node.type === 'directory') actual[path] = { type: 'directory', mode: node.mode };
              else if (node.type === 'symlink') actual[path] = { type: 'symlink', linkname: node.linkname, mtime: node.mtime };
              else actual[path] = { type: node.type };
            }
            expect(actual).toEqual(model.expected());
          } finally {
            await rm(root, { recursive: true, force: true });
          }
        }),
        { numRuns: 60 },
      );
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});
