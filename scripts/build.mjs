// Emits dist/ with swc (fast, keeps decorator metadata) and rewrites the @coffer/* aliases.
// Type checking is tsc's job (`npm run typecheck`), run by the test script before any test.
// What it compiles and which aliases it rewrites come from nest-cli.json's `projects`: every app
// and library is one (test/build/nest-cli.spec.ts fails when one is missing), plus test/ and
// bench/, which are not projects. A library left out would type-check (tsconfig maps every
// `@coffer/*`) but its imports would not be rewritten, so the test is what keeps the two in step.
import { readdirSync, readFileSync, mkdirSync, renameSync, writeFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist');
const projects = Object.entries(JSON.parse(readFileSync(join(root, 'nest-cli.json'), 'utf8')).projects);
const sources = [...projects.map(([, project]) => project.root), 'test', 'bench'];
/** `@coffer/<library>` → the library's sourceRoot, as tsconfig.json's `@coffer/*` maps it. */
const paths = Object.fromEntries(
  projects.filter(([, project]) => project.type === 'library').map(([name, project]) => [`@coffer/${name}`, [project.sourceRoot]]),
);

/**
 * Builds into a directory of its own, then swaps it in for dist/: tests already running (another
 * `npm test -- <filter>` in the same checkout) keep finding every file.
 */
export async function build() {
  const swc = await import('@swc/core');
  const staging = join(root, `.dist-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  const files = sources.flatMap((dir) => walk(join(root, dir)));
  await Promise.all(
    files.map(async (file) => {
      const { code, map } = await swc.transformFile(file, {
        swcrc: false,
        sourceMaps: true,
        jsc: {
          parser: { syntax: 'typescript', decorators: true },
          transform: { legacyDecorator: true, decoratorMetadata: true, useDefineForClassFields: false },
          target: 'es2022',
          baseUrl: root,
          paths,
          keepClassNames: true,
        },
        module: { type: 'commonjs' },
      });
      const target = join(staging, relative(root, file)).replace(/\.ts$/, '.js');
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, `${code}\n//# sourceMappingURL=${target.split('/').pop()}.map\n`);
      writeFileSync(`${target}.map`, map);
    }),
  );
  const old = `${staging}-old`;
  try {
    renameSync(out, old);
  } catch (error) {
    if (error.code !== 'ENOENT') throw error;
  }
  renameSync(staging, out);
  rmSync(old, { recursive: true, force: true });
  return files.length;
}

function walk(dir) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  return entries.flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'node_modules' ? [] : walk(path);
    return name.endsWith('.ts') && !name.endsWith('.d.ts') ? [path] : [];
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const count = await build();
  console.log(`built ${count} files into dist/`);
}
