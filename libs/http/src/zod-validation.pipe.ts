import { ArgumentMetadata, PipeTransform } from '@nestjs/common';
import { z } from 'zod';
import { AppError } from './errors';
import { findNul } from './request-checks';

/**
 * Validates a body, query or parameter against a strict zod schema. Unknown fields are
 * rejected, not dropped, so a typo in a security setting never silently does nothing. The error
 * lists paths and reasons, never the submitted values (they may be secrets or personal data).
 *
 * Every route's input passes here, so two rules hold for all of them: a string or key holding
 * U+0000 is refused (400 validation_failed) before anything is written (PostgreSQL cannot store
 * it), and a route that takes a JSON body refuses a request without one (400 invalid_json);
 * routes that take no body never look at it.
 */
export class ZodValidationPipe<T extends z.ZodType> implements PipeTransform<unknown, z.infer<T>> {
  constructor(private readonly schema: T) {}

  transform(value: unknown, metadata?: ArgumentMetadata): z.infer<T> {
    if (metadata?.type === 'body' && value === undefined) throw new AppError('invalid_json', 'this route takes a JSON body; the request has none');
    const nul = findNul(value);
    if (nul !== undefined) {
      throw new AppError('validation_failed', 'request failed validation', [
        { path: nul, code: 'invalid_string', message: 'must not contain U+0000 (NUL)' },
      ]);
    }
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
