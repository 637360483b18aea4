import { Injectable } from '@nestjs/common';

/** The time, as a repository: renewal and alert dates are tested by moving it. */
@Injectable()
export class ClockRepository {
  now(): Date {
    return new Date();
  }
}
