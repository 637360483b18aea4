import { Inject, Injectable } from '@nestjs/common';
import { JobContext, JobPayloads, JobProcessor, Processes } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';
import { PackagesService } from '@coffer/packages';

/** Scheduled per org; finds what is due in the org's database. */
@Injectable()
@Processes('sweep-packages')
export class SweepPackagesProcessor implements JobProcessor<'sweep-packages'> {
  constructor(
    private readonly packages: PackagesService,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  async process(_payload: JobPayloads['sweep-packages'], { org }: JobContext<'sweep-packages'>) {
    const purged = await this.packages.sweep(org);
    if (purged) this.logger.info({ org: org.slug, count: purged }, 'package objects purged');
    return { purged };
  }
}
