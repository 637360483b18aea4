import { Module } from '@nestjs/common';
import { KeysModule } from '@coffer/keys';
import { SpoolKeyWrappings, SpoolRepository } from './spool.repository';
import { SpoolService } from './spool.service';

@Module({ imports: [KeysModule], providers: [SpoolRepository, SpoolKeyWrappings, SpoolService], exports: [SpoolRepository, SpoolService] })
export class SpoolModule {}
