import type { z } from 'zod';

/**
 * Parse a handler's environment with its schema, once at init: a bad value fails the cold start
 * with every offending variable named, instead of surfacing as odd behaviour mid-run. Empty values
 * count as unset, so a CDK environment entry left blank falls back to the schema's default.
 */
export function parseHandlerEnv<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv, what: string): z.output<S> {
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ''));
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    throw new Error(`bad ${what} configuration: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}
