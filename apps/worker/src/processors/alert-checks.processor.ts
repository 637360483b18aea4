import { Injectable } from '@nestjs/common';
import { JobProcessor, Processes } from '@coffer/jobs';
import { AlertChecksService } from '@coffer/metrics';

@Injectable()
@Processes('alert-checks')
export class AlertChecksProcessor implements JobProcessor<'alert-checks'> {
  constructor(private readonly checks: AlertChecksService) {}

  process() {
    return this.checks.run();
  }
}
