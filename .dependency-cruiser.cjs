// The layers of Coffer's libraries, bottom first. A library may import its own layer's
// libraries (never in a cycle) and those below; never one above. `npm test` runs this check
// (type-only imports included) before anything else.
const LAYERS = [
  ['config', 'logging', 'http', 'database', 'crypto', 'storage', 'kms'], // platform
  ['tenancy'], // the tenancy kernel: OrgRef, Role, Actor, Principal, RequestSource, the org registry, the wrapped-key holder contract
  ['audit', 'jobs'],
  ['fields', 'spool', 'users', 'keys', 'packages', 'tls', 'alerts'], // domains
  ['orgs', 'auth', 'encryption', 'metrics'], // orchestration: provisioning, the request pipeline, read models
];

const libs = (names) => `^libs/(${names.join('|')})/`;

const upward = LAYERS.slice(0, -1).map((layer, i) => ({
  name: `no-upward-import-from-${layer.join('-')}`,
  comment: `${layer.join(', ')} may not import a library of a higher layer`,
  severity: 'error',
  from: { path: libs(layer) },
  to: { path: libs(LAYERS.slice(i + 1).flat()) },
}));

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    ...upward,
    {
      name: 'no-library-imports-an-app',
      severity: 'error',
      from: { path: '^libs/' },
      to: { path: '^apps/' },
    },
    {
      name: 'no-unlayered-library',
      comment: 'every library must be placed in LAYERS',
      severity: 'error',
      from: { path: '^(apps|libs)/' },
      to: { path: '^libs/', pathNot: libs(LAYERS.flat()) },
    },
    {
      name: 'no-circular',
      comment: 'no import cycle, type-only imports included',
      severity: 'error',
      from: { path: '^(apps|libs)/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '\\.spec\\.ts$' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.json'] },
  },
};
