import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { helpText, parseCommandLine } from './command-line';
import { COMMANDS } from './commands';

const parse = (...argv: string[]) => parseCommandLine(argv, COMMANDS, 'tester');

describe('the CLI command line', () => {
  test('--help or -h anywhere asks for help and nothing else, even after a command that acts', () => {
    assert.deepEqual(parse('keys:rotate', 'beta', '--help'), { kind: 'help', command: 'keys:rotate' });
    assert.deepEqual(parse('certs:renew', '--help'), { kind: 'help', command: 'certs:renew' });
    assert.deepEqual(parse('orgs:create', '-h', 'a', 'b'), { kind: 'help', command: 'orgs:create' });
    assert.deepEqual(parse('no-such', '--help'), { kind: 'help', command: undefined });
    assert.deepEqual(parse(), { kind: 'help', command: undefined });
    assert.deepEqual(parse('help', 'audit:verify'), { kind: 'help', command: 'audit:verify' });
  });

  test('after --, --help is an argument like any other', () => {
    const line = parse('certs:renew', '--', '--help');
    assert.equal(line.kind, 'run');
    assert.deepEqual(line.kind === 'run' && line.invocation.args, ['--help']);
  });

  test('an unknown command or option is a usage error that names it', () => {
    assert.deepEqual(parse('no-such-command'), { kind: 'usage', message: "unknown command 'no-such-command'" });
    assert.deepEqual(parse('keys:rotate', 'beta', '--force'), { kind: 'usage', command: 'keys:rotate', message: "unknown option '--force'" });
    assert.deepEqual(parse('keys:rotate', '--control'), { kind: 'usage', command: 'keys:rotate', message: "unknown option '--control'" });
  });

  test('backup and restore take their flags (--objects, --force) and --key-file <file>; another command does not take them', () => {
    const backup = parse('backup', '/b/x.coffer-backup', '--objects', '--key-file', '/k');
    assert.equal(backup.kind, 'run');
    assert.deepEqual(backup.kind === 'run' && [backup.invocation.args, backup.invocation.flags, backup.invocation.options], [['/b/x.coffer-backup'], ['objects'], { 'key-file': '/k' }]);
    const restore = parse('restore', '--force', 'x');
    assert.deepEqual(restore.kind === 'run' && [restore.invocation.args, restore.invocation.flags], [['x'], ['force']]);
    assert.deepEqual(parse('backup', 'x', '--force'), { kind: 'usage', command: 'backup', message: "unknown option '--force'" });
    assert.equal(parse('backup').kind, 'usage');
    assert.match(helpText(undefined, 'backup'), /--objects  include the objects themselves/);
  });

  test('arguments are counted: orgs:create with an e-mail but no display name is refused, not guessed', () => {
    assert.equal(parse('orgs:create', 'acme').kind, 'usage');
    assert.equal(parse('keys:rotate').kind, 'usage');
    assert.equal(parse('keys:rotate', 'a', 'b').kind, 'usage');
    assert.equal(parse('orgs:create', 'acme', 'Acme', 'root@acme.example').kind, 'run');
    // three arguments fit the arity; the command itself refuses the missing display name
    assert.equal(parse('orgs:create', 'acme', 'Acme', 'root@acme.example', 'Root').kind, 'run');
  });

  test('--as names the operator; a name that is not a plain identifier is refused', () => {
    const operatorOf = (...argv: string[]) => {
      const line = parse(...argv);
      return line.kind === 'run' ? line.invocation.operator : line.kind;
    };
    assert.equal(operatorOf('health', '--as', 'alice@ops'), 'alice@ops');
    assert.equal(operatorOf('health', '--as=bob'), 'bob');
    assert.equal(operatorOf('health'), 'tester');
    assert.equal(parse('health', '--as').kind, 'usage');
    assert.equal(parse('health', '--as', 'a b').kind, 'usage');
    assert.equal(parse('health', '--as', 'x'.repeat(65)).kind, 'usage');
  });

  test('--control replaces the org slug where a command takes a chain', () => {
    const line = parse('audit:verify', '--control');
    assert.ok(line.kind === 'run' && line.invocation.control && line.invocation.args.length === 0);
  });

  test('help lists every command with its summary, and a command\'s help shows its usage', () => {
    const all = helpText(COMMANDS);
    for (const [name, command] of Object.entries(COMMANDS)) assert.ok(all.includes(`${name}`) && all.includes(command.summary), name);
    assert.match(helpText(COMMANDS, 'keys:rotate'), /^usage: coffer keys:rotate <org-slug>/);
  });

  test('audit:verify-offline takes one path and --keys <file>; it runs offline, without the application', () => {
    const line = parse('audit:verify-offline', 'copy', '--keys', 'keys.json');
    assert.ok(line.kind === 'run');
    assert.deepEqual([line.invocation.args, line.invocation.options], [['copy'], { keys: 'keys.json' }]);
    assert.equal(typeof line.command.offline, 'function');
    const equals = parse('audit:verify-offline', '--keys=k.json', 'copy');
    assert.deepEqual(equals.kind === 'run' && equals.invocation.options, { keys: 'k.json' });
    assert.deepEqual(parse('audit:verify-offline', 'copy', '--keys'), { kind: 'usage', command: 'audit:verify-offline', message: '--keys takes a value' });
    assert.deepEqual(parse('keys:rotate', 'beta', '--keys', 'x'), { kind: 'usage', command: 'keys:rotate', message: "unknown option '--keys'" });
    assert.match(helpText(COMMANDS, 'audit:verify-offline'), /--keys <value>/);
    for (const [name, command] of Object.entries(COMMANDS)) if (name !== 'audit:verify-offline') assert.equal(command.offline, undefined, name);
  });
});
