import { Command, COMMANDS, defaultOperator, Invocation } from './commands';

/** What a command line asks for. Parsed before anything starts, so `--help` never acts. */
export type CommandLine =
  | { kind: 'help'; command?: string }
  | { kind: 'version' }
  | { kind: 'run'; name: string; command: Command; invocation: Invocation }
  | { kind: 'usage'; message: string; command?: string };

const OPERATOR = /^[A-Za-z0-9._@+-]{1,64}$/;

/**
 * `coffer <command> [args] [--as <operator>] [--control]`. `--help` or `-h` anywhere prints
 * help and does nothing else; `--` ends the options.
 */
export function parseCommandLine(argv: string[], commands: Record<string, Command> = COMMANDS, operator = defaultOperator()): CommandLine {
  const [name, ...rest] = argv;
  if (!name || name === 'help' || name === '--help' || name === '-h') {
    const topic = rest.find((a) => !a.startsWith('-'));
    return { kind: 'help', command: topic && commands[topic] ? topic : undefined };
  }
  if (name === 'version' || name === '--version') return { kind: 'version' };
  const command = commands[name];
  const optionsEnd = rest.indexOf('--');
  const options = optionsEnd < 0 ? rest : rest.slice(0, optionsEnd);
  if (options.includes('--help') || options.includes('-h')) return { kind: 'help', command: command ? name : undefined };
  if (!command) return { kind: 'usage', message: `unknown command '${name}'` };

  const invocation: Invocation = { args: [], control: false, operator };
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (i === optionsEnd) {
      invocation.args.push(...rest.slice(i + 1));
      break;
    }
    if (arg === '--as' || arg.startsWith('--as=')) {
      const value = arg === '--as' ? rest[++i] : arg.slice('--as='.length);
      if (value === undefined || !OPERATOR.test(value)) {
        return { kind: 'usage', command: name, message: '--as takes the operator\'s name: 1 to 64 letters, digits or . _ @ + -' };
      }
      invocation.operator = value;
    } else if (arg === '--control' && command.control) {
      invocation.control = true;
    } else if (command.options && Object.keys(command.options).some((o) => arg === `--${o}` || arg.startsWith(`--${o}=`))) {
      const option = arg.slice(2).split('=')[0];
      const value = arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : rest[++i];
      if (value === undefined || value === '' || (i === optionsEnd)) return { kind: 'usage', command: name, message: `--${option} takes a value` };
      (invocation.options ??= {})[option] = value;
    } else if (command.flags && arg.startsWith('--') && Object.hasOwn(command.flags, arg.slice(2))) {
      (invocation.flags ??= []).push(arg.slice(2));
    } else if (arg.startsWith('-') && arg !== '-') {
      return { kind: 'usage', command: name, message: `unknown option '${arg}'` };
    } else {
      invocation.args.push(arg);
    }
  }
  const [least, most] = command.arity;
  const count = invocation.args.length;
  if (count < least || count > most) {
    const wanted = least === most ? `${least}` : `${least} to ${most}`;
    return { kind: 'usage', command: name, message: `${name} takes ${wanted} argument${most === 1 ? '' : 's'}, not ${count}` };
  }
  return { kind: 'run', name, command, invocation };
}

export function helpText(commands: Record<string, Command> = COMMANDS, name?: string): string {
  const common = ['  --as <operator>  the name audit entries give the operator (default: the invoking user)', '  -h, --help       this help; nothing is run'];
  if (name) {
    const command = commands[name];
    const own = [
      ...Object.entries(command.options ?? {}).map(([o, what]) => `  --${o} <value>  ${what}`),
      ...Object.entries(command.flags ?? {}).map(([f, what]) => `  --${f}  ${what}`),
    ];
    return [`usage: coffer ${command.usage}`, '', `  ${command.summary}`, '', 'options:', ...own, ...common].join('\n');
  }
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  return [
    'usage: coffer <command> [arguments] [--as <operator>]',
    '',
    'commands:',
    ...Object.entries(commands).map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`),
    `  ${'version'.padEnd(width)}  the version of Coffer`,
    `  ${'help'.padEnd(width)}  help on one command: coffer help <command>`,
    '',
    'options:',
    ...common,
    '',
    'Answers are JSON on stdout; errors are the API\'s error body on stderr. Exit codes: 0 done,',
    '1 failed, 2 done but what was checked is bad, 64 usage.',
  ].join('\n');
}
