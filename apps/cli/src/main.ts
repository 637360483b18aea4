import 'reflect-metadata';
process.env.COFFER_SERVICE ??= 'cli';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NestFactory } from '@nestjs/core';
import { ConfigError, loadConfig } from '@coffer/config';
import { toErrorResponse } from '@coffer/http';
import { CliModule } from './cli.module';
import { helpText, parseCommandLine } from './command-line';
import { Command, Invocation, UsageError } from './commands';

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
  if (command.offline) return runOffline(line.name, command.offline.bind(command), invocation);
  const config = loadConfig({ ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' });
  const app = await NestFactory.createApplicationContext(CliModule.register(config), { logger: false });
  try {
    const { output, exitCode } = await command.run(app, invocation);
    console.log(JSON.stringify(output, null, 2));
    return exitCode;
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`coffer: ${error.message}\n\n${helpText(undefined, line.name)}`);
      return 64;
    }
    console.error(JSON.stringify(toErrorResponse(error, 'cli').body));
    return 1;
  } finally {
    await app.close();
  }
}

/** A command that needs nothing but its arguments: no configuration, no application, no connection. */
async function runOffline(name: string, run: NonNullable<Command['offline']>, invocation: Invocation): Promise<number> {
  try {
    const { output, exitCode } = await run(invocation);
    console.log(JSON.stringify(output, null, 2));
    return exitCode;
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`coffer: ${error.message}\n\n${helpText(undefined, name)}`);
      return 64;
    }
    console.error(JSON.stringify(toErrorResponse(error, 'cli').body));
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(error instanceof ConfigError ? error.message : `coffer: ${error?.message ?? error}`);
    process.exit(1);
  },
);
