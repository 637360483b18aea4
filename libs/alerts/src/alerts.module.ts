import { Global, Module } from '@nestjs/common';
import { AlertStateRepository } from './alert-state.repository';
import { AlertWebhooksRepository } from './alert-webhooks.repository';
import { AlertsService } from './alerts.service';

@Global()
@Module({ providers: [AlertStateRepository, AlertWebhooksRepository, AlertsService], exports: [AlertsService] })
export class AlertsModule {}
