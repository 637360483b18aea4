export * from './org-provisioner.service';
export * from './org-provisioning.repository';
export * from './orgs.service';
export * from './orgs.module';
export * from './orgs.dto';
export * from './org-settings.repository';
