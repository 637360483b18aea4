import 'reflect-metadata';
import { auditBenchmark } from './audit.bench';
import { authBenchmark } from './auth.bench';
import { memoryBenchmark } from './memory.bench';
import { noisyNeighbourBenchmark } from './noisy-neighbour.bench';
import { packagesBenchmark } from './packages.bench';
import { rotationBenchmark } from './rotation.bench';

/** `npm run bench`: each benchmark prints its figures and its ratio against an in-run baseline. */
async function main() {
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  const only = process.argv[2];
  const benchmarks: [string, () => Promise<boolean>][] = [
    ['auth', () => authBenchmark(seconds)],
    ['audit', () => auditBenchmark(seconds)],
    ['packages', () => packagesBenchmark()],
    ['memory', () => memoryBenchmark()],
    ['rotation', () => rotationBenchmark(seconds)],
    ['noisy-neighbour', () => noisyNeighbourBenchmark(seconds)],
  ];
  const results: boolean[] = [];
  for (const [name, run] of benchmarks) if (!only || name.includes(only)) results.push(await run());
  console.log(`benchmarks: ${results.filter(Boolean).length} of ${results.length} met their goal`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
