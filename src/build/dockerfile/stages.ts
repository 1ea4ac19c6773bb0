/**
 * Multi-stage resolution, with BuildKit's rules: what each FROM builds on (an
 * earlier stage by name, `scratch`, or an image), what `COPY --from` and
 * `RUN --mount from=` refer to (any stage by name or index, or an image),
 * which stages the `--target` needs, and refusal of unknown targets, bad
 * indexes and circular dependencies.
 */
import { BuildArgs } from './args.js';
import type { BuildArgsOptions } from './args.js';
import { DockerfileError } from './errors.js';
import { expandInstruction } from './expand.js';
import type { CopyInstruction, DockerfileAst, Instruction, RunInstruction, Stage } from './instructions.js';
import { lexWord, ShellExpansionError } from './lexer.js';

/** What a stage or a `--from` points at. */
export type StageSource = { kind: 'scratch' } | { kind: 'stage'; index: number } | { kind: 'image'; ref: string };

/** One `COPY --from` or `RUN --mount from=` of a stage. */
export interface StageDependency {
  /** The COPY or RUN instruction. */
  instruction: CopyInstruction | RunInstruction;
  /** For RUN: which `--mount` (0-based). */
  mountIndex?: number;
  source: StageSource;
}

/** A stage with its references resolved. */
export interface ResolvedStage {
  index: number;
  name?: string;
  stage: Stage;
  /** The FROM base, after meta-ARG substitution. */
  base: StageSource;
  /** `--platform` after substitution. */
  platform?: string;
  dependencies: StageDependency[];
}

/** Which stages to build, in which order, for a target. */
export interface BuildPlan {
  stages: ResolvedStage[];
  /** Index of the target stage (the last one unless `target` was given). */
  target: number;
  /** Indexes of the stages the target needs (itself included), dependencies first. */
  order: number[];
}

/** Options of {@link planBuild}. */
export interface PlanOptions extends Omit<BuildArgsOptions, 'escapeChar'> {
  /** `--target` stage name (case-insensitive). */
  target?: string;
}

const SCRATCH = 'scratch';

/** Index of the stage called `name` (case-insensitive), searching stages before `before` when given. */
export function findStageByName(ast: DockerfileAst, name: string, before = ast.stages.length): number | undefined {
  const lower = name.toLowerCase();
  for (let i = 0; i < before && i < ast.stages.length; i++) {
    if (ast.stages[i]!.name === lower) return i;
  }
  return undefined;
}

function locationError(instruction: Instruction, message: string, filename?: string): DockerfileError {
  return new DockerfileError(message, instruction.line, {
    endLine: instruction.endLine,
    ...(filename !== undefined ? { filename } : {}),
  });
}

function stageLabel(ast: DockerfileAst, index: number): string {
  return ast.stages[index]!.name ?? String(index);
}

/**
 * Resolves a `--from` value (COPY or RUN mount): a stage name anywhere in the
 * file, a stage index, `scratch`, or an image reference. Variables are not
 * allowed (BuildKit refuses them too: the stage graph is fixed before any
 * stage-scoped ARG has a value).
 */
export function resolveFromReference(ast: DockerfileAst, value: string, instruction: Instruction, filename?: string): StageSource {
  let processed: string;
  try {
    processed = lexWord(value, {}, ast.escapeChar).result;
  } catch (err) {
    if (err instanceof ShellExpansionError) throw locationError(instruction, err.message, filename);
    throw err;
  }
  if (processed !== value) {
    throw locationError(
      instruction,
      'variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround',
      filename,
    );
  }
  if (/^[+-]?[0-9]+$/.test(value)) {
    const index = Number(value);
    if (!Number.isSafeInteger(index) || index < 0 || index >= ast.stages.length) {
      throw locationError(instruction, `invalid stage index ${value}`, filename);
    }
    return { kind: 'stage', index };
  }
  const byName = findStageByName(ast, value);
  if (byName !== undefined) return { kind: 'stage', index: byName };
  if (value === SCRATCH) return { kind: 'scratch' };
  return { kind: 'image', ref: value };
}

/**
 * Resolves every stage of `ast` and works out which ones the target needs.
 * FROM lines are substituted with the meta ARGs (and `--build-arg`, proxy and
 * platform args); a FROM may only name an earlier stage, anything else is an
 * image (or `scratch`).
 * @throws DockerfileError for an unknown target ("failed to reach build target
 *   X in Dockerfile"), a blank base name, a bad stage index, or a cycle.
 */
export function planBuild(ast: DockerfileAst, opts: PlanOptions = {}): BuildPlan {
  const filename = opts.filename;
  const args = new BuildArgs({ ...opts, escapeChar: ast.escapeChar });
  for (const meta of ast.metaArgs) args.addMetaArgs(meta);
  const metaLookup = args.metaLookup();

  const stages: ResolvedStage[] = ast.stages.map((stage) => {
    const from = expandInstruction(stage.from, metaLookup, ast.escapeChar, filename === undefined ? {} : { filename });
    if (from.image === '') throw locationError(stage.from, `base name (${stage.baseName}) should not be blank`, filename);
    const earlier = findStageByName(ast, from.image, stage.index);
    const base: StageSource =
      earlier !== undefined ? { kind: 'stage', index: earlier } : from.image === SCRATCH ? { kind: 'scratch' } : { kind: 'image', ref: from.image };
    const resolved: ResolvedStage = { index: stage.index, stage, base, dependencies: [] };
    if (stage.name !== undefined) resolved.name = stage.name;
    if (from.platform !== undefined) resolved.platform = from.platform;
    for (const instruction of stage.instructions) {
      for (const dep of instructionDependencies(ast, instruction, filename)) resolved.dependencies.push(dep);
    }
    return resolved;
  });

  let target = stages.length - 1;
  if (opts.target !== undefined && opts.target !== '') {
    const found = findStageByName(ast, opts.target);
    if (found === undefined) {
      throw new DockerfileError(`failed to reach build target ${opts.target} in Dockerfile`, ast.stages.at(-1)?.line ?? 1, filename === undefined ? {} : { filename });
    }
    target = found;
  }

  checkCycles(ast, stages, filename);
  return { stages, target, order: dependencyOrder(stages, target) };
}

function instructionDependencies(ast: DockerfileAst, instruction: Instruction, filename?: string): StageDependency[] {
  if (instruction.kind === 'COPY' && instruction.from !== undefined) {
    return [{ instruction, source: resolveFromReference(ast, instruction.from, instruction, filename) }];
  }
  if (instruction.kind === 'RUN' && instruction.mounts) {
    const out: StageDependency[] = [];
    instruction.mounts.forEach((mount, mountIndex) => {
      // Secret and ssh mounts have no filesystem source.
      if (mount.from === undefined || mount.type === 'secret' || mount.type === 'ssh') return;
      out.push({ instruction, mountIndex, source: resolveFromReference(ast, mount.from, instruction, filename) });
    });
    return out;
  }
  return [];
}

function edges(stage: ResolvedStage): { to: number; via?: Instruction }[] {
  const out: { to: number; via?: Instruction }[] = [];
  if (stage.base.kind === 'stage') out.push({ to: stage.base.index });
  for (const dep of stage.dependencies) if (dep.source.kind === 'stage') out.push({ to: dep.source.index, via: dep.instruction });
  return out;
}

function checkCycles(ast: DockerfileAst, stages: ResolvedStage[], filename?: string): void {
  const done = new Set<number>();
  const onPath = new Set<number>();
  // Returns the instructions along a cycle found from `index`, outermost first.
  const visit = (index: number): Instruction[] | undefined => {
    if (done.has(index)) return undefined;
    onPath.add(index);
    for (const edge of edges(stages[index]!)) {
      const via = edge.via ?? stages[index]!.stage.from;
      if (onPath.has(edge.to)) return [via];
      const inner = visit(edge.to);
      if (inner) return [via, ...inner];
    }
    onPath.delete(index);
    done.add(index);
    return undefined;
  };
  for (const stage of stages) {
    const path = visit(stage.index);
    if (path) throw locationError(path[0]!, `circular dependency detected on stage: ${stageLabel(ast, stage.index)}`, filename);
  }
}

function dependencyOrder(stages: ResolvedStage[], target: number): number[] {
  const order: number[] = [];
  const seen = new Set<number>();
  const visit = (index: number): void => {
    if (seen.has(index)) return;
    seen.add(index);
    const next = edges(stages[index]!).map((e) => e.to).sort((a, b) => a - b);
    for (const to of next) visit(to);
    order.push(index);
  };
  visit(target);
  return order;
}
