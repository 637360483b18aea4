import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { REPO_ROOT } from '../support/api-process';

/**
 * nest-cli.json is the list of Coffer's apps and libraries, and scripts/build.mjs compiles and
 * rewrites the `@coffer/*` aliases from it. tsconfig.json maps every `@coffer/*`, so a library
 * missing from the list still type-checks; only at run time would its imports fail. These tests
 * keep the list and the directories in step.
 */
interface Project {
  type: 'application' | 'library';
  root: string;
  entryFile: string;
  sourceRoot: string;
}

const projects: Record<string, Project> = JSON.parse(readFileSync(join(REPO_ROOT, 'nest-cli.json'), 'utf8')).projects;
const dirsUnder = (parent: string) =>
  readdirSync(join(REPO_ROOT, parent))
    .filter((name) => statSync(join(REPO_ROOT, parent, name)).isDirectory())
    .map((name) => `${parent}/${name}`);

function tsFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'node_modules' ? [] : tsFiles(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

describe('nest-cli.json: the projects the build compiles', () => {
  test('lists every directory under apps/ and libs/ as a project, and no project without one', () => {
    const dirs = [...dirsUnder('apps'), ...dirsUnder('libs')];
    const roots = Object.values(projects).map((project) => project.root);
    assert.deepEqual(
      { missingFromNestCli: dirs.filter((dir) => !roots.includes(dir)), listedButAbsent: roots.filter((root) => !dirs.includes(root)) },
      { missingFromNestCli: [], listedButAbsent: [] },
    );
  });

  test('names each project after its directory: apps are applications with main.ts, libs libraries with index.ts, both in src/', () => {
    for (const [name, project] of Object.entries(projects)) {
      assert.equal(basename(project.root), name, `${name}: its root is named after it`);
      const kind = project.root.startsWith('apps/') ? { type: 'application', entryFile: 'main' } : { type: 'library', entryFile: 'index' };
      assert.deepEqual({ type: project.type, entryFile: project.entryFile }, kind, name);
      assert.equal(project.sourceRoot, `${project.root}/src`, name);
      assert.ok(existsSync(join(REPO_ROOT, project.sourceRoot, `${project.entryFile}.ts`)), `${name}: ${project.entryFile}.ts exists`);
    }
  });

  test('every @coffer/<name> import names a library project, so the build rewrites it', () => {
    const libraries = new Set(Object.keys(projects).filter((name) => projects[name].type === 'library'));
    const unknown = new Set<string>();
    for (const file of ['apps', 'libs', 'test', 'bench'].flatMap((dir) => tsFiles(join(REPO_ROOT, dir)))) {
      for (const [, name] of readFileSync(file, 'utf8').matchAll(/(?:from|import\(|require\()\s*'@coffer\/([^'/]+)'/g)) {
        if (!libraries.has(name)) unknown.add(`${name} (${file.slice(REPO_ROOT.length + 1)})`);
      }
    }
    assert.deepEqual([...unknown], []);
  });
});
