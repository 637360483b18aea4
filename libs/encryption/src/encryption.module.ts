import { Module } from '@nestjs/common';
import { KeysModule } from '@coffer/keys';
import { EncryptionStatusService } from './encryption-status.service';

@Module({ imports: [KeysModule], providers: [EncryptionStatusService], exports: [EncryptionStatusService] })
export class EncryptionModule {}
