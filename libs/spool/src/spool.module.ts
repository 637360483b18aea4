import { Module } from '@nestjs/common';
import { SpoolRepository } from './spool.repository';
import { SpoolService } from './spool.service';

@Module({ providers: [SpoolRepository, SpoolService], exports: [SpoolRepository, SpoolService] })
export class SpoolModule {}
