import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { withConfigTable } from '../src/server/config-docs.js';
import { SETTINGS } from '../src/server/config.js';
import { STATUS_OF_CODE } from '../src/errors.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

const readme = read('README.md');
const DOCS = readdirSync(join(ROOT, 'docs'))
  .filter((name) => name.endsWith('.md'))
  .sort()
  .map((name) => `docs/${name}`);
/** Every Markdown file whose relative links must resolve. */
const MARKDOWN = ['README.md', 'deploy/README.md', ...DOCS];

/** `text` without fenced code blocks (their lines blanked, so line numbers stay). */
function withoutFences(text: string): string {
  let fence: string | undefined;
  return text
    .split('\n')
    .map((line) => {
      const marker = /^ {0,3}(`{3,}|~{3,})/.exec(line)?.[1];
      if (fence === undefined && marker !== undefined) {
        fence = marker;
        return '';
      }
      if (fence !== undefined) {
        if (marker !== undefined && marker[0] === fence[0] && marker.length >= fence.length) fence = undefined;
        return '';
      }
      return line;
    })
    .join('\n');
}

/** `text` without inline code spans (`` `a [b](c)` `` is not a link). */
const withoutCodeSpans = (text: string) => text.replace(/(`+)[\s\S]*?\1/g, '');

/** The ATX headings of a Markdown text, outside fenced code. */
function headings(text: string): { level: number; text: string }[] {
  const found: { level: number; text: string }[] = [];
  for (const line of withoutFences(text).split('\n')) {
    const match = /^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/.exec(line);
    if (match) found.push({ level: match[1]!.length, text: match[2]! });
  }
  return found;
}

/**
 * GitHub's anchor for a heading: the rendered text (code spans keep their content, links their text,
 * emphasis markers and HTML tags go), lowercased, everything but letters, marks, digits, `_`, `-` and
 * spaces removed, spaces turned into `-`. Non-ASCII letters stay (GitHub percent-encodes them in the URL).
 */
function slug(heading: string): string {
  const rendered = heading
    .split(/(`[^`]*`)/)
    .map((part, i) =>
      i % 2 === 1
        ? part.slice(1, -1)
        : part
            .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
            .replace(/<[^>]+>/g, '')
            .replace(/(\*\*|\*)(\S(?:.*?\S)?)\1/g, '$2')
            .replace(/(?<![\p{L}\p{N}])(__|_)(\S(?:.*?\S)?)\1(?![\p{L}\p{N}])/gu, '$2'),
    )
    .join('');
  return rendered
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

/** The anchors of a Markdown file: its headings' slugs, a repeated slug numbered `-1`, `-2`… as GitHub does. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const heading of headings(text)) {
    const base = slug(heading.text);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    result.add(count === 0 ? base : `${base}-${count}`);
  }
  return result;
}

/** The link and image targets of a Markdown text, outside code: inline `[text](target)` and definitions `[ref]: target`. */
function linkTargets(text: string): string[] {
  const prose = withoutCodeSpans(withoutFences(text));
  const targets: string[] = [];
  for (const match of prose.matchAll(/\]\(\s*(<[^>]*>|[^\s)]+)(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)/g))
    targets.push(match[1]!.replace(/^<(.*)>$/, '$1'));
  for (const match of prose.matchAll(/^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)/gm))
    targets.push(match[1]!.replace(/^<(.*)>$/, '$1'));
  return targets;
}

const isExternal = (target: string) => /^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//');

describe('README', () => {
  it('is the front page: at most 300 lines', () => {
    const lines = readme.split('\n').length - (readme.endsWith('\n') ? 1 : 0);
    expect(lines).toBeLessThanOrEqual(300);
  });

  it('states the two commands that CI and users run', () => {
    expect(readme).toContain('npm ci && npm start');
    expect(readme).toContain('npm ci && npm test');
    const ci = readFileSync(new URL('../.ci/run', import.meta.url), 'utf8');
    expect(ci).toMatch(/^npm ci && npm test$/m);
  });

  it('links every document in docs/ from its table of contents', () => {
    const linked = new Set(linkTargets(readme).map((target) => target.split('#')[0]));
    for (const doc of DOCS) expect(linked, `README.md does not link ${doc}`).toContain(doc);
  });

  it('links the LICENSE file, which is MIT as package.json says', () => {
    expect(linkTargets(readme)).toContain('LICENSE');
    const pkg = JSON.parse(read('package.json')) as { license: string };
    expect(pkg.license).toBe('MIT');
    expect(read('LICENSE')).toMatch(/^MIT License\n\nCopyright \(c\) 2026 group-profile-proxy authors\n/);
  });
});

describe('docs/configuration.md', () => {
  const configuration = read('docs/configuration.md');

  it('has the configuration table the schema generates (run `npm run docs:config` after changing settings)', () => {
    expect(configuration).toBe(withConfigTable(configuration));
    for (const setting of Object.values(SETTINGS)) expect(configuration).toContain(`| \`${setting.env}\` |`);
  });
});

describe('docs/http-api.md', () => {
  const api = read('docs/http-api.md');

  it('documents every error code with its status', () => {
    for (const [code, status] of Object.entries(STATUS_OF_CODE))
      expect(api, code).toContain(`| \`${code}\` | ${status} |`);
  });
});

describe('Markdown links', () => {
  it('computes anchors as GitHub does', () => {
    expect(slug('Live updates (Server-Sent Events)')).toBe('live-updates-server-sent-events');
    expect(slug('The lease: one load for the whole fleet')).toBe('the-lease-one-load-for-the-whole-fleet');
    expect(slug('Multi-get: many groups in one request')).toBe('multi-get-many-groups-in-one-request');
    expect(slug('`ADDRESS_FILE` and **shutdown**')).toBe('address_file-and-shutdown');
    expect(slug('MISS_BUDGET and _the_ `*` sign')).toBe('miss_budget-and-the--sign');
    expect(slug('See [the feed](fleet.md#the-change-feed) — 变更 feed')).toBe('see-the-feed--变更-feed');
    expect([...anchors('# A\n\n## Same\n\n```\n# not a heading\n```\n\n### Same\n')]).toEqual(['a', 'same', 'same-1']);
  });

  it.each(MARKDOWN)('every relative link in %s resolves to a file, and every #anchor to a heading there', (file) => {
    const broken: string[] = [];
    for (const target of linkTargets(read(file))) {
      if (isExternal(target)) continue;
      const hash = target.indexOf('#');
      const pathPart = decodeURI(hash === -1 ? target : target.slice(0, hash));
      const anchor = hash === -1 ? undefined : decodeURIComponent(target.slice(hash + 1));
      const resolved = pathPart === '' ? join(ROOT, file) : resolve(ROOT, dirname(file), pathPart);
      if (relative(ROOT, resolved).startsWith('..') || !existsSync(resolved)) {
        broken.push(`${target}: no file ${relative(ROOT, resolved)}`);
        continue;
      }
      if (anchor === undefined) continue;
      if (statSync(resolved).isDirectory() || !resolved.endsWith('.md')) {
        broken.push(`${target}: an anchor into a file that is not Markdown`);
        continue;
      }
      if (!anchors(readFileSync(resolved, 'utf8')).has(anchor.toLowerCase()))
        broken.push(`${target}: no heading #${anchor} in ${relative(ROOT, resolved)}`);
    }
    expect(broken).toEqual([]);
  });

  it.each(MARKDOWN)('%s has no heading twice', (file) => {
    const slugs = headings(read(file)).map((heading) => slug(heading.text));
    expect(slugs.filter((s, i) => slugs.indexOf(s) !== i)).toEqual([]);
  });

  it('no two files of docs/ have a section (##) on the same topic', () => {
    const owner = new Map<string, string>();
    const shared: string[] = [];
    for (const file of DOCS)
      for (const heading of headings(read(file)).filter((h) => h.level === 2)) {
        const key = slug(heading.text);
        const other = owner.get(key);
        if (other !== undefined && other !== file) shared.push(`"${heading.text}" in ${other} and ${file}`);
        else owner.set(key, file);
      }
    expect(shared).toEqual([]);
  });
});
