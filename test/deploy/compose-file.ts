import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CORE_SCHEMA, defineMappingTag, load, mergeTag } from 'js-yaml';
import { REPO_ROOT } from '../support/api-process';

export const COMPOSE_DIR = join(REPO_ROOT, 'deploy/compose');
export const COMPOSE_PATH = join(COMPOSE_DIR, 'compose.yaml');
/** The SeaweedFS variant: an override file Compose reads over compose.yaml (ADR 0008). */
export const SEAWEEDFS_COMPOSE_PATH = join(COMPOSE_DIR, 'compose.seaweedfs.yaml');
export const INSTALL_SCRIPT = join(COMPOSE_DIR, 'install.sh');

export interface ComposeService {
  image?: string;
  command?: string[];
  environment?: Record<string, string | number | boolean | null>;
  ports?: string[];
  networks?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  restart?: string;
  entrypoint?: string[];
  profiles?: string[];
  logging?: { driver: string; options?: Record<string, string> };
  mem_limit?: string;
  stop_grace_period?: string;
}

export interface ComposeFile {
  services: Record<string, ComposeService>;
  networks: Record<string, { internal?: boolean } | null>;
  volumes: Record<string, unknown>;
  'x-coffer-env': Record<string, string>;
  'x-coffer-owner-env': Record<string, string>;
}

/** A value an override file marks `!override`: it replaces the base's instead of merging with it. */
export class Override {
  constructor(readonly value: unknown) {}
}
/** `!override` on a mapping (the only place Coffer's files use it). */
const overrideTag = defineMappingTag<Record<string, unknown>, Override>('!override', {
  create: () => ({}),
  addPair: (carrier, key, value) => {
    carrier[String(key)] = value;
    return '';
  },
  has: (carrier, key) => Object.hasOwn(carrier, String(key)),
  keys: (result) => Object.keys(result.value as object),
  get: (result, key) => (result.value as Record<string, unknown>)[String(key)],
  finalize: (carrier) => new Override(carrier),
  identify: (data) => data instanceof Override,
});

/** compose.yaml as Compose reads it: YAML 1.2 with merge keys (`<<: *anchor`), before interpolation. */
export function parseCompose(text = readFileSync(COMPOSE_PATH, 'utf8')): ComposeFile {
  return load(text, { schema: CORE_SCHEMA.withTags(mergeTag, overrideTag) }) as ComposeFile;
}

/**
 * What Compose makes of `-f base -f override` (docs: "Merge Compose files"), for the attributes
 * Coffer's files use: mappings merge key by key (environment, depends_on, services, volumes),
 * `volumes` of a service merge by their target path, `profiles` and other sequences are
 * concatenated, scalars are replaced, and `!override` replaces whatever the base had.
 */
export function mergeCompose(base: ComposeFile, override: ComposeFile): ComposeFile {
  return merge(base, override, []) as ComposeFile;
}

function merge(base: unknown, over: unknown, path: string[]): unknown {
  if (over instanceof Override) return strip(over.value);
  if (base === undefined) return strip(over);
  if (Array.isArray(base) && Array.isArray(over)) {
    if (path.length === 3 && path[0] === 'services' && path[2] === 'volumes') {
      const target = (v: string) => v.split(':')[1];
      const replaced = new Set(over.map((v) => target(String(v))));
      return [...base.filter((v) => !replaced.has(target(String(v)))), ...over];
    }
    return [...base, ...over];
  }
  if (isMapping(base) && isMapping(over)) {
    const result: Record<string, unknown> = { ...base };
    for (const [key, value] of Object.entries(over)) result[key] = merge(base[key], value, [...path, key]);
    return result;
  }
  return strip(over);
}

function strip(value: unknown): unknown {
  if (value instanceof Override) return strip(value.value);
  if (Array.isArray(value)) return value.map(strip);
  if (isMapping(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, strip(v)]));
  return value;
}

const isMapping = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Override);

/** The SeaweedFS variant as Compose runs it: compose.yaml with compose.seaweedfs.yaml over it. */
export function seaweedfsCompose(): ComposeFile {
  return mergeCompose(parseCompose(), parseCompose(readFileSync(SEAWEEDFS_COMPOSE_PATH, 'utf8')));
}

/** The services Compose starts: those without profiles (no profile is enabled in Coffer's .env). */
export function activeServices(compose: ComposeFile): [string, ComposeService][] {
  return Object.entries(compose.services).filter(([, s]) => !s.profiles?.length);
}

/** Compose's `${VAR}`, `${VAR:-default}`, `${VAR:?message}` and `$$`, over the given .env values. */
export function interpolate(value: string, env: Record<string, string>): string {
  return value.replace(/\$\$|\$\{([A-Z0-9_]+)(?::([-?])([^}]*))?\}/g, (match, name?: string, op?: string, arg?: string) => {
    if (match === '$$') return '$';
    const set = env[name!];
    if (set) return set;
    if (op === '?') throw new Error(`${name}: ${arg}`);
    return op === '-' ? arg! : '';
  });
}

/** Every `${NAME...}` compose.yaml (or the given text) refers to, and whether it is required (`:?`). */
export function composeVariables(text = readFileSync(COMPOSE_PATH, 'utf8')): Map<string, { required: boolean }> {
  const found = new Map<string, { required: boolean }>();
  for (const [, name, op] of text.matchAll(/\$\{([A-Z0-9_]+)(?::([-?]))?/g)) {
    found.set(name, { required: (found.get(name)?.required ?? false) || op === '?' });
  }
  return found;
}

/** The shells install.sh is run with: `sh`, and dash and bash in POSIX mode by name. */
export const SHELLS: string[][] = [['sh'], ['dash'], ['bash', '--posix']];

export function runInstall(args: string[], shell: string[] = ['sh'], env: NodeJS.ProcessEnv = process.env) {
  return spawnSync(shell[0], [...shell.slice(1), INSTALL_SCRIPT, ...args], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

export function parseEnvFile(text: string): Map<string, string> {
  const entries = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (!line.trim() || line.startsWith('#')) continue;
    const match = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (!match) throw new Error(`not a KEY=value line: ${line.slice(0, 20)}`);
    entries.set(match[1], match[2]);
  }
  return entries;
}
