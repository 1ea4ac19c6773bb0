/**
 * The Dockerfile front end of `strata build`: parsing, variable expansion,
 * build-arg scoping, stage planning and history strings, all with Docker's
 * rules. Pure data in, data out: no file system access.
 */
export { parseDockerfile, parseJsonArray, parseHeredocWord, parseOnbuildTrigger, stageSteps } from './parse.js';
export type { ParseOptions } from './parse.js';
export * from './instructions.js';
export { DockerfileError, errorAt } from './errors.js';
export type { SourceLocation } from './errors.js';
export { expandWord, expandWords, expandInstruction, EXPANDING_INSTRUCTIONS, ShellExpansionError, lexWord, toLookup } from './expand.js';
export type { EnvLookup, EnvSource, LexOptions, LexResult } from './expand.js';
export {
  BuildArgs,
  StageArgs,
  PROXY_BUILD_ARGS,
  PLATFORM_BUILD_ARGS,
  formatPlatform,
  hostPlatform,
  platformArgValues,
} from './args.js';
export type { BuildArgsOptions, PlatformSpec } from './args.js';
export { planBuild, resolveFromReference, findStageByName } from './stages.js';
export type { BuildPlan, PlanOptions, ResolvedStage, StageDependency, StageSource } from './stages.js';
export { DEFAULT_SHELL, resolveCommandLine, resolveRunCommand } from './commandline.js';
export type { InlineRunFile, ResolvedRun } from './commandline.js';
export {
  createdBy,
  isEmptyLayer,
  isMetadataInstruction,
  multiSourceHash,
  directorySourceHash,
  normalizeWorkdir,
  EMPTY_LAYER_DIFF_ID,
} from './history.js';
export type { HistoryContext } from './history.js';
export { extractBuilderFlags, parseRunMount } from './flags.js';
export { formatGoDuration, parseGoDuration } from './gocompat.js';
