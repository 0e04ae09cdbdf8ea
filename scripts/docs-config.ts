// Regenerates the configuration table in docs/configuration.md from src/server/config.ts.
import { readFileSync, writeFileSync } from 'node:fs';
import { withConfigTable } from '../src/server/config-docs.js';

const path = new URL('../docs/configuration.md', import.meta.url);
writeFileSync(path, withConfigTable(readFileSync(path, 'utf8')));
console.log('docs/configuration.md configuration table regenerated');
