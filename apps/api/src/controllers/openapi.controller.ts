import { Controller, Get, Injectable } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { OpenAPIObject } from '@nestjs/swagger';
import { Public } from '@coffer/auth';

/** Holds the document generated from the controllers at start-up (see bootstrap.ts). */
@Injectable()
export class OpenApiDocument {
  document?: OpenAPIObject;
}

@ApiExcludeController()
@Controller('api/v1')
export class OpenApiController {
  constructor(private readonly holder: OpenApiDocument) {}

  @Public()
  @Get('openapi.json')
  get() {
    return this.holder.document;
  }
}
