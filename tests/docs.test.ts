import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { withConfigTable } from '../src/server/config-docs.js';
import { SETTINGS } from '../src/server/config.js';
import { STATUS_OF_CODE } from '../src/errors.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('has the configuration table the schema generates (run `npm run docs:config` after changing settings)', () => {
    expect(readme).toBe(withConfigTable(readme));
    for (const setting of Object.values(SETTINGS)) expect(readme).toContain(`| \`${setting.env}\` |`);
  });

  it('states the two commands that CI and users run', () => {
    expect(readme).toContain('npm ci && npm start');
    expect(readme).toContain('npm ci && npm test');
    const ci = readFileSync(new URL('../.ci/run', import.meta.url), 'utf8');
    expect(ci).toMatch(/^npm ci && npm test$/m);
  });

  it('documents every error code with its status', () => {
    for (const [code, status] of Object.entries(STATUS_OF_CODE))
      expect(readme, code).toContain(`| \`${code}\` | ${status} |`);
  });
});
