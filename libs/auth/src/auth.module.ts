import { Module } from '@nestjs/common';
import { APP_GUARD, APP_INTERCEPTOR } from '@nestjs/core';
import { UsersModule } from '@coffer/users';
import { AbuseLimits } from './abuse-limits';
import { AuditInterceptor } from './audit.interceptor';
import { AuthGuard } from './auth.guard';
import { OrgRequestGate } from './org-request-gate';
import { PlatformTokensRepository } from './platform-tokens.repository';
import { PlatformTokensService } from './platform-tokens.service';

/**
 * The request pipeline: importing this module protects every route of the app with AuthGuard
 * (and its abuse limits) and runs it in an audit scope (AuditInterceptor).
 */
@Module({
  imports: [UsersModule],
  providers: [
    PlatformTokensRepository,
    PlatformTokensService,
    AbuseLimits,
    OrgRequestGate,
    { provide: APP_GUARD, useClass: AuthGuard },
    { provide: APP_INTERCEPTOR, useClass: AuditInterceptor },
  ],
  exports: [PlatformTokensService],
})
export class AuthModule {}
