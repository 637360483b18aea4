import { Redis } from 'ioredis';

/**
 * BullMQ needs `maxRetriesPerRequest: null` on worker connections: a blocked command must wait
 * through a Redis restart rather than fail the worker.
 */
export function createRedis(url: string, options: { name: string; forWorker?: boolean }): Redis {
  return new Redis(url, {
    connectionName: options.name,
    maxRetriesPerRequest: options.forWorker ? null : 3,
    enableOfflineQueue: options.forWorker ?? false,
    lazyConnect: false,
  });
}

export function queuePrefix(keyPrefix: string): string {
  return `${keyPrefix}:bull`;
}
