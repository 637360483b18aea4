import { Module } from '@nestjs/common';
import { KeysModule } from '@coffer/keys';
import { SpoolModule } from '@coffer/spool';
import { EncryptionStatusRepository } from './encryption-status.repository';
import { EncryptionStatusService } from './encryption-status.service';

@Module({ imports: [KeysModule, SpoolModule], providers: [EncryptionStatusRepository, EncryptionStatusService], exports: [EncryptionStatusService] })
export class EncryptionModule {}
