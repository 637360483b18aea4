import { Injectable } from '@nestjs/common';
import { JobContext, JobPayloads, JobProcessor, Processes } from '@coffer/jobs';
import { KeyRotationService } from '@coffer/keys';

@Injectable()
@Processes('rewrap-keys')
export class RewrapKeysProcessor implements JobProcessor<'rewrap-keys'> {
  constructor(private readonly keys: KeyRotationService) {}

  process(_payload: JobPayloads['rewrap-keys'], { org }: JobContext<'rewrap-keys'>) {
    return this.keys.rewrap(org);
  }
}
