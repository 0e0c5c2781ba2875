// The deployment files under deploy/ cannot run here (no Docker, no Kubernetes), so they are
// checked as far as a machine without them can: the Kubernetes manifests against the API's
// schemas (npm kubernetes-models, each class's validate()), compose.yaml parsed, and in both the
// references between parts (names, ports, selectors, volumes, the nginx upstream list against the
// replicas, every PIXTABLE_* variable a real setting); nginx and HAProxy check their configs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { ENV_VARS } from '../../src/config/env.js';
import { NGINX, ROOT, writeNginxConfig } from '../../deploy/local-cluster/parts.js';
import { requireComponent } from '../helpers/requires.js';
import { rmrf, tempDir } from '../helpers/fixtures.js';

const deploy = (p: string) => path.join(ROOT, 'deploy', p);
const read = (p: string) => fs.readFileSync(deploy(p), 'utf8');
const KNOWN = new Set<string>(ENV_VARS);
const shippedConf = read('nginx/pixtable.conf');

/** `server host:port ...;` lines of an upstream include. */
function upstreamServers(inc: string): string[] {
  return [...inc.matchAll(/^\s*server (\S+)/gm)].map((m) => m[1]!);
}

function checkPixtableEnv(env: Record<string, unknown>, where: string): void {
  for (const k of Object.keys(env).filter((k) => k.startsWith('PIXTABLE_'))) {
    assert.ok(KNOWN.has(k), `${where}: ${k} is not a pixtable setting`);
  }
}

// ---- Kubernetes ----

type Doc = { apiVersion: string; kind: string; metadata: { name: string }; [k: string]: unknown };
const MODELS: Record<string, new (d: never) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
};
const k8sFiles = fs
  .readdirSync(deploy('k8s'))
  .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
  .sort();
const docs: Doc[] = k8sFiles.flatMap((f) =>
  YAML.parseAllDocuments(read(`k8s/${f}`)).map((d) => {
    assert.deepEqual(d.errors, [], f);
    return d.toJS() as Doc;
  }),
);
const find = <T = Doc>(kind: string, name: string) =>
  docs.find((d) => d.kind === kind && d.metadata.name === name) as T | undefined;

test('every Kubernetes manifest validates against the API schema (kubernetes-models)', () => {
  assert.ok(docs.length >= 6, `${docs.length} documents`);
  for (const d of docs) {
    const Model = MODELS[`${d.apiVersion}/${d.kind}`];
    assert.ok(Model, `${d.kind} ${d.metadata.name}: no model checked for ${d.apiVersion}/${d.kind}`);
    assert.doesNotThrow(() => new Model(d as never).validate(), `${d.kind} ${d.metadata.name}`);
  }
  // the validator does fail: a manifest with a wrong type is refused
  const sts = structuredClone(find('StatefulSet', 'pixtable')!) as Doc & { spec: { replicas: unknown } };
  sts.spec.replicas = 'three';
  assert.throws(() => new StatefulSet(sts as never).validate(), /replicas/);
  const kustomization = YAML.parse(read('k8s/kustomization.yaml')) as { resources: string[] };
  assert.deepEqual([...kustomization.resources].sort(), k8sFiles);
});

interface Sts {
  spec: {
    serviceName: string;
    replicas: number;
    selector: { matchLabels: Record<string, string> };
    template: {
      metadata: { labels: Record<string, string> };
      spec: {
        containers: {
          ports: { name: string; containerPort: number }[];
          envFrom: { configMapRef?: { name: string } }[];
          volumeMounts: { name: string; mountPath: string }[];
          readinessProbe: { httpGet: { path: string; port: string } };
          livenessProbe: { httpGet: { path: string; port: string } };
        }[];
      };
    };
    volumeClaimTemplates: { metadata: { name: string } }[];
  };
}

test('Kubernetes: StatefulSet, headless Service, ConfigMaps and the nginx front refer to one another', () => {
  const sts = find<Sts & Doc>('StatefulSet', 'pixtable')!;
  const c = sts.spec.template.spec.containers[0]!;
  const headless = find<
    Doc & { spec: { clusterIP: string; selector: Record<string, string>; ports: { port: number }[] } }
  >('Service', sts.spec.serviceName);
  assert.ok(headless, `the StatefulSet's serviceName ${sts.spec.serviceName} is a Service`);
  assert.equal(headless.spec.clusterIP, 'None');
  assert.deepEqual(headless.spec.selector, sts.spec.selector.matchLabels);
  assert.deepEqual(sts.spec.template.metadata.labels, sts.spec.selector.matchLabels);
  const port = c.ports.find((p) => p.name === 'http')!.containerPort;
  assert.equal(headless.spec.ports[0]!.port, port);
  assert.equal(c.readinessProbe.httpGet.path, '/readyz');
  assert.equal(c.livenessProbe.httpGet.path, '/healthz');
  // the tables live on the per-replica claim, at the image's PIXTABLE_STORAGE
  const claim = sts.spec.volumeClaimTemplates[0]!.metadata.name;
  assert.equal(c.volumeMounts.find((m) => m.name === claim)?.mountPath, '/storage');

  const cmName = c.envFrom.find((e) => e.configMapRef)!.configMapRef!.name;
  const cm = find<Doc & { data: Record<string, string> }>('ConfigMap', cmName)!;
  assert.ok(cm, `ConfigMap ${cmName}`);
  checkPixtableEnv(cm.data, `ConfigMap ${cmName}`);
  const names = Array.from(
    { length: sts.spec.replicas },
    (_, i) => `${sts.metadata.name}-${i}.${sts.spec.serviceName}`,
  );
  assert.deepEqual(
    cm.data.PIXTABLE_PEERS!.split(','),
    names.map((n) => `http://${n}:${port}`),
  );

  type Dep = Doc & {
    spec: {
      selector: { matchLabels: Record<string, string> };
      template: {
        metadata: { labels: Record<string, string> };
        spec: {
          containers: {
            ports: { name: string; containerPort: number }[];
            volumeMounts: { name: string; subPath: string; mountPath: string }[];
          }[];
          volumes: { name: string; configMap: { name: string } }[];
        };
      };
    };
  };
  const front = find<Dep>('Deployment', 'pixtable-front')!;
  const fc = front.spec.template.spec.containers[0]!;
  const vol = front.spec.template.spec.volumes[0]!;
  const ncm = find<Doc & { data: Record<string, string> }>('ConfigMap', vol.configMap.name)!;
  assert.ok(ncm, `ConfigMap ${vol.configMap.name}`);
  for (const m of fc.volumeMounts) assert.ok(m.subPath in ncm.data, `${m.subPath} in ${vol.configMap.name}`);
  assert.equal(
    ncm.data['pixtable.conf'],
    shippedConf,
    'the ConfigMap carries deploy/nginx/pixtable.conf as it is',
  );
  assert.equal(fc.ports[0]!.containerPort, 8080, 'nginx listens on pixtable.conf’s port');
  assert.deepEqual(
    upstreamServers(ncm.data['pixtable-upstreams.inc']!),
    names.map((n) => `${n}.default.svc.cluster.local:${port}`),
  );
  const frontSvc = find<Doc & { spec: { selector: Record<string, string> } }>('Service', 'pixtable-front')!;
  assert.deepEqual(frontSvc.spec.selector, front.spec.selector.matchLabels);
  assert.deepEqual(front.spec.template.metadata.labels, front.spec.selector.matchLabels);
});

// ---- compose ----

interface ComposeService {
  image?: string;
  build?: string;
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  depends_on?: string[] | Record<string, unknown>;
  command?: string[];
}

test('compose.yaml: replicas, nginx and the S3 store refer to one another', () => {
  const compose = YAML.parse(read('compose.yaml'), { merge: true }) as {
    services: Record<string, ComposeService>;
    volumes: Record<string, unknown>;
  };
  const s = compose.services;
  const replicas = Object.keys(s).filter((n) => /^pixtable-\d+$/.test(n));
  assert.equal(replicas.length, 3);
  const tables = new Set<string>();
  for (const r of replicas) {
    const svc = s[r]!;
    assert.equal(svc.build, '..', `${r} builds the repository's Dockerfile`);
    const env = svc.environment!;
    checkPixtableEnv(env, r);
    assert.ok(env.PIXTABLE_S3_ENDPOINT && env.PIXTABLE_S3_BUCKET, `${r}: sources in S3`);
    const s3 = new URL(env.PIXTABLE_S3_ENDPOINT);
    assert.ok(s[s3.hostname], `${r}: the S3 endpoint ${s3.hostname} is a service`);
    assert.equal(s3.port, '9000', "MinIO's S3 port");
    assert.equal(env.AWS_ACCESS_KEY_ID, s[s3.hostname]!.environment!.MINIO_ROOT_USER);
    assert.equal(env.AWS_SECRET_ACCESS_KEY, s[s3.hostname]!.environment!.MINIO_ROOT_PASSWORD);
    assert.deepEqual(
      env.PIXTABLE_PEERS!.split(','),
      replicas.map((n) => `http://${n}:3000`),
    );
    const [vol, mount] = svc.volumes![0]!.split(':');
    assert.equal(mount, '/storage');
    assert.ok(vol! in compose.volumes, `${vol} declared`);
    tables.add(vol!);
  }
  assert.equal(tables.size, replicas.length, 'each replica has a tables volume of its own');

  const nginx = s.nginx!;
  assert.deepEqual(nginx.ports, ['8080:8080']);
  assert.match(shippedConf, /^\s*listen 8080;$/m);
  for (const v of nginx.volumes!) {
    const src = v.split(':')[0]!;
    assert.ok(fs.existsSync(path.join(ROOT, 'deploy', src)), `${src} exists`);
  }
  assert.deepEqual(
    upstreamServers(read('nginx/pixtable-upstreams.inc')),
    replicas.map((n) => `${n}:3000`),
  );
  // the image listens on 3000 (Dockerfile PORT)
  assert.match(fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8'), /PORT=3000/);
});

// ---- the proxies' own checks ----

const hasNginx = fs.existsSync(NGINX);
test(
  'nginx -t accepts the shipped pixtable.conf with an upstream list',
  { skip: requireComponent('nginx', hasNginx, `${NGINX} not found (apt-get install nginx)`) },
  () => {
    const dir = tempDir('pixtable-nginx-t-');
    try {
      const conf = writeNginxConfig(dir, '127.0.0.1:1', ['127.0.0.1:2', '127.0.0.1:3']);
      const r = spawnSync(NGINX, ['-t', '-p', dir, '-c', conf], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
    } finally {
      rmrf(dir);
    }
  },
);

const hasHaproxy = spawnSync('haproxy', ['-v']).error === undefined;
test(
  'haproxy -c accepts deploy/haproxy/pixtable.cfg',
  { skip: requireComponent('haproxy', hasHaproxy, 'not installed (apt-get install haproxy)') },
  () => {
    const r = spawnSync('haproxy', ['-c', '-f', deploy('haproxy/pixtable.cfg')], {
      encoding: 'utf8',
      cwd: os.tmpdir(),
    });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /Configuration file is valid/);
  },
);
