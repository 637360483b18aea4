export * from './key-rotation.repository';
export * from './key-rotation.service';
export * from './keys.module';
