import { describe, expect, it } from 'vitest';
import { ConfigError, SETTINGS, configFromEnv } from '../src/server/config.js';
import { startSidecar } from '../src/server/sidecar.js';
import { OptionError } from '../src/util/options.js';

const errorFor = (env: Record<string, string>): ConfigError => {
  try {
    configFromEnv(env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('no ConfigError');
};

describe('configFromEnv', () => {
  it('gives every default for an empty environment, and treats an empty value as unset', () => {
    const config = configFromEnv({ PORT: '', GC_METRICS: '' });
    for (const [key, setting] of Object.entries(SETTINGS)) {
      expect(config[key as keyof typeof config], setting.env).toEqual(setting.parse(undefined));
    }
    expect(config).toMatchObject({ port: 8080, gcMetrics: 'off', upstreamUrl: undefined, metricsPort: undefined });
  });

  it.each([
    [{ PORT: '80.5' }, 'PORT', 'an integer in [0, 65535]'],
    [{ PORT: '70000' }, 'PORT', 'an integer in [0, 65535]'],
    [{ TTL_JITTER: 'lots' }, 'TTL_JITTER', 'a number in'],
    [{ GC_METRICS: 'yes' }, 'GC_METRICS', 'one of on, off'],
    [{ UPSTREAM_URL: 'ftp://x' }, 'UPSTREAM_URL', 'URL'],
    [{ METRICS_PORT: '-1' }, 'METRICS_PORT', 'an integer'],
  ])('names the variable and what it allows: %j', (env, variable, allowed) => {
    const error = errorFor(env);
    expect(error.variable).toBe(variable);
    expect(error.code).toBe('ERR_INVALID_CONFIG');
    expect(error.message).toContain(allowed);
  });

  it('never echoes a secret and cuts a long bad value', () => {
    const secret = errorFor({ ADMIN_TOKEN: 'short-secret' });
    expect(secret.message).toContain('<redacted>');
    expect(secret.message).not.toContain('short-secret');
    const long = errorFor({ REDIS_USERNAME: 'a b'.repeat(500) });
    expect(long.message.length).toBeLessThan(400);
    expect(long.message).toContain('…');
  });
});

describe('startSidecar from code', () => {
  it('holds a given admin token to the ADMIN_TOKEN rule before starting anything, and never echoes it', async () => {
    const start = startSidecar({ adminToken: 'short-secret', port: 0, host: '127.0.0.1', logLevel: 'silent' });
    await expect(start).rejects.toBeInstanceOf(OptionError);
    await expect(start).rejects.toMatchObject({
      option: 'adminToken',
      message: expect.stringContaining('ADMIN_TOKEN'),
    });
    await expect(start).rejects.not.toMatchObject({ message: expect.stringContaining('short-secret') });
  });
});
