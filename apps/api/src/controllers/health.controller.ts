import { Controller, Get, Res } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { Public } from '@coffer/auth';
import { DatabaseService } from '@coffer/database';
import { JobsService } from '@coffer/jobs';

@ApiTags('health')
@Controller('health')
export class HealthController {
  constructor(
    private readonly db: DatabaseService,
    private readonly jobs: JobsService,
  ) {}

  @Public()
  @Get('live')
  live() {
    return { status: 'ok' };
  }

  /** Ready when PostgreSQL and Redis answer; 503 names what is down (never why in detail). */
  @Public()
  @Get('ready')
  async ready(@Res({ passthrough: true }) reply: FastifyReply) {
    const [postgres, redis] = await Promise.all([
      probe(() => this.db.control.query('SELECT 1')),
      probe(() => this.jobs.redis.ping()),
    ]);
    const ok = postgres === 'ok' && redis === 'ok';
    reply.status(ok ? 200 : 503);
    return { status: ok ? 'ok' : 'unavailable', checks: { postgres, redis } };
  }
}

async function probe(check: () => Promise<unknown>): Promise<'ok' | 'down'> {
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), 2000).unref());
  return Promise.race([check(), timeout]).then(
    () => 'ok' as const,
    () => 'down' as const,
  );
}
