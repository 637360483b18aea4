export * from './key-rotation.repository';
export * from './key-rotation.service';
export * from './org-key.service';
export * from './wrapped-keys';
export * from './keys.module';
export * from './keys.dto';
