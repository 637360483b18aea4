export * from './field-keys.repository';
export * from './field-keys.service';
export * from './sealed-columns';
export * from './fields.module';
