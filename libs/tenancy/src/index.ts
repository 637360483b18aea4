export * from './org';
export * from './principal';
export * from './orgs.repository';
export * from './org-registry';
export * from './tenancy.module';
export * from './wrapped-key-holder';
