import 'reflect-metadata';
process.env.COFFER_SERVICE ??= 'cli';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NestFactory } from '@nestjs/core';
import { AppConfig, ConfigError, loadConfig } from '@coffer/config';
import { masterKeyMismatchIn, masterKeyMismatchLine } from '@coffer/kms';
import { toErrorResponse } from '@coffer/http';
import { captureError, flushErrorTracking, initErrorTracking } from '@coffer/logging';
import { CliModule } from './cli.module';
import { helpText, parseCommandLine } from './command-line';
import { CommandResult, UsageError } from './commands';
import { CommandRefused } from './usage-error';

/**
 * `coffer <command> [args]`: the admin CLI, for the container (`docker compose exec api coffer
 * ...`) and the local start (`npm run cli -- ...`). Prints JSON on stdout; errors on stderr as
 * the API's error body. Exit codes: 0 done, 1 failed, 2 done but the answer is bad, 64 usage.
 */
async function main(argv: string[]): Promise<number> {
  const line = parseCommandLine(argv);
  switch (line.kind) {
    case 'help':
      console.log(helpText(undefined, line.command));
      return 0;
    case 'version':
      console.log(JSON.parse(readFileSync(join(__dirname, '../../../../package.json'), 'utf8')).version);
      return 0;
    case 'usage':
      console.error(`coffer: ${line.message}\n\n${helpText(undefined, line.command)}`);
      return 64;
  }
  const { command, invocation } = line;
  if (command.offline) return runWithoutApp(line.name, () => command.offline!(invocation));
  const env = { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' };
  if (command.standalone) {
    const owned = loadConfig(env, 'required');
    initErrorTracking(owned, 'cli');
    return runWithoutApp(line.name, () => command.standalone!(owned, invocation), owned);
  }
  const config = loadConfig(env);
  initErrorTracking(config, 'cli');
  const app = await NestFactory.createApplicationContext(CliModule.register(config), { logger: false });
  try {
    const { output, exitCode } = await command.run(app, invocation);
    // No answer to print: the command wrote its own stdout (audit:export's NDJSON).
    if (output !== undefined) console.log(JSON.stringify(output, null, 2));
    return exitCode;
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`coffer: ${error.message}\n\n${helpText(undefined, line.name)}`);
      return 64;
    }
    printError(error, line.name);
    return 1;
  } finally {
    await app.close();
  }
}

/**
 * A command that needs no application of the CLI's (offline, or building its own). A master key
 * that does not open the stored keys is refused as the services refuse it: one line, exit 78.
 */
async function runWithoutApp(name: string, run: () => Promise<CommandResult>, config?: AppConfig): Promise<number> {
  try {
    const { output, exitCode } = await run();
    console.log(JSON.stringify(output, null, 2));
    return exitCode;
  } catch (error) {
    const mismatch = config && masterKeyMismatchIn(error);
    if (mismatch) {
      console.error(masterKeyMismatchLine(name, mismatch, config));
      return 78;
    }
    if (error instanceof UsageError) {
      console.error(`coffer: ${error.message}\n\n${helpText(undefined, name)}`);
      return 64;
    }
    if (error instanceof CommandRefused) {
      console.error(`coffer ${name}: ${error.message}`);
      return 1;
    }
    printError(error, name);
    return 1;
  }
}

/** The error as the API would answer it, on stderr; reported (SENTRY_DSN) when the API would answer 5xx. */
function printError(error: unknown, command: string): void {
  const { status, body } = toErrorResponse(error, 'cli');
  console.error(JSON.stringify(body));
  if (status >= 500 && status !== 503) captureError(error, { command });
}

// Reports are sent before the exit: process.exit() would drop them.
main(process.argv.slice(2)).then(
  async (code) => {
    await flushErrorTracking();
    process.exit(code);
  },
  async (error) => {
    console.error(error instanceof ConfigError ? error.message : `coffer: ${error?.message ?? error}`);
    if (!(error instanceof ConfigError)) captureError(error);
    await flushErrorTracking();
    process.exit(1);
  },
);
