// Regenerates the configuration table in README.md from src/server/config.ts.
import { readFileSync, writeFileSync } from 'node:fs';
import { withConfigTable } from '../src/server/config-docs.js';

const path = new URL('../README.md', import.meta.url);
writeFileSync(path, withConfigTable(readFileSync(path, 'utf8')));
console.log('README.md configuration table regenerated');
