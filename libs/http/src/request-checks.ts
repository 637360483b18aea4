import { z } from 'zod';

/** C0 controls (NUL included), DEL and C1 controls: never meaningful in a path parameter. */
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/g;

export function hasControlCharacter(value: string): boolean {
  return CONTROL_CHARACTER.test(value);
}

/** The value with every control character written as a `\uXXXX` escape: safe to store and show. */
export function escapeControlCharacters(value: string): string {
  return value.replace(CONTROL_CHARACTERS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Whether any of a route's path parameters holds a control character. */
export function controlCharacterInParams(params: unknown): boolean {
  if (!params || typeof params !== 'object') return false;
  return Object.values(params).some((value) => typeof value === 'string' && hasControlCharacter(value));
}

/** Path parameters fit for an audit entry or a log: control characters escaped, never raw. */
export function sanitizedParams(params: unknown): Record<string, unknown> {
  if (!params || typeof params !== 'object') return {};
  return Object.fromEntries(
    Object.entries(params).map(([name, value]) => [
      escapeControlCharacters(name),
      typeof value === 'string' ? escapeControlCharacters(value) : value,
    ]),
  );
}

/**
 * The path (`a.b.0`) of the first string or key holding U+0000 in a parsed JSON value, or
 * undefined. PostgreSQL cannot store U+0000 in text or jsonb, so such a value is refused at the
 * door instead of failing half-way through a write. Iterative: a deeply nested body cannot
 * exhaust the stack.
 */
export function findNul(value: unknown): string | undefined {
  interface Step {
    key: string;
    parent?: Step;
  }
  const pathOf = (step: Step | undefined) => {
    const keys: string[] = [];
    for (let at = step; at; at = at.parent) keys.push(escapeControlCharacters(at.key));
    return keys.reverse().join('.');
  };
  const stack: [unknown, Step | undefined][] = [[value, undefined]];
  while (stack.length) {
    const [current, step] = stack.pop()!;
    if (typeof current === 'string') {
      if (current.includes('\u0000')) return pathOf(step);
    } else if (current && typeof current === 'object') {
      for (const [key, child] of Object.entries(current)) {
        const childStep = { key, parent: step };
        if (key.includes('\u0000')) return pathOf(childStep);
        stack.push([child, childStep]);
      }
    }
  }
  return undefined;
}

// RFC 9110 §5.6.2 token, §5.6.4 quoted-string (visible ASCII only: no obs-text), §8.3.1 media-type.
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const QUOTED_STRING = '"(?:[\\t !#-\\[\\]-~]|\\\\[\\t -~])*"';
const MEDIA_TYPE = new RegExp(`^${TOKEN}/${TOKEN}(?:[ \\t]*;[ \\t]*(?:${TOKEN}=(?:${TOKEN}|${QUOTED_STRING}))?)*$`);
export const MEDIA_TYPE_MAX_LENGTH = 255;

/** A Content-Type as RFC 9110 defines it (`type/subtype; name=value`), at most 255 characters. */
export const MediaType = z
  .string()
  .max(MEDIA_TYPE_MAX_LENGTH)
  .regex(MEDIA_TYPE, 'a media type: type/subtype, optionally with ; name=value parameters');

/**
 * A positive integer as a path parameter, written canonically: decimal digits, no sign, no
 * leading zero, no exponent, no whitespace, at most `max`. `1e0`, `0x2`, `02` and ` 2` are
 * refused rather than read as 1 or 2, so a request and its audit entry name the same thing.
 */
export function canonicalPositiveInteger(max = 2_147_483_647) {
  return z
    .string()
    .regex(/^[1-9][0-9]{0,15}$/, 'a positive decimal integer without sign, leading zeros or spaces')
    .transform(Number)
    .pipe(z.number().int().min(1).max(max));
}
