import { Controller, Get, Inject, Res } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { Public } from '@coffer/auth';
import { DatabaseService } from '@coffer/database';
import { ApiResult } from '@coffer/http';
import { JobsService } from '@coffer/jobs';
import { KMS, KmsProvider } from '@coffer/kms';
import { coreProbes, probe } from '@coffer/metrics';
import { HealthLiveAnswer, HealthReadyAnswer } from '../openapi-document';

@ApiTags('health')
@Controller('health')
export class HealthController {
  constructor(
    private readonly db: DatabaseService,
    private readonly jobs: JobsService,
    @Inject(KMS) private readonly kms: KmsProvider,
  ) {}

  @Public()
  @Get('live')
  @ApiOperation({ summary: 'Liveness: the process answers' })
  @ApiResult(200, HealthLiveAnswer, 'alive')
  live() {
    return { status: 'ok' };
  }

  /**
   * Ready when PostgreSQL, Redis and the KMS answer (the KMS unsealed). Without the KMS alone the
   * API still serves reads from cached keys and spools writes (ADR 0007): 200 `degraded`, which
   * the container's healthcheck counts as unhealthy. 503 when PostgreSQL or Redis is down.
   * `checks` names what is down, never why in detail.
   */
  @Public()
  @Get('ready')
  @ApiOperation({ summary: 'Readiness: PostgreSQL, Redis and the KMS answer' })
  @ApiResult(200, HealthReadyAnswer, 'ready (`ok`), or `degraded` while only the KMS is down')
  @ApiResult(503, HealthReadyAnswer, 'not ready: `checks` names what is down')
  async ready(@Res({ passthrough: true }) reply: FastifyReply) {
    const [{ postgres, redis }, kms] = await Promise.all([
      coreProbes(this.db, this.jobs),
      probe(async () => {
        const health = await this.kms.health();
        if (!health.reachable || health.sealed) throw new Error('kms down');
      }),
    ]);
    const serving = postgres === 'ok' && redis === 'ok';
    reply.status(serving ? 200 : 503);
    return { status: !serving ? 'unavailable' : kms === 'ok' ? 'ok' : 'degraded', checks: { postgres, redis, kms } };
  }
}
