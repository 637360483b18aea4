import autocannon from 'autocannon';

/**
 * A load generator in a process of its own (`node dist/bench/load-process.js '<autocannon
 * options as JSON>'`): its CPU is not the measuring client's, so what the measuring client sees
 * is the server's latency, not its own event loop's. Prints one JSON line with the result.
 */
autocannon(JSON.parse(process.argv[2]) as autocannon.Options).then(
  (result) => {
    const statuses = Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, s]) => [code, s.count ?? 0]));
    process.stdout.write(
      `${JSON.stringify({ requestsPerSecond: result.requests.average, p99Ms: result.latency.p99, errors: result.errors + result.timeouts, non2xx: result.non2xx, statuses })}\n`,
    );
  },
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
