export * from './package';
export * from './packages.dto';
export * from './packages.repository';
export * from './packages.service';
export * from './packages.module';
