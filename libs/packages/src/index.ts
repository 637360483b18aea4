export * from './package';
export * from './packages.dto';
export * from './packages.repository';
export * from './packages.service';
export * from './packages.module';
export * from './asset-links.service';
export * from './link-keys.repository';
export * from './package-flush.service';
