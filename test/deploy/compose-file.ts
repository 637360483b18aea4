import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CORE_SCHEMA, load, mergeTag } from 'js-yaml';
import { REPO_ROOT } from '../support/api-process';

export const COMPOSE_DIR = join(REPO_ROOT, 'deploy/compose');
export const COMPOSE_PATH = join(COMPOSE_DIR, 'compose.yaml');
export const INSTALL_SCRIPT = join(REPO_ROOT, 'scripts/install-compose.mjs');

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
}

export interface ComposeFile {
  services: Record<string, ComposeService>;
  networks: Record<string, { internal?: boolean } | null>;
  volumes: Record<string, unknown>;
  'x-coffer-env': Record<string, string>;
}

/** compose.yaml as Compose reads it: YAML 1.2 with merge keys (`<<: *anchor`), before interpolation. */
export function parseCompose(text = readFileSync(COMPOSE_PATH, 'utf8')): ComposeFile {
  return load(text, { schema: CORE_SCHEMA.withTags(mergeTag) }) as ComposeFile;
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

/** Every `${NAME...}` compose.yaml refers to, and whether it is required (`:?`). */
export function composeVariables(text = readFileSync(COMPOSE_PATH, 'utf8')): Map<string, { required: boolean }> {
  const found = new Map<string, { required: boolean }>();
  for (const [, name, op] of text.matchAll(/\$\{([A-Z0-9_]+)(?::([-?]))?/g)) {
    found.set(name, { required: (found.get(name)?.required ?? false) || op === '?' });
  }
  return found;
}

export function runInstall(args: string[]) {
  return spawnSync(process.execPath, [INSTALL_SCRIPT, ...args], { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
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
