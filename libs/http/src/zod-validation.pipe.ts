import { PipeTransform } from '@nestjs/common';
import { z } from 'zod';
import { AppError } from './errors';

/**
 * Validates a body or query against a strict zod schema. Unknown fields are rejected, not
 * dropped, so a typo in a security setting never silently does nothing. The error lists paths
 * and reasons, never the submitted values (they may be secrets or personal data).
 */
export class ZodValidationPipe<T extends z.ZodType> implements PipeTransform<unknown, z.infer<T>> {
  constructor(private readonly schema: T) {}

  transform(value: unknown): z.infer<T> {
    const result = this.schema.safeParse(value ?? {});
    if (result.success) return result.data;
    throw new AppError(
      'validation_failed',
      'request failed validation',
      result.error.issues.map((issue) => ({
        path: issue.path.join('.'),
        code: issue.code,
        message: issue.code === 'unrecognized_keys' ? `unknown field(s): ${issue.keys.join(', ')}` : issue.message,
      })),
    );
  }
}
