import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { OrgsModule } from '@coffer/orgs';
import { AuthGuard } from './auth.guard';
import { PlatformTokensService } from './platform-tokens.service';

/** Importing this module protects every route of the app with AuthGuard. */
@Module({
  imports: [OrgsModule],
  providers: [PlatformTokensService, { provide: APP_GUARD, useClass: AuthGuard }],
  exports: [PlatformTokensService],
})
export class AuthModule {}
