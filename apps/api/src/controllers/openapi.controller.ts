import { Controller, Get, Injectable } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import type { OpenAPIObject } from '@nestjs/swagger';
import { Public } from '@coffer/auth';
import { ApiResult } from '@coffer/http';
import { OpenApiAnswer } from '../openapi-document';

/** Holds the document generated from the controllers at start-up (see bootstrap.ts). */
@Injectable()
export class OpenApiDocument {
  document?: OpenAPIObject;
}

@ApiTags('openapi')
@Controller('api/v1')
export class OpenApiController {
  constructor(private readonly holder: OpenApiDocument) {}

  @Public()
  @Get('openapi.json')
  @ApiOperation({ summary: 'This document (OpenAPI 3.1)' })
  @ApiResult(200, OpenApiAnswer, 'the OpenAPI document of this API')
  get() {
    return this.holder.document;
  }
}
