import { Module } from '@nestjs/common';
import { KeysModule } from '@coffer/keys';
import { SpoolModule } from '@coffer/spool';
import { EncryptionStatusService } from './encryption-status.service';

@Module({ imports: [KeysModule, SpoolModule], providers: [EncryptionStatusService], exports: [EncryptionStatusService] })
export class EncryptionModule {}
