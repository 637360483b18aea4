import { AppConfig, CONFIG_KEYS, configSchema, SECRET_KEYS } from './config.schema';

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/**
 * Whether the process may hold the database owner's credentials: `coffer migrate` and the
 * provisioner need them, the API and the worker must not have them at all.
 */
export type OwnerCredentials = 'required' | 'refused' | 'optional';

/** Validates the environment once; on failure every problem is listed, never a secret value. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, owner: OwnerCredentials = 'optional'): AppConfig {
  const input: Record<string, string> = {};
  for (const key of CONFIG_KEYS) {
    const value = env[key];
    if (value !== undefined && value !== '') input[key] = value;
  }
  const result = configSchema.safeParse(input);
  const problems = result.success ? [] : result.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
  if (owner === 'required' && !input.DATABASE_OWNER_URL) problems.push('DATABASE_OWNER_URL: required by this process (migrations, org provisioning)');
  if (owner === 'refused' && input.DATABASE_OWNER_URL) {
    problems.push(
      "DATABASE_OWNER_URL: must not be set for this process: the database owner's credentials belong to `coffer migrate` and the provisioner only",
    );
  }
  if (problems.length) throw new ConfigError(problems);
  return result.data!;
}

/** The configuration as it may be logged: secret values replaced. */
export function redactConfig(config: AppConfig): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(config).map(([key, value]) => [
      key,
      SECRET_KEYS.has(key as keyof AppConfig) ? '[redacted]' : value,
    ]),
  );
}
