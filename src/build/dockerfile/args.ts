/**
 * Build-argument scoping, following Docker's classic builder
 * (moby `builder/dockerfile/buildargs.go`) plus BuildKit's automatic platform
 * ARGs:
 *
 * - ARGs before the first FROM ("meta" ARGs) are visible only on FROM lines
 *   (base name and `--platform`), unless a stage re-declares them; `ARG NAME`
 *   without a value in a stage takes the meta value.
 * - `--build-arg NAME=value` overrides any default, meta or stage.
 * - The proxy variables (HTTP_PROXY, HTTPS_PROXY, FTP_PROXY, NO_PROXY,
 *   ALL_PROXY, upper and lower case) can be passed without an ARG; they reach
 *   RUN and substitution, but stay out of the image history unless declared.
 *   (The classic builder lists all but ALL_PROXY; BuildKit adds ALL_PROXY.)
 * - ENV of the same name always wins over an ARG.
 * - Automatic platform ARGs, as BuildKit defines them (the classic builder has
 *   none): TARGETPLATFORM, TARGETOS, TARGETARCH, TARGETVARIANT, BUILDPLATFORM,
 *   BUILDOS, BUILDARCH, BUILDVARIANT. They are visible on FROM lines without a
 *   declaration, and inside a stage only after `ARG TARGETARCH` (etc.).
 *
 * {@link BuildArgs} holds the build-wide state; {@link StageArgs} is the scope
 * of one stage, stepped through instruction by instruction by the engine.
 */
import { expandInstruction } from './expand.js';
import { goFormatSlice, goSortStrings } from './gocompat.js';
import type { ArgDefinition, ArgInstruction } from './instructions.js';
import { toLookup } from './lexer.js';
import type { EnvLookup } from './lexer.js';

/** Build args usable without an ARG instruction and kept out of history. */
export const PROXY_BUILD_ARGS: readonly string[] = [
  'HTTP_PROXY',
  'http_proxy',
  'HTTPS_PROXY',
  'https_proxy',
  'FTP_PROXY',
  'ftp_proxy',
  'NO_PROXY',
  'no_proxy',
  'ALL_PROXY',
  'all_proxy',
];

/** The automatic platform ARG names (BuildKit). */
export const PLATFORM_BUILD_ARGS: readonly string[] = [
  'TARGETPLATFORM',
  'TARGETOS',
  'TARGETARCH',
  'TARGETVARIANT',
  'BUILDPLATFORM',
  'BUILDOS',
  'BUILDARCH',
  'BUILDVARIANT',
];

const PROXIES = new Set(PROXY_BUILD_ARGS);

/** An OS/architecture pair as Docker names them (`linux`, `arm64`, `v8`). */
export interface PlatformSpec {
  os: string;
  architecture: string;
  variant?: string;
}

/** `os/arch[/variant]`, as containerd's platforms.Format prints it. */
export function formatPlatform(p: PlatformSpec): string {
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
}

/** The platform Node runs on, in Docker's names. */
export function hostPlatform(): PlatformSpec {
  const arch: Record<string, PlatformSpec> = {
    x64: { os: 'linux', architecture: 'amd64' },
    arm64: { os: 'linux', architecture: 'arm64' },
    arm: { os: 'linux', architecture: 'arm', variant: 'v7' },
    ia32: { os: 'linux', architecture: '386' },
    ppc64: { os: 'linux', architecture: 'ppc64le' },
    s390x: { os: 'linux', architecture: 's390x' },
    riscv64: { os: 'linux', architecture: 'riscv64' },
  };
  return arch[process.arch] ?? { os: 'linux', architecture: process.arch };
}

/** The automatic platform ARG values for a target and build platform. */
export function platformArgValues(target: PlatformSpec, build: PlatformSpec): Record<string, string> {
  return {
    TARGETPLATFORM: formatPlatform(target),
    TARGETOS: target.os,
    TARGETARCH: target.architecture,
    TARGETVARIANT: target.variant ?? '',
    BUILDPLATFORM: formatPlatform(build),
    BUILDOS: build.os,
    BUILDARCH: build.architecture,
    BUILDVARIANT: build.variant ?? '',
  };
}

/** Options of {@link BuildArgs}. */
export interface BuildArgsOptions {
  /**
   * `--build-arg` values. `undefined` is `--build-arg NAME` whose value was not
   * found in the client environment: it overrides nothing but still counts
   * as given (for the unused-args warning), as in Docker.
   */
  buildArgs?: Readonly<Record<string, string | undefined>>;
  /** Platform being built for (default: the host). */
  targetPlatform?: PlatformSpec;
  /** Platform the build runs on (default: the host). */
  buildPlatform?: PlatformSpec;
  /** Escape character of the Dockerfile, for substituting ARG defaults. */
  escapeChar?: '\\' | '`';
  /** File name for error messages. */
  filename?: string;
}

/** Build-wide argument state: `--build-arg` values, meta ARGs, what was declared. */
export class BuildArgs {
  private readonly given: ReadonlyMap<string, string | undefined>;
  private readonly meta = new Map<string, string | undefined>();
  private readonly referenced = new Set<string>();
  private readonly platform: Readonly<Record<string, string>>;
  /** @internal */
  readonly escapeChar: '\\' | '`';
  /** @internal */
  readonly filename: string | undefined;

  constructor(options: BuildArgsOptions = {}) {
    this.given = new Map(Object.entries(options.buildArgs ?? {}));
    const host = hostPlatform();
    this.platform = platformArgValues(options.targetPlatform ?? host, options.buildPlatform ?? host);
    this.escapeChar = options.escapeChar ?? '\\';
    this.filename = options.filename;
  }

  /** The `--build-arg` value for `name`, when one was given with a value. */
  override(name: string): string | undefined {
    return this.given.get(name);
  }

  /** @internal The automatic platform value for `name`, if it is a platform ARG. */
  platformValue(name: string): string | undefined {
    return Object.prototype.hasOwnProperty.call(this.platform, name) ? this.platform[name] : undefined;
  }

  /** @internal */
  markReferenced(name: string): void {
    this.referenced.add(name);
  }

  /** @internal The meta ARG default (already substituted), if declared with one. */
  metaDefault(name: string): string | undefined {
    return this.meta.get(name);
  }

  /**
   * Declares the ARGs that come before the first FROM. Defaults are
   * substituted with the meta ARGs declared so far (all names of one
   * instruction see the state before it, as in Docker).
   * @returns the definitions after substitution.
   */
  addMetaArgs(instruction: ArgInstruction): ArgDefinition[] {
    const expanded = expandInstruction(instruction, this.metaLookup(), this.escapeChar, this.filenameOpt()).args;
    for (const def of expanded) {
      this.meta.set(def.name, def.default);
      this.referenced.add(def.name);
    }
    return expanded;
  }

  /**
   * The variables visible on FROM lines: meta ARGs (after `--build-arg`
   * overrides), proxy args given on the command line, and the automatic
   * platform ARGs.
   */
  metaLookup(): EnvLookup {
    return (name) => {
      if (this.meta.has(name) || PROXIES.has(name)) {
        const given = this.given.get(name);
        if (given !== undefined) return given;
        const def = this.meta.get(name);
        if (def !== undefined) return def;
      }
      return this.platformValue(name);
    };
  }

  /** A fresh scope for the next stage (nothing declared yet). */
  newStage(): StageArgs {
    return new StageArgs(this);
  }

  /** `--build-arg` names no ARG instruction declared (proxy args excepted), sorted. */
  unusedBuildArgs(): string[] {
    return goSortStrings([...this.given.keys()].filter((name) => !PROXIES.has(name) && !this.referenced.has(name)));
  }

  /** Docker's warning line for {@link unusedBuildArgs}, or undefined when all were used. */
  unusedBuildArgsWarning(): string | undefined {
    const unused = this.unusedBuildArgs();
    return unused.length === 0 ? undefined : `[Warning] One or more build-args ${goFormatSlice(unused)} were not consumed`;
  }

  /** @internal */
  filenameOpt(): { filename?: string } {
    return this.filename === undefined ? {} : { filename: this.filename };
  }
}

/**
 * The ARG scope of one stage. `configEnv` arguments are the stage's image
 * config `Env` (`K=V` list) at that step, since ENV shadows ARG.
 */
export class StageArgs {
  /** Declared names and their substituted defaults (undefined: no default). */
  private readonly declared = new Map<string, string | undefined>();

  constructor(private readonly build: BuildArgs) {}

  /**
   * Applies an ARG instruction of this stage: substitutes the defaults with the
   * variables visible before it, then declares every name.
   * @returns the definitions after substitution.
   */
  declare(instruction: ArgInstruction, configEnv: readonly string[] = []): ArgDefinition[] {
    const expanded = expandInstruction(instruction, this.lookup(configEnv), this.build.escapeChar, this.build.filenameOpt()).args;
    for (const def of expanded) {
      this.declared.set(def.name, def.default);
      this.build.markReferenced(def.name);
    }
    return expanded;
  }

  /** True when `name` was declared in this stage. */
  isDeclared(name: string): boolean {
    return this.declared.has(name);
  }

  /**
   * The value of a build arg in this stage, ignoring ENV: `--build-arg`, then
   * the stage default, then the meta value, then the automatic platform value.
   * Undeclared names have no value, except proxy args given on the command line.
   */
  value(name: string): string | undefined {
    const declared = this.declared.has(name);
    if (!declared && !PROXIES.has(name)) return undefined;
    const given = this.build.override(name);
    if (given !== undefined) return given;
    if (!declared) return undefined;
    const def = this.declared.get(name);
    if (def !== undefined) return def;
    const meta = this.build.metaDefault(name);
    if (meta !== undefined) return meta;
    return this.build.platformValue(name);
  }

  /** Build args with a value in this stage (declared ones and given proxy args). */
  values(): Map<string, string> {
    const out = new Map<string, string>();
    for (const name of [...this.declared.keys(), ...PROXY_BUILD_ARGS]) {
      const v = this.value(name);
      if (v !== undefined) out.set(name, v);
    }
    return out;
  }

  /** Variables for substitution at this step: ENV first, then build args. */
  lookup(configEnv: readonly string[] = []): EnvLookup {
    const env = toLookup(configEnv);
    return (name) => env(name) ?? this.value(name);
  }

  /** `K=V` build args to add to a RUN's environment (those not shadowed by ENV). */
  runEnv(configEnv: readonly string[] = []): string[] {
    const shadowed = new Set(configEnv.map((e) => (e.includes('=') ? e.slice(0, e.indexOf('=')) : e)));
    const out: string[] = [];
    for (const [name, value] of this.values()) if (!shadowed.has(name)) out.push(`${name}=${value}`);
    return out;
  }

  /**
   * The build args Docker records in a RUN's history (`|N K=V ... cmd`):
   * null when the RUN has no build args at all (no prefix), otherwise the
   * sorted list without undeclared proxy args (possibly empty, giving `|0`).
   */
  historyArgs(configEnv: readonly string[] = []): string[] | null {
    const env = this.runEnv(configEnv);
    if (env.length === 0) return null;
    const recorded = env.filter((kv) => {
      const name = kv.slice(0, kv.indexOf('='));
      return this.declared.has(name) || !PROXIES.has(name);
    });
    return goSortStrings(recorded);
  }
}
