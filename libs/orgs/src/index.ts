export * from './org-provisioner.service';
export * from './orgs.service';
export * from './orgs.module';
export * from './orgs.dto';
export * from './org-settings.repository';
